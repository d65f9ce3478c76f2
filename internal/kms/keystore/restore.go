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
	"fmt"

	"github.com/rekey-dev/rekey/internal/kms"
)

// Backend is a keystore as the rekey keystore commands use it. File and
// Secret implement it.
type Backend interface {
	kms.Store
	// String names the keystore in messages.
	String() string
	// Init creates a new, empty keystore (ErrExists if there is one).
	Init(ctx context.Context) (Header, error)
	// Read returns the keystore, checked as a load checks it.
	Read(ctx context.Context) (*Snapshot, error)
	// Restore replaces the keystore with a backup. When it refuses
	// (ErrRollback, ErrForeign) it returns the result too, with the keystore
	// it would have replaced.
	Restore(ctx context.Context, backup *Snapshot, o RestoreOptions) (*RestoreResult, error)
}

var (
	_ Backend = (*File)(nil)
	_ Backend = (*Secret)(nil)
)

// RestoreOptions say what a restore may do beyond putting back a state at
// least as new as the keystore's.
type RestoreOptions struct {
	// AllowRollback restores a backup older than the keystore there, or than
	// its record: whatever happened since is lost (see Compare).
	AllowRollback bool
	// Rebind restores a backup made for another location or of another
	// keystore (another id): for a keystore moved between a file and a
	// Secret, or between Secrets. The restored keystore keeps the id of the
	// keystore it replaces, if any.
	Rebind bool
}

// RestoreResult says what a restore did.
type RestoreResult struct {
	// Header is the restored keystore's: always a generation above every one
	// seen there, so running processes take it as the newest state.
	Header Header
	// Previous is the keystore that was replaced (nil if there was none).
	Previous *Snapshot
	// Unchanged is true when the keystore already was the backup's state:
	// nothing was written.
	Unchanged bool
	// Rollback is true when the restore replaced a newer state (or another
	// keystore): it needed AllowRollback.
	Rollback bool
}

// planRestore decides what restoring backup over cur (nil: missing), whose
// backend keeps rec (nil: none), writes. When it refuses, it still returns
// the result with Previous, so that the caller can say what would be lost.
func planRestore(where, location string, backup, cur *Snapshot, rec *record, o RestoreOptions) (*RestoreResult, error) {
	res := &RestoreResult{Previous: cur}
	if backup.Location != location && !o.Rebind {
		return res, fmt.Errorf("%w: the backup is of the keystore at %s, not %s; to restore it here on purpose, add --rebind",
			ErrForeign, backup.Location, where)
	}
	newest := rec
	if cur != nil && (newest == nil || cur.Generation >= newest.Generation) {
		newest = recordOf(cur)
	}
	id := backup.ID
	if newest != nil {
		id = newest.ID
		if backup.ID != newest.ID && !o.Rebind {
			return res, fmt.Errorf("%w: the backup is of keystore %s, but %s holds keystore %s; "+
				"to put the backup's keys there on purpose, add --rebind", ErrForeign, backup.ID, where, newest.ID)
		}
		if cur != nil && cur.Digest == newest.Digest && backup.Digest == cur.Digest {
			res.Header, res.Unchanged = cur.Header, true
			return res, nil
		}
		res.Rollback = backup.ID != newest.ID || backup.Generation < newest.Generation ||
			(backup.Generation == newest.Generation && backup.Digest != newest.Digest)
		switch {
		case !res.Rollback || o.AllowRollback:
		case backup.ID != newest.ID:
			return res, fmt.Errorf("%w: restoring the backup (keystore %s) would replace keystore %s at %s, generation %d, "+
				"and every key in it, with every blob under them. To do it anyway, add --allow-rollback",
				ErrRollback, backup.ID, newest.ID, where, newest.Generation)
		default:
			return res, fmt.Errorf("%w: the backup is generation %d of keystore %s, and %s has seen generation %d; "+
				"restoring it would undo every change since: keys disabled since would be enabled again, and keys and "+
				"key versions added since would be lost with every blob under them. To do it anyway, add --allow-rollback",
				ErrRollback, backup.Generation, backup.ID, where, newest.Generation)
		}
	}
	gen := backup.Generation
	if newest != nil && newest.Generation > gen {
		gen = newest.Generation
	}
	res.Header = Header{ID: id, Generation: gen + 1, Location: location}
	return res, nil
}
