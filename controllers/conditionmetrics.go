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

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rekeyv1alpha1 "github.com/rekey-dev/rekey/api/v1alpha1"
)

// ConditionMetricsReconciler exports every KeyRotation's conditions as
// rekey_keyrotation_status_condition, from the status saved in the
// apiserver (read from the manager's cache: no request of its own). It runs
// on the leader only, like the KeyRotation controller, so one replica
// exports each series; a deleted KeyRotation's series are removed.
type ConditionMetricsReconciler struct {
	Reader client.Reader
}

// SetupWithManager registers it for every change of a KeyRotation,
// status included.
func (r *ConditionMetricsReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Reader == nil {
		r.Reader = mgr.GetCache()
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&rekeyv1alpha1.KeyRotation{}).
		Named("keyrotation-conditions").
		Complete(r)
}

// Reconcile sets or removes one KeyRotation's series.
func (r *ConditionMetricsReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	kr := &rekeyv1alpha1.KeyRotation{}
	if err := r.Reader.Get(ctx, req.NamespacedName, kr); err != nil {
		if apierrors.IsNotFound(err) {
			forgetConditions(req.NamespacedName)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	recordConditions(kr)
	return ctrl.Result{}, nil
}
