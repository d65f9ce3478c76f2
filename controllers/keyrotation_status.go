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
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	rekeyv1alpha1 "github.com/rekey-dev/rekey/api/v1alpha1"
)

// Condition reasons (PascalCase, stable: users search for them). Stalls
// caused by the key service use the AWS error name as the reason
// (DisabledException, NotFoundException, ...).
const (
	ReasonProgressing         = "Progressing"
	ReasonPaused              = "Paused"
	ReasonSucceeded           = "Succeeded"
	ReasonDryRunComplete      = "DryRunComplete"
	ReasonSecretsFailed       = "SecretsFailed"
	ReasonDrained             = "NoBlobUnderSourceKeys"
	ReasonNotDrained          = "BlobsUnderSourceKeys"
	ReasonNotVerifiable       = "BlobsNotVerifiable"
	ReasonRunInProgress       = "RunInProgress"
	ReasonVerificationPending = "VerificationPending"
	ReasonVerifyFailed        = "VerificationFailed"
	ReasonProviderMissing     = "ProviderNotAvailable"
	ReasonInvalidSelector     = "InvalidSecretSelector"
	ReasonStarted             = "Started"
	ReasonRunRestarted        = "RunRestarted"
	ReasonListRestarted       = "ListRestarted"
	ReasonSourceBlobsFound    = "SourceKeyBlobsFound"
	ReasonUndeclaredSource    = "SourceKeyNotDeclared"
	ReasonUnexpectedSource    = "UnexpectedSourceKey"
	ReasonUnexpectedDest      = "UnexpectedDestinationKey"
	ReasonMissingDataKey      = "DataKeyMissing"
	ReasonInvalidContext      = "InvalidEncryptionContext"
	ReasonBlobTooLarge        = "BlobTooLarge"
	ReasonImmutableSecret     = "SecretImmutable"
	ReasonManagedByGitOps     = "ManagedByGitOps"
	ReasonWriteRejected       = "SecretWriteRejected"
	ReasonConflictsExceeded   = "TooManyConflicts"
	ReasonKeyNotAllowed       = "KeyNotAllowedForNamespace"
	ReasonUnexpectedError     = "UnexpectedError"
)

// maxFailures bounds status.failures and the failure Events of a run.
const maxFailures = 50

// finished reports whether the current run has ended.
func finished(kr *rekeyv1alpha1.KeyRotation) bool {
	return kr.Status.Phase == rekeyv1alpha1.PhaseSucceeded || kr.Status.Phase == rekeyv1alpha1.PhaseFailed
}

// specDigest digests everything in the spec that defines a run: all of it
// but paused, maxConcurrency and verifyInterval, which never start a run.
func specDigest(spec rekeyv1alpha1.KeyRotationSpec) string {
	spec.Paused, spec.MaxConcurrency, spec.VerifyInterval = false, 0, nil
	if spec.GitOps == rekeyv1alpha1.GitOpsReport {
		spec.GitOps = "" // the default, spelled out: the same run
	}
	b, err := json.Marshal(spec)
	if err != nil {
		panic(err) // a struct of strings, maps and ints always marshals
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:12])
}

// newRunID returns a fresh run id.
func newRunID() string {
	var b [6]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// beginRun decides whether a new run starts, and starts it: when there is
// none yet, when the spec changed in anything but paused and
// maxConcurrency (a run in progress restarts from the first Secret with
// fresh counts), or when rekey.dev/requested-at has a new value on a
// finished rotation. A new run replaces the previous run's record. Reports
// whether it started one. Sets SourceKeysDrained Unknown while it runs.
func (r *KeyRotationReconciler) beginRun(rn *run) bool {
	kr := rn.kr
	digest := specDigest(kr.Spec)
	requested := kr.Annotations[rekeyv1alpha1.RequestedAtAnnotation]
	cur := kr.Status.Run
	var why string
	switch {
	case cur == nil:
		why = "first run"
	case cur.SpecDigest != digest:
		why = "the spec changed"
	case cur.RequestedAt != requested && finished(kr):
		why = rekeyv1alpha1.RequestedAtAnnotation + " changed"
	default:
		if cur.RequestedAt != requested {
			cur.RequestedAt = requested // the run in progress answers it
		}
		return false
	}
	if cur != nil {
		rn.event("Normal", ReasonRunRestarted, "Restart", "starting a new run: %s", why)
	}
	conditions := kr.Status.Conditions
	kr.Status = rekeyv1alpha1.KeyRotationStatus{
		Phase:              rekeyv1alpha1.PhasePending,
		ObservedGeneration: kr.Status.ObservedGeneration,
		Conditions:         conditions,
		Run: &rekeyv1alpha1.RunStatus{ID: newRunID(), Generation: kr.Generation, SpecDigest: digest,
			RequestedAt: requested, StartTime: metav1.NewTime(r.Clock())},
	}
	setCondition(kr, rekeyv1alpha1.ConditionSourceKeysDrained, metav1.ConditionUnknown, ReasonRunInProgress,
		"a run is in progress; a read of the Secrets after its last write will tell")
	return true
}

func setCondition(kr *rekeyv1alpha1.KeyRotation, typ string, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&kr.Status.Conditions, metav1.Condition{
		Type: typ, Status: status, Reason: reason, Message: msg, ObservedGeneration: kr.Generation,
	})
}

// markReconciling: Ready False, Reconciling True, no Stalled (kstatus: InProgress).
func markReconciling(kr *rekeyv1alpha1.KeyRotation, reason, msg string) {
	setCondition(kr, rekeyv1alpha1.ConditionReady, metav1.ConditionFalse, reason, msg)
	setCondition(kr, rekeyv1alpha1.ConditionReconciling, metav1.ConditionTrue, reason, msg)
	meta.RemoveStatusCondition(&kr.Status.Conditions, rekeyv1alpha1.ConditionStalled)
}

// markStalled: Ready False, Stalled True, no Reconciling (kstatus: Failed).
func markStalled(kr *rekeyv1alpha1.KeyRotation, reason, msg string) {
	setCondition(kr, rekeyv1alpha1.ConditionReady, metav1.ConditionFalse, reason, msg)
	setCondition(kr, rekeyv1alpha1.ConditionStalled, metav1.ConditionTrue, reason, msg)
	meta.RemoveStatusCondition(&kr.Status.Conditions, rekeyv1alpha1.ConditionReconciling)
}

// markDone: Ready True; neither Reconciling nor Stalled (kstatus: Current).
func markDone(kr *rekeyv1alpha1.KeyRotation, reason, msg string) {
	setCondition(kr, rekeyv1alpha1.ConditionReady, metav1.ConditionTrue, reason, msg)
	meta.RemoveStatusCondition(&kr.Status.Conditions, rekeyv1alpha1.ConditionReconciling)
	meta.RemoveStatusCondition(&kr.Status.Conditions, rekeyv1alpha1.ConditionStalled)
}

// markPaused: Ready False with reason Paused; neither Reconciling nor
// Stalled (kstatus reads it Current: nothing is expected to happen).
func markPaused(kr *rekeyv1alpha1.KeyRotation) {
	setCondition(kr, rekeyv1alpha1.ConditionReady, metav1.ConditionFalse, ReasonPaused,
		fmt.Sprintf("spec.paused is true; %s Secrets done", kr.Status.Progress))
	meta.RemoveStatusCondition(&kr.Status.Conditions, rekeyv1alpha1.ConditionReconciling)
	meta.RemoveStatusCondition(&kr.Status.Conditions, rekeyv1alpha1.ConditionStalled)
}

func setProgress(kr *rekeyv1alpha1.KeyRotation) {
	s := kr.Status.Secrets
	kr.Status.Progress = fmt.Sprintf("%d/%d", done(s), s.Total)
}

func done(s rekeyv1alpha1.SecretCounts) int64 {
	return s.Rotated + s.WouldRotate + s.Skipped + s.Failed
}

// addFailure records a failure once (a Secret redone after a list restart
// fails again) within the bound, and reports whether it was new.
func addFailure(kr *rekeyv1alpha1.KeyRotation, f rekeyv1alpha1.Failure) bool {
	if slices.ContainsFunc(kr.Status.Failures, func(g rekeyv1alpha1.Failure) bool {
		return g.Secret == f.Secret && g.Key == f.Key && g.Reason == f.Reason
	}) || len(kr.Status.Failures) >= maxFailures {
		return false
	}
	kr.Status.Failures = append(kr.Status.Failures, f)
	return true
}

// clearFailures drops the failures of Secrets that have since gone through.
func clearFailures(kr *rekeyv1alpha1.KeyRotation, ok map[string]bool) {
	if len(ok) == 0 {
		return
	}
	kr.Status.Failures = slices.DeleteFunc(kr.Status.Failures, func(f rekeyv1alpha1.Failure) bool { return ok[f.Secret] })
}
