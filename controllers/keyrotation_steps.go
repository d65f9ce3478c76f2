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
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	rekeyv1alpha1 "github.com/rekey-dev/rekey/api/v1alpha1"
	"github.com/rekey-dev/rekey/internal/secretpage"
)

// run is what one reconcile knows about the rotation it works on, and the
// Events it will send once its checkpoint is saved.
type run struct {
	kr        *rekeyv1alpha1.KeyRotation
	ks        KeyService
	inspector BlobInspector // nil when blobs are opaque (AWS)
	selector  labels.Selector
	sources   map[string]bool // pinned source key ARNs
	// sourceKeyID is sent as ReEncrypt's SourceKeyId when exactly one
	// source is declared: the pinned ARN, never the alias.
	sourceKeyID string
	// sourceOrder are the pinned source ARNs, sorted: with several and
	// opaque blobs, each is named as SourceKeyId in turn, starting from
	// the one that last matched (lastSource), so the key service itself
	// refuses a blob under any other key.
	sourceOrder []string
	lastSource  atomic.Int32
	dest        string

	events []pendingEvent
	// committedPage is set when the reconcile committed a page (its page
	// listed ahead, if any, is kept for the next one).
	committedPage bool
}

type pendingEvent struct {
	eventType, reason, action, note string
	// secret, when set, is the Secret the Event is about: its "related"
	// object, which also keeps the recorder from folding the failures of
	// different Secrets into one Event series.
	secret string
}

// event queues an Event; it is sent only after the status patch that
// records what it reports has succeeded.
func (rn *run) event(eventType, reason, action, format string, args ...any) {
	rn.events = append(rn.events, pendingEvent{eventType: eventType, reason: reason, action: action, note: fmt.Sprintf(format, args...)})
}

// secretEvent queues an Event about one Secret.
func (rn *run) secretEvent(secret, eventType, reason, action, format string, args ...any) {
	rn.events = append(rn.events, pendingEvent{eventType: eventType, reason: reason, action: action,
		note: fmt.Sprintf(format, args...), secret: secret})
}

// runID is the id of the run in progress.
func (rn *run) runID() string {
	if rn.kr.Status.Run == nil {
		return ""
	}
	return rn.kr.Status.Run.ID
}

// connect selects the key service, refreshes it and resolves the keys. The
// keys are resolved once per run and pinned in status (a repointed alias
// cannot change a running rotation), but the key policy (the keys'
// namespaces) is checked against the key service at every reconcile, for
// every pinned key: status is a record, never an authority. checkPolicy is
// false only for the read-only re-verification of a finished run, which
// makes no key operation for the namespace.
func (r *KeyRotationReconciler) connect(ctx context.Context, rn *run, checkPolicy bool) error {
	kr := rn.kr
	sel, err := metav1.LabelSelectorAsSelector(kr.Spec.SecretSelector)
	if err != nil {
		return &stallError{Reason: ReasonInvalidSelector, Err: err, Terminal: true}
	}
	if kr.Spec.SecretSelector == nil {
		sel = labels.Everything()
	}
	rn.selector = sel
	ks, err := r.KeyServices.For(ctx, kr)
	if err != nil {
		return asStepError(err, "selecting the key service")
	}
	rn.ks = ks
	if in, ok := ks.(BlobInspector); ok {
		rn.inspector = in
	}
	if err := ks.Refresh(ctx); err != nil {
		return asStepError(err, "refreshing the key service")
	}
	dest, srcs := kr.Status.ResolvedDestinationKeyARN, kr.Status.ResolvedSourceKeyARNs
	pinned := dest != ""
	if !pinned {
		if dest, srcs, err = resolveKeys(ctx, rn); err != nil {
			return err
		}
	}
	if checkPolicy && !r.IgnoreKeyNamespaces {
		// Named as the spec names them while they are not pinned yet: the
		// ARN of a key the namespace may not use is not shown to it.
		names := append([]string{dest}, srcs...)
		if !pinned {
			names = append([]string{kr.Spec.DestinationKeyID}, kr.Spec.SourceKeyIDs...)
		}
		for i, arn := range append([]string{dest}, srcs...) {
			name := arn
			if i < len(names) {
				name = names[i]
			}
			if err := allowsNamespace(ctx, ks, arn, name, kr.Namespace); err != nil {
				return err
			}
		}
	}
	if !pinned { // only keys the namespace may use are pinned
		kr.Status.ResolvedDestinationKeyARN, kr.Status.ResolvedSourceKeyARNs = dest, srcs
	}
	rn.dest = dest
	rn.sources = map[string]bool{}
	for _, s := range srcs {
		rn.sources[s] = true
	}
	if len(srcs) == 1 {
		rn.sourceKeyID = srcs[0]
	}
	rn.sourceOrder = slices.Sorted(maps.Keys(rn.sources))
	return nil
}

// resolveKeys resolves the spec's key ids to ARNs. A key that does not
// resolve stalls the run.
func resolveKeys(ctx context.Context, rn *run) (dest string, srcs []string, err error) {
	kr := rn.kr
	describe := func(id string) (string, error) {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		arn, _, err := rn.ks.DescribeKey(cctx, id)
		if err != nil {
			return "", asStepError(err, "resolving key "+id)
		}
		return arn, nil
	}
	if dest, err = describe(kr.Spec.DestinationKeyID); err != nil {
		return "", nil, err
	}
	srcs = make([]string, 0, len(kr.Spec.SourceKeyIDs))
	for _, id := range kr.Spec.SourceKeyIDs {
		arn, err := describe(id)
		if err != nil {
			return "", nil, err
		}
		if !slices.Contains(srcs, arn) {
			srcs = append(srcs, arn)
		}
	}
	return dest, srcs, nil
}

// allowsNamespace is the confused-deputy guard: the operator uses a key for a
// namespace's KeyRotation only when the key's rekey.dev/namespaces tag names
// that namespace (or "*"). Whoever may tag the key decides; a namespace
// cannot grant itself a key.
func allowsNamespace(ctx context.Context, ks KeyService, arn, name, ns string) error {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	tags, err := ks.KeyTags(cctx, arn)
	if err != nil {
		return asStepError(err, "reading the tags of key "+name)
	}
	if allowed := rekeyv1alpha1.KeyNamespaces(tags[rekeyv1alpha1.KeyNamespacesTag]); slices.Contains(allowed, ns) || slices.Contains(allowed, "*") {
		return nil
	}
	return stall(ReasonKeyNotAllowed, "key %s does not allow namespace %s: its %s tag must name it (or \"*\")",
		name, ns, rekeyv1alpha1.KeyNamespacesTag)
}

// selected reports whether a Secret is one the rotation works on.
func selected(s metav1.Object) bool {
	_, ok := s.GetAnnotations()[rekeyv1alpha1.EncryptedKeysAnnotation]
	return ok
}

// listPage lists one page of the namespace's Secrets with the rotation's
// selector: whole when the page fits the lister's byte budget, metadata
// only when it does not (unrelated Secrets, however large, never enter the
// heap). metadataOnly skips the whole listing.
func (r *KeyRotationReconciler) listPage(ctx context.Context, rn *run, cont string, metadataOnly bool) (*secretpage.Page, error) {
	return r.Pages.Page(ctx, secretpage.Request{Namespace: rn.kr.Namespace, Selector: rn.selector,
		Limit: r.PageSize, Continue: cont, MetadataOnly: metadataOnly})
}

// getSecret returns a listed Secret: as listed when the page was whole;
// otherwise read on its own, at least as new as the listing saw it (the
// apiserver serves that from its watch cache).
func (r *KeyRotationReconciler) getSecret(ctx context.Context, it *secretpage.Item) (*corev1.Secret, error) {
	if it.Secret != nil {
		return it.Secret, nil
	}
	s := &corev1.Secret{}
	err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: it.Meta.Namespace, Name: it.Meta.Name}, s,
		&client.GetOptions{Raw: &metav1.GetOptions{ResourceVersion: it.Meta.ResourceVersion}})
	return s, err
}

// start begins the work of a run: it counts the selected Secrets from their
// metadata alone, so progress has a denominator, and sets StartTime. Once
// per run; sends Started.
func (r *KeyRotationReconciler) start(ctx context.Context, rn *run) error {
	kr := rn.kr
	if kr.Status.StartTime != nil {
		return nil
	}
	var total int64
	for cont := ""; ; {
		list, err := r.listPage(ctx, rn, cont, true)
		if err != nil {
			return asStepError(err, "counting Secrets")
		}
		for i := range list.Items {
			if selected(&list.Items[i].Meta) {
				total++
			}
		}
		if cont = list.Continue; cont == "" {
			break
		}
	}
	now := metav1.NewTime(r.Clock())
	kr.Status.StartTime = &now
	kr.Status.Secrets.Total = total
	if kr.Spec.DryRun {
		rn.event(corev1.EventTypeNormal, ReasonStarted, "Start",
			"dry run %s: planning over %d Secrets from %v to %s with the %s key service; nothing will be written",
			rn.runID(), total, kr.Status.ResolvedSourceKeyARNs, rn.dest, rn.ks.Name())
		return nil
	}
	rn.event(corev1.EventTypeNormal, ReasonStarted, "Start", "run %s: rotating %d Secrets from %v to %s with the %s key service",
		rn.runID(), total, kr.Status.ResolvedSourceKeyARNs, rn.dest, rn.ks.Name())
	return nil
}

// pageTally adds up the outcomes of one page; it is committed to status only
// when the whole page is done, so a page cut short is redone in full and
// counted once (the Secrets it wrote carry the run's mark).
type pageTally struct {
	mu       sync.Mutex
	secrets  rekeyv1alpha1.SecretCounts
	blobs    rekeyv1alpha1.BlobCounts
	failures []rekeyv1alpha1.Failure
	ok       map[string]bool // Secrets that went through
	sample   []string        // Secrets a dry run would rotate
	err      error
	cancel   context.CancelFunc
}

func (t *pageTally) add(res secretResult) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.err != nil {
		return // the page is aborting: nothing more counts
	}
	if res.err != nil {
		t.err = res.err
		t.cancel() // stop the page at once: no further KMS call for it
		return
	}
	switch res.kind {
	case resultRotated:
		t.secrets.Rotated++
	case resultWouldRotate:
		t.secrets.WouldRotate++
		t.sample = append(t.sample, res.secret)
	case resultSkipped:
		t.secrets.Skipped++
	case resultFailed:
		t.secrets.Failed++
	}
	if res.kind != resultFailed {
		t.ok[res.secret] = true
	}
	t.blobs.Total += res.blobs.Total
	t.blobs.Rotated += res.blobs.Rotated
	t.blobs.WouldRotate += res.blobs.WouldRotate
	t.blobs.Skipped += res.blobs.Skipped
	t.blobs.Failed += res.blobs.Failed
	if res.failure != nil {
		t.failures = append(t.failures, *res.failure)
	}
}

// forEach runs fn on the selected items on n workers. Before each item it
// stops dispatching when ctx is done or stop says so; items already handed
// to a worker finish. Reports whether every selected item was dispatched.
func forEach(ctx context.Context, items []secretpage.Item, n int, stop func() bool, fn func(*secretpage.Item)) bool {
	work := make(chan *secretpage.Item)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for m := range work {
				fn(m)
			}
		})
	}
	complete := true
	for i := range items {
		if !selected(&items[i].Meta) {
			continue
		}
		if ctx.Err() != nil || stop() {
			complete = false
			break
		}
		select {
		case work <- &items[i]:
		case <-ctx.Done():
			complete = false
		}
		if !complete {
			break
		}
	}
	close(work)
	wg.Wait()
	return complete
}

// interrupted reports why the run must stop between Secrets: the rotation
// was paused, deleted, or its spec changed (a new run begins). It reads the
// manager's cache, so checking before every Secret costs no request.
func (r *KeyRotationReconciler) interrupted(ctx context.Context, rn *run) string {
	live := &rekeyv1alpha1.KeyRotation{}
	if err := r.Live.Get(ctx, client.ObjectKeyFromObject(rn.kr), live); err != nil {
		if apierrors.IsNotFound(err) {
			return "deleted"
		}
		return ""
	}
	switch {
	case live.UID != rn.kr.UID:
		return "deleted"
	case live.Spec.Paused:
		return "paused"
	case specDigest(live.Spec) != rn.kr.Status.Run.SpecDigest:
		return "spec changed"
	}
	return ""
}

// processPage lists the next page of Secrets (whole, or metadata only when
// the page exceeds the lister's byte budget: memory is bounded by bytes,
// not by the page), rotates the selected Secrets on a bounded pool of
// workers (each one re-encrypted and written on its own), and
// commits the page's counts and continue token to status. A stop-the-run
// error stops the page at once; a pause or spec change stops it between
// Secrets; either way nothing of the page is committed. Reports whether the
// listing is complete.
func (r *KeyRotationReconciler) processPage(ctx context.Context, rn *run) (bool, error) {
	kr := rn.kr
	st := &kr.Status
	start := time.Now()
	list, prefetched, err := r.takePrefetch(ctx, rn, st.Continue)
	if !prefetched {
		list, err = r.listPage(ctx, rn, st.Continue, false)
	}
	if apierrors.IsResourceExpired(err) {
		// The continue token outlived etcd's compaction: list again from the
		// start and count again; Secrets this run already rotated carry its
		// mark and count as rotated without being written again.
		restartPass(kr)
		rn.event(corev1.EventTypeNormal, ReasonListRestarted, "List", "the list checkpoint expired; counting again from the first Secret")
		return false, nil
	}
	if err != nil {
		return false, asStepError(err, "listing Secrets")
	}

	if list.Continue != "" {
		r.startPrefetch(ctx, rn, list.Continue)
	}

	pageCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	tally := &pageTally{ok: map[string]bool{}, cancel: cancel}
	why := ""
	complete := forEach(pageCtx, list.Items, int(cmp.Or(kr.Spec.MaxConcurrency, 8)),
		func() bool { why = r.interrupted(ctx, rn); return why != "" },
		func(it *secretpage.Item) { tally.add(r.rotateSecret(pageCtx, rn, it)) })
	if tally.err != nil {
		return false, tally.err
	}
	if err := ctx.Err(); err != nil {
		return false, asStepError(err, "rotating a page")
	}
	if !complete {
		logf.FromContext(ctx).Info("page interrupted between Secrets; it will be redone", "why", why)
		return false, nil
	}

	st.Secrets.Rotated += tally.secrets.Rotated
	st.Secrets.WouldRotate += tally.secrets.WouldRotate
	st.Secrets.Skipped += tally.secrets.Skipped
	st.Secrets.Failed += tally.secrets.Failed
	st.Blobs.Total += tally.blobs.Total
	st.Blobs.Rotated += tally.blobs.Rotated
	st.Blobs.WouldRotate += tally.blobs.WouldRotate
	st.Blobs.Skipped += tally.blobs.Skipped
	st.Blobs.Failed += tally.blobs.Failed
	clearFailures(kr, tally.ok)
	for _, f := range tally.failures {
		// Events and status.failures share one bound, so a namespace of bad
		// blobs cannot flood the cluster with Events; the counts stay exact.
		if addFailure(kr, f) {
			if f.Key != "" {
				rn.secretEvent(f.Secret, corev1.EventTypeWarning, f.Reason, "Rotate", "Secret %s, key %s: %s", f.Secret, f.Key, f.Message)
			} else {
				rn.secretEvent(f.Secret, corev1.EventTypeWarning, f.Reason, "Rotate", "Secret %s: %s", f.Secret, f.Message)
			}
		}
	}
	slices.Sort(tally.sample)
	for _, name := range tally.sample {
		if len(st.DryRunSample) < maxDryRunSample {
			st.DryRunSample = append(st.DryRunSample, name)
		}
	}
	if d := done(st.Secrets); d > st.Secrets.Total {
		st.Secrets.Total = d // Secrets created since the count
	}
	metricSecretsRemaining.WithLabelValues(kr.Namespace, kr.Name).Set(float64(max(0, st.Secrets.Total-done(st.Secrets))))
	st.Continue = list.Continue
	rn.committedPage = true
	logf.FromContext(ctx).V(1).Info("page done", "secrets", len(list.Items), "whole", list.Whole, "prefetched", prefetched, "rotated", tally.secrets.Rotated,
		"took", time.Since(start).Round(time.Millisecond))
	return list.Continue == "", nil
}

// restartPass starts the listing over within the same run. Failures stay
// (deduplicated; those of Secrets that then go through are dropped).
func restartPass(kr *rekeyv1alpha1.KeyRotation) {
	st := &kr.Status
	st.Secrets = rekeyv1alpha1.SecretCounts{Total: st.Secrets.Total}
	st.Blobs = rekeyv1alpha1.BlobCounts{}
	st.Continue, st.DryRunSample = "", nil
}

// maxDryRunSample bounds status.dryRunSample.
const maxDryRunSample = 10

// finish ends a run whose listing is complete: phase Succeeded, or Failed
// when any Secret failed (never silently Succeeded), and Ready.
// SourceKeysDrained stays Unknown until the verification that alone decides
// it has read the Secrets (the next reconcile).
func (r *KeyRotationReconciler) finish(rn *run) {
	kr := rn.kr
	st := &kr.Status
	st.Secrets.Total = done(st.Secrets)
	now := metav1.NewTime(r.Clock())
	st.CompletionTime = &now
	setProgress(kr)
	summary := fmt.Sprintf("%d Secrets rotated, %d skipped, %d failed; %d blobs re-encrypted",
		st.Secrets.Rotated, st.Secrets.Skipped, st.Secrets.Failed, st.Blobs.Rotated)
	if kr.Spec.DryRun {
		summary = fmt.Sprintf("dry run: would re-encrypt %d Secrets (%d blobs); %d skipped, %d would fail; this dry run wrote nothing",
			st.Secrets.WouldRotate, st.Blobs.WouldRotate, st.Secrets.Skipped, st.Secrets.Failed)
	}
	switch {
	case st.Secrets.Failed > 0:
		st.Phase = rekeyv1alpha1.PhaseFailed
		msg := summary + "; see status.failures"
		markStalled(kr, ReasonSecretsFailed, msg)
		rn.event(corev1.EventTypeWarning, ReasonSecretsFailed, "Complete", "%s", msg)
	case kr.Spec.DryRun:
		st.Phase = rekeyv1alpha1.PhaseSucceeded
		markDone(kr, ReasonDryRunComplete, summary)
		rn.event(corev1.EventTypeNormal, ReasonDryRunComplete, "Complete", "%s", summary)
	default:
		st.Phase = rekeyv1alpha1.PhaseSucceeded
		markDone(kr, ReasonSucceeded, summary)
		rn.event(corev1.EventTypeNormal, ReasonSucceeded, "Complete", "%s", summary)
	}
	metricSecretsRemaining.DeleteLabelValues(kr.Namespace, kr.Name)
	setCondition(kr, rekeyv1alpha1.ConditionSourceKeysDrained, metav1.ConditionUnknown, ReasonVerificationPending,
		"the run has written its last Secret; a read of the selected Secrets will tell")
}
