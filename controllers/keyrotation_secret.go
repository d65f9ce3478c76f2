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
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rekeyv1alpha1 "github.com/rekey-dev/rekey/api/v1alpha1"
	"github.com/rekey-dev/rekey/internal/kms"
)

type resultKind int

const (
	resultSkipped resultKind = iota
	resultRotated
	resultFailed
)

// secretResult is what happened to one Secret. err (a stall or a transient
// error) aborts the page.
type secretResult struct {
	secret    string
	kind      resultKind
	blobs     rekeyv1alpha1.BlobCounts
	failure   *rekeyv1alpha1.Failure
	inventory map[invKey]int64
	err       error
}

// RotatedBlobsAnnotation records how many blobs of a Secret its rotation
// re-encrypted, so a resumed run counts them exactly once.
const RotatedBlobsAnnotation = "rekey.dev/rotated-blobs"

// maxConflicts bounds how often one Secret is re-read and redone after
// someone else wrote it first.
const maxConflicts = 5

// rotateSecret re-encrypts every annotated blob of one Secret and, only
// when all of them passed, writes the Secret back in one Update carrying the
// resourceVersion it read. A conflict re-reads the Secret and decides again;
// a deleted Secret is skipped. A Secret is never half-rotated.
func (r *KeyRotationReconciler) rotateSecret(ctx context.Context, rn *run, s *corev1.Secret) (res secretResult) {
	defer func() { res.secret = s.Name }()
	for range maxConflicts {
		res, updated := rn.plan(ctx, s)
		if res.err != nil || updated == nil || rn.kr.Spec.DryRun {
			return res
		}
		err := r.Client.Update(ctx, updated)
		switch {
		case err == nil:
			metricBlobsReEncrypted.WithLabelValues(rn.ks.Name()).Add(float64(res.blobs.Rotated))
			return res
		case apierrors.IsNotFound(err):
			return secretResult{kind: resultSkipped}
		case apierrors.IsConflict(err):
			fresh := &corev1.Secret{}
			if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(s), fresh); err != nil {
				if apierrors.IsNotFound(err) {
					return secretResult{kind: resultSkipped}
				}
				return secretResult{err: fmt.Errorf("re-reading Secret %s: %w", s.Name, err)}
			}
			s = fresh
			if !selected(s) {
				return secretResult{kind: resultSkipped}
			}
		default:
			return secretResult{err: fmt.Errorf("writing Secret %s: %w", s.Name, err)}
		}
	}
	return failed(s.Name, "", ReasonConflictsExceeded, fmt.Sprintf("the Secret changed under the rotation %d times in a row", maxConflicts))
}

func failed(secret, key, reason, msg string) secretResult {
	metricFailures.WithLabelValues(reason).Inc()
	return secretResult{kind: resultFailed, blobs: rekeyv1alpha1.BlobCounts{Total: 1, Failed: 1},
		failure: &rekeyv1alpha1.Failure{Secret: secret, Key: key, Reason: reason, Message: msg}}
}

// dataKeys returns the data keys the annotation names, sorted.
func dataKeys(s *corev1.Secret) ([]string, error) {
	ann := strings.TrimSpace(s.Annotations[rekeyv1alpha1.EncryptedKeysAnnotation])
	var keys []string
	if ann == "*" {
		for k := range s.Data {
			keys = append(keys, k)
		}
	} else {
		for k := range strings.SplitSeq(ann, ",") {
			if k = strings.TrimSpace(k); k != "" && !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
		for _, k := range keys {
			if _, ok := s.Data[k]; !ok {
				return nil, fmt.Errorf("%s names data key %q, which the Secret does not have", rekeyv1alpha1.EncryptedKeysAnnotation, k)
			}
		}
	}
	slices.Sort(keys)
	return keys, nil
}

// Placeholders an encryption context value in the spec may hold: they bind
// each blob to the Secret and data key it lives in.
const (
	placeholderNamespace = "{namespace}"
	placeholderName      = "{name}"
	placeholderKey       = "{key}"
)

func templated(ec map[string]string) bool {
	for _, v := range ec {
		if strings.Contains(v, placeholderNamespace) || strings.Contains(v, placeholderName) || strings.Contains(v, placeholderKey) {
			return true
		}
	}
	return false
}

// expand fills a context's placeholders for one blob; a context without
// placeholders is returned as it is.
func expand(ec map[string]string, s *corev1.Secret, key string) map[string]string {
	if !templated(ec) {
		return ec
	}
	r := strings.NewReplacer(placeholderNamespace, s.Namespace, placeholderName, s.Name, placeholderKey, key)
	out := make(map[string]string, len(ec))
	for k, v := range ec {
		out[k] = r.Replace(v)
	}
	return out
}

// contexts returns the source and destination encryption contexts: the
// spec's, else the Secret's annotation; the destination defaults to the
// source. Spec values may hold {namespace}, {name} and {key}, filled per
// blob by expand.
func (rn *run) contexts(s *corev1.Secret) (src, dst map[string]string, err error) {
	src = rn.kr.Spec.SourceEncryptionContext
	if len(src) == 0 {
		if ann, ok := s.Annotations[rekeyv1alpha1.EncryptionContextAnnotation]; ok {
			if err := json.Unmarshal([]byte(ann), &src); err != nil {
				return nil, nil, fmt.Errorf("%s is not a JSON object of strings", rekeyv1alpha1.EncryptionContextAnnotation)
			}
		}
	}
	dst = rn.kr.Spec.DestinationEncryptionContext
	if len(dst) == 0 {
		dst = src
	}
	return src, dst, nil
}

// plan re-encrypts the Secret's blobs and returns the Secret to write (nil
// when there is nothing to write).
func (rn *run) plan(ctx context.Context, s *corev1.Secret) (secretResult, *corev1.Secret) {
	uid := string(rn.kr.UID)
	mine := s.Annotations[rekeyv1alpha1.RotatedByAnnotation] == uid
	keys, err := dataKeys(s)
	if err != nil {
		return failed(s.Name, "", ReasonMissingDataKey, err.Error()), nil
	}
	if mine && rn.inspector == nil {
		// Opaque blobs: this run's mark is the only record that the Secret is
		// done. Count it as rotated, exactly once, without calling the KMS.
		n, _ := strconv.ParseInt(s.Annotations[RotatedBlobsAnnotation], 10, 64)
		return secretResult{kind: resultRotated, blobs: rekeyv1alpha1.BlobCounts{Total: int64(len(keys)), Rotated: n, Skipped: int64(len(keys)) - n}}, nil
	}
	src, dst, err := rn.contexts(s)
	if err != nil {
		return failed(s.Name, "", ReasonInvalidContext, err.Error()), nil
	}
	res := secretResult{inventory: map[invKey]int64{}}
	changed := map[string][]byte{}
	for _, k := range keys {
		bsrc, bdst := expand(src, s, k), expand(dst, s, k)
		if kms.SameContext(src, dst) {
			bdst = bsrc
		}
		out := rn.reencrypt(ctx, s.Data[k], bsrc, bdst)
		if out.err != nil {
			return secretResult{err: out.err}, nil
		}
		res.blobs.Total++
		if out.inv.arn != "" {
			res.inventory[out.inv]++
		}
		switch {
		case out.failReason != "":
			f := failed(s.Name, k, out.failReason, out.failMsg)
			f.blobs = rekeyv1alpha1.BlobCounts{Total: res.blobs.Total, Failed: 1}
			return f, nil
		case out.rotated:
			res.blobs.Rotated++
			changed[k] = out.blob
		default:
			res.blobs.Skipped++
		}
	}
	switch {
	case res.blobs.Rotated == 0 && mine:
		// Done by this run before a restart: count it as rotated once more.
		n, _ := strconv.ParseInt(s.Annotations[RotatedBlobsAnnotation], 10, 64)
		res.kind, res.blobs.Rotated, res.blobs.Skipped = resultRotated, n, res.blobs.Total-n
		return res, nil
	case res.blobs.Rotated == 0:
		res.kind = resultSkipped
		return res, nil
	}
	res.kind = resultRotated
	if rn.kr.Spec.DryRun {
		return res, nil
	}
	updated := s.DeepCopy()
	for k, b := range changed {
		updated.Data[k] = b
	}
	if updated.Annotations == nil {
		updated.Annotations = map[string]string{}
	}
	updated.Annotations[rekeyv1alpha1.RotatedByAnnotation] = uid
	updated.Annotations[RotatedBlobsAnnotation] = strconv.FormatInt(res.blobs.Rotated, 10)
	return res, updated
}

// blobOutcome is what happened to one blob.
type blobOutcome struct {
	rotated    bool
	blob       []byte
	inv        invKey
	failReason string
	failMsg    string
	err        error // stall or transient: aborts the page
}

// reencrypt moves one blob. Blobs in a known format are inspected first:
// already under the destination's current version → skipped; under a key
// that is not a declared source → reported, not sent. The returned
// SourceKeyId must be a declared source and KeyId the destination.
func (rn *run) reencrypt(ctx context.Context, blob []byte, src, dst map[string]string) blobOutcome {
	if rn.inspector != nil {
		bk, err := rn.inspector.InspectBlob(blob)
		if err != nil {
			return blobOutcome{failReason: reasonOf(err), failMsg: err.Error()}
		}
		inv := invKey{bk.KeyARN, bk.KeyMaterialID}
		if bk.KeyARN == rn.dest && bk.Current {
			return blobOutcome{inv: inv}
		}
		if !rn.sources[bk.KeyARN] {
			return blobOutcome{inv: inv, failReason: ReasonUndeclaredSource,
				failMsg: fmt.Sprintf("the blob is under key %s, which is not one of spec.sourceKeyIds; it was not sent", bk.KeyARN)}
		}
	}
	in := &kms.ReEncryptInput{
		CiphertextBlob: blob, SourceKeyID: rn.sourceKeyID, SourceEncryptionContext: src,
		DestinationKeyID: rn.dest, DestinationEncryptionContext: dst,
		GrantTokens: rn.kr.Spec.GrantTokens, DryRun: rn.kr.Spec.DryRun,
	}
	out, err := rn.call(ctx, in)
	if rn.kr.Spec.DryRun && kms.CodeOf(err) == kms.CodeDryRunOperation {
		return blobOutcome{rotated: true}
	}
	if err != nil {
		switch kms.ClassOfError(err) {
		case kms.ClassFailBlob:
			return blobOutcome{failReason: reasonOf(err), failMsg: err.Error()}
		case kms.ClassStopRun:
			return blobOutcome{err: stall(reasonOf(err), "%v", err)}
		default:
			return blobOutcome{err: fmt.Errorf("ReEncrypt: %w", err)}
		}
	}
	inv := invKey{out.KeyID, out.DestinationKeyMaterialID}
	if !rn.sources[out.SourceKeyID] {
		return blobOutcome{failReason: ReasonUnexpectedSource,
			failMsg: fmt.Sprintf("the key service says the blob was under %s, which is not one of the resolved source keys; nothing was written", out.SourceKeyID)}
	}
	if out.KeyID != rn.dest {
		return blobOutcome{failReason: ReasonUnexpectedDest,
			failMsg: fmt.Sprintf("the key service re-encrypted to %s, not the resolved destination; nothing was written", out.KeyID)}
	}
	return blobOutcome{rotated: true, blob: out.CiphertextBlob, inv: inv}
}

func reasonOf(err error) string {
	if c := kms.CodeOf(err); c != "" {
		return string(c)
	}
	return "InternalError"
}

// retry policy for transient key service errors (throttling, timeouts).
const (
	maxAttempts  = 6
	retryBackoff = 50 * time.Millisecond
)

// call is ReEncrypt with retries, with jittered exponential backoff, for the
// errors that are worth retrying.
func (rn *run) call(ctx context.Context, in *kms.ReEncryptInput) (*kms.ReEncryptOutput, error) {
	var err error
	for attempt := range maxAttempts {
		start := time.Now()
		var out *kms.ReEncryptOutput
		out, err = rn.ks.ReEncrypt(ctx, in)
		metricLatency.WithLabelValues(rn.ks.Name()).Observe(time.Since(start).Seconds())
		if err == nil || kms.ClassOfError(err) != kms.ClassRetry || errors.Is(err, context.Canceled) {
			return out, err
		}
		metricRetries.WithLabelValues(reasonOf(err)).Inc()
		wait := retryBackoff<<attempt + time.Duration(rand.Int64N(int64(retryBackoff)))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
	return nil, err
}
