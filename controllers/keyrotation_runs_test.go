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

// Tests of runs you can trust: one run, one identity; status that never
// claims what is not so; a bad Secret fails alone; work that stops when it
// must. Each names the finding it guards.

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	rekeyv1alpha1 "github.com/rekey-dev/rekey/api/v1alpha1"
	"github.com/rekey-dev/rekey/internal/kms"
	"github.com/rekey-dev/rekey/internal/provider/embedded"
	"github.com/rekey-dev/rekey/internal/secretpage"
	"github.com/rekey-dev/rekey/internal/testkms"
)

// edit changes a KeyRotation's spec or metadata, retrying on conflicts.
func (f *fixture) edit(name string, mutate func(*rekeyv1alpha1.KeyRotation)) {
	f.t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		kr := &rekeyv1alpha1.KeyRotation{}
		if err := k8sClient.Get(context.Background(), client.ObjectKey{Namespace: f.ns, Name: name}, kr); err != nil {
			return err
		}
		mutate(kr)
		return k8sClient.Update(context.Background(), kr)
	})
	if err != nil {
		f.t.Fatal(err)
	}
}

// pause sets spec.paused and waits until the controller's cache has it:
// from then on, no new Secret starts.
func (f *fixture) pause(name string) {
	f.t.Helper()
	f.edit(name, func(kr *rekeyv1alpha1.KeyRotation) { kr.Spec.Paused = true })
	f.eventually("the cache sees the pause", func() bool {
		kr := &rekeyv1alpha1.KeyRotation{}
		return f.cache.Get(context.Background(), client.ObjectKey{Namespace: f.ns, Name: name}, kr) == nil && kr.Spec.Paused
	})
}

// rerun sets rekey.dev/requested-at to a new value.
func (f *fixture) rerun(name string) {
	f.edit(name, func(kr *rekeyv1alpha1.KeyRotation) {
		if kr.Annotations == nil {
			kr.Annotations = map[string]string{}
		}
		kr.Annotations[rekeyv1alpha1.RequestedAtAnnotation] = time.Now().Format(time.RFC3339Nano)
	})
}

// newRunFinished waits until a run of rotation "r" other than prev has
// finished.
func (f *fixture) newRunFinished(prev string) *rekeyv1alpha1.KeyRotation {
	f.t.Helper()
	return f.wait("r", "a new run finished", func(kr *rekeyv1alpha1.KeyRotation) bool {
		return finishedRun(kr) && kr.Status.Run != nil && kr.Status.Run.ID != prev
	})
}

// events returns the Events of the namespace with a reason.
func (f *fixture) events(reason string) []corev1.Event {
	f.t.Helper()
	var evs corev1.EventList
	if err := k8sClient.List(context.Background(), &evs, client.InNamespace(f.ns)); err != nil {
		f.t.Fatal(err)
	}
	var out []corev1.Event
	for _, e := range evs.Items {
		if e.Reason == reason {
			out = append(out, e)
		}
	}
	return out
}

// eventually polls cond until it holds (bounded by a deadline).
func (f *fixture) eventually(what string, cond func() bool) {
	f.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			f.t.Fatalf("never: %s", what)
		}
		time.Sleep(20 * time.Millisecond) // polling, bounded by the deadline
	}
}

// reconcileErrors reads controller_runtime_reconcile_errors_total for the
// KeyRotation controller from the metrics registry.
func reconcileErrors(t *testing.T) float64 {
	t.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0.0
	for _, mf := range families {
		if mf.GetName() != "controller_runtime_reconcile_errors_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "controller" && l.GetValue() == "keyrotation" {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}

// seriesExists reports whether a per-rotation gauge has a series for it.
func seriesExists(t *testing.T, metric, ns, name string) bool {
	t.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range families {
		if mf.GetName() != metric {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["namespace"] == ns && labels["keyrotation"] == name {
				return true
			}
		}
	}
	return false
}

// Finding 1: a new run never counts an earlier run's marks as its own work.
// With opaque (AWS) blobs, changing the destination context of a finished
// rotation once reported every Secret rotated with no ReEncrypt call.
func TestNewRunNeverReusesAnEarlierRunsMarks(t *testing.T) {
	a := newAWSEnv(t, testkms.Rekey(t), 5)
	a.f.start(10)
	a.rotation("r", nil)
	kr := a.f.wait("r", "Succeeded", phaseIs(rekeyv1alpha1.PhaseSucceeded))
	first, calls := kr.Status.Run.ID, a.srv.ReEncrypts.Load()
	a.f.edit("r", func(kr *rekeyv1alpha1.KeyRotation) {
		kr.Spec.DestinationEncryptionContext = map[string]string{"app": "billing", "v": "2"}
	})
	kr = a.f.newRunFinished(first)
	if a.srv.ReEncrypts.Load() == calls {
		t.Fatal("the new run made no ReEncrypt call")
	}
	// The blobs are under the destination already, with the old context:
	// the key service refuses them as not under the source key, and the run
	// says so rather than claiming them rotated.
	if kr.Status.Secrets.Rotated != 0 || kr.Status.Blobs.Rotated != 0 || kr.Status.Phase != rekeyv1alpha1.PhaseFailed {
		t.Fatalf("the new run claims work it did not do: %s %+v %+v", kr.Status.Phase, kr.Status.Secrets, kr.Status.Blobs)
	}
	if kr.Status.Failures[0].Reason != string(kms.CodeIncorrectKey) {
		t.Fatalf("failures: %+v", kr.Status.Failures)
	}
	if drained(kr) == metav1.ConditionTrue {
		t.Fatal("SourceKeysDrained True although no blob is under the context the run asked for")
	}
	a.verify() // nothing was lost
}

// Finding 2: dryRun flipped mid-run restarts the run from the first Secret.
func TestDryRunFlippedMidRun(t *testing.T) {
	for _, toDry := range []bool{false, true} {
		t.Run(fmt.Sprintf("to-dryRun-%t", toDry), func(t *testing.T) {
			f := newFixture(t)
			f.key("alias/old")
			newKey := f.key("alias/new")
			f.secrets(20, "alias/old", nil)
			var flipped atomic.Bool
			f.ks.setHook(func(call int, _ *kms.ReEncryptInput) error {
				if call == 25 && !flipped.Swap(true) {
					f.edit("r", func(kr *rekeyv1alpha1.KeyRotation) { kr.Spec.DryRun = toDry })
				}
				return nil
			})
			f.start(6)
			f.rotation("r", func(kr *rekeyv1alpha1.KeyRotation) { kr.Spec.DryRun = !toDry; kr.Spec.MaxConcurrency = 1 })
			kr := f.wait("r", "the run of the flipped spec finished", func(kr *rekeyv1alpha1.KeyRotation) bool {
				return finishedRun(kr) && kr.Spec.DryRun == toDry && kr.Status.Run.Generation == kr.Generation
			})
			if !flipped.Load() {
				t.Fatal("the spec was never flipped")
			}
			f.assertDrainedTruthful(kr)
			if !toDry {
				if kr.Status.Secrets != (rekeyv1alpha1.SecretCounts{Total: 20, Rotated: 20}) || drained(kr) != metav1.ConditionTrue {
					t.Fatalf("real run after a dry run: %+v, drained %s", kr.Status.Secrets, drained(kr))
				}
				f.verify(newKey)
				return
			}
			s := kr.Status.Secrets
			if s.Rotated != 0 || s.Skipped == 0 || s.WouldRotate == 0 || s.Skipped+s.WouldRotate != 20 {
				t.Fatalf("dry run after a partial real run: %+v", s)
			}
			if c := condition(kr, rekeyv1alpha1.ConditionReady); c.Reason != ReasonDryRunComplete {
				t.Fatalf("Ready: %+v", c)
			}
			if drained(kr) != metav1.ConditionFalse {
				t.Fatalf("SourceKeysDrained %s with blobs left under the source key", drained(kr))
			}
		})
	}
}

// Finding 3: SourceKeysDrained goes False when an old-key blob comes back
// after the run (a GitOps re-apply, a new Secret), with an Event and a
// metric; a re-run moves them; deleting the rotation drops its series.
func TestReverificationFindsOldBlobsAgain(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.key("alias/old")
	f.key("alias/new")
	f.secrets(5, "alias/old", nil)
	f.start(10)
	f.rotation("r", func(kr *rekeyv1alpha1.KeyRotation) { kr.Spec.VerifyInterval = &metav1.Duration{Duration: time.Second} })
	kr := f.wait("r", "Succeeded", phaseIs(rekeyv1alpha1.PhaseSucceeded))
	if drained(kr) != metav1.ConditionTrue {
		t.Fatalf("drained after the run: %s", drained(kr))
	}
	first, record := kr.Status.Run.ID, kr.Status.Secrets
	// Paused, a finished rotation still re-verifies: reading changes nothing.
	f.edit("r", func(kr *rekeyv1alpha1.KeyRotation) { kr.Spec.Paused = true })

	// A re-apply of the old manifest, annotations and all, and a new Secret.
	s := f.secret("app-000")
	s.Data["password"] = f.encrypt("alias/old", "PLAINTEXT-reapplied", nil)
	if err := k8sClient.Update(ctx, s); err != nil {
		t.Fatal(err)
	}
	f.createSecret("late", map[string][]byte{"v": f.encrypt("alias/old", "PLAINTEXT-late", nil)}, "v")
	// A verification pass may fall between the two writes and count one
	// blob: wait for the pass that sees both.
	kr = f.wait("r", "SourceKeysDrained False, both old blobs counted", func(kr *rekeyv1alpha1.KeyRotation) bool {
		return drained(kr) == metav1.ConditionFalse && kr.Status.Verification != nil && kr.Status.Verification.BlobsUnderSourceKeys == 2
	})
	if v := kr.Status.Verification; v.SecretsUnderSourceKeys != 2 {
		t.Fatalf("verification: %+v", v)
	}
	// The gauge is set by the reconcile that wrote the status, after it.
	f.eventually("rekey_source_key_blobs = 2", func() bool {
		return testutil.ToFloat64(metricSourceKeyBlobs.WithLabelValues(f.ns, "r")) == 2
	})
	f.eventually("a SourceKeyBlobsFound Event", func() bool { return len(f.events(ReasonSourceBlobsFound)) > 0 })
	if kr.Status.Run.ID != first || kr.Status.Secrets != record || kr.Status.Phase != rekeyv1alpha1.PhaseSucceeded {
		t.Fatalf("re-verification changed the run's record: %+v", kr.Status)
	}
	if f.updates.total() != 5 {
		t.Fatalf("re-verification wrote: %d writes", f.updates.total())
	}

	f.edit("r", func(kr *rekeyv1alpha1.KeyRotation) { kr.Spec.Paused = false })
	f.rerun("r")
	kr = f.newRunFinished(first)
	if kr.Status.Secrets != (rekeyv1alpha1.SecretCounts{Total: 6, Rotated: 2, Skipped: 4}) || drained(kr) != metav1.ConditionTrue {
		t.Fatalf("re-run: %+v drained %s", kr.Status.Secrets, drained(kr))
	}
	f.assertDrainedTruthful(kr)

	if err := k8sClient.Delete(ctx, kr); err != nil {
		t.Fatal(err)
	}
	f.eventually("the rotation's metric series is dropped", func() bool {
		return !seriesExists(t, "rekey_source_key_blobs", f.ns, "r")
	})
}

// Finding 4: a mark is trusted only with the data it vouches for. An app
// that writes its value again under the old key, keeping the annotations,
// is seen by the verification (opaque blobs: unverifiable) and rotated by a
// re-run. Deleting the rotation forgets its AWS client.
func TestAMarkCountsOnlyWithItsValues(t *testing.T) {
	a := newAWSEnv(t, testkms.Rekey(t), 4)
	a.f.start(10)
	a.rotation("r", func(kr *rekeyv1alpha1.KeyRotation) { kr.Spec.VerifyInterval = &metav1.Duration{Duration: time.Second} })
	kr := a.f.wait("r", "Succeeded", phaseIs(rekeyv1alpha1.PhaseSucceeded))
	if drained(kr) != metav1.ConditionTrue {
		t.Fatalf("drained: %s", drained(kr))
	}
	first := kr.Status.Run.ID
	s := a.f.secret("aws-001")
	s.Data["a"] = a.encrypt(a.src, a.f.plaintexts["aws-001/a"])
	if err := k8sClient.Update(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	kr = a.f.wait("r", "SourceKeysDrained Unknown", func(kr *rekeyv1alpha1.KeyRotation) bool {
		return drained(kr) == metav1.ConditionUnknown
	})
	if v := kr.Status.Verification; v.Unverifiable != 2 || v.Blobs != 8 {
		t.Fatalf("verification: %+v", v)
	}
	a.f.rerun("r")
	kr = a.f.newRunFinished(first)
	if kr.Status.Secrets != (rekeyv1alpha1.SecretCounts{Total: 4, Rotated: 1, Skipped: 3}) || drained(kr) != metav1.ConditionTrue {
		t.Fatalf("re-run: %+v drained %s", kr.Status.Secrets, drained(kr))
	}
	a.verify()

	if a.f.keyServices.cached() != 1 {
		t.Fatalf("%d AWS clients kept for one rotation", a.f.keyServices.cached())
	}
	if err := k8sClient.Delete(context.Background(), kr); err != nil {
		t.Fatal(err)
	}
	a.f.eventually("the deleted rotation's AWS client is dropped", func() bool { return a.f.keyServices.cached() == 0 })
}

// Finding 5: a key service that cannot be reached shows in the conditions
// (Reconciling with the reason, then Stalled) and in the reconcile errors
// metric, not only in the log.
func TestUnreachableProviderShowsInConditions(t *testing.T) {
	a := newAWSEnv(t, testkms.Rekey(t), 1)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	errs := reconcileErrors(t)
	a.f.allowedEndpoints = append(a.f.allowedEndpoints, closed)
	a.f.start(10)
	a.rotation("r", func(kr *rekeyv1alpha1.KeyRotation) { kr.Spec.Provider.AWS.Endpoint = closed })
	kr := a.f.wait("r", "Reconciling with the reason", func(kr *rekeyv1alpha1.KeyRotation) bool {
		c := condition(kr, rekeyv1alpha1.ConditionReconciling)
		return c != nil && c.Status == metav1.ConditionTrue && c.Reason == string(kms.CodeDependencyTimeout)
	})
	if got := kstatusOf(t, kr); got != status.InProgressStatus {
		t.Fatalf("kstatus: %s", got)
	}
	// The reconcile that wrote the condition returns its error after the
	// write: the counter follows.
	a.f.eventually("the failing reconciles counted in controller_runtime_reconcile_errors_total", func() bool {
		return reconcileErrors(t) > errs
	})
	a.f.clockOffset.Store(int64(2 * transientStallAfter))
	kr = a.f.wait("r", "Stalled", func(kr *rekeyv1alpha1.KeyRotation) bool {
		c := condition(kr, rekeyv1alpha1.ConditionStalled)
		return c != nil && c.Status == metav1.ConditionTrue && c.Reason == string(kms.CodeDependencyTimeout)
	})
	if got := kstatusOf(t, kr); got != status.FailedStatus || kr.Status.Phase != rekeyv1alpha1.PhaseStalled {
		t.Fatalf("kstatus %s, phase %s", got, kr.Status.Phase)
	}
	a.f.eventually("an Event for the stall", func() bool { return len(a.f.events(string(kms.CodeDependencyTimeout))) > 0 })
	a.f.assertNoSecretsLeaked(kr)
}

// Finding 6: phases say Paused and Stalled; a dry run says "would".
func TestPausedRunShowsPaused(t *testing.T) {
	f := newFixture(t)
	f.key("alias/old")
	f.key("alias/new")
	f.secrets(2, "alias/old", nil)
	f.start(10)
	f.rotation("r", func(kr *rekeyv1alpha1.KeyRotation) { kr.Spec.Paused = true })
	kr := f.wait("r", "Paused", phaseIs(rekeyv1alpha1.PhasePaused))
	if c := condition(kr, rekeyv1alpha1.ConditionReady); c == nil || c.Reason != ReasonPaused {
		t.Fatalf("Ready: %+v", c)
	}
	f.edit("r", func(kr *rekeyv1alpha1.KeyRotation) { kr.Spec.Paused = false })
	f.wait("r", "Succeeded", phaseIs(rekeyv1alpha1.PhaseSucceeded))
}

// Finding 7: a blob under an older version of the destination key is
// already moved, not a blob under an undeclared key; naming the
// destination among the sources moves it to the newest version.
func TestDestinationKeyRotatedBetweenRuns(t *testing.T) {
	f := newFixture(t)
	f.key("alias/old")
	newKey := f.key("alias/new")
	f.secrets(6, "alias/old", nil)
	f.start(4)
	f.rotation("first", nil)
	f.wait("first", "Succeeded", phaseIs(rekeyv1alpha1.PhaseSucceeded))
	if _, err := f.engine.RotateKeyOnDemand(context.Background(), &kms.KeyIDInput{KeyID: "alias/new"}); err != nil {
		t.Fatal(err)
	}
	f.rotation("second", nil)
	kr := f.wait("second", "finished", finishedRun)
	if kr.Status.Phase != rekeyv1alpha1.PhaseSucceeded || kr.Status.Secrets != (rekeyv1alpha1.SecretCounts{Total: 6, Skipped: 6}) {
		t.Fatalf("second rotation: %s %+v %+v", kr.Status.Phase, kr.Status.Secrets, kr.Status.Failures)
	}
	if drained(kr) != metav1.ConditionTrue || f.updates.total() != 6 {
		t.Fatalf("drained %s, %d writes", drained(kr), f.updates.total())
	}
	f.rotation("third", func(kr *rekeyv1alpha1.KeyRotation) { kr.Spec.SourceKeyIDs = []string{"alias/old", "alias/new"} })
	kr = f.wait("third", "finished", finishedRun)
	if kr.Status.Secrets != (rekeyv1alpha1.SecretCounts{Total: 6, Rotated: 6}) {
		t.Fatalf("third rotation: %+v %+v", kr.Status.Secrets, kr.Status.Failures)
	}
	f.verify(newKey)
	f.assertDrainedTruthful(kr)
}

// Finding 8: SourceKeysDrained comes from a read after the run's last
// write, so Secrets created behind the listing and values rewritten after
// the run passed them count.
func TestDrainedFromAReadAfterTheLastWrite(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.key("alias/old")
	f.key("alias/new")
	f.secrets(10, "alias/old", nil)
	var once sync.Once
	f.ks.setHook(func(call int, _ *kms.ReEncryptInput) error {
		if call == 16 { // on the second page: app-000 is done, "aaa" sorts before it
			once.Do(func() {
				f.createSecret("aaa-created-behind", map[string][]byte{"v": f.encrypt("alias/old", "PLAINTEXT-behind", nil)}, "v")
				s := f.secret("app-000")
				s.Data["dsn"] = f.encrypt("alias/old", "PLAINTEXT-rewritten", nil)
				if err := k8sClient.Update(ctx, s); err != nil {
					t.Error(err)
				}
			})
		}
		return nil
	})
	f.start(4)
	f.rotation("r", func(kr *rekeyv1alpha1.KeyRotation) { kr.Spec.MaxConcurrency = 1 })
	kr := f.wait("r", "Succeeded", phaseIs(rekeyv1alpha1.PhaseSucceeded))
	if drained(kr) != metav1.ConditionFalse || kr.Status.Verification.BlobsUnderSourceKeys != 2 {
		t.Fatalf("drained %s, verification %+v", drained(kr), kr.Status.Verification)
	}
	f.assertDrainedTruthful(kr)
}

// Finding 10: pausing or unpausing a finished rotation, or changing its
// concurrency or verification interval, keeps its record and starts nothing.
func TestPausingAFinishedRotationKeepsItsRecord(t *testing.T) {
	f := newFixture(t)
	f.key("alias/old")
	f.key("alias/new")
	f.key("alias/stranger")
	f.secrets(3, "alias/old", nil)
	f.createSecret("stranger", map[string][]byte{"v": f.encrypt("alias/stranger", "PLAINTEXT-s", nil)}, "v")
	f.start(10)
	f.rotation("r", nil)
	kr := f.wait("r", "Failed", phaseIs(rekeyv1alpha1.PhaseFailed))
	record := kr.Status.DeepCopy()
	writes := f.updates.total()
	for i, paused := range []bool{true, false} {
		f.edit("r", func(kr *rekeyv1alpha1.KeyRotation) {
			kr.Spec.Paused = paused
			kr.Spec.MaxConcurrency = int32(2 + i)
			kr.Spec.VerifyInterval = &metav1.Duration{Duration: time.Duration(i+1) * time.Hour}
		})
		kr = f.wait("r", "observed", func(kr *rekeyv1alpha1.KeyRotation) bool { return kr.Status.ObservedGeneration == kr.Generation })
		st := kr.Status
		if st.Phase != record.Phase || st.Secrets != record.Secrets || st.Blobs != record.Blobs || st.Run.ID != record.Run.ID ||
			len(st.Failures) != len(record.Failures) || !st.CompletionTime.Equal(record.CompletionTime) {
			t.Fatalf("paused=%t changed the record: %+v, was %+v", paused, st, record)
		}
	}
	if f.updates.total() != writes {
		t.Fatal("pausing or unpausing wrote Secrets")
	}
}

// Finding 11: Events report only what a saved checkpoint holds: a failed
// status patch sends none of its reconcile's Events, and Started and each
// failure are sent once.
func TestEventsFollowSavedCheckpoints(t *testing.T) {
	f := newFixture(t)
	f.key("alias/old")
	f.key("alias/new")
	f.key("alias/stranger")
	f.secrets(3, "alias/old", nil)
	f.createSecret("stranger", map[string][]byte{"v": f.encrypt("alias/stranger", "PLAINTEXT-s", nil)}, "v")
	f.failStatusPatches.Store(1) // the first checkpoint that records the failure is lost
	f.start(10)
	f.rotation("r", nil)
	kr := f.wait("r", "Failed", phaseIs(rekeyv1alpha1.PhaseFailed))
	if f.failStatusPatches.Load() > 0 {
		t.Fatal("no status patch was failed")
	}
	if kr.Status.Secrets != (rekeyv1alpha1.SecretCounts{Total: 4, Rotated: 3, Failed: 1}) {
		t.Fatalf("counts: %+v", kr.Status.Secrets)
	}
	// The Events of the saved checkpoint are sent; wait for the last one.
	f.eventually("the SecretsFailed Event", func() bool { return len(f.events(ReasonSecretsFailed)) > 0 })
	if n := len(f.events(ReasonStarted)); n != 1 {
		t.Fatalf("%d Started Events for one run", n)
	}
	if evs := f.events(ReasonUndeclaredSource); len(evs) != 1 || evs[0].Count > 1 {
		t.Fatalf("failure Events: %+v", evs)
	}
	if name, n := f.updates.max(); n != 1 {
		t.Fatalf("Secret %s written %d times", name, n)
	}
}

// Finding 12: a stop-the-run error stops the page at once: no ReEncrypt for
// a Secret after the one that failed.
func TestStopRunErrorStopsThePageAtOnce(t *testing.T) {
	f := newFixture(t)
	f.key("alias/old")
	f.key("alias/new")
	f.secrets(40, "alias/old", nil)
	first := map[string]bool{}
	for _, k := range []string{"password", "apiToken", "dsn"} {
		first[string(f.secret("app-000").Data[k])] = true
	}
	var others atomic.Int64
	f.ks.setHook(func(_ int, in *kms.ReEncryptInput) error {
		if !first[string(in.CiphertextBlob)] {
			others.Add(1)
		}
		return &kms.Error{Code: kms.CodeDisabled, Message: "the key is disabled"}
	})
	f.start(100)
	f.rotation("r", func(kr *rekeyv1alpha1.KeyRotation) { kr.Spec.MaxConcurrency = 1 })
	kr := f.wait("r", "Stalled", phaseIs(rekeyv1alpha1.PhaseStalled))
	if c := condition(kr, rekeyv1alpha1.ConditionStalled); c.Reason != string(kms.CodeDisabled) {
		t.Fatalf("Stalled: %+v", c)
	}
	if n := others.Load(); n != 0 {
		t.Fatalf("%d ReEncrypt calls for other Secrets after the run was stopped", n)
	}
}

// Finding 12: spec.paused takes effect between Secrets, not at the end of
// the page; the run resumes where it stopped, each Secret written once.
func TestPauseTakesEffectBetweenSecrets(t *testing.T) {
	f := newFixture(t)
	f.key("alias/old")
	newKey := f.key("alias/new")
	f.secrets(30, "alias/old", nil)
	var paused atomic.Int64
	f.ks.setHook(func(call int, _ *kms.ReEncryptInput) error {
		if call == 7 {
			f.pause("r")
			paused.Store(int64(f.updates.total()))
		}
		return nil
	})
	f.start(100)
	f.rotation("r", func(kr *rekeyv1alpha1.KeyRotation) { kr.Spec.MaxConcurrency = 1 })
	f.wait("r", "Paused", phaseIs(rekeyv1alpha1.PhasePaused))
	// The Secret in flight, and the one handed to the worker before the
	// pause was seen, may finish.
	if after := int64(f.updates.total()) - paused.Load(); after > 2 {
		t.Fatalf("%d Secrets written after the pause", after)
	}
	f.ks.setHook(nil)
	f.edit("r", func(kr *rekeyv1alpha1.KeyRotation) { kr.Spec.Paused = false })
	kr := f.wait("r", "Succeeded", phaseIs(rekeyv1alpha1.PhaseSucceeded))
	if kr.Status.Secrets != (rekeyv1alpha1.SecretCounts{Total: 30, Rotated: 30}) {
		t.Fatalf("counts: %+v", kr.Status.Secrets)
	}
	if name, n := f.updates.max(); n != 1 {
		t.Fatalf("Secret %s written %d times", name, n)
	}
	f.verify(newKey)
}

// Finding 13 (and the forged blob of 11): causes that belong to one Secret
// fail that Secret alone; the rotation goes on and ends Failed.
func TestSecretLevelCausesFailAlone(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.key("alias/old")
	newKey := f.key("alias/new")
	f.secrets(4, "alias/old", nil)
	old := func() []byte { return f.encrypt("alias/old", "PLAINTEXT-bad", nil) }
	bad := map[string]*corev1.Secret{
		"badctx": {Data: map[string][]byte{"v": old()}, ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{
			rekeyv1alpha1.EncryptionContextAnnotation: `{"":"x"}`}}},
		"frozen": {Data: map[string][]byte{"v": old()}, Immutable: ptr.To(true)},
		"huge":   {Data: map[string][]byte{"v": bytes.Repeat([]byte{1}, 7000)}},
		"forged": {Data: map[string][]byte{"v": func() []byte {
			b := f.encrypt("alias/new", "PLAINTEXT-forged", nil)
			b[len(b)-1] ^= 1 // the header still names the destination's current version
			return b
		}()}},
		"refused": {Data: map[string][]byte{"v": old()}},
	}
	refused := string(bad["refused"].Data["v"])
	f.ks.setHook(func(_ int, in *kms.ReEncryptInput) error {
		if string(in.CiphertextBlob) == refused {
			return &kms.Error{Code: kms.CodeValidation, Message: "the key service refuses this blob"}
		}
		return nil
	})
	rvs := map[string]string{}
	for name, s := range bad {
		s.Name, s.Namespace = name, f.ns
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[rekeyv1alpha1.EncryptedKeysAnnotation] = "v"
		if err := k8sClient.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
		rvs[name] = s.ResourceVersion
	}
	f.start(3)
	f.rotation("r", nil)
	kr := f.wait("r", "finished", finishedRun)
	if kr.Status.Phase != rekeyv1alpha1.PhaseFailed || kr.Status.Secrets != (rekeyv1alpha1.SecretCounts{Total: 9, Rotated: 4, Failed: 5}) {
		t.Fatalf("%s %+v %+v", kr.Status.Phase, kr.Status.Secrets, kr.Status.Failures)
	}
	want := map[string]string{"badctx": ReasonInvalidContext, "frozen": ReasonImmutableSecret, "huge": ReasonBlobTooLarge,
		"forged": string(kms.CodeInvalidCiphertext), "refused": string(kms.CodeValidation)}
	for _, fl := range kr.Status.Failures {
		if want[fl.Secret] != fl.Reason {
			t.Fatalf("failure %+v, want reason %s", fl, want[fl.Secret])
		}
		delete(want, fl.Secret)
		f.eventually("an Event for "+fl.Reason, func() bool { return len(f.events(fl.Reason)) > 0 })
	}
	if len(want) != 0 {
		t.Fatalf("not reported: %v", want)
	}
	for name, rv := range rvs {
		if f.secret(name).ResourceVersion != rv {
			t.Fatalf("failed Secret %s was written", name)
		}
	}
	if c := condition(kr, rekeyv1alpha1.ConditionReady); c.Status != metav1.ConditionFalse || c.Reason != ReasonSecretsFailed {
		t.Fatalf("Ready: %+v", c)
	}
	f.verify(newKey)
	f.assertDrainedTruthful(kr)
	f.assertNoSecretsLeaked(kr)
}

// opaqueKeyService is the embedded engine seen as an opaque provider (no
// blob inspection), whose ReEncrypt may lie about the source key.
type opaqueKeyService struct {
	p   *embedded.Provider
	lie string // when set, returned as SourceKeyId
}

func (o *opaqueKeyService) Name() string                      { return "opaque" }
func (o *opaqueKeyService) Refresh(ctx context.Context) error { return o.p.Refresh(ctx) }
func (o *opaqueKeyService) DescribeKey(ctx context.Context, id string) (string, string, error) {
	return o.p.DescribeKey(ctx, id)
}
func (o *opaqueKeyService) KeyTags(ctx context.Context, arn string) (map[string]string, error) {
	return o.p.KeyTags(ctx, arn)
}
func (o *opaqueKeyService) ReEncrypt(ctx context.Context, in *kms.ReEncryptInput) (*kms.ReEncryptOutput, error) {
	out, err := o.p.ReEncrypt(ctx, in)
	if err == nil && o.lie != "" {
		out.SourceKeyID = o.lie
	}
	return out, err
}

// Finding 15: the controller checks the SourceKeyId the key service returns
// for opaque blobs: a service that names another key gets nothing written.
func TestReturnedSourceKeyIsChecked(t *testing.T) {
	f := newFixture(t)
	f.key("alias/old")
	f.key("alias/new")
	stranger := f.key("alias/stranger")
	f.secrets(3, "alias/old", nil)
	f.embedded = &opaqueKeyService{p: embedded.New(f.engine), lie: stranger.Arn}
	f.start(10)
	f.rotation("r", nil)
	kr := f.wait("r", "finished", finishedRun)
	if kr.Status.Secrets != (rekeyv1alpha1.SecretCounts{Total: 3, Failed: 3}) || kr.Status.Failures[0].Reason != ReasonUnexpectedSource {
		t.Fatalf("%+v %+v", kr.Status.Secrets, kr.Status.Failures)
	}
	if f.updates.total() != 0 {
		t.Fatal("a blob the key service says came from another key was written")
	}
	if drained(kr) == metav1.ConditionTrue {
		t.Fatal("drained with nothing moved")
	}
	// The key the service named may be another team's: not repeated to this one.
	for _, fl := range kr.Status.Failures {
		if strings.Contains(fl.Message, stranger.Arn) || strings.Contains(fl.Message, stranger.KeyID) {
			t.Fatalf("another key's ARN in a failure: %q", fl.Message)
		}
	}
}

// Finding 15: a page cut short by a transient error is redone in full and
// counted once; throttling is retried in place by the controller (one
// retry layer), never a failure.
func TestTransientErrorsRetryAndRedoThePageOnce(t *testing.T) {
	f := newFixture(t)
	f.key("alias/old")
	newKey := f.key("alias/new")
	f.secrets(12, "alias/old", nil)
	retries := testutil.ToFloat64(metricRetries.WithLabelValues(string(kms.CodeThrottling)))
	f.ks.setHook(func(call int, _ *kms.ReEncryptInput) error {
		switch {
		case call <= 10 && call%2 == 0: // retried in place
			return &kms.Error{Code: kms.CodeThrottling, Message: "Rate exceeded"}
		case call >= 20 && call < 20+maxAttempts: // beyond the retry layer: the page is redone
			return &kms.Error{Code: kms.CodeKeyUnavailable, Message: "try later"}
		}
		return nil
	})
	f.start(100)
	f.rotation("r", func(kr *rekeyv1alpha1.KeyRotation) { kr.Spec.MaxConcurrency = 1 })
	kr := f.wait("r", "finished", finishedRun)
	if kr.Status.Secrets != (rekeyv1alpha1.SecretCounts{Total: 12, Rotated: 12}) || kr.Status.Blobs != (rekeyv1alpha1.BlobCounts{Total: 36, Rotated: 36}) {
		t.Fatalf("counts after a redone page: %+v %+v", kr.Status.Secrets, kr.Status.Blobs)
	}
	if got := testutil.ToFloat64(metricRetries.WithLabelValues(string(kms.CodeThrottling))) - retries; got != 5 {
		t.Fatalf("%v throttled calls retried by the controller, want 5", got)
	}
	if name, n := f.updates.max(); n != 1 {
		t.Fatalf("Secret %s written %d times", name, n)
	}
	f.verify(newKey)
}

// callHook wraps any key service with a hook before each ReEncrypt.
type callHook struct {
	KeyService
	calls atomic.Int64
	hook  func(ctx context.Context, call int64) error
}

func (c *callHook) ReEncrypt(ctx context.Context, in *kms.ReEncryptInput) (*kms.ReEncryptOutput, error) {
	if err := c.hook(ctx, c.calls.Add(1)); err != nil {
		return nil, err
	}
	return c.KeyService.ReEncrypt(ctx, in)
}

// Finding 15: with opaque blobs, a controller restarted mid-page counts the
// Secrets this run already wrote by their marks, without sending them again
// (the key service would refuse them: they are no longer under the source).
func TestAWSResumeCountsThisRunsMarks(t *testing.T) {
	a := newAWSEnv(t, testkms.Rekey(t), 12)
	newAWS := a.f.newAWS
	stopped := make(chan struct{})
	var stop func()
	var once sync.Once
	a.f.newAWS = func(ctx context.Context, c AWSConfig) (KeyService, error) {
		ks, err := newAWS(ctx, c)
		if err != nil {
			return nil, err
		}
		return &callHook{KeyService: ks, hook: func(ctx context.Context, call int64) error {
			if call == 12 { // page 2 (4 Secrets a page, 2 blobs each): Secret 5 is written, Secret 6 is half done
				once.Do(func() { go func() { stop(); close(stopped) }() })
				<-ctx.Done() // the controller is stopping: this page's checkpoint is never saved
				return ctx.Err()
			}
			return nil
		}}, nil
	}
	stop = a.f.start(4)
	a.rotation("r", func(kr *rekeyv1alpha1.KeyRotation) { kr.Spec.MaxConcurrency = 1 })
	<-stopped
	a.f.newAWS = newAWS
	a.f.start(4)
	kr := a.f.wait("r", "finished", finishedRun)
	if kr.Status.Phase != rekeyv1alpha1.PhaseSucceeded || kr.Status.Secrets != (rekeyv1alpha1.SecretCounts{Total: 12, Rotated: 12}) {
		t.Fatalf("%s %+v %+v", kr.Status.Phase, kr.Status.Secrets, kr.Status.Failures)
	}
	if name, n := a.f.updates.max(); n != 1 {
		t.Fatalf("Secret %s written %d times", name, n)
	}
	a.verify()
}

// expiringPages answers a page with 410 Gone for the n-th continue token
// it sees, and for that token ever after, as an apiserver does once etcd
// compacted past it.
type expiringPages struct {
	secretpage.Lister
	mu      sync.Mutex
	n, seen int
	expired string
}

func (e *expiringPages) Page(ctx context.Context, req secretpage.Request) (*secretpage.Page, error) {
	e.mu.Lock()
	if req.Continue != "" && e.expired == "" {
		if e.seen++; e.seen == e.n {
			e.expired = req.Continue
		}
	}
	gone := req.Continue != "" && req.Continue == e.expired
	e.mu.Unlock()
	if gone {
		return nil, apierrors.NewResourceExpired("the continue token is too old")
	}
	return e.Lister.Page(ctx, req)
}

// Finding 15: an expired continue token restarts the listing from the
// first Secret, with exact counts and no Secret written twice.
func TestExpiredContinueTokenRestartsTheList(t *testing.T) {
	f := newFixture(t)
	f.key("alias/old")
	newKey := f.key("alias/new")
	f.secrets(12, "alias/old", nil)
	// Counting lists 3 pages (2 continue tokens); the 3rd token is the
	// rotation's second page.
	f.wrapPages = func(l secretpage.Lister) secretpage.Lister { return &expiringPages{Lister: l, n: 3} }
	f.start(4)
	f.rotation("r", nil)
	kr := f.wait("r", "finished", finishedRun)
	if kr.Status.Secrets != (rekeyv1alpha1.SecretCounts{Total: 12, Rotated: 12}) || kr.Status.Blobs != (rekeyv1alpha1.BlobCounts{Total: 36, Rotated: 36}) {
		t.Fatalf("counts: %+v %+v", kr.Status.Secrets, kr.Status.Blobs)
	}
	if len(f.events(ReasonListRestarted)) != 1 {
		t.Fatal("no ListRestarted Event")
	}
	if name, n := f.updates.max(); n != 1 {
		t.Fatalf("Secret %s written %d times", name, n)
	}
	f.verify(newKey)
}

// Unit: classify puts every error in one class.
func TestClassify(t *testing.T) {
	gr := schema.GroupResource{Resource: "secrets"}
	cases := []struct {
		err  error
		want class
	}{
		{&kms.Error{Code: kms.CodeThrottling}, classRetry},
		{&kms.Error{Code: kms.CodeDependencyTimeout}, classRetry},
		{&kms.Error{Code: kms.CodeIncorrectKey}, classFailBlob},
		{&kms.Error{Code: kms.CodeValidation}, classFailBlob},
		{&kms.Error{Code: kms.CodeDisabled}, classStopRun},
		{&kms.Error{Code: kms.CodeAccessDenied}, classStopRun},
		{&kms.Error{Code: "SomethingNew"}, classStopRun},
		{fmt.Errorf("wrapped: %w", &kms.Error{Code: kms.CodeInvalidCiphertext}), classFailBlob},
		{apierrors.NewForbidden(gr, "x", fmt.Errorf("no")), classStopRun},
		{apierrors.NewTooManyRequests("slow down", 1), classRetry},
		{apierrors.NewServiceUnavailable("down"), classRetry},
		{apierrors.NewInvalid(schema.GroupKind{Kind: "Secret"}, "x", nil), classFailBlob},
		{apierrors.NewRequestEntityTooLargeError("big"), classFailBlob},
		{context.DeadlineExceeded, classRetry},
		{&net.OpError{Op: "dial", Err: fmt.Errorf("refused")}, classRetry},
		{fmt.Errorf("listing: %w", &secretpage.ReadError{Err: io.ErrUnexpectedEOF}), classRetry},
		{fmt.Errorf("something nobody expected"), classStopRun},
	}
	for _, c := range cases {
		if got, _ := classify(c.err); got != c.want {
			t.Errorf("classify(%v) = %v, want %v", c.err, got, c.want)
		}
	}
	if _, reason := classify(fmt.Errorf("x")); !strings.HasPrefix(reason, "Unexpected") {
		t.Errorf("unexpected errors have reason %q", reason)
	}
}

// Status is a record, never an authority: the key policy is checked against
// the key service for the pinned keys at every reconcile, so a status
// rewritten to name another namespace's key stalls the run and nothing is
// written under that key.
func TestPinnedKeysAreCheckedAtEveryReconcile(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.key("alias/old")
	f.key("alias/new")
	foreign, err := f.engine.CreateKey(ctx, &kms.CreateKeyInput{Tags: []kms.Tag{{TagKey: rekeyv1alpha1.KeyNamespacesTag, TagValue: "another-team"}}})
	if err != nil {
		t.Fatal(err)
	}
	f.secrets(6, "alias/old", nil)
	f.ks.setHook(func(call int, _ *kms.ReEncryptInput) error {
		if call == 1 {
			f.pause("r")
		}
		return nil
	})
	f.start(100)
	f.rotation("r", func(kr *rekeyv1alpha1.KeyRotation) { kr.Spec.MaxConcurrency = 1 })
	kr := f.wait("r", "Paused with keys pinned", func(kr *rekeyv1alpha1.KeyRotation) bool {
		return kr.Status.Phase == rekeyv1alpha1.PhasePaused && kr.Status.ResolvedDestinationKeyARN != ""
	})
	f.ks.setHook(nil)
	patch := client.MergeFrom(kr.DeepCopy())
	kr.Status.ResolvedDestinationKeyARN = foreign.KeyMetadata.Arn
	if err := k8sClient.Status().Patch(ctx, kr, patch); err != nil {
		t.Fatal(err)
	}
	f.edit("r", func(kr *rekeyv1alpha1.KeyRotation) { kr.Spec.Paused = false })
	f.wait("r", "Stalled", func(kr *rekeyv1alpha1.KeyRotation) bool {
		c := condition(kr, rekeyv1alpha1.ConditionStalled)
		return c != nil && c.Reason == ReasonKeyNotAllowed
	})
	var list corev1.SecretList
	if err := k8sClient.List(ctx, &list, client.InNamespace(f.ns)); err != nil {
		t.Fatal(err)
	}
	for _, s := range list.Items {
		for _, b := range s.Data {
			if bk, err := f.engine.InspectBlob(b); err == nil && bk.KeyARN == foreign.KeyMetadata.Arn {
				t.Fatalf("Secret %s was written under a key the namespace may not use", s.Name)
			}
		}
	}
}

// Finding 5: an endpoint that answers, but not as a KMS (an internal HTTP
// service), stops the run at once with a reason, and none of its body
// reaches status or Events.
func TestNonKMSEndpointStallsWithoutEchoingIt(t *testing.T) {
	const marker = "INTERNAL-SERVICE-BODY-7f3a"
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte("<html><body>" + marker + "</body></html>"))
	}))
	t.Cleanup(other.Close)
	a := newAWSEnv(t, testkms.Rekey(t), 1)
	a.f.allowedEndpoints = append(a.f.allowedEndpoints, other.URL)
	a.f.start(10)
	a.rotation("r", func(kr *rekeyv1alpha1.KeyRotation) { kr.Spec.Provider.AWS.Endpoint = other.URL })
	kr := a.f.wait("r", "Stalled", func(kr *rekeyv1alpha1.KeyRotation) bool {
		c := condition(kr, rekeyv1alpha1.ConditionStalled)
		return c != nil && c.Status == metav1.ConditionTrue
	})
	if c := condition(kr, rekeyv1alpha1.ConditionStalled); c.Reason != string(kms.CodeInvalidResponse) || kr.Status.Phase != rekeyv1alpha1.PhaseStalled {
		t.Fatalf("Stalled %+v, phase %s", c, kr.Status.Phase)
	}
	a.f.eventually("an Event for the stall", func() bool { return len(a.f.events(string(kms.CodeInvalidResponse))) > 0 })
	evs := a.f.events(string(kms.CodeInvalidResponse))
	texts := make([]string, 0, 1+len(kr.Status.Conditions)+len(evs))
	texts = append(texts, a.f.logs.String())
	for _, c := range kr.Status.Conditions {
		texts = append(texts, c.Message)
	}
	for _, e := range evs {
		texts = append(texts, e.Message)
	}
	for _, txt := range texts {
		if strings.Contains(txt, marker) {
			t.Fatalf("the endpoint's body reached status, Events or logs: %q", txt)
		}
	}
}

// A same-key rotation: a blob left under an older version of the key (its
// Secret failed) is under a source key, and the verification says so.
func TestSameKeyRotationCountsOlderVersionsAsUnderTheSource(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.key("alias/k")
	f.secrets(3, "alias/k", nil)
	frozen := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "frozen", Namespace: f.ns,
			Annotations: map[string]string{rekeyv1alpha1.EncryptedKeysAnnotation: "v"}},
		Data: map[string][]byte{"v": f.encrypt("alias/k", "PLAINTEXT-frozen", nil)}, Immutable: ptr.To(true),
	}
	if err := k8sClient.Create(ctx, frozen); err != nil {
		t.Fatal(err)
	}
	if _, err := f.engine.RotateKeyOnDemand(ctx, &kms.KeyIDInput{KeyID: "alias/k"}); err != nil {
		t.Fatal(err)
	}
	f.start(10)
	f.rotation("r", func(kr *rekeyv1alpha1.KeyRotation) {
		kr.Spec.SourceKeyIDs, kr.Spec.DestinationKeyID = []string{"alias/k"}, "alias/k"
	})
	kr := f.wait("r", "Failed", phaseIs(rekeyv1alpha1.PhaseFailed))
	if kr.Status.Secrets != (rekeyv1alpha1.SecretCounts{Total: 4, Rotated: 3, Failed: 1}) {
		t.Fatalf("counts: %+v", kr.Status.Secrets)
	}
	if drained(kr) != metav1.ConditionFalse || kr.Status.Verification.BlobsUnderSourceKeys != 1 {
		t.Fatalf("drained %s, verification %+v", drained(kr), kr.Status.Verification)
	}
}

// A value rekey cannot read (base64 text stored instead of the blob) fails
// its Secret, and the verification cannot say which key it is under:
// SourceKeysDrained is Unknown, never True.
func TestUnreadableValueLeavesDrainedUnknown(t *testing.T) {
	f := newFixture(t)
	f.key("alias/old")
	f.key("alias/new")
	f.secrets(2, "alias/old", nil)
	text := base64.StdEncoding.EncodeToString(f.encrypt("alias/old", "PLAINTEXT-text", nil))
	f.createSecret("as-text", map[string][]byte{"v": []byte(text)}, "v")
	f.start(10)
	f.rotation("r", nil)
	kr := f.wait("r", "Failed", phaseIs(rekeyv1alpha1.PhaseFailed))
	if drained(kr) != metav1.ConditionUnknown || kr.Status.Verification.Unverifiable != 1 {
		t.Fatalf("drained %s, verification %+v", drained(kr), kr.Status.Verification)
	}
}

// Same-key rotation with opaque blobs: a mark from an earlier run vouches
// for the destination key, not for its newest version, so the blobs are
// re-encrypted, not skipped.
func TestSameKeyRotationOfOpaqueBlobsIgnoresEarlierMarks(t *testing.T) {
	ctx := context.Background()
	a := newAWSEnv(t, testkms.Rekey(t), 3)
	a.f.start(10)
	a.rotation("first", nil)
	a.f.wait("first", "Succeeded", phaseIs(rekeyv1alpha1.PhaseSucceeded))
	if _, err := a.srv.Engine.RotateKeyOnDemand(ctx, &kms.KeyIDInput{KeyID: a.dst}); err != nil {
		t.Fatal(err)
	}
	a.rotation("same-key", func(kr *rekeyv1alpha1.KeyRotation) {
		kr.Spec.SourceKeyIDs = []string{a.dst}
		kr.Spec.SourceEncryptionContext = billingCtx
	})
	kr := a.f.wait("same-key", "finished", finishedRun)
	if kr.Status.Secrets != (rekeyv1alpha1.SecretCounts{Total: 3, Rotated: 3}) || drained(kr) != metav1.ConditionTrue {
		t.Fatalf("%+v %+v drained %s", kr.Status.Secrets, kr.Status.Failures, drained(kr))
	}
	cur, err := a.srv.Engine.DescribeKey(ctx, &kms.DescribeKeyInput{KeyID: a.dst})
	if err != nil {
		t.Fatal(err)
	}
	for sk := range a.f.plaintexts {
		name, key, _ := strings.Cut(sk, "/")
		out, err := a.srv.Engine.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: a.f.secret(name).Data[key], EncryptionContext: billingCtx})
		if err != nil || out.KeyMaterialID != cur.KeyMetadata.CurrentKeyMaterialID {
			t.Fatalf("%s is not under the destination's newest version: %v", sk, err)
		}
	}
}

func TestVerifyIntervalHasAFloor(t *testing.T) {
	kr := func(d *metav1.Duration) *rekeyv1alpha1.KeyRotation {
		return &rekeyv1alpha1.KeyRotation{Spec: rekeyv1alpha1.KeyRotationSpec{VerifyInterval: d}}
	}
	for _, c := range []struct {
		in   *metav1.Duration
		want time.Duration
	}{
		{nil, time.Hour},
		{&metav1.Duration{}, 0},
		{&metav1.Duration{Duration: time.Millisecond}, time.Minute},
		{&metav1.Duration{Duration: 2 * time.Hour}, 2 * time.Hour},
	} {
		if got := verifyInterval(kr(c.in), time.Minute); got != c.want {
			t.Errorf("verifyInterval(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

// recordingPages records, for every page listed, whether it came whole.
type recordingPages struct {
	secretpage.Lister
	mu     sync.Mutex
	whole  []bool
	tokens map[string]int // continue token -> pages listed with it
}

func (p *recordingPages) Page(ctx context.Context, req secretpage.Request) (*secretpage.Page, error) {
	page, err := p.Lister.Page(ctx, req)
	if err == nil && !req.MetadataOnly {
		p.mu.Lock()
		p.whole = append(p.whole, page.Whole)
		if p.tokens == nil {
			p.tokens = map[string]int{}
		}
		p.tokens[req.Continue]++
		p.mu.Unlock()
	}
	return page, err
}

// Memory bounded by bytes, with the write rate kept: pages that fit the
// list budget are rotated from the listing itself (no read per Secret);
// a page holding large unrelated Secrets is listed as metadata, its
// selected Secrets read one by one, and the large ones never written.
// Both kinds of page rotate every Secret exactly once.
func TestPagesOverTheListBudgetAreReadOneByOne(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.key("alias/old")
	newKey := f.key("alias/new")
	f.secrets(12, "alias/old", nil)
	for i := range 4 {
		s := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("helm-%d", i), Namespace: f.ns, Labels: map[string]string{"team": "billing"}},
			Data:       map[string][]byte{"release": bytes.Repeat([]byte{'r'}, 100<<10)},
		}
		if err := k8sClient.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	rec := &recordingPages{}
	f.wrapPages = func(l secretpage.Lister) secretpage.Lister { rec.Lister = l; return rec }
	f.listBudget = 128 << 10
	f.start(5)
	f.rotation("r", nil)
	kr := f.wait("r", "finished", finishedRun)
	if kr.Status.Secrets != (rekeyv1alpha1.SecretCounts{Total: 12, Rotated: 12}) || kr.Status.Blobs != (rekeyv1alpha1.BlobCounts{Total: 36, Rotated: 36}) {
		t.Fatalf("counts: %+v %+v", kr.Status.Secrets, kr.Status.Blobs)
	}
	if f.updates.total() != 12 {
		t.Fatalf("%d Secret writes, want 12", f.updates.total())
	}
	f.verify(newKey)
	rec.mu.Lock()
	// app-000..004 and app-005..009 fit; app-010, app-011, helm-0..2 do not;
	// helm-3 alone does.
	got := slices.Clone(rec.whole[:4])
	tokens := maps.Clone(rec.tokens)
	rec.mu.Unlock()
	if !slices.Equal(got, []bool{true, true, false, true}) {
		t.Fatalf("rotation pages whole: %v", got)
	}
	// The rotation's pages after the first were listed while the one
	// before was written, and used: every continue token is listed once
	// (the rotation's and the verification's tokens differ), the first
	// page twice (the rotation and the verification).
	for token, n := range tokens {
		if want := map[bool]int{true: 2, false: 1}[token == ""]; n != want {
			t.Fatalf("continue token %q listed %d times (tokens %v)", token, n, tokens)
		}
	}
	if n := strings.Count(f.logs.String(), `"prefetched": true`); n != 3 {
		t.Fatalf("%d pages came from a prefetch, want 3", n)
	}
}

// A page that stops part way is redone from its own listing, never from the
// next page listed ahead of it: with the next page already prefetched, a
// run stopped in its third page by a key service failure resumes with
// every Secret rotated once and exact counts.
func TestAPageRedoneAfterAStopIsNotReplacedByThePrefetch(t *testing.T) {
	f := newFixture(t)
	f.key("alias/old")
	newKey := f.key("alias/new")
	f.secrets(30, "alias/old", nil)
	f.start(5)
	var failed atomic.Bool
	f.ks.setHook(func(call int, _ *kms.ReEncryptInput) error {
		if call == 40 && failed.CompareAndSwap(false, true) { // inside the third page
			return &kms.Error{Code: kms.CodeDisabled, Message: "injected: the key is disabled"}
		}
		return nil
	})
	f.rotation("r", nil)
	kr := f.wait("r", "Succeeded", phaseIs(rekeyv1alpha1.PhaseSucceeded))
	if !failed.Load() {
		t.Fatal("the failure was not injected")
	}
	if kr.Status.Secrets != (rekeyv1alpha1.SecretCounts{Total: 30, Rotated: 30}) || kr.Status.Blobs != (rekeyv1alpha1.BlobCounts{Total: 90, Rotated: 90}) {
		t.Fatalf("counts: %+v %+v", kr.Status.Secrets, kr.Status.Blobs)
	}
	if name, n := f.updates.max(); n != 1 {
		t.Fatalf("Secret %s written %d times", name, n)
	}
	f.verify(newKey)
}

// kept counts the pages listed ahead and kept by the reconciler.
func (f *fixture) kept() int {
	n := 0
	f.rec.prefetched.Range(func(_, _ any) bool { n++; return true })
	return n
}

// Pages listed ahead cannot pin the operator's memory: no more are kept
// than rotations reconcile at once (one here, for three rotations taking
// turns), and a run that stops without committing a page keeps none (a
// tenant's spec edit that stalls the new run in its first step).
func TestPagesListedAheadAreBounded(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.key("alias/old")
	f.key("alias/new")
	f.secrets(15, "alias/old", nil)
	var most atomic.Int32
	f.ks.setHook(func(int, *kms.ReEncryptInput) error {
		if n := int32(f.kept()); n > most.Load() {
			most.Store(n)
		}
		return nil
	})
	f.start(5)
	for _, name := range []string{"a", "b", "c"} {
		f.rotation(name, func(kr *rekeyv1alpha1.KeyRotation) { kr.Spec.DryRun = true; kr.Spec.MaxConcurrency = 1 })
	}
	for _, name := range []string{"a", "b", "c"} {
		f.wait(name, "finished", finishedRun)
	}
	if most.Load() != 1 {
		t.Fatalf("at most %d pages were kept ahead for 3 rotations on 1 worker, want 1", most.Load())
	}

	// A spec edit mid-page: the page is not committed, and the new run
	// stalls before listing anything.
	var edited atomic.Bool
	f.ks.setHook(func(call int, _ *kms.ReEncryptInput) error {
		if call > 5 && edited.CompareAndSwap(false, true) { // in the second page
			kr := &rekeyv1alpha1.KeyRotation{}
			if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: f.ns, Name: "d"}, kr); err != nil {
				return err
			}
			kr.Spec.SecretSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "team", Operator: metav1.LabelSelectorOpIn}}}
			if err := k8sClient.Update(ctx, kr); err != nil {
				return err
			}
			// The controller sees the edit before its next Secret.
			for {
				live := &rekeyv1alpha1.KeyRotation{}
				if err := f.cache.Get(ctx, client.ObjectKeyFromObject(kr), live); err == nil && live.Generation == kr.Generation {
					return nil
				}
			}
		}
		return nil
	})
	f.rotation("d", func(kr *rekeyv1alpha1.KeyRotation) { kr.Spec.MaxConcurrency = 1 })
	f.wait("d", "stalled", phaseIs(rekeyv1alpha1.PhaseStalled))
	if !edited.Load() {
		t.Fatal("the spec was not edited mid-run")
	}
	if n := f.kept(); n != 0 {
		t.Fatalf("a stalled run keeps %d pages listed ahead", n)
	}
	if n := len(f.rec.prefetchSlots); n != 0 {
		t.Fatalf("%d prefetch slots held with no page kept", n)
	}
}

// repairOnce runs fn once, after the first whole listing of a run.
type repairOnce struct {
	secretpage.Lister
	once sync.Once
	fn   func()
}

func (s *repairOnce) Page(ctx context.Context, req secretpage.Request) (*secretpage.Page, error) {
	p, err := s.Lister.Page(ctx, req)
	if err == nil && !req.MetadataOnly && req.Continue == "" {
		s.once.Do(s.fn)
	}
	return p, err
}

// A whole page is a snapshot as old as its continue token: a Secret broken
// when the pages were listed and repaired by its owner before the rotation
// reached it is judged as it is then, not failed from the snapshot.
func TestAFailureIsJudgedOnTheSecretAsItIsNow(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.key("alias/old")
	newKey := f.key("alias/new")
	f.secrets(10, "alias/old", nil)
	s := f.secret("app-008")
	good := s.Data["dsn"]
	delete(s.Data, "dsn")
	if err := k8sClient.Update(ctx, s); err != nil {
		t.Fatal(err)
	}
	f.wrapPages = func(l secretpage.Lister) secretpage.Lister {
		return &repairOnce{Lister: l, fn: func() {
			s := f.secret("app-008")
			s.Data["dsn"] = good
			if err := k8sClient.Update(ctx, s); err != nil {
				t.Error(err)
			}
		}}
	}
	f.start(5)
	f.rotation("r", nil)
	kr := f.wait("r", "finished", finishedRun)
	if kr.Status.Secrets != (rekeyv1alpha1.SecretCounts{Total: 10, Rotated: 10}) {
		t.Fatalf("counts %+v, failures %+v", kr.Status.Secrets, kr.Status.Failures)
	}
	f.verify(newKey)
}
