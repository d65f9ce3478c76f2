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

package keystore

import (
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"testing"
)

// DeriveKey is HKDF-SHA256 of the root key by purpose: the same for the
// same root key and info, different for another of either, never the
// root key itself.
func TestDeriveKey(t *testing.T) {
	raw := bytes.Repeat([]byte{0x42}, 32)
	k, err := NewRootKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	a, err := k.DeriveKey("rekey session credentials v1")
	if err != nil {
		t.Fatal(err)
	}
	want, err := hkdf.Key(sha256.New, raw, nil, "rekey session credentials v1", 32)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, want) || bytes.Equal(a, raw) {
		t.Fatalf("DeriveKey is not HKDF-SHA256(root key, no salt, info)")
	}
	again, _ := NewRootKey(raw)
	if b, _ := again.DeriveKey("rekey session credentials v1"); !bytes.Equal(a, b) {
		t.Fatal("the same root key derives another key")
	}
	if b, _ := k.DeriveKey("another purpose"); bytes.Equal(a, b) {
		t.Fatal("two purposes derive the same key")
	}
	other, _ := NewRootKey(bytes.Repeat([]byte{0x43}, 32))
	if b, _ := other.DeriveKey("rekey session credentials v1"); bytes.Equal(a, b) {
		t.Fatal("two root keys derive the same key")
	}
	if _, err := k.DeriveKey(""); err == nil {
		t.Fatal("an empty info string is accepted")
	}
}
