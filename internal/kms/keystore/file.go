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
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/rekey-dev/rekey/internal/kms"
)

// File is a keystore in one file. Writes go to a temporary file in the same
// directory, are fsynced, and renamed over the old one (then the directory is
// fsynced), under an exclusive flock on FILE.lock: a crash leaves the old or
// the new state, and two processes never lose each other's updates.
type File struct {
	path string
	root *RootKey
}

var _ kms.Store = (*File)(nil)

// NewFile returns a keystore in path; the file is created on the first write.
func NewFile(path string, root *RootKey) *File { return &File{path: path, root: root} }

// Path returns the keystore's file.
func (f *File) Path() string { return f.path }

func (f *File) lock(how int) (func(), error) {
	lf, err := os.OpenFile(f.path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("keystore lock: %w", err)
	}
	if err := syscall.Flock(int(lf.Fd()), how); err != nil {
		_ = lf.Close()
		return nil, fmt.Errorf("keystore lock: %w", err)
	}
	return func() {
		_ = syscall.Flock(int(lf.Fd()), syscall.LOCK_UN)
		_ = lf.Close()
	}, nil
}

// read returns the file's bytes and revision ("" when it does not exist).
func (f *File) read() ([]byte, string, error) {
	b, err := os.ReadFile(f.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("reading keystore: %w", err)
	}
	sum := sha256.Sum256(b)
	return b, hex.EncodeToString(sum[:16]), nil
}

// Load implements kms.Store.
func (f *File) Load(_ context.Context) ([]byte, string, error) {
	unlock, err := f.lock(syscall.LOCK_SH)
	if err != nil {
		return nil, "", err
	}
	defer unlock()
	b, rev, err := f.read()
	if err != nil || rev == "" {
		return nil, rev, err
	}
	doc, err := f.root.unwrap(b)
	if err != nil {
		return nil, "", fmt.Errorf("keystore %s: %w", f.path, err)
	}
	return doc, rev, nil
}

// Save implements kms.Store.
func (f *File) Save(_ context.Context, doc []byte, rev string) (string, error) {
	unlock, err := f.lock(syscall.LOCK_EX)
	if err != nil {
		return "", err
	}
	defer unlock()
	_, cur, err := f.read()
	if err != nil {
		return "", err
	}
	if cur != rev {
		return "", kms.ErrConflict
	}
	wrapped, err := f.root.wrap(doc)
	if err != nil {
		return "", err
	}
	dir := filepath.Dir(f.path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(f.path)+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("writing keystore: %w", err)
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	if _, err := tmp.Write(wrapped); err != nil {
		_ = tmp.Close()
		return "", fmt.Errorf("writing keystore: %w", err)
	}
	if err := tmp.Chmod(0o600); err != nil {
		_ = tmp.Close()
		return "", fmt.Errorf("writing keystore: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return "", fmt.Errorf("writing keystore: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("writing keystore: %w", err)
	}
	if err := os.Rename(tmp.Name(), f.path); err != nil {
		return "", fmt.Errorf("writing keystore: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	sum := sha256.Sum256(wrapped)
	return hex.EncodeToString(sum[:16]), nil
}
