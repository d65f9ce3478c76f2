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
	"errors"
	"fmt"
	"sync"
)

// ErrMissing means the keystore does not exist. Opening a missing keystore
// is an error, never an empty keyring: a keystore is created only on
// purpose (rekey keystore init, or a store made with NewFile or NewSecret,
// before it has seen one).
var ErrMissing = errors.New("keystore does not exist")

// ErrExists means a keystore was to be created where one already is.
var ErrExists = errors.New("a keystore already exists there")

// ErrRollback means the keystore is at an older generation than one already
// seen at its location: an older copy was put back. Loading it would
// re-enable keys disabled since, lose the key versions added since (blobs
// under them could not be decrypted) and let the next rotation make a
// different version under the same number.
var ErrRollback = errors.New("keystore was rolled back to an older generation")

// ErrForeign means the keystore is not the one that belongs here: it was
// made for another location, it is another keystore (another id) than the
// one seen here, or it is a different state under a generation already seen.
var ErrForeign = errors.New("keystore is not the one that belongs at this location")

// record is what a backend keeps about the newest keystore it wrote, where
// a restart can still find it: the sidecar file of a File, the annotations of
// a Secret.
type record struct {
	ID         string `json:"keystore"`
	Generation uint64 `json:"generation"`
	Digest     string `json:"sha256"`
}

func recordOf(s *Snapshot) *record {
	return &record{ID: s.ID, Generation: s.Generation, Digest: s.Digest}
}

// guard remembers the newest keystore a store handle has loaded or written
// and checks every keystore it loads against that, against the backend's
// record and against the backend's location.
type guard struct {
	where    string // the keystore, as messages name it
	location string // the Location a header must carry

	mu   sync.Mutex
	seen *record
}

// check refuses a keystore that is not the newest state of the one that
// belongs here. rec may be nil (no record); recName names it in messages.
func (g *guard) check(s *Snapshot, rec *record, recName string) error {
	if s.Location != g.location {
		return fmt.Errorf("%w: %s holds a keystore made for %s; "+
			"to use it here on purpose, restore it with rekey keystore restore --rebind", ErrForeign, g.where, s.Location)
	}
	g.mu.Lock()
	seen := g.seen
	g.mu.Unlock()
	if err := compare(s, seen, g.where, "this process"); err != nil {
		return err
	}
	return compare(s, rec, g.where, recName)
}

func compare(s *Snapshot, r *record, where, by string) error {
	switch {
	case r == nil:
		return nil
	case s.ID != r.ID:
		return fmt.Errorf("%w: %s holds keystore %s, but %s knows keystore %s there: it was replaced by another keystore "+
			"(restore the right one with rekey keystore restore; to adopt this one on purpose, use --rebind)",
			ErrForeign, where, s.ID, by, r.ID)
	case s.Generation < r.Generation:
		return fmt.Errorf("%w: %s is at generation %d, but %s has seen generation %d of keystore %s: an older copy was put back. "+
			"Using it would re-enable keys disabled since, lose key versions added since (their blobs would not decrypt) "+
			"and let the next rotation make a different version under the same number. Put the newest copy back, "+
			"or accept the older state on purpose with rekey keystore restore --allow-rollback (docs/operations.md)",
			ErrRollback, where, s.Generation, by, r.Generation, s.ID)
	case s.Generation == r.Generation && s.Digest != r.Digest:
		return fmt.Errorf("%w: %s holds a different state of keystore %s under generation %d than %s has seen: "+
			"a copy that was written on its own was put in its place", ErrForeign, where, s.ID, s.Generation, by)
	}
	return nil
}

// saw records a keystore this handle loaded or wrote.
func (g *guard) saw(s *Snapshot) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.seen == nil || s.Generation > g.seen.Generation {
		g.seen = recordOf(s)
	}
}

func (g *guard) hasSeen() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.seen != nil
}

// missing is the error for a keystore that is not there.
func (g *guard) missing(rec *record, recName string) error {
	g.mu.Lock()
	seen := g.seen
	g.mu.Unlock()
	switch {
	case seen != nil:
		return fmt.Errorf("%w: %s is gone, though this process loaded keystore %s (generation %d) from it; "+
			"nothing was written: put it back, or restore it from a backup (rekey keystore restore)",
			ErrMissing, g.where, seen.ID, seen.Generation)
	case rec != nil:
		return fmt.Errorf("%w: %s is gone, but %s records keystore %s at generation %d; "+
			"put it back, or restore it from a backup (rekey keystore restore)",
			ErrMissing, g.where, recName, rec.ID, rec.Generation)
	}
	return fmt.Errorf("%w: %s (create one with rekey keystore init)", ErrMissing, g.where)
}
