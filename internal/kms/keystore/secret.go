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
	"maps"
	"strconv"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/rekey-dev/rekey/internal/kms"
)

// SecretDataKey is the data key of the keystore Secret that holds the
// wrapped state.
const SecretDataKey = "keystore"

// The annotations with which every write records the keystore it wrote in
// its Secret.
const (
	AnnotationID         = "rekey.dev/keystore-id"
	AnnotationGeneration = "rekey.dev/keystore-generation"
	AnnotationDigest     = "rekey.dev/keystore-sha256"
)

// Secret is a keystore in a Kubernetes Secret (in the operator's namespace).
// Writes carry the resourceVersion that was read, so of two concurrent
// writers one gets a conflict and retries on the newer state.
//
// Its location, k8s://NAMESPACE/NAME, is in the AAD: keystore data copied
// from another Secret is refused. Every write also records the keystore's
// id, generation and digest in the Secret's annotations, so data replaced on
// its own (kubectl patch or edit, a GitOps or external-secrets tool that
// owns only the data) with an older or another keystore is refused, even
// after a restart. A whole Secret put back with its old annotations
// (kubectl apply of a saved manifest, Velero) is refused by a running
// process, which remembers the newest state it saw, but not after a restart.
type Secret struct {
	c         client.Client
	namespace string
	name      string
	root      *RootKey
	create    bool
	g         guard

	mu   sync.Mutex
	last secretState // the Secret as last loaded or written
}

type secretState struct {
	rev         string
	header      Header
	labels      map[string]string
	annotations map[string]string
}

var _ kms.Store = (*Secret)(nil)

// OpenSecret returns the keystore in Secret namespace/name. Loading it fails
// with ErrMissing when the Secret does not exist: the operator and the CLI
// use it, so a keystore that vanished is never taken for an empty one.
func OpenSecret(c client.Client, namespace, name string, root *RootKey) *Secret {
	loc := "k8s://" + namespace + "/" + name
	return &Secret{c: c, namespace: namespace, name: name, root: root, g: guard{where: loc, location: loc}}
}

// NewSecret returns the keystore in Secret namespace/name, created by the
// first write when the Secret does not exist and this handle never loaded
// it. It is for tests, the demo and benchmarks on a fresh cluster; the
// commands use OpenSecret and rekey keystore init.
func NewSecret(c client.Client, namespace, name string, root *RootKey) *Secret {
	s := OpenSecret(c, namespace, name, root)
	s.create = true
	return s
}

// String names the keystore: k8s://NAMESPACE/NAME.
func (s *Secret) String() string { return s.g.location }

// get returns the keystore Secret, nil when it does not exist, with its
// keystore opened and its record.
func (s *Secret) get(ctx context.Context) (*corev1.Secret, *Snapshot, *record, error) {
	var sec corev1.Secret
	err := s.c.Get(ctx, client.ObjectKey{Namespace: s.namespace, Name: s.name}, &sec)
	if apierrors.IsNotFound(err) {
		return nil, nil, nil, nil
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("reading keystore %s: %w", s, err)
	}
	b, ok := sec.Data[SecretDataKey]
	if !ok {
		return nil, nil, nil, fmt.Errorf("keystore %s has no %q data key: %w", s, SecretDataKey, ErrCorrupt)
	}
	snap, err := s.root.Open(b)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("keystore %s: %w", s, err)
	}
	rec, err := s.record(&sec)
	if err != nil {
		return nil, nil, nil, err
	}
	return &sec, snap, rec, nil
}

// record reads the annotations; nil when there are none.
func (s *Secret) record(sec *corev1.Secret) (*record, error) {
	a := sec.Annotations
	id, gen, dig := a[AnnotationID], a[AnnotationGeneration], a[AnnotationDigest]
	if id == "" && gen == "" && dig == "" {
		return nil, nil
	}
	g, err := strconv.ParseUint(gen, 10, 64)
	if err != nil || id == "" || dig == "" || g == 0 {
		return nil, fmt.Errorf("keystore %s: its annotations %s, %s and %s do not record a keystore: %w",
			s, AnnotationID, AnnotationGeneration, AnnotationDigest, ErrCorrupt)
	}
	return &record{ID: id, Generation: g, Digest: dig}, nil
}

const recordName = "its annotations"

func (s *Secret) remember(sec *corev1.Secret, h Header) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last = secretState{rev: sec.ResourceVersion, header: h, labels: sec.Labels, annotations: sec.Annotations}
}

// Load implements kms.Store.
func (s *Secret) Load(ctx context.Context) ([]byte, string, error) {
	sec, snap, rec, err := s.get(ctx)
	if err != nil {
		return nil, "", err
	}
	if sec == nil {
		if s.create && !s.g.hasSeen() {
			return nil, "", nil
		}
		return nil, "", s.g.missing(nil, "")
	}
	if err := s.g.check(snap, rec, recordName); err != nil {
		return nil, "", err
	}
	s.g.saw(snap)
	s.remember(sec, snap.Header)
	return snap.Doc, sec.ResourceVersion, nil
}

// Save implements kms.Store.
func (s *Secret) Save(ctx context.Context, doc []byte, rev string) (string, error) {
	s.mu.Lock()
	last := s.last
	s.mu.Unlock()
	var h Header
	switch {
	case rev == "":
		if !s.create || s.g.hasSeen() {
			return "", s.g.missing(nil, "")
		}
		id, err := newID()
		if err != nil {
			return "", err
		}
		h = Header{ID: id, Generation: 1, Location: s.g.location}
	case rev != last.rev:
		return "", kms.ErrConflict
	default:
		h = last.header
		h.Generation++
	}
	rv, err := s.write(ctx, h, doc, rev, last)
	if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
		return "", kms.ErrConflict
	}
	return rv, err
}

// write wraps doc under h and creates (rev "") or updates the Secret, with
// the record in its annotations.
func (s *Secret) write(ctx context.Context, h Header, doc []byte, rev string, last secretState) (string, error) {
	wrapped, err := s.root.wrap(h, doc)
	if err != nil {
		return "", err
	}
	snap := &Snapshot{Header: h, Doc: doc, Wrapped: wrapped, Digest: digest(wrapped)}
	labels := maps.Clone(last.labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels["app.kubernetes.io/name"] = "rekey"
	labels["app.kubernetes.io/component"] = "keystore"
	annotations := maps.Clone(last.annotations)
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[AnnotationID] = h.ID
	annotations[AnnotationGeneration] = strconv.FormatUint(h.Generation, 10)
	annotations[AnnotationDigest] = snap.Digest
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: s.namespace, Name: s.name, ResourceVersion: rev,
			Labels: labels, Annotations: annotations,
		},
		Type: "rekey.dev/keystore",
		Data: map[string][]byte{SecretDataKey: wrapped},
	}
	if rev == "" {
		err = s.c.Create(ctx, sec)
	} else {
		err = s.c.Update(ctx, sec)
	}
	switch {
	case apierrors.IsConflict(err), apierrors.IsAlreadyExists(err):
		return "", err
	case apierrors.IsNotFound(err):
		return "", s.g.missing(nil, "")
	case err != nil:
		return "", fmt.Errorf("writing keystore %s: %w", s, err)
	}
	s.g.saw(snap)
	s.remember(sec, h)
	return sec.ResourceVersion, nil
}

// Init creates a new, empty keystore Secret (ErrExists if there is one).
func (s *Secret) Init(ctx context.Context) (Header, error) {
	id, err := newID()
	if err != nil {
		return Header{}, err
	}
	h := Header{ID: id, Generation: 1, Location: s.g.location}
	_, err = s.write(ctx, h, nil, "", secretState{})
	if apierrors.IsAlreadyExists(err) {
		return Header{}, fmt.Errorf("%w: %s", ErrExists, s)
	}
	if err != nil {
		return Header{}, err
	}
	return h, nil
}

// Read returns the keystore as Load checks it: for a backup.
func (s *Secret) Read(ctx context.Context) (*Snapshot, error) {
	sec, snap, rec, err := s.get(ctx)
	if err != nil {
		return nil, err
	}
	if sec == nil {
		return nil, s.g.missing(nil, "")
	}
	if err := s.g.check(snap, rec, recordName); err != nil {
		return nil, err
	}
	s.g.saw(snap)
	return snap, nil
}

// Restore replaces the keystore with a backup (see RestoreOptions). A
// keystore Secret whose data does not open with the root key is never
// overwritten: delete it (after saving it) first.
func (s *Secret) Restore(ctx context.Context, backup *Snapshot, o RestoreOptions) (*RestoreResult, error) {
	var sec corev1.Secret
	err := s.c.Get(ctx, client.ObjectKey{Namespace: s.namespace, Name: s.name}, &sec)
	exists := err == nil
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("reading keystore %s: %w", s, err)
	}
	var cur *Snapshot
	var rec *record
	last := secretState{}
	if exists {
		if cur, err = s.root.Open(sec.Data[SecretDataKey]); err != nil {
			return nil, fmt.Errorf("keystore %s: %w (restore never overwrites a keystore it cannot read: save and delete the Secret first)", s, err)
		}
		if rec, err = s.record(&sec); err != nil {
			return nil, err
		}
		last = secretState{rev: sec.ResourceVersion, labels: sec.Labels, annotations: sec.Annotations}
	}
	res, err := planRestore(s.String(), s.g.location, backup, cur, rec, o)
	if err != nil || res.Unchanged {
		return res, err
	}
	if _, err := s.write(ctx, res.Header, backup.Doc, last.rev, last); err != nil {
		if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("keystore %s changed while it was being restored; nothing was written, try again: %w", s, kms.ErrConflict)
		}
		return nil, err
	}
	return res, nil
}
