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

// Package keystore persists the engine's key state, encrypted under a root
// key that is never stored beside it. Two backends share one format: a file
// (CLI, demo, the AWS-compatible endpoint) and a Kubernetes Secret (the
// operator). Both make writes atomic and refuse to overwrite a newer state.
package keystore

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
)

// RootKey is the 256-bit key that wraps a keystore. It never prints itself.
type RootKey struct {
	aead cipher.AEAD
	// prk is HKDF-SHA256's pseudorandom key extracted from the root key,
	// for DeriveKey: the raw key itself is not kept.
	prk []byte
}

// NewRootKey wraps 32 bytes of key.
func NewRootKey(raw []byte) (*RootKey, error) {
	if len(raw) != 32 {
		return nil, fmt.Errorf("root key must be 32 bytes, got %d", len(raw))
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	prk, err := hkdf.Extract(sha256.New, raw, nil)
	if err != nil {
		return nil, err
	}
	return &RootKey{aead: aead, prk: prk}, nil
}

// DeriveKey returns a 32-byte key for another purpose than wrapping the
// keystore, derived from the root key with HKDF-SHA256 (RFC 5869, no salt)
// and info naming that purpose ("rekey session credentials v1"). Every
// process holding the same root key derives the same key; a new root key
// derives a new one; no derived key reveals the root key or another
// purpose's key.
func (k *RootKey) DeriveKey(info string) ([]byte, error) {
	if info == "" {
		return nil, errors.New("a derived key needs an info string naming its purpose")
	}
	return hkdf.Expand(sha256.New, k.prk, info, 32)
}

// ParseRootKey reads a root key encoded as base64 (as
// 'head -c 32 /dev/urandom | base64' writes it); surrounding space is ignored.
func ParseRootKey(encoded []byte) (*RootKey, error) {
	s := strings.TrimSpace(string(encoded))
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, errors.New("root key is not valid base64 (make one with: head -c 32 /dev/urandom | base64)")
	}
	if len(raw) != 32 {
		return nil, fmt.Errorf("root key decodes to %d bytes, want 32 (make one with: head -c 32 /dev/urandom | base64)", len(raw))
	}
	return NewRootKey(raw)
}

// ReadRootKeyFile reads a base64 root key from a file. A file that users
// other than its owner and its group may read, or that anyone but its owner
// may write, is refused (ErrKeyFileMode; see CheckKeyFileMode, which also
// returns the warning for a file its group may read). The mode is checked
// on the file that is read, not on its name.
func ReadRootKeyFile(path string) (*RootKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading root key: %w", err)
	}
	defer func() { _ = f.Close() }()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("reading root key: %w", err)
	}
	if _, err := checkMode(path, fi); err != nil {
		return nil, fmt.Errorf("root key: %w", err)
	}
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return nil, fmt.Errorf("reading root key: %w", err)
	}
	k, err := ParseRootKey(b)
	if err != nil {
		return nil, fmt.Errorf("root key file %s: %w", path, err)
	}
	return k, nil
}

// GenerateRootKey returns a fresh base64-encoded root key.
func GenerateRootKey() (string, error) {
	raw := make([]byte, 32)
	if _, err := io.ReadFull(rand.Reader, raw); err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(raw), nil
}

func (*RootKey) String() string               { return "RootKey(redacted)" }
func (k *RootKey) GoString() string           { return k.String() }
func (k *RootKey) LogValue() slog.Value       { return slog.StringValue(k.String()) }
func (k *RootKey) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(k.String())) }
