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

// Package kms is rekey's embedded re-encrypt engine: a local key service with
// the semantics of AWS KMS for symmetric keys. Keys have ordered backing-key
// versions; blobs name the key and version that sealed them in an
// authenticated header (blob.go); plaintext never leaves the engine on
// ReEncrypt. State is persisted through a Store (see the keystore package),
// encrypted under a root key kept elsewhere.
package kms

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Store persists the engine's state document. Implementations encrypt it and
// make Save atomic; see internal/kms/keystore.
type Store interface {
	// Load returns the state document (empty for a new store) and its revision.
	Load(ctx context.Context) (doc []byte, rev string, err error)
	// Save writes doc only if the store is still at rev ("" for a store never
	// written), and returns the new revision. It returns an error wrapping
	// ErrConflict when someone else wrote first.
	Save(ctx context.Context, doc []byte, rev string) (newRev string, err error)
}

// ErrConflict is returned by Store.Save when the store moved past rev.
var ErrConflict = errors.New("keystore was changed by another writer")

// ErrBadState means the keystore opened but does not hold a key state this
// engine can use (not a rekey state, an unknown format, inconsistent keys):
// reading it again will not help.
var ErrBadState = errors.New("keystore is inconsistent")

// Options configure an Engine. Zero values take the defaults.
type Options struct {
	// Store persists keys. Nil keeps them in memory only.
	Store Store
	// Rand is the source of key material, nonces, ids and tokens (default crypto/rand).
	Rand io.Reader
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Region and AccountID make up ARNs (default "local" and "000000000000").
	Region    string
	AccountID string
	// ReservationBlock is how many encryptions are reserved per keystore
	// write (default 65536).
	ReservationBlock uint64
	// RotateAfter is how many encryptions a backing-key version may perform
	// before the engine adds a new one (default 2^30, far below the 2^32
	// bound for random 96-bit nonces).
	RotateAfter uint64
	// MaxOnDemandRotations bounds RotateKeyOnDemand per key (default 25, as AWS).
	MaxOnDemandRotations int
}

// Engine is the re-encrypt engine. It is safe for concurrent use.
type Engine struct {
	store        Store
	rand         io.Reader
	now          func() time.Time
	region       string
	account      string
	block        uint64
	rotateAfter  uint64
	maxOnDemand  int
	arnKeyPrefix string

	// writeMu serialises mutations and reloads; it guards doc, rev and materials.
	writeMu   sync.Mutex
	doc       *stateDoc
	rev       string
	materials map[string]*keyMaterial

	// view is the immutable snapshot every read uses.
	view atomic.Pointer[view]
}

// New opens an engine over its store.
func New(ctx context.Context, o Options) (*Engine, error) {
	e := &Engine{
		store:       o.Store,
		rand:        o.Rand,
		now:         o.Now,
		region:      o.Region,
		account:     o.AccountID,
		block:       o.ReservationBlock,
		rotateAfter: o.RotateAfter,
		maxOnDemand: o.MaxOnDemandRotations,
		materials:   map[string]*keyMaterial{},
	}
	if e.rand == nil {
		e.rand = rand.Reader
	}
	if e.now == nil {
		e.now = time.Now
	}
	if e.region == "" {
		e.region = "local"
	}
	if e.account == "" {
		e.account = "000000000000"
	}
	if e.block == 0 {
		e.block = 1 << 16
	}
	if e.rotateAfter == 0 {
		e.rotateAfter = 1 << 30
	}
	if e.block > e.rotateAfter {
		e.block = e.rotateAfter
	}
	if e.maxOnDemand == 0 {
		e.maxOnDemand = 25
	}
	e.arnKeyPrefix = "arn:aws:kms:" + e.region + ":" + e.account + ":key/"
	e.writeMu.Lock()
	defer e.writeMu.Unlock()
	if err := e.reloadLocked(ctx, true); err != nil {
		return nil, err
	}
	return e, nil
}

// Refresh reloads the state when another writer changed the store, so keys
// created or rotated elsewhere become visible.
func (e *Engine) Refresh(ctx context.Context) error {
	e.writeMu.Lock()
	defer e.writeMu.Unlock()
	return e.reloadLocked(ctx, false)
}

func (e *Engine) reloadLocked(ctx context.Context, force bool) error {
	if e.store == nil {
		if e.doc == nil {
			e.doc = &stateDoc{FormatVersion: stateFormatVersion}
			return e.publishLocked()
		}
		return nil
	}
	b, rev, err := e.store.Load(ctx)
	if err != nil {
		return err
	}
	if !force && rev == e.rev && e.doc != nil {
		return nil
	}
	doc, err := decodeState(b)
	if err != nil {
		return err
	}
	e.doc, e.rev = doc, rev
	return e.publishLocked()
}

// mutate applies fn to a copy of the state, saves it, and publishes it. On a
// conflict with another writer it reloads and applies fn again.
func (e *Engine) mutate(ctx context.Context, fn func(d *stateDoc) error) error {
	e.writeMu.Lock()
	defer e.writeMu.Unlock()
	for attempt := 0; ; attempt++ {
		next, err := e.doc.clone()
		if err != nil {
			return err
		}
		next.purgeExpired(e.now())
		if err := fn(next); err != nil {
			return err
		}
		if e.store == nil {
			e.doc = next
			return e.publishLocked()
		}
		b, err := next.encode()
		if err != nil {
			return err
		}
		rev, err := e.store.Save(ctx, b, e.rev)
		if err == nil {
			e.doc, e.rev = next, rev
			return e.publishLocked()
		}
		if !errors.Is(err, ErrConflict) || attempt >= 16 {
			return err
		}
		if err := e.reloadLocked(ctx, true); err != nil {
			return err
		}
	}
}

// view is an immutable snapshot of the keys, aliases and grants.
type view struct {
	keys map[string]*rkey
	// aliasKeys resolves an alias name to its key in one lookup.
	aliasKeys map[string]*rkey
	grants    map[string]*grantRecord // by token
	doc       *stateDoc
}

// rkey is a key as the read path needs it.
type rkey struct {
	rec      *keyRecord
	arn      string
	versions []*keyMaterial // index version-1
}

func (k *rkey) newest() *keyMaterial { return k.versions[len(k.versions)-1] }

// publishLocked builds a new view from e.doc, reusing each version's
// keyMaterial (and so its AEAD and its reserved encryptions).
func (e *Engine) publishLocked() error {
	v := &view{
		keys:   make(map[string]*rkey, len(e.doc.Keys)),
		grants: make(map[string]*grantRecord, len(e.doc.Grants)),
		doc:    e.doc,
	}
	live := make(map[string]*keyMaterial, len(e.materials))
	for i := range e.doc.Keys {
		rec := &e.doc.Keys[i]
		k := &rkey{rec: rec, arn: e.arnKeyPrefix + rec.ID, versions: make([]*keyMaterial, len(rec.Versions))}
		for j, vr := range rec.Versions {
			if vr.Version != uint32(j+1) {
				return fmt.Errorf("%w: key %s has version %d at position %d", ErrBadState, rec.ID, vr.Version, j+1)
			}
			m := e.materials[vr.MaterialID]
			if m == nil {
				var err error
				if m, err = newKeyMaterial(vr.Version, vr.MaterialID, vr.Material); err != nil {
					return fmt.Errorf("%w: %w", ErrBadState, err)
				}
			}
			live[vr.MaterialID] = m
			k.versions[j] = m
		}
		if len(k.versions) == 0 {
			return fmt.Errorf("%w: key %s has no backing key", ErrBadState, rec.ID)
		}
		v.keys[rec.ID] = k
	}
	v.aliasKeys = make(map[string]*rkey, len(e.doc.Aliases))
	for i := range e.doc.Aliases {
		a := &e.doc.Aliases[i]
		if k := v.keys[a.KeyID]; k != nil {
			v.aliasKeys[a.Name] = k
		}
	}
	for i := range e.doc.Grants {
		v.grants[e.doc.Grants[i].Token] = &e.doc.Grants[i]
	}
	e.materials = live
	e.view.Store(v)
	return nil
}

// ---- identifiers -----------------------------------------------------------

func (e *Engine) newUUID() (string, error) {
	var b [16]byte
	if _, err := io.ReadFull(e.rand, b[:]); err != nil {
		return "", fmt.Errorf("reading randomness: %w", err)
	}
	b[6] = (b[6] & 0x0f) | 0x40
	b[8] = (b[8] & 0x3f) | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32], nil
}

func (e *Engine) randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(e.rand, b); err != nil {
		return "", fmt.Errorf("reading randomness: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// KeyARN returns the ARN of a key id.
func (e *Engine) KeyARN(id string) string { return e.arnKeyPrefix + id }

func (e *Engine) aliasARN(name string) string {
	return "arn:aws:kms:" + e.region + ":" + e.account + ":" + name
}

// resolve finds a key named in any AWS form: key id, key ARN, alias name or
// alias ARN. Keys past their deletion date do not exist.
func (e *Engine) resolve(v *view, id string) (*rkey, error) {
	if id == "" {
		return nil, newError(CodeValidation, "KeyId is required")
	}
	name := id
	if strings.HasPrefix(id, "arn:") {
		a, ok := SplitARN(id)
		if !ok || a.Partition != "aws" || a.Service != "kms" {
			return nil, newError(CodeNotFound, "%q is not a KMS key or alias ARN", id)
		}
		if a.Region != e.region || a.Account != e.account {
			return nil, newError(CodeNotFound, "key %q is in another region or account", id)
		}
		switch {
		case strings.HasPrefix(a.Resource, "key/"):
			name = strings.TrimPrefix(a.Resource, "key/")
		case strings.HasPrefix(a.Resource, "alias/"):
			name = a.Resource
		default:
			return nil, newError(CodeNotFound, "%q is not a KMS key or alias ARN", id)
		}
	}
	var k *rkey
	keyID := name
	if strings.HasPrefix(name, "alias/") {
		if k = v.aliasKeys[name]; k == nil {
			return nil, newError(CodeNotFound, "alias %s is not found", e.aliasARN(name))
		}
		keyID = k.rec.ID
	} else {
		k = v.keys[keyID]
	}
	if k == nil || e.expired(k) {
		return nil, newError(CodeNotFound, "key %s does not exist", e.KeyARN(keyID))
	}
	return k, nil
}

func (e *Engine) expired(k *rkey) bool {
	return k.rec.State == KeyStatePendingDeletion && k.rec.DeletionDate != nil && !e.now().Before(*k.rec.DeletionDate)
}

// usable reports whether a key's state allows cryptographic operations.
func (e *Engine) usable(k *rkey) error {
	switch k.rec.State {
	case KeyStateEnabled:
		return nil
	case KeyStateDisabled:
		return newError(CodeDisabled, "key %s is disabled", k.arn)
	case KeyStatePendingDeletion:
		return newError(CodeInvalidState, "key %s is pending deletion", k.arn)
	default:
		return newError(CodeInvalidState, "key %s is in state %s", k.arn, k.rec.State)
	}
}

// checkGrantTokens accepts at most 10 tokens, each of a live grant on one of
// the keys the request uses.
func checkGrantTokens(v *view, tokens []string, keys ...*rkey) error {
	if len(tokens) > 10 {
		return newError(CodeValidation, "at most 10 grant tokens are allowed, got %d", len(tokens))
	}
	for i, t := range tokens {
		g := v.grants[t]
		if g == nil {
			return newError(CodeInvalidGrantToken, "grant token %d of %d is not valid", i+1, len(tokens))
		}
		ok := false
		for _, k := range keys {
			ok = ok || g.KeyID == k.rec.ID
		}
		if !ok {
			return newError(CodeInvalidGrantToken, "grant token %d of %d is for another key", i+1, len(tokens))
		}
	}
	return nil
}

func checkAlgorithm(field, alg string) error {
	if alg != "" && alg != AlgorithmSymmetric {
		return newError(CodeValidation, "%s %q is not supported; symmetric keys use %s", field, alg, AlgorithmSymmetric)
	}
	return nil
}
