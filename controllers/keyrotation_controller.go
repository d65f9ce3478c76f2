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
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	kerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	rekeyv1alpha1 "github.com/rekey-dev/rekey/api/v1alpha1"
	"github.com/rekey-dev/rekey/internal/secretpage"
)

// KeyRotationReconciler re-encrypts the blobs held in the Secrets of a
// KeyRotation's namespace, one page of Secrets per reconcile, checkpointing
// its progress in status.
type KeyRotationReconciler struct {
	// Client writes Secrets and status. It must not cache Secrets.
	Client client.Client
	// APIReader reads KeyRotations and Secrets one at a time, straight from
	// the apiserver.
	APIReader client.Reader
	// Pages lists Secrets page by page within a byte budget (default: one
	// on the manager's config, with ListBudget).
	Pages secretpage.Lister
	// ListBudget is the most bytes of one Secret list response held
	// (default secretpage.DefaultBudget).
	ListBudget int64
	// Live reads KeyRotations from the manager's cache, to notice a pause or
	// a spec change between Secrets (default: the manager's cache).
	Live     client.Reader
	Recorder events.EventRecorder
	// KeyServices returns the key service a rotation names, and forgets
	// what it keeps for a deleted rotation.
	KeyServices KeyServiceSource
	// PageSize bounds the Secrets listed per reconcile.
	PageSize int64
	// Clock is injectable for tests (default time.Now).
	Clock func() time.Time
	// MinVerifyInterval is the shortest spec.verifyInterval honoured
	// (default one minute).
	MinVerifyInterval time.Duration
	// IgnoreKeyNamespaces turns off the key policy check: by default a
	// KeyRotation may only use keys whose rekey.dev/namespaces tag names its
	// namespace (or "*").
	IgnoreKeyNamespaces bool

	// failingSince remembers, per rotation, when transient failures in a
	// row began (a display matter: Reconciling, then Stalled).
	failingSince sync.Map // types.NamespacedName -> time.Time
	// prefetched keeps, per rotation, the next page listed while the
	// current one was written; prefetchSlots bounds how many.
	prefetched    sync.Map // types.NamespacedName -> *prefetch
	prefetchSlots chan struct{}
}

// KeyServiceSource is where the reconciler gets a rotation's key service.
type KeyServiceSource interface {
	For(ctx context.Context, kr *rekeyv1alpha1.KeyRotation) (KeyService, error)
	// Forget drops what is kept for a rotation that was deleted.
	Forget(key types.NamespacedName)
}

// SetupWithManager registers the reconciler. Only KeyRotations are watched:
// Secrets are listed page by page when a rotation runs, never cached.
// Failed reconciles back off from 1 s to at most a minute, so a stalled
// rotation looks again every minute.
func (r *KeyRotationReconciler) SetupWithManager(mgr ctrl.Manager, maxConcurrentRotations int) error {
	if r.PageSize <= 0 {
		r.PageSize = 1000
	}
	if r.Clock == nil {
		r.Clock = time.Now
	}
	r.prefetchSlots = make(chan struct{}, max(maxConcurrentRotations, 1))
	if r.Pages == nil {
		pages, err := secretpage.NewAPILister(mgr.GetConfig(), mgr.GetHTTPClient(), r.ListBudget)
		if err != nil {
			return err
		}
		r.Pages = pages
	}
	if r.Live == nil {
		r.Live = mgr.GetCache()
	}
	if r.MinVerifyInterval == 0 {
		r.MinVerifyInterval = time.Minute
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&rekeyv1alpha1.KeyRotation{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		WithOptions(controller.Options{
			MaxConcurrentReconciles: maxConcurrentRotations,
			RateLimiter:             workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](time.Second, stallRecheck),
		}).
		Named("keyrotation").
		Complete(r)
}

// stallRecheck is the longest wait before a stalled rotation looks again
// whether the cause (a disabled key, say) went away.
const stallRecheck = time.Minute

// Reconcile moves one rotation forward by one page of Secrets: fetch, then
// the ordered steps below, and one status patch in the defer; the Events of
// the reconcile are sent only once that patch has saved what they report.
func (r *KeyRotationReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	// Read from the apiserver, not the cache: the last reconcile's status
	// patch (its checkpoint) must be seen, or its page would be done again.
	kr := &rekeyv1alpha1.KeyRotation{}
	if err := r.APIReader.Get(ctx, req.NamespacedName, kr); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	orig := kr.DeepCopy()
	rn := &run{kr: kr}
	defer func() {
		if !rn.committedPage {
			// A page listed ahead serves only the reconcile after a
			// committed page; a stalled, paused or finished run holds none.
			r.dropPrefetch(req.NamespacedName)
		}
		result, retErr = r.summarize(rn, result, retErr)
		if err := r.patchStatus(ctx, orig, kr); err != nil {
			retErr = kerrors.NewAggregate([]error{retErr, err})
			return // the checkpoint was not saved: neither are its Events sent
		}
		r.send(rn)
	}()

	// 1. A new run begins when the spec (but paused and maxConcurrency)
	// changed or a re-run was requested. Its identity is saved before any
	// Secret is written with it.
	if r.beginRun(rn) && !kr.Spec.Paused {
		return ctrl.Result{RequeueAfter: time.Millisecond}, nil
	}
	// 2. A finished run only re-verifies, read-only, on its schedule (paused
	// or not: reading changes nothing). Its record stays as it is.
	if finished(kr) {
		if err := r.connect(ctx, rn, false); err != nil {
			return ctrl.Result{}, err
		}
		return r.reverify(ctx, rn)
	}
	// 3. Paused: nothing moves.
	if kr.Spec.Paused {
		return ctrl.Result{}, nil
	}
	// 4. The key service, the pinned keys, and their policy for this namespace.
	if err := r.connect(ctx, rn, true); err != nil {
		return ctrl.Result{}, err
	}
	// 5. Count the selected Secrets once per run.
	if err := r.start(ctx, rn); err != nil {
		return ctrl.Result{}, err
	}
	// 6. One page.
	done, err := r.processPage(ctx, rn)
	if err != nil {
		return ctrl.Result{}, err
	}
	if !done {
		// The next page, straight away: the status patch in the defer is the checkpoint.
		return ctrl.Result{RequeueAfter: time.Millisecond}, nil
	}
	// 7. The end of the run. The read that decides SourceKeysDrained comes
	// next, in its own reconcile (step 3), after this checkpoint is saved.
	r.finish(rn)
	return ctrl.Result{RequeueAfter: time.Millisecond}, nil
}

// send sends the Events a reconcile queued.
func (r *KeyRotationReconciler) send(rn *run) {
	if r.Recorder == nil {
		return
	}
	for _, e := range rn.events {
		var related runtime.Object
		if e.secret != "" {
			related = &corev1.Secret{
				TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
				ObjectMeta: metav1.ObjectMeta{Namespace: rn.kr.Namespace, Name: e.secret},
			}
		}
		r.Recorder.Eventf(rn.kr, related, e.eventType, e.reason, e.action, "%s", e.note)
	}
}

// forget drops everything the operator keeps for a deleted rotation.
func (r *KeyRotationReconciler) forget(key types.NamespacedName) {
	metricSecretsRemaining.DeleteLabelValues(key.Namespace, key.Name)
	metricSourceKeyBlobs.DeleteLabelValues(key.Namespace, key.Name)
	r.failingSince.Delete(key)
	r.dropPrefetch(key)
	if r.KeyServices != nil {
		r.KeyServices.Forget(key)
	}
}

// patchStatus writes the status with a merge patch (never an Update), once
// per reconcile, only when it changed.
func (r *KeyRotationReconciler) patchStatus(ctx context.Context, orig, kr *rekeyv1alpha1.KeyRotation) error {
	patch := client.MergeFrom(orig)
	data, err := patch.Data(kr)
	if err != nil {
		return err
	}
	if string(data) == "{}" {
		return nil
	}
	if err := r.Client.Status().Patch(ctx, kr, patch); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("patching status: %w", err)
	}
	return nil
}

// summarize turns the outcome of the steps into phase, conditions and the
// result. A stall stops the run (Stalled; rechecked with backoff, or a
// terminal error when only a spec change can help). A waiting error shows
// in Reconciling with its reason, and as Stalled once it has lasted
// transientStallAfter. Both are returned as errors, so they count in
// controller_runtime_reconcile_errors_total. On a finished run, an error
// can only come from its verification: SourceKeysDrained is Unknown, the
// record stays, and it is tried again later.
func (r *KeyRotationReconciler) summarize(rn *run, res ctrl.Result, err error) (ctrl.Result, error) {
	kr := rn.kr
	key := types.NamespacedName{Namespace: kr.Namespace, Name: kr.Name}
	kr.Status.ObservedGeneration = kr.Generation
	setProgress(kr)
	if err == nil {
		r.failingSince.Delete(key)
	}
	switch {
	case finished(kr) && err != nil:
		setCondition(kr, rekeyv1alpha1.ConditionSourceKeysDrained, metav1.ConditionUnknown, ReasonVerifyFailed,
			fmt.Sprintf("the Secrets could not be verified: %v", err))
		return ctrl.Result{RequeueAfter: stallRecheck}, nil
	case finished(kr):
		return res, nil
	case err == nil && kr.Spec.Paused:
		kr.Status.Phase = rekeyv1alpha1.PhasePaused
		markPaused(kr)
		return res, nil
	case err == nil:
		kr.Status.Phase = rekeyv1alpha1.PhaseRunning
		if kr.Status.StartTime == nil {
			kr.Status.Phase = rekeyv1alpha1.PhasePending
		}
		msg := fmt.Sprintf("%s Secrets done", kr.Status.Progress)
		if kr.Spec.DryRun {
			msg = fmt.Sprintf("dry run: %s Secrets planned", kr.Status.Progress)
		}
		markReconciling(kr, ReasonProgressing, msg)
		return res, nil
	}
	err = asStepError(err, "reconciling")
	if s, ok := asStall(err); ok {
		r.stalled(rn, s.Reason, s.Error())
		if s.Terminal {
			return ctrl.Result{}, reconcile.TerminalError(err)
		}
		return ctrl.Result{}, err
	}
	w, _ := asWaiting(err)
	first, _ := r.failingSince.LoadOrStore(key, r.Clock())
	if since := first.(time.Time); r.Clock().Sub(since) >= transientStallAfter {
		r.stalled(rn, w.Reason, fmt.Sprintf("failing since %s, retrying: %v", since.UTC().Format(time.RFC3339), w))
	} else {
		markReconciling(kr, w.Reason, fmt.Sprintf("retrying: %v", w))
	}
	return ctrl.Result{}, err
}

// stalled marks a run in progress Stalled, with a Warning Event when it
// was not already stalled for the same reason.
func (r *KeyRotationReconciler) stalled(rn *run, reason, msg string) {
	kr := rn.kr
	if c := meta.FindStatusCondition(kr.Status.Conditions, rekeyv1alpha1.ConditionStalled); c == nil || c.Status != metav1.ConditionTrue || c.Reason != reason {
		rn.event(corev1.EventTypeWarning, reason, "Stall", "%s", msg)
	}
	kr.Status.Phase = rekeyv1alpha1.PhaseStalled
	markStalled(kr, reason, msg)
}
