/*
Copyright 2026 The rekey Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package awsapi

import (
	"bytes"
	"encoding/base64"

	"github.com/rekey-dev/rekey/internal/kms"
)

// The data-plane operations (Encrypt, Decrypt, ReEncrypt) are most of an
// endpoint's traffic, and decoding their JSON in two passes (checkJSON,
// then json-iterator) was a third of the handler's CPU. This file decodes
// and encodes them in one pass, for the shape AWS SDKs send: one object,
// each known field once, plain strings (printable ASCII, no escapes).
//
// The fast path never decides that a request is bad. Anything it does not
// handle — an escape, a non-ASCII byte, null, a number, a field it does not
// know, a name twice, trailing bytes — makes it give up, and the request
// goes through decodeStrict, which accepts or refuses it exactly as for any
// other operation. FuzzFastDecode checks that whatever the fast path
// accepts, decodeStrict accepts with an equal result.

// decodeRequest decodes body into v: by the fast path where it applies,
// else by decodeStrict.
func decodeRequest(body []byte, v any) error {
	switch in := v.(type) {
	case *kms.ReEncryptInput:
		if fastReEncrypt(body, in) {
			return nil
		}
		*in = kms.ReEncryptInput{}
	case *kms.DecryptInput:
		if fastDecrypt(body, in) {
			return nil
		}
		*in = kms.DecryptInput{}
	case *kms.EncryptInput:
		if fastEncrypt(body, in) {
			return nil
		}
		*in = kms.EncryptInput{}
	}
	return decodeStrict(body, v)
}

func fastReEncrypt(body []byte, in *kms.ReEncryptInput) bool {
	l := lexer{scanner{b: body}}
	var seen uint16
	// A rotation that keeps the context sends it twice, byte for byte:
	// the second is then the same map (read-only, as the engine treats
	// it), which the engine canonicalises once (kms.SameContext).
	var first []byte
	var firstMap map[string]string
	context := func(dst *map[string]string) bool {
		l.space()
		if first != nil && bytes.HasPrefix(l.b[l.i:], first) {
			l.i += len(first)
			*dst = firstMap
			return true
		}
		start := l.i
		if !l.context(dst) {
			return false
		}
		first, firstMap = l.b[start:l.i], *dst
		return true
	}
	return l.object(func(name []byte) bool {
		var bit uint16
		ok := false
		switch string(name) {
		case "CiphertextBlob":
			bit, ok = 1<<0, l.blob(&in.CiphertextBlob)
		case "SourceKeyId":
			bit, ok = 1<<1, l.str(&in.SourceKeyID)
		case "SourceEncryptionContext":
			bit, ok = 1<<2, context(&in.SourceEncryptionContext)
		case "DestinationKeyId":
			bit, ok = 1<<3, l.str(&in.DestinationKeyID)
		case "DestinationEncryptionContext":
			bit, ok = 1<<4, context(&in.DestinationEncryptionContext)
		case "SourceEncryptionAlgorithm":
			bit, ok = 1<<5, l.str(&in.SourceEncryptionAlgorithm)
		case "DestinationEncryptionAlgorithm":
			bit, ok = 1<<6, l.str(&in.DestinationEncryptionAlgorithm)
		case "GrantTokens":
			bit, ok = 1<<7, l.strs(&in.GrantTokens)
		case "DryRun":
			bit, ok = 1<<8, l.boolean(&in.DryRun)
		}
		return once(&seen, bit, ok)
	}) && l.end()
}

func fastDecrypt(body []byte, in *kms.DecryptInput) bool {
	return fastOneKey(body, "CiphertextBlob", oneKeyFields{&in.KeyID, &in.CiphertextBlob, &in.EncryptionContext,
		&in.GrantTokens, &in.EncryptionAlgorithm, &in.DryRun})
}

func fastEncrypt(body []byte, in *kms.EncryptInput) bool {
	return fastOneKey(body, "Plaintext", oneKeyFields{&in.KeyID, &in.Plaintext, &in.EncryptionContext,
		&in.GrantTokens, &in.EncryptionAlgorithm, &in.DryRun})
}

// oneKeyFields are the fields Encrypt and Decrypt share, but for the name
// of the blob (Plaintext, CiphertextBlob).
type oneKeyFields struct {
	keyID     *string
	blob      *[]byte
	context   *map[string]string
	grants    *[]string
	algorithm *string
	dryRun    *bool
}

func fastOneKey(body []byte, blobName string, f oneKeyFields) bool {
	l := lexer{scanner{b: body}}
	var seen uint16
	return l.object(func(name []byte) bool {
		var bit uint16
		ok := false
		switch string(name) {
		case blobName:
			bit, ok = 1<<0, l.blob(f.blob)
		case "KeyId":
			bit, ok = 1<<1, l.str(f.keyID)
		case "EncryptionContext":
			bit, ok = 1<<2, l.context(f.context)
		case "GrantTokens":
			bit, ok = 1<<3, l.strs(f.grants)
		case "EncryptionAlgorithm":
			bit, ok = 1<<4, l.str(f.algorithm)
		case "DryRun":
			bit, ok = 1<<5, l.boolean(f.dryRun)
		}
		return once(&seen, bit, ok)
	}) && l.end()
}

// once records a field as read; a field read twice (or not read: an
// unknown name, bit 0) sends the request to decodeStrict.
func once(seen *uint16, bit uint16, ok bool) bool {
	if !ok || bit == 0 || *seen&bit != 0 {
		return false
	}
	*seen |= bit
	return true
}

// lexer reads the subset of JSON the fast path handles; every method
// returns false for anything outside it. It is checkJSON's scanner (the
// body and a position, space skipped the same way) with the fast path's
// reads added.
type lexer struct{ scanner }

// take skips space and then c.
func (l *lexer) take(c byte) bool {
	l.space()
	if l.i < len(l.b) && l.b[l.i] == c {
		l.i++
		return true
	}
	return false
}

func (l *lexer) peek(c byte) bool {
	l.space()
	return l.i < len(l.b) && l.b[l.i] == c
}

// end reports whether only space is left.
func (l *lexer) end() bool {
	l.space()
	return l.i == len(l.b)
}

// object reads an object, calling member with each name; member reads the
// value.
func (l *lexer) object(member func(name []byte) bool) bool {
	if !l.take('{') {
		return false
	}
	if l.take('}') {
		return true
	}
	for {
		name, ok := l.plain()
		if !ok || !l.take(':') || !member(name) {
			return false
		}
		if l.take('}') {
			return true
		}
		if !l.take(',') {
			return false
		}
	}
}

// plain reads a string of printable ASCII without escapes and returns its
// bytes (aliasing the body).
func (l *lexer) plain() ([]byte, bool) {
	if !l.take('"') {
		return nil, false
	}
	start := l.i
	for ; l.i < len(l.b); l.i++ {
		switch c := l.b[l.i]; {
		case c == '"':
			l.i++
			return l.b[start : l.i-1], true
		case c == '\\' || c < 0x20 || c >= 0x7f:
			return nil, false
		}
	}
	return nil, false
}

func (l *lexer) str(dst *string) bool {
	s, ok := l.plain()
	if ok {
		*dst = string(s)
	}
	return ok
}

// blob reads base64 (standard alphabet, padded), as encoding/json does for
// []byte.
// The closing quote is found with bytes.IndexByte, and the decoder
// checks the alphabet; it skips '\r' and '\n', which JSON does not allow
// raw in a string, so a blob whose length is not exactly that of its
// encoding is given up on.
func (l *lexer) blob(dst *[]byte) bool {
	if !l.take('"') {
		return false
	}
	end := bytes.IndexByte(l.b[l.i:], '"')
	if end < 0 {
		return false
	}
	s := l.b[l.i : l.i+end]
	out := make([]byte, base64.StdEncoding.DecodedLen(len(s)))
	n, err := base64.StdEncoding.Decode(out, s)
	if err != nil || base64.StdEncoding.EncodedLen(n) != len(s) {
		return false
	}
	l.i += end + 1
	*dst = out[:n]
	return true
}

// context reads an encryption context: an object of strings, each name
// once.
func (l *lexer) context(dst *map[string]string) bool {
	if !l.peek('{') {
		return false
	}
	m := make(map[string]string, 2)
	ok := l.object(func(name []byte) bool {
		if _, dup := m[string(name)]; dup {
			return false
		}
		v, ok := l.plain()
		if ok {
			m[string(name)] = string(v)
		}
		return ok
	})
	if ok {
		*dst = m
	}
	return ok
}

func (l *lexer) strs(dst *[]string) bool {
	if !l.take('[') {
		return false
	}
	out := []string{}
	if l.take(']') {
		*dst = out
		return true
	}
	for {
		s, ok := l.plain()
		if !ok {
			return false
		}
		out = append(out, string(s))
		if l.take(']') {
			*dst = out
			return true
		}
		if !l.take(',') {
			return false
		}
	}
}

func (l *lexer) boolean(dst *bool) bool {
	l.space()
	rest := l.b[l.i:]
	switch {
	case len(rest) >= 4 && string(rest[:4]) == "true":
		*dst, l.i = true, l.i+4
	case len(rest) >= 5 && string(rest[:5]) == "false":
		*dst, l.i = false, l.i+5
	default:
		return false
	}
	return true
}

// encodeResponse appends the JSON of a data-plane operation's output to b,
// byte for byte what json-iterator writes, or reports false for any other
// output or a string the fast path does not write (anything but printable
// ASCII without '"', '\\', '<', '>', '&').
func encodeResponse(b []byte, out any) ([]byte, bool) {
	e := encoder{b: b, ok: true}
	switch o := out.(type) {
	case *kms.ReEncryptOutput:
		e.blob("{\"CiphertextBlob\":", o.CiphertextBlob)
		e.str(",\"KeyId\":", o.KeyID)
		e.str(",\"SourceKeyId\":", o.SourceKeyID)
		e.str(",\"SourceEncryptionAlgorithm\":", o.SourceEncryptionAlgorithm)
		e.str(",\"DestinationEncryptionAlgorithm\":", o.DestinationEncryptionAlgorithm)
		e.optional(",\"SourceKeyMaterialId\":", o.SourceKeyMaterialID)
		e.optional(",\"DestinationKeyMaterialId\":", o.DestinationKeyMaterialID)
	case *kms.DecryptOutput:
		e.str("{\"KeyId\":", o.KeyID)
		e.blob(",\"Plaintext\":", o.Plaintext)
		e.str(",\"EncryptionAlgorithm\":", o.EncryptionAlgorithm)
		e.optional(",\"KeyMaterialId\":", o.KeyMaterialID)
	case *kms.EncryptOutput:
		e.blob("{\"CiphertextBlob\":", o.CiphertextBlob)
		e.str(",\"KeyId\":", o.KeyID)
		e.str(",\"EncryptionAlgorithm\":", o.EncryptionAlgorithm)
	default:
		return b, false
	}
	if !e.ok {
		return b, false
	}
	return append(e.b, '}'), true
}

type encoder struct {
	b  []byte
	ok bool
}

func (e *encoder) str(prefix, s string) {
	if !e.ok {
		return
	}
	for i := 0; i < len(s); i++ {
		if escaped(s[i]) {
			e.ok = false
			return
		}
	}
	e.b = append(e.b, prefix...)
	e.b = append(e.b, '"')
	e.b = append(e.b, s...)
	e.b = append(e.b, '"')
}

func (e *encoder) optional(prefix, s string) {
	if s != "" {
		e.str(prefix, s)
	}
}

func (e *encoder) blob(prefix string, p []byte) {
	e.b = append(e.b, prefix...)
	if p == nil {
		e.b = append(e.b, "null"...)
		return
	}
	e.b = append(e.b, '"')
	e.b = base64.StdEncoding.AppendEncode(e.b, p)
	e.b = append(e.b, '"')
}
