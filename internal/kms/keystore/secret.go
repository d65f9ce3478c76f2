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

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/rekey-dev/rekey/internal/kms"
)

// SecretDataKey is the data key of the keystore Secret that holds the
// wrapped state.
const SecretDataKey = "keystore"

// Secret is a keystore in a Kubernetes Secret (in the operator's namespace).
// Writes carry the resourceVersion that was read, so of two concurrent
// writers one gets a conflict and retries on the newer state.
type Secret struct {
	c         client.Client
	namespace string
	name      string
	root      *RootKey
}

var _ kms.Store = (*Secret)(nil)

// NewSecret returns a keystore in Secret namespace/name; the Secret is created
// on the first write.
func NewSecret(c client.Client, namespace, name string, root *RootKey) *Secret {
	return &Secret{c: c, namespace: namespace, name: name, root: root}
}

func (s *Secret) String() string { return "secret " + s.namespace + "/" + s.name }

// Load implements kms.Store.
func (s *Secret) Load(ctx context.Context) ([]byte, string, error) {
	var sec corev1.Secret
	err := s.c.Get(ctx, client.ObjectKey{Namespace: s.namespace, Name: s.name}, &sec)
	if apierrors.IsNotFound(err) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("reading keystore %s: %w", s, err)
	}
	b, ok := sec.Data[SecretDataKey]
	if !ok {
		return nil, "", fmt.Errorf("keystore %s has no %q data key: %w", s, SecretDataKey, ErrCorrupt)
	}
	doc, err := s.root.unwrap(b)
	if err != nil {
		return nil, "", fmt.Errorf("keystore %s: %w", s, err)
	}
	return doc, sec.ResourceVersion, nil
}

// Save implements kms.Store.
func (s *Secret) Save(ctx context.Context, doc []byte, rev string) (string, error) {
	wrapped, err := s.root.wrap(doc)
	if err != nil {
		return "", err
	}
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: s.namespace, Name: s.name, ResourceVersion: rev,
			Labels: map[string]string{"app.kubernetes.io/name": "rekey", "app.kubernetes.io/component": "keystore"},
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
		return "", kms.ErrConflict
	case err != nil:
		return "", fmt.Errorf("writing keystore %s: %w", s, err)
	}
	return sec.ResourceVersion, nil
}
