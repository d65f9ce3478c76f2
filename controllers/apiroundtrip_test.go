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

package controllers

import (
	"bytes"
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rekeyv1alpha1 "github.com/rekey-dev/rekey/api/v1alpha1"
)

// TestSecretRoundTrip proves the control plane stores and returns Secret bytes.
func TestSecretRoundTrip(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	blob := []byte{0x01, 0x24, 0x00, 0xff, 0x10}
	in := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name: "billing-db", Namespace: ns,
			Annotations: map[string]string{rekeyv1alpha1.EncryptedKeysAnnotation: "password"},
		},
		Data: map[string][]byte{"password": blob},
	}
	if err := k8sClient.Create(ctx, in); err != nil {
		t.Fatalf("create secret: %v", err)
	}
	var out corev1.Secret
	if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(in), &out); err != nil {
		t.Fatalf("get secret: %v", err)
	}
	if !bytes.Equal(out.Data["password"], blob) {
		t.Fatalf("secret data changed in the round trip: got %d bytes, want %d", len(out.Data["password"]), len(blob))
	}
	if out.Annotations[rekeyv1alpha1.EncryptedKeysAnnotation] != "password" {
		t.Fatalf("annotation lost: %v", out.Annotations)
	}
}

func validRotation(ns, name string) *rekeyv1alpha1.KeyRotation {
	return &rekeyv1alpha1.KeyRotation{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: rekeyv1alpha1.KeyRotationSpec{
			SourceKeyIDs:     []string{"alias/billing-2025"},
			DestinationKeyID: "alias/billing-2026",
		},
	}
}

// TestKeyRotationRoundTrip proves the CRD is installed, applies its defaults
// and serves the status subresource.
func TestKeyRotationRoundTrip(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	kr := validRotation(ns, "billing-2026q4")
	kr.Spec.SourceEncryptionContext = map[string]string{"app": "billing"}
	if err := k8sClient.Create(ctx, kr); err != nil {
		t.Fatalf("create keyrotation: %v", err)
	}
	var got rekeyv1alpha1.KeyRotation
	if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(kr), &got); err != nil {
		t.Fatalf("get keyrotation: %v", err)
	}
	if got.Spec.DestinationKeyID != "alias/billing-2026" || got.Spec.SourceEncryptionContext["app"] != "billing" {
		t.Fatalf("spec not stored as written: %+v", got.Spec)
	}
	if got.Spec.Provider == nil || got.Spec.Provider.Embedded == nil || got.Spec.Provider.AWS != nil {
		t.Fatalf("provider default not applied: %+v", got.Spec.Provider)
	}
	if got.Spec.MaxConcurrency != 8 {
		t.Fatalf("maxConcurrency default: got %d, want 8", got.Spec.MaxConcurrency)
	}

	// Status is a subresource: a status patch is kept, a spec write is not needed for it.
	patch := client.MergeFrom(got.DeepCopy())
	got.Status.Phase = rekeyv1alpha1.PhaseRunning
	got.Status.Secrets.Total = 3
	if err := k8sClient.Status().Patch(ctx, &got, patch); err != nil {
		t.Fatalf("patch status: %v", err)
	}
	var again rekeyv1alpha1.KeyRotation
	if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(kr), &again); err != nil {
		t.Fatalf("get keyrotation: %v", err)
	}
	if again.Status.Phase != rekeyv1alpha1.PhaseRunning || again.Status.Secrets.Total != 3 {
		t.Fatalf("status not stored: %+v", again.Status)
	}
}

// TestKeyRotationValidation proves the CRD's schema and CEL rules reject bad
// specs with messages a user can act on.
func TestKeyRotationValidation(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	cases := []struct {
		name    string
		mutate  func(*rekeyv1alpha1.KeyRotation)
		message string
	}{
		{"no source keys", func(kr *rekeyv1alpha1.KeyRotation) { kr.Spec.SourceKeyIDs = nil }, "sourceKeyIds"},
		{"empty destination", func(kr *rekeyv1alpha1.KeyRotation) { kr.Spec.DestinationKeyID = "" }, "destinationKeyId"},
		{"two providers", func(kr *rekeyv1alpha1.KeyRotation) {
			kr.Spec.Provider = &rekeyv1alpha1.ProviderSpec{
				Embedded: &rekeyv1alpha1.EmbeddedProvider{},
				AWS:      &rekeyv1alpha1.AWSProvider{Region: "eu-west-1"},
			}
		}, "exactly one of provider.embedded or provider.aws must be set"},
		{"concurrency too high", func(kr *rekeyv1alpha1.KeyRotation) { kr.Spec.MaxConcurrency = 1000 }, "maxConcurrency"},
		{"gitOps neither Report nor Rotate", func(kr *rekeyv1alpha1.KeyRotation) { kr.Spec.GitOps = "Always" }, "gitOps"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			kr := validRotation(ns, "bad-"+string(rune('a'+i)))
			tc.mutate(kr)
			err := k8sClient.Create(ctx, kr)
			if !apierrors.IsInvalid(err) {
				t.Fatalf("want Invalid, got %v", err)
			}
			if !strings.Contains(err.Error(), tc.message) {
				t.Fatalf("error %q does not name %q", err, tc.message)
			}
		})
	}

	t.Run("destination is immutable", func(t *testing.T) {
		kr := validRotation(ns, "immutable")
		if err := k8sClient.Create(ctx, kr); err != nil {
			t.Fatalf("create: %v", err)
		}
		kr.Spec.DestinationKeyID = "alias/elsewhere"
		err := k8sClient.Update(ctx, kr)
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "destinationKeyId is immutable") {
			t.Fatalf("want an Invalid error naming the immutable field, got %v", err)
		}
	})
}
