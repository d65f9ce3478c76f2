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

package kms

import (
	"encoding/binary"
	"slices"
	"strings"
	"unicode/utf8"
)

// Ciphertext blob, format version 1 (docs/kms.md):
//
//	offset  size  field
//	0       1     format version = 0x01
//	1       1     n = length of key id
//	2       n     key id (ASCII UUID)
//	2+n     4     backing-key version, uint32 big-endian
//	6+n     12    nonce
//	18+n    …     AES-256-GCM ciphertext || 16-byte tag
//
// AAD = bytes [0, 6+n) || canonical(encryption context).
const (
	blobFormatV1 = 0x01
	keyIDLen     = 36 // a UUID in its canonical text form
	nonceSize    = 12
	tagSize      = 16
	// headerLen is the authenticated header's length for a UUID key id.
	headerLen = 2 + keyIDLen + 4
	// minBlobLen is the smallest well-formed blob: header, nonce, empty
	// plaintext and tag.
	minBlobLen = headerLen + nonceSize + tagSize
	// BlobOverhead is how many bytes a blob adds to its plaintext.
	BlobOverhead = minBlobLen
)

// Blob is a parsed ciphertext blob. Its slices alias the bytes it was parsed
// from.
type Blob struct {
	// KeyID is the UUID of the key the blob is under.
	KeyID string
	// Version is the backing-key version (1-based) that sealed the blob.
	Version uint32
	// Header is the authenticated header, bytes [0, 6+n).
	Header []byte
	// Nonce is the 96-bit GCM nonce.
	Nonce []byte
	// Sealed is the GCM ciphertext followed by its tag.
	Sealed []byte
}

// ParseBlob parses a version-1 blob. It never panics: anything malformed is
// an InvalidCiphertextException that says what is wrong and nothing of the
// bytes themselves.
func ParseBlob(b []byte) (Blob, error) {
	r, err := parseBlob(b)
	if err != nil {
		return Blob{}, err
	}
	return Blob{KeyID: string(r.keyID), Version: r.version, Header: r.header, Nonce: r.nonce, Sealed: r.sealed}, nil
}

// rawBlob is a parsed blob whose key id is still bytes, so the hot path can
// look it up without allocating.
type rawBlob struct {
	keyID   []byte
	version uint32
	header  []byte
	nonce   []byte
	sealed  []byte
}

func parseBlob(b []byte) (rawBlob, error) {
	if len(b) < 2 {
		return rawBlob{}, newError(CodeInvalidCiphertext, "ciphertext is too short (%d bytes)", len(b))
	}
	if b[0] != blobFormatV1 {
		return rawBlob{}, newError(CodeInvalidCiphertext, "unknown ciphertext format version %d", b[0])
	}
	n := int(b[1])
	if n != keyIDLen {
		return rawBlob{}, newError(CodeInvalidCiphertext, "ciphertext key id length is %d, want %d", n, keyIDLen)
	}
	if len(b) < minBlobLen {
		return rawBlob{}, newError(CodeInvalidCiphertext, "ciphertext is too short (%d bytes, need at least %d)", len(b), minBlobLen)
	}
	id := b[2 : 2+n]
	if !isUUID(id) {
		return rawBlob{}, newError(CodeInvalidCiphertext, "ciphertext key id is not a UUID")
	}
	ver := binary.BigEndian.Uint32(b[2+n : 6+n])
	if ver == 0 {
		return rawBlob{}, newError(CodeInvalidCiphertext, "ciphertext names backing-key version 0")
	}
	return rawBlob{keyID: id, version: ver, header: b[:6+n], nonce: b[6+n : 18+n], sealed: b[18+n:]}, nil
}

// Marshal returns the blob's wire bytes.
func (b Blob) Marshal() []byte {
	out := make([]byte, 0, len(b.Header)+len(b.Nonce)+len(b.Sealed))
	out = append(out, b.Header...)
	out = append(out, b.Nonce...)
	return append(out, b.Sealed...)
}

// appendHeader appends the authenticated header of a blob under keyID and version.
func appendHeader(dst []byte, keyID string, version uint32) []byte {
	dst = append(dst, blobFormatV1, byte(len(keyID)))
	dst = append(dst, keyID...)
	return binary.BigEndian.AppendUint32(dst, version)
}

// isUUID reports whether b is a UUID in its 8-4-4-4-12 lower- or upper-case hex form.
func isUUID(b []byte) bool {
	if len(b) != keyIDLen {
		return false
	}
	for i, c := range b {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !isHex(c) {
				return false
			}
		}
	}
	return true
}

func isHex(c byte) bool {
	return ('0' <= c && c <= '9') || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F')
}

// Encryption context limits. Each key and value is length-prefixed with a
// uint16, so neither may be longer than 65535 bytes; AWS allows far less in
// total, so the engine caps the whole canonical form too.
const (
	maxContextPairs = 64
	maxContextBytes = 8192
)

// CanonicalContext returns the canonical encoding of an encryption context:
// pairs sorted by key; each key and value as a uint16 big-endian length
// followed by its UTF-8 bytes. The empty context encodes to zero bytes.
// The encoding is injective: two different contexts never encode alike.
func CanonicalContext(ctx map[string]string) ([]byte, error) {
	return AppendCanonicalContext(nil, ctx)
}

// AppendCanonicalContext appends the canonical encoding of ctx to dst.
func AppendCanonicalContext(dst []byte, ctx map[string]string) ([]byte, error) {
	if len(ctx) == 0 {
		return dst, nil
	}
	if len(ctx) == 1 {
		for k, v := range ctx {
			return appendPair(dst, k, v)
		}
	}
	if len(ctx) > maxContextPairs {
		return dst, newError(CodeValidation, "encryption context has %d pairs, at most %d are allowed", len(ctx), maxContextPairs)
	}
	type pair struct{ k, v string }
	var stack [16]pair
	pairs := stack[:0]
	size := 0
	for k, v := range ctx {
		if k == "" {
			return dst, newError(CodeValidation, "encryption context keys must not be empty")
		}
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return dst, newError(CodeValidation, "encryption context keys and values must be valid UTF-8")
		}
		size += 4 + len(k) + len(v)
		pairs = append(pairs, pair{k, v})
	}
	if size > maxContextBytes {
		return dst, newError(CodeValidation, "encryption context is %d bytes encoded, at most %d are allowed", size, maxContextBytes)
	}
	if len(pairs) > 1 {
		slices.SortFunc(pairs, func(a, b pair) int { return strings.Compare(a.k, b.k) })
	}
	dst = slices.Grow(dst, size)
	for _, p := range pairs {
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(p.k)))
		dst = append(dst, p.k...)
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(p.v)))
		dst = append(dst, p.v...)
	}
	return dst, nil
}

// appendPair encodes a one-pair context without sorting.
func appendPair(dst []byte, k, v string) ([]byte, error) {
	switch {
	case k == "":
		return dst, newError(CodeValidation, "encryption context keys must not be empty")
	case !utf8.ValidString(k) || !utf8.ValidString(v):
		return dst, newError(CodeValidation, "encryption context keys and values must be valid UTF-8")
	case 4+len(k)+len(v) > maxContextBytes:
		return dst, newError(CodeValidation, "encryption context is %d bytes encoded, at most %d are allowed", 4+len(k)+len(v), maxContextBytes)
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(k)))
	dst = append(dst, k...)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(v)))
	return append(dst, v...), nil
}
