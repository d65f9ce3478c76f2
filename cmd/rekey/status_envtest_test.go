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

package main

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rekeyv1alpha1 "github.com/rekey-dev/rekey/api/v1alpha1"
)

// rekey status lists and shows KeyRotations as the apiserver holds them;
// rekey rerun sets rekey.dev/requested-at, and says whether a new run
// starts.
func TestStatusAndRerun(t *testing.T) {
	adminKubeconfig(t) // also installs the CRDs
	ns := env.Namespace(t)
	ctx := context.Background()
	src, dst := "arn:aws:kms:local:000000000000:key/0b2e0000-0000-4000-8000-000000000001", "arn:aws:kms:local:000000000000:key/6f1c0000-0000-4000-8000-000000000002"
	mk := func(name string, st rekeyv1alpha1.KeyRotationStatus) {
		kr := &rekeyv1alpha1.KeyRotation{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: rekeyv1alpha1.KeyRotationSpec{SourceKeyIDs: []string{"alias/billing-2025"}, DestinationKeyID: "alias/billing-2026", Paused: true}}
		if err := env.Client.Create(ctx, kr); err != nil {
			t.Fatal(err)
		}
		st.ObservedGeneration = kr.Generation
		kr.Status = st
		if err := env.Client.Status().Update(ctx, kr); err != nil {
			t.Fatal(err)
		}
	}
	now := metav1.NewTime(time.Now().Add(-time.Minute))
	mk("done", rekeyv1alpha1.KeyRotationStatus{
		Phase: rekeyv1alpha1.PhaseFailed, Progress: "3/3", ResolvedSourceKeyARNs: []string{src}, ResolvedDestinationKeyARN: dst,
		Run:      &rekeyv1alpha1.RunStatus{ID: "7f3a01", Generation: 1, SpecDigest: "x", StartTime: now},
		Secrets:  rekeyv1alpha1.SecretCounts{Total: 3, Rotated: 2, Failed: 1},
		Blobs:    rekeyv1alpha1.BlobCounts{Total: 6, Rotated: 4, Failed: 2},
		Failures: []rekeyv1alpha1.Failure{{Secret: "billing-db", Key: "apiToken", Reason: "IncorrectKeyException", Message: "the ciphertext was not encrypted under the source key"}},
		Inventory: []rekeyv1alpha1.InventoryEntry{{KeyARN: dst, KeyMaterialID: "03a65f9d87208553ced95d0fcbec5b2e", Blobs: 4},
			{KeyARN: src, KeyMaterialID: "aa65f9d87208553ced95d0fcbec5b2e0", Blobs: 2}},
		Conditions: []metav1.Condition{{Type: rekeyv1alpha1.ConditionSourceKeysDrained, Status: metav1.ConditionFalse, Reason: "BlobsUnderSourceKeys",
			Message: "2 blobs in 1 Secrets are under a source key", LastTransitionTime: now}},
	})
	mk("running", rekeyv1alpha1.KeyRotationStatus{Phase: rekeyv1alpha1.PhaseRunning, Progress: "1/3"})

	out, errOut, code := rekeyCmd("", "status", "-n", ns)
	if code != 0 {
		t.Fatalf("status: exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "NAME") || !strings.Contains(lines[1], "done") ||
		strings.Join(strings.Fields(lines[1])[:5], " ") != "done Failed 3/3 1 False" || !strings.Contains(lines[2], "running") {
		t.Fatalf("status:\n%s", out)
	}
	out, _, code = rekeyCmd("", "status", "-A")
	if code != 0 || !strings.Contains(out, ns+"  ") || !strings.HasPrefix(out, "NAMESPACE") {
		t.Fatalf("status -A: exit %d\n%s", code, out)
	}

	out, errOut, code = rekeyCmd("", "status", "done", "--namespace", ns)
	if code != 0 {
		t.Fatalf("status done: exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"KeyRotation:  " + ns + "/done", "Failed (spec.paused)", "alias/billing-2025 (" + src + ")", "Run:", "7f3a01",
		"3 total: 2 rotated, 0 would rotate, 0 skipped, 1 failed", "SourceKeysDrained  False", "do not retire them yet",
		"Failures (1 recorded of 1 failed Secrets)", "billing-db  apiToken  IncorrectKeyException", dst + "  03a65f9d8720…  4  destination",
		src + "  aa65f9d87208…  2  source",
	} {
		if !strings.Contains(strings.Join(strings.Fields(out), " "), strings.Join(strings.Fields(want), " ")) {
			t.Fatalf("status done: no %q in:\n%s", want, out)
		}
	}

	out, errOut, code = rekeyCmd("", "rerun", "done", "-n", ns)
	if code != 0 || !strings.Contains(out, "a new run starts") {
		t.Fatalf("rerun: exit %d: %s%s", code, out, errOut)
	}
	kr := &rekeyv1alpha1.KeyRotation{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "done"}, kr); err != nil {
		t.Fatal(err)
	}
	if _, err := time.Parse(time.RFC3339Nano, kr.Annotations[rekeyv1alpha1.RequestedAtAnnotation]); err != nil {
		t.Fatalf("requested-at %q: %v", kr.Annotations[rekeyv1alpha1.RequestedAtAnnotation], err)
	}
	out, _, code = rekeyCmd("", "rerun", "running", "-n", ns)
	if code != 0 || !strings.Contains(out, "no new run starts") {
		t.Fatalf("rerun running: exit %d: %s", code, out)
	}

	for name, argv := range map[string][]string{
		"two names":               {"status", "a", "b", "-n", ns},
		"a name and -A":           {"status", "done", "-A"},
		"-n and -A":               {"status", "-n", ns, "-A"},
		"a bad namespace":         {"status", "-n", "Not_A_Namespace"},
		"a bad name":              {"status", "Bad_Name", "-n", ns},
		"rerun without a name":    {"rerun", "-n", ns},
		"rerun with two":          {"rerun", "a", "b", "-n", ns},
		"-n without a value":      {"status", "done", "-n"},
		"-n followed by a flag":   {"rerun", "done", "-n", "-A"},
		"an unknown flag":         {"status", "--bogus"},
		"the namespace misplaced": {"rerun", "--namespace", "--", "done"},
	} {
		t.Run(name, func(t *testing.T) {
			_, errOut, code := rekeyCmd("", argv...)
			if code != 2 || errOut == "" {
				t.Fatalf("exit %d: %s", code, errOut)
			}
		})
	}
	if _, errOut, code := rekeyCmd("", "status", "missing", "-n", ns); code != 1 || !strings.Contains(errOut, "no KeyRotation missing") {
		t.Fatalf("a missing rotation: exit %d: %s", code, errOut)
	}
}
