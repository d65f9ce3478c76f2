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
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	kerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	rekeyv1alpha1 "github.com/rekey-dev/rekey/api/v1alpha1"
)

// KeyRotationReconciler re-encrypts the blobs held in the Secrets of a
// KeyRotation's namespace, one page of Secrets per reconcile, checkpointing
// its progress in status.
type KeyRotationReconciler struct {
	// Client writes Secrets and status. It must not cache Secrets.
	Client client.Client
	// APIReader lists Secrets page by page straight from the apiserver.
	APIReader client.Reader
	Recorder  events.EventRecorder
	// KeyServices returns the key service a rotation names.
	KeyServices func(ctx context.Context, kr *rekeyv1alpha1.KeyRotation) (KeyService, error)
	// PageSize bounds the Secrets listed, held and worked on per reconcile.
	PageSize int64
	// Clock is injectable for tests (default time.Now).
	Clock func() time.Time
	// IgnoreKeyNamespaces turns off the key policy check: by default a
	// KeyRotation may only use keys whose rekey.dev/namespaces tag names its
	// namespace (or "*").
	IgnoreKeyNamespaces bool
}

// SetupWithManager registers the reconciler. Only KeyRotations are watched:
// Secrets are listed page by page when a rotation runs, never cached.
func (r *KeyRotationReconciler) SetupWithManager(mgr ctrl.Manager, maxConcurrentRotations int) error {
	if r.PageSize <= 0 {
		r.PageSize = 1000
	}
	if r.Clock == nil {
		r.Clock = time.Now
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&rekeyv1alpha1.KeyRotation{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		WithOptions(controller.Options{MaxConcurrentReconciles: maxConcurrentRotations}).
		Named("keyrotation").
		Complete(r)
}

// Reconcile moves one rotation forward by one page of Secrets: fetch, then
// the ordered steps below, and one status patch in the defer.
func (r *KeyRotationReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	log := logf.FromContext(ctx)
	kr := &rekeyv1alpha1.KeyRotation{}
	if err := r.Client.Get(ctx, req.NamespacedName, kr); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	orig := kr.DeepCopy()
	defer func() {
		result, retErr = r.summarize(kr, result, retErr)
		if err := r.patchStatus(ctx, orig, kr); err != nil {
			retErr = kerrors.NewAggregate([]error{retErr, err})
		}
	}()

	if r.startNewRunIfSpecChanged(kr) {
		log.Info("spec changed after the run ended; starting a new run")
	}
	if isTerminal(kr) {
		return ctrl.Result{}, nil
	}
	if kr.Spec.Paused {
		return ctrl.Result{}, nil
	}
	ks, err := r.KeyServices(ctx, kr)
	if err != nil {
		return ctrl.Result{}, err
	}
	if err := ks.Refresh(ctx); err != nil {
		return ctrl.Result{}, fmt.Errorf("refreshing the key service: %w", err)
	}
	run, err := r.resolveKeys(ctx, kr, ks)
	if err != nil {
		return ctrl.Result{}, err
	}
	if err := r.start(ctx, kr, run); err != nil {
		return ctrl.Result{}, err
	}
	done, err := r.processPage(ctx, kr, run)
	if err != nil {
		return ctrl.Result{}, err
	}
	if !done {
		// The next page, straight away: the status patch in the defer is the checkpoint.
		return ctrl.Result{RequeueAfter: time.Millisecond}, nil
	}
	r.finish(ctx, kr, run)
	return ctrl.Result{}, nil
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
// result: stalls become the Stalled condition and a recheck later (or a
// terminal error when only a spec change can help).
func (r *KeyRotationReconciler) summarize(kr *rekeyv1alpha1.KeyRotation, res ctrl.Result, err error) (ctrl.Result, error) {
	kr.Status.ObservedGeneration = kr.Generation
	if s, ok := asStall(err); ok {
		markStalled(kr, s.Reason, s.Message)
		r.event(kr, "Warning", s.Reason, "Stalled", "%s", s.Message)
		if s.Terminal {
			return ctrl.Result{}, reconcile.TerminalError(err)
		}
		return ctrl.Result{RequeueAfter: stallRecheck}, nil
	}
	setProgress(kr)
	switch {
	case err != nil:
		// Transient: keep the conditions, let the workqueue back off.
	case kr.Spec.Paused && !isTerminal(kr):
		markPaused(kr)
	case !isTerminal(kr):
		markReconciling(kr)
	}
	return res, err
}

func (r *KeyRotationReconciler) event(kr *rekeyv1alpha1.KeyRotation, eventType, reason, action, format string, args ...any) {
	if r.Recorder != nil {
		r.Recorder.Eventf(kr, nil, eventType, reason, action, format, args...)
	}
}
