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
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	rekeyv1alpha1 "github.com/rekey-dev/rekey/api/v1alpha1"
	"github.com/rekey-dev/rekey/internal/kms"
	"github.com/rekey-dev/rekey/internal/kms/keystore"
	"github.com/rekey-dev/rekey/internal/provider/embedded"
)

var billingCtx = map[string]string{"app": "billing"}

// kstatusOf computes the kstatus of a KeyRotation, as Argo CD and Flux do.
func kstatusOf(t *testing.T, kr *rekeyv1alpha1.KeyRotation) status.Status {
	t.Helper()
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(kr)
	if err != nil {
		t.Fatal(err)
	}
	obj["apiVersion"], obj["kind"] = rekeyv1alpha1.SchemeGroupVersion.String(), "KeyRotation"
	u := &unstructuredObj{Object: obj}
	res, err := status.Compute(u.toUnstructured())
	if err != nil {
		t.Fatal(err)
	}
	return res.Status
}

func condition(kr *rekeyv1alpha1.KeyRotation, typ string) *metav1.Condition {
	return meta.FindStatusCondition(kr.Status.Conditions, typ)
}

func TestRotationAcrossKeys(t *testing.T) {
	f := newFixture(t)
	f.key("alias/old")
	newKey := f.key("alias/new")
	f.secrets(25, "alias/old", billingCtx)
	// An annotated Secret outside the selector and an unannotated one: untouched.
	f.createSecret("other-team", map[string][]byte{"x": f.encrypt("alias/old", "PLAINTEXT-other", billingCtx)}, "x")
	plain := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "plain", Namespace: f.ns, Labels: map[string]string{"team": "billing"}},
		Data: map[string][]byte{"v": []byte("not a blob")}}
	if err := k8sClient.Create(context.Background(), plain); err != nil {
		t.Fatal(err)
	}
	other := f.secret("other-team")
	other.Labels = map[string]string{"team": "payments"}
	if err := k8sClient.Update(context.Background(), other); err != nil {
		t.Fatal(err)
	}
	otherRV := f.secret("other-team").ResourceVersion
	plainRV := f.secret("plain").ResourceVersion

	f.start(10)
	f.rotation("billing", func(kr *rekeyv1alpha1.KeyRotation) {
		kr.Spec.SourceEncryptionContext = billingCtx
		kr.Spec.SecretSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"team": "billing"}}
	})
	kr := f.wait("billing", "Succeeded", phaseIs(rekeyv1alpha1.PhaseSucceeded))

	st := kr.Status
	if st.Secrets != (rekeyv1alpha1.SecretCounts{Total: 25, Rotated: 25}) {
		t.Fatalf("secret counts: %+v", st.Secrets)
	}
	if st.Blobs != (rekeyv1alpha1.BlobCounts{Total: 75, Rotated: 75}) {
		t.Fatalf("blob counts: %+v", st.Blobs)
	}
	if st.ResolvedDestinationKeyARN != newKey.Arn || st.Progress != "25/25" || st.StartTime == nil || st.CompletionTime == nil {
		t.Fatalf("status: %+v", st)
	}
	if len(st.Inventory) != 1 || st.Inventory[0].KeyARN != newKey.Arn || st.Inventory[0].Blobs != 75 {
		t.Fatalf("inventory: %+v", st.Inventory)
	}
	if c := condition(kr, rekeyv1alpha1.ConditionReady); c == nil || c.Status != metav1.ConditionTrue || c.Reason != ReasonSucceeded {
		t.Fatalf("Ready: %+v", c)
	}
	if c := condition(kr, rekeyv1alpha1.ConditionSourceKeysDrained); c == nil || c.Status != metav1.ConditionTrue {
		t.Fatalf("SourceKeysDrained: %+v", c)
	}
	if condition(kr, rekeyv1alpha1.ConditionReconciling) != nil || condition(kr, rekeyv1alpha1.ConditionStalled) != nil {
		t.Fatalf("Reconciling/Stalled must be absent when done: %+v", kr.Status.Conditions)
	}
	if got := kstatusOf(t, kr); got != status.CurrentStatus {
		t.Fatalf("kstatus: %s, want Current", got)
	}
	f.verify(newKey)
	if got := f.secret("app-000").Annotations[rekeyv1alpha1.RotatedByAnnotation]; got != string(kr.UID)+"/"+kr.Status.Run.ID {
		t.Fatalf("rotated Secret marked %q, not with the rotation's UID and run", got)
	}
	f.assertDrainedTruthful(kr)
	if f.secret("other-team").ResourceVersion != otherRV || f.secret("plain").ResourceVersion != plainRV {
		t.Fatal("a Secret outside the selection was written")
	}
	if name, n := f.updates.max(); n != 1 {
		t.Fatalf("Secret %s written %d times, want once", name, n)
	}
	f.assertNoSecretsLeaked(kr)
}

func TestSameKeyRotationAfterRotateKeyOnDemand(t *testing.T) {
	f := newFixture(t)
	k := f.key("alias/k")
	f.secrets(6, "alias/k", nil)
	if _, err := f.engine.RotateKeyOnDemand(context.Background(), &kms.KeyIDInput{KeyID: "alias/k"}); err != nil {
		t.Fatal(err)
	}
	// One Secret already under the new version: skipped, not rewritten.
	f.createSecret("fresh", map[string][]byte{"v": f.encrypt("alias/k", "PLAINTEXT-fresh", nil)}, "*")
	f.plaintexts["fresh/v"] = "PLAINTEXT-fresh"
	f.start(4)
	f.rotation("same-key", func(kr *rekeyv1alpha1.KeyRotation) {
		kr.Spec.SourceKeyIDs, kr.Spec.DestinationKeyID = []string{"alias/k"}, "alias/k"
	})
	kr := f.wait("same-key", "Succeeded", phaseIs(rekeyv1alpha1.PhaseSucceeded))
	if kr.Status.Secrets != (rekeyv1alpha1.SecretCounts{Total: 7, Rotated: 6, Skipped: 1}) {
		t.Fatalf("secret counts: %+v", kr.Status.Secrets)
	}
	if kr.Status.Blobs != (rekeyv1alpha1.BlobCounts{Total: 19, Rotated: 18, Skipped: 1}) {
		t.Fatalf("blob counts: %+v", kr.Status.Blobs)
	}
	f.verify(k)
	if c := condition(kr, rekeyv1alpha1.ConditionSourceKeysDrained); c == nil || c.Status != metav1.ConditionTrue {
		t.Fatalf("SourceKeysDrained after same-key rotation: %+v", c)
	}
	if f.updates.n["fresh"] != 0 {
		t.Fatal("a Secret already under the current version was rewritten")
	}
}

func TestUndeclaredSourceAndTamperedBlobFailOnlyTheirSecrets(t *testing.T) {
	f := newFixture(t)
	f.key("alias/old")
	newKey := f.key("alias/new")
	f.key("alias/stranger")
	f.secrets(5, "alias/old", billingCtx)
	strangerBlob := f.encrypt("alias/stranger", "PLAINTEXT-stranger", billingCtx)
	f.createSecret("stranger", map[string][]byte{"v": strangerBlob}, "v")
	tampered := f.encrypt("alias/old", "PLAINTEXT-tampered", billingCtx)
	tampered[len(tampered)-3] ^= 0x10
	good := f.encrypt("alias/old", "PLAINTEXT-good-half", billingCtx)
	f.createSecret("tampered", map[string][]byte{"a": good, "b": tampered}, "a,b")
	strangerRV, tamperedRV := f.secret("stranger").ResourceVersion, f.secret("tampered").ResourceVersion

	f.start(50)
	f.rotation("r", func(kr *rekeyv1alpha1.KeyRotation) { kr.Spec.SourceEncryptionContext = billingCtx })
	kr := f.wait("r", "Failed", phaseIs(rekeyv1alpha1.PhaseFailed))

	if kr.Status.Secrets != (rekeyv1alpha1.SecretCounts{Total: 7, Rotated: 5, Failed: 2}) {
		t.Fatalf("secret counts: %+v", kr.Status.Secrets)
	}
	reasons := map[string]string{}
	for _, fl := range kr.Status.Failures {
		reasons[fl.Secret+"/"+fl.Key] = fl.Reason
	}
	if reasons["stranger/v"] != ReasonUndeclaredSource || reasons["tampered/b"] != string(kms.CodeInvalidCiphertext) {
		t.Fatalf("failures: %+v", kr.Status.Failures)
	}
	// Nothing written for the failed Secrets: not even the good half.
	if f.secret("stranger").ResourceVersion != strangerRV || f.secret("tampered").ResourceVersion != tamperedRV {
		t.Fatal("a failed Secret was written")
	}
	if !bytes.Equal(f.secret("tampered").Data["a"], good) {
		t.Fatal("a failed Secret was half-rotated")
	}
	f.verify(newKey)
	ready := condition(kr, rekeyv1alpha1.ConditionReady)
	if ready == nil || ready.Status != metav1.ConditionFalse || ready.Reason != ReasonSecretsFailed {
		t.Fatalf("Ready: %+v", ready)
	}
	if c := condition(kr, rekeyv1alpha1.ConditionSourceKeysDrained); c == nil || c.Status != metav1.ConditionFalse {
		t.Fatalf("SourceKeysDrained with failures: %+v", c)
	}
	if got := kstatusOf(t, kr); got != status.FailedStatus {
		t.Fatalf("kstatus: %s, want Failed", got)
	}
	var evs corev1.EventList
	if err := k8sClient.List(context.Background(), &evs, client.InNamespace(f.ns)); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, e := range evs.Items {
		seen[e.Reason] = true
	}
	if !seen[ReasonUndeclaredSource] || !seen[string(kms.CodeInvalidCiphertext)] || !seen[ReasonSecretsFailed] {
		t.Fatalf("events: %v", seen)
	}
	f.assertNoSecretsLeaked(kr)
}

func TestConcurrentWriterIsNotLost(t *testing.T) {
	f := newFixture(t)
	f.key("alias/old")
	newKey := f.key("alias/new")
	f.secrets(3, "alias/old", nil)
	target := f.secret("app-001").Data["password"]
	var written atomic.Bool
	f.ks.setHook(func(_ int, in *kms.ReEncryptInput) error {
		if !bytes.Equal(in.CiphertextBlob, target) || written.Swap(true) {
			return nil
		}
		// An application writes a new value while the rotation holds the old one.
		s := f.secret("app-001")
		s.Data["password"] = f.encrypt("alias/old", "PLAINTEXT-new-value", nil)
		return k8sClient.Update(context.Background(), s)
	})
	f.plaintexts["app-001/password"] = "PLAINTEXT-new-value"
	f.start(10)
	f.rotation("r", nil)
	kr := f.wait("r", "Succeeded", phaseIs(rekeyv1alpha1.PhaseSucceeded))
	if !written.Load() {
		t.Fatal("the concurrent write never happened")
	}
	if kr.Status.Secrets != (rekeyv1alpha1.SecretCounts{Total: 3, Rotated: 3}) || kr.Status.Blobs.Rotated != 9 {
		t.Fatalf("counts: %+v %+v", kr.Status.Secrets, kr.Status.Blobs)
	}
	f.verify(newKey) // includes the writer's new value, now under the new key
}

func TestRestartMidRunResumesWithExactCounts(t *testing.T) {
	f := newFixture(t)
	f.key("alias/old")
	newKey := f.key("alias/new")
	f.secrets(30, "alias/old", nil)
	stop := f.start(5)
	stopped := make(chan struct{})
	f.ks.setHook(func(call int, _ *kms.ReEncryptInput) error {
		if call == 40 { // inside the third page
			go func() { stop(); close(stopped) }()
			return context.Canceled
		}
		return nil
	})
	f.rotation("r", nil)
	<-stopped
	mid := f.wait("r", "part done", func(kr *rekeyv1alpha1.KeyRotation) bool { return true })
	if mid.Status.Phase != rekeyv1alpha1.PhaseRunning || mid.Status.Secrets.Rotated >= 30 {
		t.Fatalf("the controller was not stopped mid-run: %+v", mid.Status)
	}
	f.ks.setHook(nil)
	f.start(5)
	kr := f.wait("r", "Succeeded", phaseIs(rekeyv1alpha1.PhaseSucceeded))
	if kr.Status.Secrets != (rekeyv1alpha1.SecretCounts{Total: 30, Rotated: 30}) {
		t.Fatalf("secret counts after resume: %+v", kr.Status.Secrets)
	}
	if kr.Status.Blobs != (rekeyv1alpha1.BlobCounts{Total: 90, Rotated: 90}) {
		t.Fatalf("blob counts after resume: %+v", kr.Status.Blobs)
	}
	if name, n := f.updates.max(); n != 1 {
		t.Fatalf("Secret %s written %d times across the restart, want once", name, n)
	}
	f.verify(newKey)
}

func TestAliasRepointedMidRunUsesPinnedKey(t *testing.T) {
	f := newFixture(t)
	f.key("alias/old")
	newKey := f.key("alias/new")
	elsewhere, err := f.engine.CreateKey(context.Background(), &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	f.secrets(12, "alias/old", nil)
	f.ks.setHook(func(call int, _ *kms.ReEncryptInput) error {
		if call == 10 {
			_, err := f.engine.UpdateAlias(context.Background(), &kms.UpdateAliasInput{AliasName: "alias/new", TargetKeyID: elsewhere.KeyMetadata.KeyID})
			return err
		}
		return nil
	})
	f.start(4)
	f.rotation("r", nil)
	kr := f.wait("r", "Succeeded", phaseIs(rekeyv1alpha1.PhaseSucceeded))
	if kr.Status.ResolvedDestinationKeyARN != newKey.Arn {
		t.Fatalf("pinned destination: %s", kr.Status.ResolvedDestinationKeyARN)
	}
	f.verify(newKey) // every blob under the key the alias named at the start
}

func TestSecretDeletedMidRun(t *testing.T) {
	f := newFixture(t)
	f.key("alias/old")
	newKey := f.key("alias/new")
	f.secrets(4, "alias/old", nil)
	target := f.secret("app-002").Data["apiToken"]
	f.ks.setHook(func(_ int, in *kms.ReEncryptInput) error {
		if bytes.Equal(in.CiphertextBlob, target) {
			return client.IgnoreNotFound(k8sClient.Delete(context.Background(), f.secret("app-002")))
		}
		return nil
	})
	f.start(10)
	f.rotation("r", nil)
	kr := f.wait("r", "Succeeded", phaseIs(rekeyv1alpha1.PhaseSucceeded))
	if kr.Status.Secrets != (rekeyv1alpha1.SecretCounts{Total: 4, Rotated: 3, Skipped: 1}) {
		t.Fatalf("counts: %+v", kr.Status.Secrets)
	}
	f.verify(newKey, "app-002")
}

func TestDryRunWritesNothing(t *testing.T) {
	f := newFixture(t)
	f.key("alias/old")
	f.key("alias/new")
	f.secrets(8, "alias/old", nil)
	before := map[string]string{}
	for i := range 8 {
		s := f.secret(secretName(i))
		before[s.Name] = s.ResourceVersion
	}
	f.start(3)
	f.rotation("plan", func(kr *rekeyv1alpha1.KeyRotation) { kr.Spec.DryRun = true })
	kr := f.wait("plan", "Succeeded", phaseIs(rekeyv1alpha1.PhaseSucceeded))
	for name, rv := range before {
		if f.secret(name).ResourceVersion != rv {
			t.Fatalf("dry run wrote Secret %s", name)
		}
	}
	if kr.Status.Secrets != (rekeyv1alpha1.SecretCounts{Total: 8, WouldRotate: 8}) || kr.Status.Blobs != (rekeyv1alpha1.BlobCounts{Total: 24, WouldRotate: 24}) {
		t.Fatalf("plan: %+v %+v", kr.Status.Secrets, kr.Status.Blobs)
	}
	if c := condition(kr, rekeyv1alpha1.ConditionSourceKeysDrained); c == nil || c.Status != metav1.ConditionFalse {
		t.Fatalf("a dry run left every blob under the source key, but SourceKeysDrained says %+v", c)
	}
	// A dry run says what it would do, never that it rotated anything.
	var evs corev1.EventList
	if err := k8sClient.List(context.Background(), &evs, client.InNamespace(f.ns)); err != nil {
		t.Fatal(err)
	}
	texts := make([]string, 0, 1+len(evs.Items))
	texts = append(texts, condition(kr, rekeyv1alpha1.ConditionReady).Message)
	for _, e := range evs.Items {
		texts = append(texts, e.Message)
	}
	for _, txt := range texts {
		if strings.Contains(txt, "rotated") || strings.Contains(txt, "rotating") {
			t.Fatalf("dry-run status or Event says it rotated: %q", txt)
		}
	}
	if c := condition(kr, rekeyv1alpha1.ConditionReady); c == nil || c.Reason != ReasonDryRunComplete {
		t.Fatalf("Ready: %+v", c)
	}
	if len(kr.Status.DryRunSample) != 8 || kr.Status.DryRunSample[0] != "app-000" {
		t.Fatalf("dry-run sample: %v", kr.Status.DryRunSample)
	}
	// Turning dryRun off starts the real run.
	kr.Spec.DryRun = false
	if err := k8sClient.Update(context.Background(), kr); err != nil {
		t.Fatal(err)
	}
	kr = f.wait("plan", "rotated for real", func(kr *rekeyv1alpha1.KeyRotation) bool {
		return kr.Status.Phase == rekeyv1alpha1.PhaseSucceeded && kr.Status.ObservedGeneration == kr.Generation &&
			condition(kr, rekeyv1alpha1.ConditionReady).Reason == ReasonSucceeded
	})
	if kr.Status.Secrets.Rotated != 8 {
		t.Fatalf("real run after dry run: %+v", kr.Status.Secrets)
	}
}

func secretName(i int) string { return fmt.Sprintf("app-%03d", i) }

func TestDisabledKeyStallsThenResumes(t *testing.T) {
	f := newFixture(t)
	f.key("alias/old")
	newKey := f.key("alias/new")
	f.secrets(3, "alias/old", nil)
	if _, err := f.engine.DisableKey(context.Background(), &kms.KeyIDInput{KeyID: "alias/new"}); err != nil {
		t.Fatal(err)
	}
	f.start(10)
	f.rotation("r", nil)
	kr := f.wait("r", "Stalled", func(kr *rekeyv1alpha1.KeyRotation) bool {
		c := condition(kr, rekeyv1alpha1.ConditionStalled)
		return c != nil && c.Status == metav1.ConditionTrue
	})
	if c := condition(kr, rekeyv1alpha1.ConditionStalled); c.Reason != string(kms.CodeDisabled) {
		t.Fatalf("Stalled reason: %s", c.Reason)
	}
	if got := kstatusOf(t, kr); got != status.FailedStatus {
		t.Fatalf("kstatus while stalled: %s", got)
	}
	if _, err := f.engine.EnableKey(context.Background(), &kms.KeyIDInput{KeyID: "alias/new"}); err != nil {
		t.Fatal(err)
	}
	// Nudge the controller rather than waiting out its recheck interval.
	kr.Annotations = map[string]string{"test/nudge": "1"}
	if err := k8sClient.Update(context.Background(), kr); err != nil {
		t.Fatal(err)
	}
	kr = f.wait("r", "Succeeded", phaseIs(rekeyv1alpha1.PhaseSucceeded))
	if kr.Status.Secrets.Rotated != 3 {
		t.Fatalf("counts: %+v", kr.Status.Secrets)
	}
	f.verify(newKey)
}

func TestInProgressWhileRunning(t *testing.T) {
	f := newFixture(t)
	f.key("alias/old")
	f.key("alias/new")
	f.secrets(4, "alias/old", nil)
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	t.Cleanup(free)
	f.ks.setHook(func(call int, _ *kms.ReEncryptInput) error {
		if call == 7 { // the first call of the second page
			<-release
		}
		return nil
	})
	f.start(2)
	f.rotation("r", nil)
	kr := f.wait("r", "Running with progress", func(kr *rekeyv1alpha1.KeyRotation) bool {
		return kr.Status.Phase == rekeyv1alpha1.PhaseRunning && kr.Status.Secrets.Rotated > 0
	})
	got := kstatusOf(t, kr)
	free()
	if got != status.InProgressStatus {
		t.Fatalf("kstatus while running: %s", got)
	}
	if c := condition(kr, rekeyv1alpha1.ConditionReconciling); c == nil || c.Status != metav1.ConditionTrue {
		t.Fatalf("Reconciling while running: %+v", c)
	}
	f.wait("r", "Succeeded", phaseIs(rekeyv1alpha1.PhaseSucceeded))
}

// TestManyFailuresAreBounded: status.failures and the failure Events stop at
// 50, while the counts stay exact.
func TestManyFailuresAreBounded(t *testing.T) {
	f := newFixture(t)
	f.key("alias/old")
	f.key("alias/new")
	f.key("alias/stranger")
	for i := range 55 {
		f.createSecret(fmt.Sprintf("bad-%02d", i), map[string][]byte{"v": f.encrypt("alias/stranger", "PLAINTEXT-x", nil)}, "v")
	}
	f.start(20)
	f.rotation("r", nil)
	kr := f.wait("r", "Failed", phaseIs(rekeyv1alpha1.PhaseFailed))
	if kr.Status.Secrets != (rekeyv1alpha1.SecretCounts{Total: 55, Failed: 55}) || len(kr.Status.Failures) != maxFailures {
		t.Fatalf("counts %+v, %d failures listed", kr.Status.Secrets, len(kr.Status.Failures))
	}
	var evs corev1.EventList
	if err := k8sClient.List(context.Background(), &evs, client.InNamespace(f.ns)); err != nil {
		t.Fatal(err)
	}
	// One Event per listed failure, each naming its Secret: none collapsed.
	named := map[string]bool{}
	f.eventually("one Event per listed failure", func() bool {
		for _, e := range f.events(ReasonUndeclaredSource) {
			named[e.Message] = true
		}
		return len(named) >= maxFailures
	})
	if len(named) != maxFailures {
		t.Fatalf("%d distinct failure Events, want %d", len(named), maxFailures)
	}
}

// TestControllerSeesKeysCreatedWhileRunning: the operator's engine works on
// the keystore Secret; keys created and rotated there by someone else (the
// CLI) after the controller started are used without a restart.
func TestControllerSeesKeysCreatedWhileRunning(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	rootEnc, err := keystore.GenerateRootKey()
	if err != nil {
		t.Fatal(err)
	}
	root, err := keystore.ParseRootKey([]byte(rootEnc))
	if err != nil {
		t.Fatal(err)
	}
	store := func() kms.Store { return keystore.NewSecret(k8sClient, f.ns, "rekey-keystore", root) }
	operatorEngine, err := kms.New(ctx, kms.Options{Store: store()}) // empty keystore at start
	if err != nil {
		t.Fatal(err)
	}
	f.ks = &hookedKeyService{Provider: embedded.New(operatorEngine)}
	f.start(10)

	// "The CLI": another engine on the same keystore Secret.
	cli, err := kms.New(ctx, kms.Options{Store: store()})
	if err != nil {
		t.Fatal(err)
	}
	f.engine = cli
	f.key("alias/old")
	newKey := f.key("alias/new")
	if _, err := cli.RotateKeyOnDemand(ctx, &kms.KeyIDInput{KeyID: "alias/new"}); err != nil {
		t.Fatal(err)
	}
	f.secrets(5, "alias/old", nil)
	f.rotation("r", nil)
	kr := f.wait("r", "Succeeded", phaseIs(rekeyv1alpha1.PhaseSucceeded))
	if kr.Status.Secrets.Rotated != 5 {
		t.Fatalf("counts: %+v", kr.Status.Secrets)
	}
	if err := cli.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	f.verify(newKey) // under the rotated key's current material
}

// TestGeneratedRBACIsEnough runs the controller as a user bound only to the
// ClusterRole generated into config/rbac/role.yaml: least privilege that
// still rotates.
func TestGeneratedRBACIsEnough(t *testing.T) {
	ctx := context.Background()
	raw, err := os.ReadFile(filepath.Join("..", "config", "rbac", "role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	role := &rbacv1.ClusterRole{}
	if err := yaml.Unmarshal(raw, role); err != nil {
		t.Fatal(err)
	}
	for _, rule := range role.Rules {
		for _, v := range append(append(rule.Verbs, rule.Resources...), rule.APIGroups...) {
			if v == "*" {
				t.Fatalf("wildcard in the generated role: %+v", rule)
			}
		}
	}
	f := newFixture(t)
	role.Name = "rekey-manager-" + f.ns
	if err := k8sClient.Create(ctx, role); err != nil {
		t.Fatal(err)
	}
	user := "rekey-operator-" + f.ns
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role.Name},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: "User", Name: user, APIGroup: "rbac.authorization.k8s.io"}},
	}
	if err := k8sClient.Create(ctx, binding); err != nil {
		t.Fatal(err)
	}
	u, err := env.Env.AddUser(envtest.User{Name: user}, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.config = u.Config()
	f.key("alias/old")
	newKey := f.key("alias/new")
	f.secrets(3, "alias/old", nil)
	f.start(10)
	f.rotation("r", nil)
	kr := f.wait("r", "Succeeded", phaseIs(rekeyv1alpha1.PhaseSucceeded))
	if kr.Status.Secrets.Rotated != 3 {
		t.Fatalf("counts: %+v", kr.Status.Secrets)
	}
	f.verify(newKey)
	// The role really is narrow: the operator's identity cannot create Secrets.
	limited, err := client.New(u.Config(), client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	err = limited.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "nope", Namespace: f.ns}})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("the operator's role may create Secrets: %v", err)
	}
}

// TestKeyNotAllowedForNamespaceStalls: the confused-deputy guard. A key whose
// rekey.dev/namespaces tag does not name the rotation's namespace is not
// used; tagging it lets the rotation go on.
func TestKeyNotAllowedForNamespaceStalls(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.key("alias/old")
	out, err := f.engine.CreateKey(ctx, &kms.CreateKeyInput{Tags: []kms.Tag{{TagKey: rekeyv1alpha1.KeyNamespacesTag, TagValue: "someone-else"}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.engine.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: "alias/new", TargetKeyID: out.KeyMetadata.KeyID}); err != nil {
		t.Fatal(err)
	}
	f.secrets(3, "alias/old", nil)
	before := f.secret("app-000").ResourceVersion
	f.start(10)
	f.rotation("r", nil)
	kr := f.wait("r", "Stalled", func(kr *rekeyv1alpha1.KeyRotation) bool {
		c := condition(kr, rekeyv1alpha1.ConditionStalled)
		return c != nil && c.Reason == ReasonKeyNotAllowed
	})
	if kr.Status.ResolvedDestinationKeyARN != "" || f.secret("app-000").ResourceVersion != before {
		t.Fatal("a key the namespace may not use was pinned or used")
	}
	if c := condition(kr, rekeyv1alpha1.ConditionStalled); strings.Contains(c.Message, out.KeyMetadata.Arn) || !strings.Contains(c.Message, "alias/new") {
		t.Fatalf("the stall names the key by its ARN, not as the spec does: %q", c.Message)
	}
	if _, err := f.engine.TagResource(ctx, &kms.TagResourceInput{KeyID: "alias/new",
		Tags: []kms.Tag{{TagKey: rekeyv1alpha1.KeyNamespacesTag, TagValue: "someone-else, " + f.ns}}}); err != nil {
		t.Fatal(err)
	}
	kr.Annotations = map[string]string{"test/nudge": "1"}
	if err := k8sClient.Update(ctx, kr); err != nil {
		t.Fatal(err)
	}
	kr = f.wait("r", "Succeeded", phaseIs(rekeyv1alpha1.PhaseSucceeded))
	if kr.Status.Secrets.Rotated != 3 {
		t.Fatalf("counts: %+v", kr.Status.Secrets)
	}
}

// TestContextTemplateBindsBlobsToTheirSecret: a rotation moves blobs from no
// encryption context to one naming their Secret and data key; a blob copied
// to another Secret then no longer decrypts there, and a second rotation
// reads the bound context back through the same template.
func TestContextTemplateBindsBlobsToTheirSecret(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.key("alias/old")
	f.key("alias/new")
	f.key("alias/newer")
	f.secrets(4, "alias/old", nil)
	bound := map[string]string{"secret": "{namespace}/{name}", "key": "{key}"}
	f.start(10)
	f.rotation("bind", func(kr *rekeyv1alpha1.KeyRotation) { kr.Spec.DestinationEncryptionContext = bound })
	f.wait("bind", "Succeeded", phaseIs(rekeyv1alpha1.PhaseSucceeded))

	ctxOf := func(name, key string) map[string]string {
		return map[string]string{"secret": f.ns + "/" + name, "key": key}
	}
	decrypt := func(blob []byte, ec map[string]string) (string, error) {
		out, err := f.engine.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob, EncryptionContext: ec})
		if err != nil {
			return "", err
		}
		return string(out.Plaintext), nil
	}
	a := f.secret("app-000")
	if pt, err := decrypt(a.Data["apiToken"], ctxOf("app-000", "apiToken")); err != nil || pt != f.plaintexts["app-000/apiToken"] {
		t.Fatalf("bound blob does not decrypt under its own context: %v", err)
	}
	for _, wrong := range []map[string]string{nil, ctxOf("app-001", "apiToken"), ctxOf("app-000", "password")} {
		if _, err := decrypt(a.Data["apiToken"], wrong); kms.CodeOf(err) != kms.CodeInvalidCiphertext {
			t.Fatalf("bound blob decrypted under %v: %v", wrong, err)
		}
	}

	f.rotation("again", func(kr *rekeyv1alpha1.KeyRotation) {
		kr.Spec.SourceKeyIDs, kr.Spec.DestinationKeyID = []string{"alias/new"}, "alias/newer"
		kr.Spec.SourceEncryptionContext = bound
	})
	kr := f.wait("again", "Succeeded", phaseIs(rekeyv1alpha1.PhaseSucceeded))
	if kr.Status.Secrets.Rotated != 4 {
		t.Fatalf("second rotation: %+v %+v", kr.Status.Secrets, kr.Status.Failures)
	}
	if pt, err := decrypt(f.secret("app-003").Data["dsn"], ctxOf("app-003", "dsn")); err != nil || pt != f.plaintexts["app-003/dsn"] {
		t.Fatalf("after the second rotation: %v", err)
	}
}
