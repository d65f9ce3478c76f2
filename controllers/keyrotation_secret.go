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
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
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
	"github.com/rekey-dev/rekey/internal/secretpage"
)

type resultKind int

const (
	resultSkipped resultKind = iota
	resultRotated
	resultWouldRotate
	resultFailed
)

// secretResult is what happened to one Secret. err (a stall or a waiting
// error) aborts the page.
type secretResult struct {
	secret  string
	kind    resultKind
	blobs   rekeyv1alpha1.BlobCounts
	failure *rekeyv1alpha1.Failure
	err     error
}

// maxConflicts bounds how often one Secret is re-read and redone after
// someone else wrote it first.
const maxConflicts = 5

// maxBlobSize is the largest ciphertext blob a key service accepts (AWS
// KMS's limit for CiphertextBlob; the embedded engine's blobs are smaller).
// A larger value is refused before any call.
const maxBlobSize = 6144

// rotateSecret reads one listed Secret, re-encrypts every annotated blob
// and, only when all of them passed, writes the Secret back in one Update
// carrying the resourceVersion it read. A conflict re-reads the Secret and
// decides again; a deleted Secret is skipped. A Secret is never
// half-rotated.
func (r *KeyRotationReconciler) rotateSecret(ctx context.Context, rn *run, it *secretpage.Item) (res secretResult) {
	m := &it.Meta
	defer func() { res.secret = m.Name }()
	s, err := r.getSecret(ctx, it)
	// A whole page is a snapshot, as old as its continue token; a Secret
	// taken from one is read again before a failure is recorded against it.
	listed := it.Secret != nil
	for attempt := 1; ; attempt++ {
		switch {
		case apierrors.IsNotFound(err):
			return secretResult{kind: resultSkipped}
		case err != nil:
			return secretResult{err: asStepError(err, "reading Secret "+m.Name)}
		case !selected(s):
			return secretResult{kind: resultSkipped} // unannotated since the listing
		}
		res, updated := rn.plan(ctx, s)
		if res.kind == resultFailed && listed {
			listed = false
			s = &corev1.Secret{}
			err = r.APIReader.Get(ctx, client.ObjectKeyFromObject(m), s)
			continue
		}
		if res.err != nil || updated == nil {
			return res
		}
		err = r.Client.Update(ctx, updated)
		switch {
		case err == nil:
			metricBlobsReEncrypted.WithLabelValues(rn.ks.Name()).Add(float64(res.blobs.Rotated))
			return res
		case apierrors.IsNotFound(err):
			return secretResult{kind: resultSkipped}
		case apierrors.IsConflict(err) && attempt >= maxConflicts:
			return failedSecret(s, "", ReasonConflictsExceeded, fmt.Sprintf("the Secret changed under the rotation %d times in a row", maxConflicts))
		case apierrors.IsConflict(err):
			s = &corev1.Secret{}
			err = r.APIReader.Get(ctx, client.ObjectKeyFromObject(m), s)
			continue
		}
		if cl, reason := classify(err); cl == classFailBlob {
			// The apiserver refuses this Secret (too large, invalid): its
			// failure, not the run's.
			return failedSecret(s, "", reason, "the apiserver refused the write: "+apiMessage(err))
		}
		return secretResult{err: asStepError(err, "writing Secret "+m.Name)}
	}
}

// apiMessage is a short form of an apiserver error's message (they name
// fields, never their values, for Secrets).
func apiMessage(err error) string {
	msg := err.Error()
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	return msg
}

// failedSecret is a failure of the whole Secret: every annotated blob of it
// counts as failed, since none was written.
func failedSecret(s *corev1.Secret, key, reason, msg string) secretResult {
	n := int64(max(1, len(annotatedKeys(s))))
	metricFailures.WithLabelValues(reason).Inc()
	return secretResult{kind: resultFailed, blobs: rekeyv1alpha1.BlobCounts{Total: n, Failed: n},
		failure: &rekeyv1alpha1.Failure{Secret: s.Name, Key: key, Reason: reason, Message: msg}}
}

// annotatedKeys returns the data keys the annotation names, sorted, whether
// or not the Secret has them.
func annotatedKeys(s *corev1.Secret) []string {
	return rekeyv1alpha1.EncryptedKeys(s.Annotations[rekeyv1alpha1.EncryptedKeysAnnotation], s.Data)
}

// dataKeys returns the annotated data keys, or an error naming one the
// Secret does not have.
func dataKeys(s *corev1.Secret) ([]string, error) {
	keys := annotatedKeys(s)
	for _, k := range keys {
		if _, ok := s.Data[k]; !ok {
			return nil, fmt.Errorf("%s names data key %q, which the Secret does not have", rekeyv1alpha1.EncryptedKeysAnnotation, k)
		}
	}
	return keys, nil
}

// contexts returns the source and destination encryption contexts: the
// spec's, else the Secret's annotation; the destination defaults to the
// source. Spec values may hold {namespace}, {name} and {key}, filled per
// blob by blobContexts. An annotation that is not a JSON object of strings,
// or has an empty key, is this Secret's failure.
func (rn *run) contexts(s *corev1.Secret) (src, dst map[string]string, err error) {
	src = rn.kr.Spec.SourceEncryptionContext
	if len(src) == 0 {
		if ann, ok := s.Annotations[rekeyv1alpha1.EncryptionContextAnnotation]; ok {
			if src, err = rekeyv1alpha1.ParseEncryptionContext(ann); err != nil {
				return nil, nil, err
			}
		}
	}
	dst = rn.kr.Spec.DestinationEncryptionContext
	if len(dst) == 0 {
		dst = src
	}
	return src, dst, nil
}

// blobContexts returns one blob's source and destination contexts.
func blobContexts(src, dst map[string]string, s *corev1.Secret, key string) (map[string]string, map[string]string) {
	bsrc := rekeyv1alpha1.ExpandEncryptionContext(src, s.Namespace, s.Name, key)
	bdst := rekeyv1alpha1.ExpandEncryptionContext(dst, s.Namespace, s.Name, key)
	if kms.SameContext(src, dst) {
		bdst = bsrc
	}
	return bsrc, bdst
}

// mark is what a run writes on each Secret it rotates.
type mark struct {
	uid, runID, digest string
	blobs              int64
}

func readMark(s *corev1.Secret) mark {
	uid, runID, _ := strings.Cut(s.Annotations[rekeyv1alpha1.RotatedByAnnotation], "/")
	n, _ := strconv.ParseInt(s.Annotations[rekeyv1alpha1.RotatedBlobsAnnotation], 10, 64)
	return mark{uid: uid, runID: runID, digest: s.Annotations[rekeyv1alpha1.RotatedDigestAnnotation], blobs: n}
}

// markDigest digests what a mark vouches for: the destination key, and
// each annotated data key with its destination context and its value. A
// Secret whose values (or the rotation's destination or context) changed
// since the mark was written no longer matches it.
func (rn *run) markDigest(s *corev1.Secret, keys []string, src, dst map[string]string) string {
	h := sha256.New()
	field := func(b []byte) {
		h.Write(binary.AppendUvarint(nil, uint64(len(b))))
		h.Write(b)
	}
	field([]byte(rn.dest))
	for _, k := range keys {
		field([]byte(k))
		_, bdst := blobContexts(src, dst, s, k)
		ctxKeys := make([]string, 0, len(bdst))
		for ck := range bdst {
			ctxKeys = append(ctxKeys, ck)
		}
		slices.Sort(ctxKeys)
		h.Write(binary.AppendUvarint(nil, uint64(len(ctxKeys))))
		for _, ck := range ctxKeys {
			field([]byte(ck))
			field([]byte(bdst[ck]))
		}
		field(s.Data[k])
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// plan re-encrypts the Secret's blobs and returns the Secret to write (nil
// when there is nothing to write). Causes that belong to this Secret (a
// missing data key, an immutable Secret, an invalid context annotation, a
// blob too large or refused by the key service) fail it alone.
func (rn *run) plan(ctx context.Context, s *corev1.Secret) (secretResult, *corev1.Secret) {
	keys, err := dataKeys(s)
	if err != nil {
		return failedSecret(s, "", ReasonMissingDataKey, err.Error()), nil
	}
	n := int64(len(keys))
	if n == 0 {
		return secretResult{kind: resultSkipped}, nil
	}
	src, dst, err := rn.contexts(s)
	if err != nil {
		return failedSecret(s, "", ReasonInvalidContext, err.Error()), nil
	}
	m := readMark(s)
	current := m.uid == string(rn.kr.UID) && m.runID == rn.runID() && m.runID != ""
	vouched := m.digest != "" && m.digest == rn.markDigest(s, keys, src, dst)
	done := min(max(m.blobs, 0), n) // the annotation is anyone's to write
	resumed := secretResult{kind: resultRotated, blobs: rekeyv1alpha1.BlobCounts{Total: n, Rotated: done, Skipped: n - done}}
	if rn.inspector == nil && vouched {
		// Opaque blobs: a mark that still matches the values is the record
		// that rekey wrote them under the destination key. This run's mark:
		// done before a restart, counted rotated once more; an earlier
		// run's: already under the destination.
		switch {
		case current:
			return resumed, nil
		case !rn.sources[rn.dest]:
			return secretResult{kind: resultSkipped, blobs: rekeyv1alpha1.BlobCounts{Total: n, Skipped: n}}, nil
		}
		// A same-key rotation: the mark does not say which version of the
		// destination the blobs are under; ReEncrypt decides.
	}
	res := secretResult{blobs: rekeyv1alpha1.BlobCounts{Total: n}}
	changed := map[string][]byte{}
	for _, k := range keys {
		if err := ctx.Err(); err != nil {
			return secretResult{err: asStepError(err, "rotating Secret "+s.Name)}, nil // the page stopped
		}
		if len(s.Data[k]) > maxBlobSize {
			return failedSecret(s, k, ReasonBlobTooLarge, fmt.Sprintf("the value is %d bytes; a ciphertext blob is at most %d: it was not sent", len(s.Data[k]), maxBlobSize)), nil
		}
		bsrc, bdst := blobContexts(src, dst, s, k)
		out := rn.reencrypt(ctx, s.Data[k], bsrc, bdst)
		switch {
		case out.err != nil:
			return secretResult{err: out.err}, nil
		case out.failReason != "":
			metricFailures.WithLabelValues(out.failReason).Inc()
			return secretResult{kind: resultFailed, blobs: rekeyv1alpha1.BlobCounts{Total: n, Failed: n},
				failure: &rekeyv1alpha1.Failure{Secret: s.Name, Key: k, Reason: out.failReason, Message: out.failMsg}}, nil
		case out.rotated:
			changed[k] = out.blob
		}
	}
	manager := "" // the GitOps tool that applies s, when that keeps it unwritten
	if rn.kr.Spec.GitOps != rekeyv1alpha1.GitOpsRotate {
		manager = gitOpsManager(s)
	}
	switch rotated := int64(len(changed)); {
	case rotated == 0 && current && vouched:
		return resumed, nil // done by this run before a restart
	case rotated == 0:
		res.kind, res.blobs.Skipped = resultSkipped, n
		return res, nil
	case s.Immutable != nil && *s.Immutable:
		return failedSecret(s, "", ReasonImmutableSecret, "the Secret is immutable: its values cannot be rewritten; recreate it to rotate it"), nil
	case manager != "":
		return failedSecret(s, "", ReasonManagedByGitOps, fmt.Sprintf("the Secret is applied from Git by %s: a write here would be undone by the next sync; "+
			"re-encrypt its manifest in Git with `rekey manifests reencrypt`, or set spec.gitOps: Rotate", manager)), nil
	case rn.kr.Spec.DryRun:
		res.kind, res.blobs.WouldRotate, res.blobs.Skipped = resultWouldRotate, rotated, n-rotated
		return res, nil
	default:
		res.kind, res.blobs.Rotated, res.blobs.Skipped = resultRotated, rotated, n-rotated
	}
	updated := s.DeepCopy()
	for k, b := range changed {
		updated.Data[k] = b
	}
	if updated.Annotations == nil {
		updated.Annotations = map[string]string{}
	}
	updated.Annotations[rekeyv1alpha1.RotatedByAnnotation] = string(rn.kr.UID) + "/" + rn.runID()
	updated.Annotations[rekeyv1alpha1.RotatedDigestAnnotation] = rn.markDigest(updated, keys, src, dst)
	updated.Annotations[rekeyv1alpha1.RotatedBlobsAnnotation] = strconv.FormatInt(res.blobs.Rotated, 10)
	return res, updated
}

// blobOutcome is what happened to one blob.
type blobOutcome struct {
	rotated    bool
	blob       []byte
	failReason string
	failMsg    string
	err        error // stall or waiting: aborts the page
}

func blobFailed(reason, format string, args ...any) blobOutcome {
	return blobOutcome{failReason: reason, failMsg: fmt.Sprintf(format, args...)}
}

// reencrypt moves one blob. Blobs in a known format are inspected first: a
// blob already under the destination key (its current version, or any
// version when the destination is not also a source) is authenticated and
// skipped; one under a key that is not a declared source is reported, not
// sent. The returned SourceKeyId must be a declared source and KeyId the
// destination.
func (rn *run) reencrypt(ctx context.Context, blob []byte, src, dst map[string]string) blobOutcome {
	if rn.inspector != nil {
		bk, err := rn.inspector.InspectBlob(blob)
		if err != nil {
			_, reason := classify(err)
			return blobFailed(reason, "%v", err)
		}
		if bk.KeyARN == rn.dest && (bk.Current || !rn.sources[rn.dest]) {
			// A header is not authenticated by itself: before a blob is
			// skipped as done, the engine opens it under the destination
			// context (the plaintext never leaves the engine).
			if _, err := rn.inspector.VerifyBlob(blob, dst); err != nil {
				if cl, reason := classify(err); cl == classFailBlob {
					return blobFailed(reason, "the blob's header names the destination key, but it does not authenticate under it with the destination encryption context (altered, forged, or written with another context)")
				}
				return blobOutcome{err: asStepError(err, "verifying a blob under the destination key")}
			}
			return blobOutcome{}
		}
		if !rn.sources[bk.KeyARN] {
			return blobFailed(ReasonUndeclaredSource, "the blob is under a key that is not one of spec.sourceKeyIds; it was not sent")
		}
	}
	in := &kms.ReEncryptInput{
		CiphertextBlob: blob, SourceKeyID: rn.sourceKeyID, SourceEncryptionContext: src,
		DestinationKeyID: rn.dest, DestinationEncryptionContext: dst,
		GrantTokens: rn.kr.Spec.GrantTokens, DryRun: rn.kr.Spec.DryRun,
	}
	out, err := rn.callEachSource(ctx, in)
	if rn.kr.Spec.DryRun && kms.CodeOf(err) == kms.CodeDryRunOperation {
		return blobOutcome{rotated: true}
	}
	if errors.Is(err, kms.ErrIncorrectKey) && rn.inspector == nil && !rn.sources[rn.dest] && rn.underDestination(ctx, blob, dst) {
		return blobOutcome{} // already moved, as the key service proved
	}
	if err != nil {
		cl, reason := classify(err)
		switch cl {
		case classFailBlob:
			return blobFailed(reason, "%v", err)
		case classStopRun:
			return blobOutcome{err: &stallError{Reason: reason, Err: fmt.Errorf("ReEncrypt: %w", err)}}
		default:
			return blobOutcome{err: &waitingError{Reason: reason, Err: fmt.Errorf("ReEncrypt: %w", err)}}
		}
	}
	if out.SourceKeyID == rn.dest && out.KeyID == rn.dest && !rn.sources[rn.dest] && kms.SameContext(src, dst) {
		return blobOutcome{} // already under the destination: keep the bytes as they are
	}
	if !rn.sources[out.SourceKeyID] {
		// The key it names may be another team's: it is not repeated here.
		return blobFailed(ReasonUnexpectedSource, "the key service says the blob was under a key that is not one of the resolved source keys; nothing was written")
	}
	if out.KeyID != rn.dest {
		return blobFailed(ReasonUnexpectedDest, "the key service re-encrypted to a key that is not the resolved destination; nothing was written")
	}
	return blobOutcome{rotated: true, blob: out.CiphertextBlob}
}

// callEachSource calls ReEncrypt with SourceKeyId naming a declared source
// key, so that the key service refuses (IncorrectKeyException) a blob
// under any other key before opening it: with one source, that one; with
// several and opaque blobs, each in turn from the one that matched last
// (most blobs of a run are under the same key). With readable headers the
// blob's key is already known to be a source. IncorrectKeyException from
// every source is returned as it is.
func (rn *run) callEachSource(ctx context.Context, in *kms.ReEncryptInput) (*kms.ReEncryptOutput, error) {
	n := len(rn.sourceOrder)
	if rn.inspector != nil || n < 2 {
		return rn.call(ctx, in)
	}
	first := int(rn.lastSource.Load())
	var out *kms.ReEncryptOutput
	var err error
	for i := range n {
		k := (first + i) % n
		in.SourceKeyID = rn.sourceOrder[k]
		out, err = rn.call(ctx, in)
		if !errors.Is(err, kms.ErrIncorrectKey) {
			if err == nil {
				rn.lastSource.Store(int32(k))
			}
			return out, err
		}
	}
	return out, err
}

// underDestination asks the key service whether an opaque blob that is not
// under the source key is under the destination already, with the
// destination context: a ReEncrypt from the destination to itself, whose
// result is thrown away. Only a success proves it; any error leaves the
// blob's own failure as it was. The blob format of such a service is
// unknown, so this is the only way to tell "already moved" from "under some
// other key" without a mark (a value rewritten beside one moved earlier).
func (rn *run) underDestination(ctx context.Context, blob []byte, dst map[string]string) bool {
	out, err := rn.call(ctx, &kms.ReEncryptInput{
		CiphertextBlob: blob, SourceKeyID: rn.dest, SourceEncryptionContext: dst,
		DestinationKeyID: rn.dest, DestinationEncryptionContext: dst, GrantTokens: rn.kr.Spec.GrantTokens,
	})
	return err == nil && out.SourceKeyID == rn.dest
}

// The one retry layer for key service calls (providers do not retry):
// transient errors (throttling, timeouts, an unreachable endpoint) are
// tried again with jittered exponential backoff, up to maxAttempts and
// retryBudget; each attempt is bounded by callTimeout. What is still
// failing then becomes a waiting error: the page is redone later, and the
// conditions say why.
const (
	maxAttempts  = 6
	retryBackoff = 50 * time.Millisecond
	callTimeout  = 10 * time.Second
	retryBudget  = 20 * time.Second
)

// call is ReEncrypt with the retry policy above.
func (rn *run) call(ctx context.Context, in *kms.ReEncryptInput) (*kms.ReEncryptOutput, error) {
	start := time.Now()
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return nil, err // the page stopped: no further call
		}
		t0 := time.Now()
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		out, err := rn.ks.ReEncrypt(cctx, in)
		cancel()
		metricLatency.WithLabelValues(rn.ks.Name()).Observe(time.Since(t0).Seconds())
		if err == nil {
			return out, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		cl, reason := classify(err)
		if cl != classRetry || attempt+1 >= maxAttempts || time.Since(start) > retryBudget {
			return nil, err
		}
		metricRetries.WithLabelValues(reason).Inc()
		wait := retryBackoff<<attempt + time.Duration(rand.Int64N(int64(retryBackoff)))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// gitOpsManager names the GitOps tool that applies a Secret from Git, by
// the marks the tools leave on what they apply, or "" for none: Argo CD's
// tracking annotation (its default since 3.0) or instance label, Flux
// kustomize-controller's and helm-controller's labels. Argo CD's label
// tracking on app.kubernetes.io/instance is not read: Helm sets that
// label too.
func gitOpsManager(s *corev1.Secret) string {
	switch {
	case s.Annotations["argocd.argoproj.io/tracking-id"] != "":
		return "Argo CD (argocd.argoproj.io/tracking-id)"
	case s.Labels["argocd.argoproj.io/instance"] != "":
		return "Argo CD (argocd.argoproj.io/instance)"
	case s.Labels["kustomize.toolkit.fluxcd.io/name"] != "":
		return "Flux (kustomize.toolkit.fluxcd.io/name)"
	case s.Labels["helm.toolkit.fluxcd.io/name"] != "":
		return "Flux (helm.toolkit.fluxcd.io/name)"
	}
	return ""
}
