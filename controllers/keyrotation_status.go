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
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	rekeyv1alpha1 "github.com/rekey-dev/rekey/api/v1alpha1"
)

// Condition reasons (PascalCase, stable: users search for them). Stalls
// caused by the key service use the AWS error name as the reason
// (DisabledException, NotFoundException, ...).
const (
	ReasonProgressing       = "Progressing"
	ReasonPaused            = "Paused"
	ReasonSucceeded         = "Succeeded"
	ReasonDryRunComplete    = "DryRunComplete"
	ReasonSecretsFailed     = "SecretsFailed"
	ReasonDrained           = "NoBlobUnderSourceKeys"
	ReasonNotDrained        = "BlobsUnderSourceKeys"
	ReasonDrainUnknown      = "DrainUnknown"
	ReasonProviderMissing   = "ProviderNotAvailable"
	ReasonInvalidSelector   = "InvalidSecretSelector"
	ReasonStarted           = "Started"
	ReasonListRestarted     = "ListRestarted"
	ReasonUndeclaredSource  = "SourceKeyNotDeclared"
	ReasonUnexpectedSource  = "UnexpectedSourceKey"
	ReasonUnexpectedDest    = "UnexpectedDestinationKey"
	ReasonMissingDataKey    = "DataKeyMissing"
	ReasonInvalidContext    = "InvalidEncryptionContext"
	ReasonConflictsExceeded = "TooManyConflicts"
	ReasonKeyNotAllowed     = "KeyNotAllowedForNamespace"
)

// maxFailures bounds status.failures.
const maxFailures = 50

func isTerminal(kr *rekeyv1alpha1.KeyRotation) bool {
	return kr.Status.Phase == rekeyv1alpha1.PhaseSucceeded || kr.Status.Phase == rekeyv1alpha1.PhaseFailed
}

// startNewRunIfSpecChanged resets a finished run whose spec changed since
// (for example dryRun: true turned to false), so the new spec runs in full.
func (r *KeyRotationReconciler) startNewRunIfSpecChanged(kr *rekeyv1alpha1.KeyRotation) bool {
	if !isTerminal(kr) || kr.Status.ObservedGeneration == kr.Generation {
		return false
	}
	kr.Status = rekeyv1alpha1.KeyRotationStatus{ObservedGeneration: kr.Status.ObservedGeneration}
	return true
}

func setCondition(kr *rekeyv1alpha1.KeyRotation, typ string, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&kr.Status.Conditions, metav1.Condition{
		Type: typ, Status: status, Reason: reason, Message: msg, ObservedGeneration: kr.Generation,
	})
}

// markReconciling: Ready False, Reconciling True, no Stalled (kstatus: InProgress).
func markReconciling(kr *rekeyv1alpha1.KeyRotation) {
	msg := fmt.Sprintf("%s Secrets done", kr.Status.Progress)
	setCondition(kr, rekeyv1alpha1.ConditionReady, metav1.ConditionFalse, ReasonProgressing, msg)
	setCondition(kr, rekeyv1alpha1.ConditionReconciling, metav1.ConditionTrue, ReasonProgressing, msg)
	meta.RemoveStatusCondition(&kr.Status.Conditions, rekeyv1alpha1.ConditionStalled)
}

// markStalled: Ready False, Stalled True, no Reconciling (kstatus: Failed).
func markStalled(kr *rekeyv1alpha1.KeyRotation, reason, msg string) {
	setCondition(kr, rekeyv1alpha1.ConditionReady, metav1.ConditionFalse, reason, msg)
	setCondition(kr, rekeyv1alpha1.ConditionStalled, metav1.ConditionTrue, reason, msg)
	meta.RemoveStatusCondition(&kr.Status.Conditions, rekeyv1alpha1.ConditionReconciling)
	if kr.Status.Phase == "" {
		kr.Status.Phase = rekeyv1alpha1.PhasePending
	}
}

func markPaused(kr *rekeyv1alpha1.KeyRotation) {
	setCondition(kr, rekeyv1alpha1.ConditionReady, metav1.ConditionFalse, ReasonPaused, "spec.paused is true")
	meta.RemoveStatusCondition(&kr.Status.Conditions, rekeyv1alpha1.ConditionReconciling)
	meta.RemoveStatusCondition(&kr.Status.Conditions, rekeyv1alpha1.ConditionStalled)
	if kr.Status.Phase == "" {
		kr.Status.Phase = rekeyv1alpha1.PhasePending
	}
}

func setProgress(kr *rekeyv1alpha1.KeyRotation) {
	s := kr.Status.Secrets
	kr.Status.Progress = fmt.Sprintf("%d/%d", s.Rotated+s.Skipped+s.Failed, s.Total)
}

func addFailure(kr *rekeyv1alpha1.KeyRotation, f rekeyv1alpha1.Failure) {
	if len(kr.Status.Failures) < maxFailures {
		kr.Status.Failures = append(kr.Status.Failures, f)
	}
}
