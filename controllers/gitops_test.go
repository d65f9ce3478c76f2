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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	rekeyv1alpha1 "github.com/rekey-dev/rekey/api/v1alpha1"
)

// Secrets that Argo CD or Flux apply from Git are not rewritten by
// default: each with blobs to move fails alone with ManagedByGitOps and
// keeps its values, the others rotate, and SourceKeysDrained never says
// True while they hold old-key blobs. One already under the destination
// is skipped, not failed. spec.gitOps: Rotate opts in, in a new run.
func TestGitOpsManagedSecretsAreReported(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.key("alias/old")
	newKey := f.key("alias/new")
	f.secrets(4, "alias/old", nil)
	f.createSecret("synced-done", map[string][]byte{"v": f.encrypt("alias/new", "PLAINTEXT-done", nil)}, "v")
	marks := map[string]func(s *metav1.ObjectMeta){
		"app-000": func(s *metav1.ObjectMeta) {
			s.Annotations["argocd.argoproj.io/tracking-id"] = "billing:/Secret:app/app-000"
		},
		"app-001":     func(s *metav1.ObjectMeta) { s.Labels["kustomize.toolkit.fluxcd.io/name"] = "billing" },
		"app-002":     func(s *metav1.ObjectMeta) { s.Labels["helm.toolkit.fluxcd.io/name"] = "billing" },
		"synced-done": func(s *metav1.ObjectMeta) { s.Labels["argocd.argoproj.io/instance"] = "billing" },
	}
	before := map[string][]byte{}
	for name, mark := range marks {
		s := f.secret(name)
		mark(&s.ObjectMeta)
		if err := k8sClient.Update(ctx, s); err != nil {
			t.Fatal(err)
		}
		before[name] = s.Data["password"]
	}
	f.start(10)
	f.rotation("r", nil)
	kr := f.wait("r", "the run ended and was verified", func(kr *rekeyv1alpha1.KeyRotation) bool {
		return kr.Status.Phase == rekeyv1alpha1.PhaseFailed && verified(kr)
	})
	if s := kr.Status.Secrets; s.Rotated != 1 || s.Failed != 3 || s.Skipped != 1 {
		t.Fatalf("secrets: %+v", s)
	}
	for _, fl := range kr.Status.Failures {
		if fl.Reason != ReasonManagedByGitOps || !strings.Contains(fl.Message, "rekey manifests reencrypt") {
			t.Fatalf("failure: %+v", fl)
		}
	}
	for _, name := range []string{"app-000", "app-001", "app-002"} {
		if got := f.secret(name).Data["password"]; !bytes.Equal(got, before[name]) {
			t.Fatalf("%s was written", name)
		}
	}
	if drained(kr) != metav1.ConditionFalse || kr.Status.Verification.SecretsUnderSourceKeys != 3 {
		t.Fatalf("drained %s, verification %+v", drained(kr), kr.Status.Verification)
	}
	f.assertDrainedTruthful(kr)
	f.eventually("a ManagedByGitOps Event", func() bool { return len(f.events(ReasonManagedByGitOps)) > 0 })

	f.edit("r", func(kr *rekeyv1alpha1.KeyRotation) { kr.Spec.GitOps = rekeyv1alpha1.GitOpsRotate })
	kr = f.newRunFinished(kr.Status.Run.ID)
	if kr.Status.Phase != rekeyv1alpha1.PhaseSucceeded || kr.Status.Secrets.Rotated != 3 || drained(kr) != metav1.ConditionTrue {
		t.Fatalf("opted in: phase %s, %+v, drained %s", kr.Status.Phase, kr.Status.Secrets, drained(kr))
	}
	f.verify(newKey)
}

// Writing the default, gitOps: Report, is the same run; Rotate is not.
func TestGitOpsDefaultIsTheSameRun(t *testing.T) {
	spec := rekeyv1alpha1.KeyRotationSpec{SourceKeyIDs: []string{"alias/old"}, DestinationKeyID: "alias/new"}
	empty := specDigest(spec)
	spec.GitOps = rekeyv1alpha1.GitOpsReport
	if specDigest(spec) != empty {
		t.Fatal("gitOps: Report starts a new run")
	}
	spec.GitOps = rekeyv1alpha1.GitOpsRotate
	if specDigest(spec) == empty {
		t.Fatal("gitOps: Rotate does not start a new run")
	}
}

// Which marks count: Argo CD's and Flux's, not Helm's own.
func TestGitOpsManager(t *testing.T) {
	for _, tc := range []struct {
		labels, annotations map[string]string
		want                string
	}{
		{nil, map[string]string{"argocd.argoproj.io/tracking-id": "app:/Secret:ns/s"}, "Argo CD"},
		{map[string]string{"argocd.argoproj.io/instance": "app"}, nil, "Argo CD"},
		{map[string]string{"kustomize.toolkit.fluxcd.io/name": "apps"}, nil, "Flux"},
		{map[string]string{"helm.toolkit.fluxcd.io/name": "app"}, nil, "Flux"},
		{map[string]string{"app.kubernetes.io/instance": "app", "app.kubernetes.io/managed-by": "Helm"}, nil, ""},
		{map[string]string{"argocd.argoproj.io/instance": ""}, nil, ""},
	} {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Labels: tc.labels, Annotations: tc.annotations}}
		if got := gitOpsManager(s); !strings.HasPrefix(got, tc.want) || (tc.want == "") != (got == "") {
			t.Errorf("%v %v: %q, want %q", tc.labels, tc.annotations, got, tc.want)
		}
	}
}
