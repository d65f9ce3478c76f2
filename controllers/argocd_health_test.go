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
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	rekeyv1alpha1 "github.com/rekey-dev/rekey/api/v1alpha1"
	"github.com/rekey-dev/rekey/internal/argocdhealth"
	"github.com/rekey-dev/rekey/internal/kms"
)

// The Argo CD health check (config/argocd) read on KeyRotations as this
// controller writes them, not only on the hand-written fixtures: paused is
// Suspended, a stall is Degraded, a verified run is Healthy, and old-key
// blobs found again make it Degraded.
func TestArgoCDHealthOfLiveRotations(t *testing.T) {
	script, err := argocdhealth.ReadScript("../config/argocd/rekey.dev/KeyRotation/health.lua")
	if err != nil {
		t.Fatal(err)
	}
	health := func(kr *rekeyv1alpha1.KeyRotation) argocdhealth.Status {
		t.Helper()
		obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(kr)
		if err != nil {
			t.Fatal(err)
		}
		st, err := argocdhealth.Evaluate(script, obj)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	expect := func(kr *rekeyv1alpha1.KeyRotation, want string) {
		t.Helper()
		if got := health(kr); got.Status != want {
			t.Fatalf("health of %s (phase %s): %+v, want %s", kr.Name, kr.Status.Phase, got, want)
		}
	}
	ctx := context.Background()
	f := newFixture(t)
	f.key("alias/old")
	f.key("alias/new")
	f.key("alias/off")
	if _, err := f.engine.DisableKey(ctx, &kms.KeyIDInput{KeyID: "alias/off"}); err != nil {
		t.Fatal(err)
	}
	f.secrets(3, "alias/old", nil)
	f.start(10)

	f.rotation("stuck", func(kr *rekeyv1alpha1.KeyRotation) { kr.Spec.DestinationKeyID = "alias/off" })
	expect(f.wait("stuck", "Stalled", func(kr *rekeyv1alpha1.KeyRotation) bool {
		c := condition(kr, rekeyv1alpha1.ConditionStalled)
		return c != nil && c.Status == metav1.ConditionTrue
	}), "Degraded")

	f.rotation("r", func(kr *rekeyv1alpha1.KeyRotation) {
		kr.Spec.Paused = true
		kr.Spec.VerifyInterval = &metav1.Duration{Duration: time.Second}
	})
	expect(f.wait("r", "Paused", phaseIs(rekeyv1alpha1.PhasePaused)), "Suspended")
	f.edit("r", func(kr *rekeyv1alpha1.KeyRotation) { kr.Spec.Paused = false })
	kr := f.wait("r", "SourceKeysDrained True", func(kr *rekeyv1alpha1.KeyRotation) bool { return drained(kr) == metav1.ConditionTrue })
	expect(kr, "Healthy")

	f.createSecret("late", map[string][]byte{"v": f.encrypt("alias/old", "PLAINTEXT-late", nil)}, "v")
	expect(f.wait("r", "SourceKeysDrained False", func(kr *rekeyv1alpha1.KeyRotation) bool { return drained(kr) == metav1.ConditionFalse }), "Degraded")
}
