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
	"bytes"
	"context"
	"encoding/binary"
	"maps"
	"strings"
	"testing"
)

// TestBlobLayout pins the wire format (docs/kms.md, "Ciphertext blob, format
// version 1") byte by byte.
func TestBlobLayout(t *testing.T) {
	e, _ := newTestEngine(t, Options{})
	k := mustKey(t, e, "")
	pt := []byte("hello")
	blob := mustEncrypt(t, e, k.KeyID, pt, nil)
	if blob[0] != 0x01 || blob[1] != 36 || string(blob[2:38]) != k.KeyID {
		t.Fatalf("header: % x", blob[:38])
	}
	if v := binary.BigEndian.Uint32(blob[38:42]); v != 1 {
		t.Fatalf("version field %d, want 1", v)
	}
	if len(blob) != 2+36+4+12+len(pt)+16 {
		t.Fatalf("blob length %d", len(blob))
	}
	b, err := ParseBlob(blob)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b.Marshal(), blob) || len(b.Nonce) != 12 || len(b.Header) != 42 {
		t.Fatalf("parse/marshal: %+v", b)
	}
}

// TestBlobEveryBitFlipped: no single-bit change to a blob decrypts.
func TestBlobEveryBitFlipped(t *testing.T) {
	ctx := context.Background()
	e, _ := newTestEngine(t, Options{})
	mustKey(t, e, "alias/k")
	ec := map[string]string{"app": "billing"}
	blob := mustEncrypt(t, e, "alias/k", []byte("a secret value of some length"), ec)
	for i := range len(blob) * 8 {
		bad := bytes.Clone(blob)
		bad[i/8] ^= 1 << (i % 8)
		_, err := e.Decrypt(ctx, &DecryptInput{CiphertextBlob: bad, EncryptionContext: ec})
		if err == nil {
			t.Fatalf("blob with bit %d flipped decrypted", i)
		}
		switch CodeOf(err) {
		case CodeInvalidCiphertext, CodeNotFound:
		default:
			t.Fatalf("bit %d: unexpected error %v", i, err)
		}
	}
}

// TestBlobEveryTruncation: no prefix of a blob decrypts, and none panics.
func TestBlobEveryTruncation(t *testing.T) {
	ctx := context.Background()
	e, _ := newTestEngine(t, Options{})
	mustKey(t, e, "alias/k")
	blob := mustEncrypt(t, e, "alias/k", []byte("truncate me"), nil)
	for n := range len(blob) {
		_, err := e.Decrypt(ctx, &DecryptInput{CiphertextBlob: blob[:n]})
		wantCode(t, err, CodeInvalidCiphertext)
		_, err = e.ReEncrypt(ctx, &ReEncryptInput{CiphertextBlob: blob[:n], DestinationKeyID: "alias/k"})
		wantCode(t, err, CodeInvalidCiphertext)
	}
	// Appended bytes are caught too.
	_, err := e.Decrypt(ctx, &DecryptInput{CiphertextBlob: append(bytes.Clone(blob), 0)})
	wantCode(t, err, CodeInvalidCiphertext)
}

// TestBlobContextSwaps: a blob opens only under exactly its own context.
func TestBlobContextSwaps(t *testing.T) {
	ctx := context.Background()
	e, _ := newTestEngine(t, Options{})
	mustKey(t, e, "alias/k")
	ec := map[string]string{"ab": "c", "d": "e"}
	blob := mustEncrypt(t, e, "alias/k", []byte("x"), ec)
	for _, other := range []map[string]string{
		nil,
		{"ab": "c"},
		{"a": "bc", "d": "e"}, // same concatenation, different pairs
		{"ab": "cd", "": "e"},
		{"ab": "c", "d": "E"},
		{"ab": "c", "d": "e", "f": ""},
		{"d": "e", "ab": "c", "x": "y"},
	} {
		_, err := e.Decrypt(ctx, &DecryptInput{CiphertextBlob: blob, EncryptionContext: other})
		if err == nil {
			t.Fatalf("blob opened under context %v", other)
		}
	}
	if _, err := e.Decrypt(ctx, &DecryptInput{CiphertextBlob: blob, EncryptionContext: maps.Clone(ec)}); err != nil {
		t.Fatal(err)
	}
}

// TestBlobHeaderMoved: a blob's body under another key's or version's header
// does not open — the header is authenticated.
func TestBlobHeaderMoved(t *testing.T) {
	ctx := context.Background()
	e, _ := newTestEngine(t, Options{})
	a := mustKey(t, e, "alias/a")
	b := mustKey(t, e, "alias/b")
	if _, err := e.RotateKeyOnDemand(ctx, &KeyIDInput{KeyID: "alias/a"}); err != nil {
		t.Fatal(err)
	}
	blob := mustEncrypt(t, e, "alias/a", []byte("x"), nil) // version 2 of a
	moved := bytes.Clone(blob)
	copy(moved[2:38], b.KeyID)
	_, err := e.Decrypt(ctx, &DecryptInput{CiphertextBlob: moved})
	wantCode(t, err, CodeInvalidCiphertext)
	older := bytes.Clone(blob)
	binary.BigEndian.PutUint32(older[38:42], 1)
	_, err = e.Decrypt(ctx, &DecryptInput{CiphertextBlob: older})
	wantCode(t, err, CodeInvalidCiphertext)
	newer := bytes.Clone(blob)
	binary.BigEndian.PutUint32(newer[38:42], 3)
	_, err = e.Decrypt(ctx, &DecryptInput{CiphertextBlob: newer})
	wantCode(t, err, CodeInvalidCiphertext)
	// And a header reused with another blob's body.
	other := mustEncrypt(t, e, "alias/b", []byte("y"), nil)
	spliced := append(bytes.Clone(blob[:42]), other[42:]...)
	_, err = e.Decrypt(ctx, &DecryptInput{CiphertextBlob: spliced})
	wantCode(t, err, CodeInvalidCiphertext)
	_ = a
}

func TestParseBlobRejects(t *testing.T) {
	id := []byte("6f1c2d3e-4a5b-4c6d-8e7f-0a1b2c3d4e5f")
	valid := append(append([]byte{1, 36}, id...), make([]byte, 4+12+16)...)
	binary.BigEndian.PutUint32(valid[38:42], 1)
	if _, err := ParseBlob(valid); err != nil {
		t.Fatalf("valid blob rejected: %v", err)
	}
	cases := map[string][]byte{
		"empty":       nil,
		"one byte":    {1},
		"format 2":    append([]byte{2}, valid[1:]...),
		"id len 255":  append([]byte{1, 255}, valid[2:]...),
		"id len 0":    append([]byte{1, 0}, valid[2:]...),
		"no tag":      valid[:len(valid)-1],
		"version 0":   func() []byte { b := bytes.Clone(valid); binary.BigEndian.PutUint32(b[38:42], 0); return b }(),
		"non-uuid id": func() []byte { b := bytes.Clone(valid); b[10] = 'z'; return b }(),
	}
	for name, b := range cases {
		if _, err := ParseBlob(b); CodeOf(err) != CodeInvalidCiphertext {
			t.Errorf("%s: got %v, want InvalidCiphertextException", name, err)
		}
	}
}

func TestCanonicalContext(t *testing.T) {
	got, err := CanonicalContext(map[string]string{"b": "2", "a": "1"})
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{0, 1, 'a', 0, 1, '1', 0, 1, 'b', 0, 1, '2'}
	if !bytes.Equal(got, want) {
		t.Fatalf("canonical: % x, want % x", got, want)
	}
	if b, _ := CanonicalContext(nil); len(b) != 0 {
		t.Fatal("empty context must encode to zero bytes")
	}
	if b, _ := CanonicalContext(map[string]string{}); len(b) != 0 {
		t.Fatal("empty context must encode to zero bytes")
	}
}

// decodeCanonicalContext inverts CanonicalContext, for the fuzz tests.
func decodeCanonicalContext(b []byte) (map[string]string, bool) {
	m := map[string]string{}
	prev := ""
	for len(b) > 0 {
		var kv [2]string
		for i := range kv {
			if len(b) < 2 {
				return nil, false
			}
			n := int(binary.BigEndian.Uint16(b))
			if len(b) < 2+n {
				return nil, false
			}
			kv[i], b = string(b[2:2+n]), b[2+n:]
		}
		if len(m) > 0 && kv[0] <= prev {
			return nil, false
		}
		prev = kv[0]
		m[kv[0]] = kv[1]
	}
	return m, true
}

// specBlob is the version-1 layout of docs/kms.md written out on its own,
// without parseBlob's helpers or constants: whether b is a well-formed blob,
// and the key id and version its header holds.
func specBlob(b []byte) (keyID string, version uint32, ok bool) {
	// 1 format + 1 length + 36 key id + 4 version + 12 nonce + 16 tag.
	if len(b) < 70 || b[0] != 0x01 || b[1] != 36 {
		return "", 0, false
	}
	for i, c := range b[2:38] {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if c != '-' {
				return "", 0, false
			}
		} else if !strings.ContainsRune("0123456789abcdefABCDEF", rune(c)) {
			return "", 0, false
		}
	}
	version = uint32(b[38])<<24 | uint32(b[39])<<16 | uint32(b[40])<<8 | uint32(b[41])
	if version == 0 {
		return "", 0, false
	}
	return string(b[2:38]), version, true
}

// FuzzParseBlob checks ParseBlob against specBlob: it accepts exactly the
// well-formed blobs; their fields sit at the documented offsets; the fields
// alone (not the bytes they alias) marshal back to the input; and no input
// but a blob the engine sealed ever decrypts.
func FuzzParseBlob(f *testing.F) {
	e, _ := newTestEngine(f, Options{})
	mustKey(f, e, "alias/k")
	genuine := map[string][]byte{} // blob -> plaintext, sealed under the empty context
	for _, pt := range [][]byte{[]byte("seed"), bytes.Repeat([]byte{0}, 4096)} {
		blob := mustEncrypt(f, e, "alias/k", pt, nil)
		genuine[string(blob)] = pt
		f.Add(blob)
	}
	f.Add(mustEncrypt(f, e, "alias/k", []byte("under a context"), map[string]string{"a": "b"}))
	id := []byte("6f1c2d3e-4a5b-4c6d-8e7f-0a1b2c3d4e5f")
	valid := append(append([]byte{1, 36}, id...), make([]byte, 4+12+16)...)
	valid[41] = 7
	f.Add(valid)
	for _, bad := range [][]byte{{}, {1}, {1, 36}, {1, 255, 0, 0}, valid[:len(valid)-1]} {
		f.Add(bad)
	}
	v0 := bytes.Clone(valid)
	v0[41] = 0
	f.Add(v0)
	notUUID := bytes.Clone(valid)
	notUUID[10] = 'z'
	f.Add(notUUID)
	f.Fuzz(func(t *testing.T, b []byte) {
		blob, err := ParseBlob(b)
		keyID, version, wellFormed := specBlob(b)
		if !wellFormed {
			if err == nil {
				t.Fatalf("ParseBlob accepted a blob the layout rejects: %+v", blob)
			}
			if CodeOf(err) != CodeInvalidCiphertext {
				t.Fatalf("parse error of the wrong kind: %v", err)
			}
			return
		}
		if err != nil {
			t.Fatalf("ParseBlob rejected a well-formed blob: %v", err)
		}
		if blob.KeyID != keyID || blob.Version != version {
			t.Fatalf("parsed key %q version %d, the header holds %q version %d", blob.KeyID, blob.Version, keyID, version)
		}
		if len(blob.Header) != 42 || len(blob.Nonce) != 12 || len(blob.Sealed) != len(b)-54 {
			t.Fatalf("field lengths: header %d, nonce %d, sealed %d of a %d-byte blob", len(blob.Header), len(blob.Nonce), len(blob.Sealed), len(b))
		}
		// Rebuild the wire bytes from the parsed values: a field read from
		// the wrong offset does not survive this.
		rebuilt := binary.BigEndian.AppendUint32(append([]byte{0x01, byte(len(blob.KeyID))}, blob.KeyID...), blob.Version)
		rebuilt = append(append(rebuilt, blob.Nonce...), blob.Sealed...)
		if !bytes.Equal(rebuilt, b) {
			t.Fatalf("fields do not rebuild the blob:\n got % x\nwant % x", rebuilt, b)
		}
		if !bytes.Equal(blob.Marshal(), b) {
			t.Fatal("parse -> marshal does not round-trip")
		}
		// Decrypting arbitrary bytes never panics, and only a blob the
		// engine sealed opens, to what was sealed.
		out, err := e.Decrypt(context.Background(), &DecryptInput{CiphertextBlob: b})
		if err == nil {
			want, ok := genuine[string(b)]
			if !ok || !bytes.Equal(out.Plaintext, want) {
				t.Fatalf("decrypted a blob the engine never sealed: % x", b)
			}
		}
	})
}

func FuzzCanonicalContext(f *testing.F) {
	f.Add([]byte{0, 1, 'a', 0, 1, '1'})
	f.Add([]byte{})
	f.Add([]byte{0, 2, 'a', 'b', 0, 0, 0, 1, 'c', 0, 1, 'd'})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, ok := decodeCanonicalContext(b)
		if !ok {
			return
		}
		enc, err := CanonicalContext(m)
		if err != nil {
			return // over a limit, or not UTF-8: refused, fine
		}
		if !bytes.Equal(enc, b) {
			t.Fatalf("canonical(decode(b)) != b")
		}
		back, ok := decodeCanonicalContext(enc)
		if !ok || !maps.Equal(back, m) {
			t.Fatal("decode(canonical(m)) != m")
		}
	})
}

// TestAADIncludesHeader: the AAD is header || canonical(context), on both
// sides. Moving a blob between keys or versions already fails because the
// material differs, so this test works with the key's own material: a blob
// Encrypt sealed opens only with the header in the AAD, and a body sealed
// with the right key and nonce but without the header in its AAD is refused.
func TestAADIncludesHeader(t *testing.T) {
	ctx := context.Background()
	e, _ := newTestEngine(t, Options{})
	k := mustKey(t, e, "alias/k")
	ec := map[string]string{"app": "billing"}
	pt := []byte("header-bound value")
	blob := mustEncrypt(t, e, "alias/k", pt, ec)
	b, err := ParseBlob(blob)
	if err != nil {
		t.Fatal(err)
	}
	aead := e.view.Load().keys[k.KeyID].versions[b.Version-1].aead
	canon, err := CanonicalContext(ec)
	if err != nil {
		t.Fatal(err)
	}

	// Seal side: the documented AAD opens the blob; the context alone does not.
	full := append(bytes.Clone(blob[:42]), canon...)
	if got, err := aead.Open(nil, b.Nonce, b.Sealed, full); err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("blob does not open with AAD = header || canonical(context): %v", err)
	}
	if _, err := aead.Open(nil, b.Nonce, b.Sealed, canon); err == nil {
		t.Fatal("blob opens with AAD = canonical(context): Encrypt left the header out of the AAD")
	}

	// Open side: a body sealed under the same key, version and nonce but
	// with the context alone as AAD is not this engine's blob.
	forged := append(bytes.Clone(blob[:54]), aead.Seal(nil, b.Nonce, pt, canon)...)
	_, err = e.Decrypt(ctx, &DecryptInput{CiphertextBlob: forged, EncryptionContext: ec})
	wantCode(t, err, CodeInvalidCiphertext)
	_, err = e.ReEncrypt(ctx, &ReEncryptInput{CiphertextBlob: forged, SourceEncryptionContext: ec,
		DestinationKeyID: "alias/k", DestinationEncryptionContext: ec})
	wantCode(t, err, CodeInvalidCiphertext)

	// And the genuine blob still opens through the engine.
	out, err := e.Decrypt(ctx, &DecryptInput{CiphertextBlob: blob, EncryptionContext: ec})
	if err != nil || !bytes.Equal(out.Plaintext, pt) {
		t.Fatalf("genuine blob: %v", err)
	}
}
