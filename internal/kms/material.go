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
	"crypto/aes"
	"crypto/cipher"
	"fmt"
	"log/slog"
	"sync"
)

// keyMaterial is one backing-key version: 256 bits of AES key and the AEAD
// built from them once. It never prints its bytes: String, GoString and
// LogValue show the material id only.
type keyMaterial struct {
	version    uint32
	materialID string
	raw        [32]byte
	aead       cipher.AEAD

	// mu guards left: encryptions still free in this process's reserved
	// block (see Engine.takeEncryption).
	mu   sync.Mutex
	left uint64
}

// take uses one encryption of the reserved block, if any is left.
func (m *keyMaterial) take() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.left == 0 {
		return false
	}
	m.left--
	return true
}

func (m *keyMaterial) grant(n uint64) {
	m.mu.Lock()
	m.left += n
	m.mu.Unlock()
}

func newKeyMaterial(version uint32, materialID string, raw []byte) (*keyMaterial, error) {
	if len(raw) != 32 {
		return nil, fmt.Errorf("key material %s has %d bytes, want 32", materialID, len(raw))
	}
	m := &keyMaterial{version: version, materialID: materialID}
	copy(m.raw[:], raw)
	block, err := aes.NewCipher(m.raw[:])
	if err != nil {
		return nil, fmt.Errorf("key material %s: %w", materialID, err)
	}
	if m.aead, err = cipher.NewGCM(block); err != nil {
		return nil, fmt.Errorf("key material %s: %w", materialID, err)
	}
	return m, nil
}

func (m *keyMaterial) String() string   { return "keyMaterial(" + m.materialID + ")" }
func (m *keyMaterial) GoString() string { return m.String() }

// LogValue keeps the bytes out of structured logs.
func (m *keyMaterial) LogValue() slog.Value { return slog.StringValue(m.String()) }

// Format keeps the bytes out of every fmt verb, %v and %+v included.
func (m *keyMaterial) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(m.String())) }
