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
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"

	rekeyv1alpha1 "github.com/rekey-dev/rekey/api/v1alpha1"
	"github.com/rekey-dev/rekey/internal/kms"
	"github.com/rekey-dev/rekey/internal/secretpage"
)

// maxInventory bounds status.inventory.
const maxInventory = 50

// maxVerifyRestarts bounds how often one verification starts its listing
// over after the continue token expired.
const maxVerifyRestarts = 3

type invKey struct{ arn, material string }

// verification adds up one read-only pass over the selected Secrets.
type verification struct {
	mu        sync.Mutex
	v         rekeyv1alpha1.Verification
	inventory map[invKey]int64
	err       error
}

// verify reads every selected Secret as it is now (page by page, one Secret
// at a time on the rotation's workers, like a run) and counts the blobs
// still under a source key. It writes nothing and calls no key service:
// where the blob format is known (the embedded engine) each header says
// which key and version the blob is under; where it is not (AWS), a blob
// counts as moved only while the Secret carries a rekey mark whose digest
// matches its current values and the destination, and as unverifiable
// otherwise.
func (r *KeyRotationReconciler) verify(ctx context.Context, rn *run) (*verification, error) {
	for restarts := 0; ; restarts++ {
		// The time the read begins: what it found holds as of then.
		res := &verification{inventory: map[invKey]int64{}, v: rekeyv1alpha1.Verification{Time: metav1.NewTime(r.Clock())}}
		vctx, cancel := context.WithCancel(ctx)
		err := r.verifyPass(vctx, rn, res, cancel)
		cancel()
		if apierrors.IsResourceExpired(err) && restarts < maxVerifyRestarts {
			continue
		}
		if err != nil {
			return nil, asStepError(err, "verifying the Secrets")
		}
		return res, nil
	}
}

func (r *KeyRotationReconciler) verifyPass(ctx context.Context, rn *run, res *verification, cancel context.CancelFunc) error {
	for cont := ""; ; {
		list, err := r.listPage(ctx, rn, cont, false)
		if err != nil {
			return err
		}
		forEach(ctx, list.Items, int(cmp.Or(rn.kr.Spec.MaxConcurrency, 8)), func() bool { return false },
			func(it *secretpage.Item) {
				s, err := r.getSecret(ctx, it)
				if apierrors.IsNotFound(err) {
					return
				}
				res.add(rn, s, err, cancel)
			})
		if res.err != nil {
			return res.err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if cont = list.Continue; cont == "" {
			return nil
		}
	}
}

// underSource reports whether a blob's header names a source key (for a
// same-key rotation: an older version of the destination).
func (rn *run) underSource(arn string, current bool) bool {
	return rn.sources[arn] && (arn != rn.dest || !current)
}

func (res *verification) add(rn *run, s *corev1.Secret, err error, cancel context.CancelFunc) {
	res.mu.Lock()
	defer res.mu.Unlock()
	if res.err != nil {
		return
	}
	if err != nil {
		res.err = err
		cancel()
		return
	}
	if !selected(s) {
		return
	}
	res.v.Secrets++
	var keys []string
	for _, k := range annotatedKeys(s) {
		if _, ok := s.Data[k]; ok {
			keys = append(keys, k)
		}
	}
	res.v.Blobs += int64(len(keys))
	if rn.inspector == nil {
		src, dst, err := rn.contexts(s)
		m := readMark(s)
		// A mark vouches only for the destination key, not for its
		// version: when the destination is also a source (a same-key
		// rotation), only this run's marks say "moved to the newest version".
		sameKey := rn.sources[rn.dest] && (m.uid != string(rn.kr.UID) || m.runID != rn.runID())
		if err != nil || sameKey || m.digest != rn.markDigest(s, keys, src, dst) {
			res.v.Unverifiable += int64(len(keys))
		}
		return
	}
	under := false
	for _, k := range keys {
		bk, err := rn.inspector.InspectBlob(s.Data[k])
		if errors.Is(err, kms.ErrNotFound) {
			continue // its header names a key that does not exist: no source key
		}
		if err != nil {
			// Not a blob rekey can read (base64 text stored as the value, a
			// truncated blob): which key it is under is not known.
			res.v.Unverifiable++
			continue
		}
		res.inventory[invKey{bk.KeyARN, bk.KeyMaterialID}]++
		if rn.underSource(bk.KeyARN, bk.Current) {
			res.v.BlobsUnderSourceKeys++
			under = true
		}
	}
	if under {
		res.v.SecretsUnderSourceKeys++
	}
}

func (res *verification) inventoryEntries() []rekeyv1alpha1.InventoryEntry {
	out := make([]rekeyv1alpha1.InventoryEntry, 0, len(res.inventory))
	for k, n := range res.inventory {
		out = append(out, rekeyv1alpha1.InventoryEntry{KeyARN: k.arn, KeyMaterialID: k.material, Blobs: n})
	}
	slices.SortFunc(out, func(a, b rekeyv1alpha1.InventoryEntry) int {
		return cmp.Or(cmp.Compare(a.KeyARN, b.KeyARN), cmp.Compare(a.KeyMaterialID, b.KeyMaterialID))
	})
	if len(out) > maxInventory {
		out = out[:maxInventory]
	}
	return out
}

// verifyAndRecord verifies and sets SourceKeysDrained from what it read:
// True only when no selected blob is under a source key and every blob
// could be checked; False, with a Warning Event, when blobs under a source
// key are found; Unknown when some blobs cannot be checked, or when the
// verification itself failed. The count is also the
// rekey_source_key_blobs metric.
func (r *KeyRotationReconciler) verifyAndRecord(ctx context.Context, rn *run) error {
	kr := rn.kr
	res, err := r.verify(ctx, rn)
	if err != nil {
		setCondition(kr, rekeyv1alpha1.ConditionSourceKeysDrained, metav1.ConditionUnknown, ReasonVerifyFailed,
			fmt.Sprintf("the Secrets could not be read to verify: %v", err))
		return err
	}
	v := res.v
	prev := meta.FindStatusCondition(kr.Status.Conditions, rekeyv1alpha1.ConditionSourceKeysDrained)
	kr.Status.Verification = &v
	kr.Status.Inventory = res.inventoryEntries()
	metricSourceKeyBlobs.WithLabelValues(kr.Namespace, kr.Name).Set(float64(v.BlobsUnderSourceKeys))
	at := v.Time.UTC().Format(time.RFC3339)
	switch {
	case v.BlobsUnderSourceKeys > 0:
		msg := fmt.Sprintf("%d blobs in %d Secrets are under a source key (read at %s); set %s to rotate them",
			v.BlobsUnderSourceKeys, v.SecretsUnderSourceKeys, at, rekeyv1alpha1.RequestedAtAnnotation)
		if !kr.Spec.DryRun && (prev == nil || prev.Status != metav1.ConditionFalse || prev.Reason != ReasonNotDrained) {
			rn.event(corev1.EventTypeWarning, ReasonSourceBlobsFound, "Verify", "%s", msg)
		}
		setCondition(kr, rekeyv1alpha1.ConditionSourceKeysDrained, metav1.ConditionFalse, ReasonNotDrained, msg)
	case v.Unverifiable > 0:
		if prev != nil && prev.Status == metav1.ConditionTrue {
			rn.event(corev1.EventTypeWarning, ReasonNotVerifiable, "Verify",
				"%d blobs can no longer be verified (rewritten since rekey wrote them, or unreadable); SourceKeysDrained is Unknown", v.Unverifiable)
		}
		setCondition(kr, rekeyv1alpha1.ConditionSourceKeysDrained, metav1.ConditionUnknown, ReasonNotVerifiable,
			fmt.Sprintf("%d of %d blobs are in a format rekey cannot read and were not written by this rotation as they are now (read at %s): which key they are under is not known",
				v.Unverifiable, v.Blobs, at))
	default:
		setCondition(kr, rekeyv1alpha1.ConditionSourceKeysDrained, metav1.ConditionTrue, ReasonDrained,
			fmt.Sprintf("no selected blob is under a source key: %d blobs in %d Secrets read at %s", v.Blobs, v.Secrets, at))
	}
	return nil
}

// verifyInterval is how often a finished rotation re-verifies (0: never),
// at least min: a full read of the namespace's Secrets is not a loop a
// tenant may ask for.
func verifyInterval(kr *rekeyv1alpha1.KeyRotation, least time.Duration) time.Duration {
	if kr.Spec.VerifyInterval == nil {
		return time.Hour
	}
	if d := kr.Spec.VerifyInterval.Duration; d > 0 {
		return max(d, least)
	}
	return 0
}

// reverify is the only work on a finished rotation: when its interval has
// passed since the last verification (or there is none), verify again.
// Phase and counts stay the run's record.
func (r *KeyRotationReconciler) reverify(ctx context.Context, rn *run) (ctrl.Result, error) {
	kr := rn.kr
	every := verifyInterval(kr, r.MinVerifyInterval)
	if kr.Status.Verification != nil {
		if every == 0 {
			return ctrl.Result{}, nil
		}
		if wait := kr.Status.Verification.Time.Add(every).Sub(r.Clock()); wait > 0 {
			return ctrl.Result{RequeueAfter: wait}, nil
		}
	}
	if err := r.verifyAndRecord(ctx, rn); err != nil {
		return ctrl.Result{}, err
	}
	if every == 0 {
		return ctrl.Result{}, nil
	}
	return ctrl.Result{RequeueAfter: every}, nil
}
