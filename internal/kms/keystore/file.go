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
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"

	"github.com/rekey-dev/rekey/internal/atomicfile"
	"github.com/rekey-dev/rekey/internal/kms"
)

// File is a keystore in one file. Writes go to a temporary file in the same
// directory, are fsynced, and renamed over the old one (then the directory is
// fsynced), under an exclusive flock on FILE.lock: a crash leaves the old or
// the new state, and two processes never lose each other's updates.
//
// A file keystore is identified by its keystore id, not by its path, so a
// keystore directory can be moved or mounted elsewhere. Beside it, FILE.generation
// records the id, generation and digest of the newest state written there;
// every load refuses a keystore with another id (ErrForeign), an older
// generation (ErrRollback), or another state of the same generation. So
// copying an older keys.rks, or one made elsewhere under the same root key,
// over the live one is refused, even after a restart. Restoring the whole
// directory (keystore and record) from a backup is not detected after a
// restart; a running process still refuses it, since it remembers the newest
// state it saw. A keystore moved without its record is accepted at its new
// place and recorded there on the next write.
type File struct {
	path   string
	root   *RootKey
	create bool
	g      guard
}

var _ kms.Store = (*File)(nil)

// OpenFile returns the keystore in path. Loading it fails with ErrMissing
// when the file does not exist: the CLI, the endpoint and the operator use
// it, so a keystore that vanished is never taken for an empty one.
func OpenFile(path string, root *RootKey) *File {
	return &File{path: path, root: root, g: guard{where: path, location: LocationFile}}
}

// NewFile returns the keystore in path, created by the first write when the
// file does not exist yet and never did: neither this handle nor
// FILE.generation has seen a keystore there. It is for tests and scratch
// setups; the commands use OpenFile and rekey keystore init.
func NewFile(path string, root *RootKey) *File {
	f := OpenFile(path, root)
	f.create = true
	return f
}

// Path returns the keystore's file.
func (f *File) Path() string { return f.path }

// String names the keystore in messages.
func (f *File) String() string { return f.path }

// recordPath is the file that records the newest state written.
func (f *File) recordPath() string { return f.path + ".generation" }

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
	return b, revision(b), nil
}

func revision(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

// readRecord returns the record, or nil when there is none.
func (f *File) readRecord() (*record, error) {
	b, err := os.ReadFile(f.recordPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the keystore's record: %w", err)
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil || r.ID == "" || r.Generation == 0 {
		return nil, fmt.Errorf("%s is not a keystore record (it records the newest keystore written to %s; "+
			"remove it only if you know that keystore is the right one): %w", f.recordPath(), f.path, ErrCorrupt)
	}
	return &r, nil
}

// current reads and opens the keystore and its record; s is nil when the
// file does not exist. Callers hold the lock.
func (f *File) current() (s *Snapshot, rev string, rec *record, err error) {
	b, rev, err := f.read()
	if err != nil {
		return nil, "", nil, err
	}
	if rec, err = f.readRecord(); err != nil {
		return nil, "", nil, err
	}
	if rev == "" {
		return nil, "", rec, nil
	}
	if s, err = f.root.Open(b); err != nil {
		return nil, "", nil, fmt.Errorf("keystore %s: %w", f.path, err)
	}
	return s, rev, rec, nil
}

// Load implements kms.Store.
func (f *File) Load(_ context.Context) ([]byte, string, error) {
	unlock, err := f.lock(syscall.LOCK_SH)
	if err != nil {
		return nil, "", err
	}
	defer unlock()
	s, rev, rec, err := f.current()
	if err != nil {
		return nil, "", err
	}
	if s == nil {
		if f.create && rec == nil && !f.g.hasSeen() {
			return nil, "", nil
		}
		return nil, "", f.g.missing(rec, f.recordPath())
	}
	if err := f.g.check(s, rec, f.recordPath()); err != nil {
		return nil, "", err
	}
	f.g.saw(s)
	return s.Doc, rev, nil
}

// Save implements kms.Store.
func (f *File) Save(_ context.Context, doc []byte, rev string) (string, error) {
	unlock, err := f.lock(syscall.LOCK_EX)
	if err != nil {
		return "", err
	}
	defer unlock()
	b, cur, err := f.read()
	if err != nil {
		return "", err
	}
	var h Header
	switch {
	case cur != rev && cur == "":
		rec, _ := f.readRecord()
		return "", f.g.missing(rec, f.recordPath())
	case cur != rev:
		return "", kms.ErrConflict
	case rev == "":
		// Only a NewFile handle that found nothing gets here.
		rec, err := f.readRecord()
		if err != nil {
			return "", err
		}
		if !f.create || rec != nil || f.g.hasSeen() {
			return "", f.g.missing(rec, f.recordPath())
		}
		if h.ID, err = newID(); err != nil {
			return "", err
		}
		h.Location, h.Generation = LocationFile, 1
	default:
		// These are the bytes this handle loaded (same revision), so their
		// header was authenticated then.
		if h, _, err = parseHeader(b); err != nil {
			return "", fmt.Errorf("keystore %s: %w", f.path, err)
		}
		h.Generation++
	}
	s, err := f.write(h, doc)
	if err != nil {
		return "", err
	}
	return revision(s.Wrapped), nil
}

// write wraps doc under h, replaces the keystore and then its record. The
// caller holds the exclusive lock. A crash between the two leaves the record
// one generation behind, which loads; never ahead, which would not.
func (f *File) write(h Header, doc []byte) (*Snapshot, error) {
	wrapped, err := f.root.wrap(h, doc)
	if err != nil {
		return nil, err
	}
	if err := writeAtomic(f.path, wrapped); err != nil {
		return nil, fmt.Errorf("writing keystore: %w", err)
	}
	s := &Snapshot{Header: h, Doc: doc, Wrapped: wrapped, Digest: digest(wrapped)}
	f.g.saw(s)
	rec, err := json.Marshal(recordOf(s))
	if err != nil {
		return nil, err
	}
	if err := writeAtomic(f.recordPath(), append(rec, '\n')); err != nil {
		return nil, fmt.Errorf("keystore %s was written (generation %d), but its record %s was not: %w",
			f.path, h.Generation, f.recordPath(), err)
	}
	return s, nil
}

// writeAtomic writes b to path, mode 0600, all or nothing (atomicfile).
func writeAtomic(path string, b []byte) error { return atomicfile.Write(path, b, 0o600) }

// Init creates a new, empty keystore. It refuses when the file exists
// (ErrExists) or when the record says a keystore was there (ErrMissing:
// restore that one instead).
func (f *File) Init(_ context.Context) (Header, error) {
	unlock, err := f.lock(syscall.LOCK_EX)
	if err != nil {
		return Header{}, err
	}
	defer unlock()
	_, cur, err := f.read()
	if err != nil {
		return Header{}, err
	}
	if cur != "" {
		return Header{}, fmt.Errorf("%w: %s", ErrExists, f.path)
	}
	rec, err := f.readRecord()
	if err != nil {
		return Header{}, err
	}
	if rec != nil {
		return Header{}, fmt.Errorf("%w; to start a new keystore there instead, remove %s first",
			f.g.missing(rec, f.recordPath()), f.recordPath())
	}
	h := Header{Location: LocationFile, Generation: 1}
	if h.ID, err = newID(); err != nil {
		return Header{}, err
	}
	if _, err := f.write(h, nil); err != nil {
		return Header{}, err
	}
	return h, nil
}

// Read returns the keystore as Load checks it: for a backup.
func (f *File) Read(_ context.Context) (*Snapshot, error) {
	unlock, err := f.lock(syscall.LOCK_SH)
	if err != nil {
		return nil, err
	}
	defer unlock()
	s, _, rec, err := f.current()
	if err != nil {
		return nil, err
	}
	if s == nil {
		return nil, f.g.missing(rec, f.recordPath())
	}
	if err := f.g.check(s, rec, f.recordPath()); err != nil {
		return nil, err
	}
	f.g.saw(s)
	return s, nil
}

// Restore replaces the keystore with a backup (see RestoreOptions). A
// keystore that is there but does not open with the root key is never
// overwritten: move it aside first.
func (f *File) Restore(_ context.Context, backup *Snapshot, o RestoreOptions) (*RestoreResult, error) {
	unlock, err := f.lock(syscall.LOCK_EX)
	if err != nil {
		return nil, err
	}
	defer unlock()
	cur, _, rec, err := f.current()
	if err != nil {
		return nil, fmt.Errorf("%w (restore never overwrites a keystore it cannot read: move %s aside first)", err, f.path)
	}
	res, err := planRestore(f.path, LocationFile, backup, cur, rec, o)
	if err != nil || res.Unchanged {
		return res, err
	}
	if _, err := f.write(res.Header, backup.Doc); err != nil {
		return nil, err
	}
	return res, nil
}
