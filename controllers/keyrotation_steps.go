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
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	rekeyv1alpha1 "github.com/rekey-dev/rekey/api/v1alpha1"
	"github.com/rekey-dev/rekey/internal/kms"
)

// run is what one reconcile knows about the rotation it works on.
type run struct {
	kr        *rekeyv1alpha1.KeyRotation
	ks        KeyService
	inspector BlobInspector // nil when blobs are opaque (AWS)
	selector  labels.Selector
	sources   map[string]bool // pinned source key ARNs
	// sourceKeyID is sent as ReEncrypt's SourceKeyId when exactly one
	// source is declared: the pinned ARN, never the alias.
	sourceKeyID string
	dest        string
}

// resolveKeys resolves the source and destination keys once, at the start
// of a run, and pins their ARNs in status: a repointed alias cannot change a
// running rotation. Later reconciles use the pinned ARNs. Sets no condition;
// a key that does not resolve stalls the run.
func (r *KeyRotationReconciler) resolveKeys(ctx context.Context, kr *rekeyv1alpha1.KeyRotation, ks KeyService) (*run, error) {
	sel, err := metav1.LabelSelectorAsSelector(kr.Spec.SecretSelector)
	if err != nil {
		return nil, &stallError{Reason: ReasonInvalidSelector, Message: err.Error(), Terminal: true}
	}
	if kr.Spec.SecretSelector == nil {
		sel = labels.Everything()
	}
	rn := &run{kr: kr, ks: ks, selector: sel, sources: map[string]bool{}}
	if in, ok := ks.(BlobInspector); ok {
		rn.inspector = in
	}
	describe := func(id string) (string, error) {
		arn, _, err := ks.DescribeKey(ctx, id)
		if err != nil {
			if kms.ClassOfError(err) == kms.ClassRetry {
				return "", fmt.Errorf("resolving key %s: %w", id, err)
			}
			return "", stall(reasonOf(err), "key %s: %v", id, err)
		}
		return arn, nil
	}
	if kr.Status.ResolvedDestinationKeyARN == "" {
		dest, err := describe(kr.Spec.DestinationKeyID)
		if err != nil {
			return nil, err
		}
		srcs := make([]string, 0, len(kr.Spec.SourceKeyIDs))
		for _, id := range kr.Spec.SourceKeyIDs {
			arn, err := describe(id)
			if err != nil {
				return nil, err
			}
			if !slices.Contains(srcs, arn) {
				srcs = append(srcs, arn)
			}
		}
		if !r.IgnoreKeyNamespaces {
			for _, arn := range append([]string{dest}, srcs...) {
				if err := allowsNamespace(ctx, ks, arn, kr.Namespace); err != nil {
					return nil, err
				}
			}
		}
		kr.Status.ResolvedDestinationKeyARN, kr.Status.ResolvedSourceKeyARNs = dest, srcs
	}
	rn.dest = kr.Status.ResolvedDestinationKeyARN
	for _, s := range kr.Status.ResolvedSourceKeyARNs {
		rn.sources[s] = true
	}
	if len(kr.Status.ResolvedSourceKeyARNs) == 1 {
		rn.sourceKeyID = kr.Status.ResolvedSourceKeyARNs[0]
	}
	return rn, nil
}

// allowsNamespace is the confused-deputy guard: the operator uses a key for a
// namespace's KeyRotation only when the key's rekey.dev/namespaces tag names
// that namespace (or "*"). Whoever may tag the key decides; a namespace
// cannot grant itself a key. Checked once, when the keys are pinned.
func allowsNamespace(ctx context.Context, ks KeyService, arn, ns string) error {
	tags, err := ks.KeyTags(ctx, arn)
	if err != nil {
		if kms.ClassOfError(err) == kms.ClassRetry {
			return fmt.Errorf("reading the tags of key %s: %w", arn, err)
		}
		return stall(reasonOf(err), "reading the tags of key %s: %v", arn, err)
	}
	for n := range strings.SplitSeq(tags[rekeyv1alpha1.KeyNamespacesTag], ",") {
		if n = strings.TrimSpace(n); n == ns || n == "*" {
			return nil
		}
	}
	return stall(ReasonKeyNotAllowed, "key %s does not allow namespace %s: its %s tag must name it (or \"*\")",
		arn, ns, rekeyv1alpha1.KeyNamespacesTag)
}

// selected reports whether a Secret is one the rotation works on.
func selected(s metav1.Object) bool {
	_, ok := s.GetAnnotations()[rekeyv1alpha1.EncryptedKeysAnnotation]
	return ok
}

// start begins a run: it counts the selected Secrets from their metadata
// alone (page by page; no data is read), so progress has a denominator, and
// sets phase Running and StartTime. Runs once per run.
func (r *KeyRotationReconciler) start(ctx context.Context, kr *rekeyv1alpha1.KeyRotation, rn *run) error {
	if kr.Status.StartTime != nil {
		return nil
	}
	var total int64
	cont := ""
	for {
		list := &metav1.PartialObjectMetadataList{}
		list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("SecretList"))
		err := r.APIReader.List(ctx, list, client.InNamespace(kr.Namespace), client.Limit(500),
			client.Continue(cont), client.MatchingLabelsSelector{Selector: rn.selector})
		if err != nil {
			return fmt.Errorf("counting Secrets: %w", err)
		}
		for i := range list.Items {
			if selected(&list.Items[i]) {
				total++
			}
		}
		if cont = list.Continue; cont == "" {
			break
		}
	}
	now := metav1.NewTime(r.Clock())
	kr.Status.StartTime = &now
	kr.Status.Phase = rekeyv1alpha1.PhaseRunning
	kr.Status.Secrets.Total = total
	r.event(kr, corev1.EventTypeNormal, ReasonStarted, "Start",
		"rotating %d Secrets from %v to %s with the %s key service", total, kr.Status.ResolvedSourceKeyARNs, kr.Status.ResolvedDestinationKeyARN, rn.ks.Name())
	return nil
}

// pageTally adds up the outcomes of one page; it is committed to status only
// when the whole page is done, so a page cut short is redone in full and
// counted once.
type pageTally struct {
	mu        sync.Mutex
	secrets   rekeyv1alpha1.SecretCounts
	blobs     rekeyv1alpha1.BlobCounts
	failures  []rekeyv1alpha1.Failure
	rotated   []string // names of the Secrets rotated (or, in a dry run, to rotate)
	inventory map[invKey]int64
	err       error
}

type invKey struct{ arn, material string }

func (t *pageTally) add(res secretResult) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if res.err != nil {
		if t.err == nil {
			t.err = res.err
		}
		return
	}
	switch res.kind {
	case resultRotated:
		t.secrets.Rotated++
		t.rotated = append(t.rotated, res.secret)
	case resultSkipped:
		t.secrets.Skipped++
	case resultFailed:
		t.secrets.Failed++
	}
	t.blobs.Total += res.blobs.Total
	t.blobs.Rotated += res.blobs.Rotated
	t.blobs.Skipped += res.blobs.Skipped
	t.blobs.Failed += res.blobs.Failed
	if res.failure != nil {
		t.failures = append(t.failures, *res.failure)
	}
	for k, n := range res.inventory {
		t.inventory[k] += n
	}
}

// processPage lists the next page of Secrets (limit/continue, straight from
// the apiserver), rotates the selected ones on a bounded pool of workers, and
// commits the page's counts and continue token to status. Reports whether
// the listing is complete.
func (r *KeyRotationReconciler) processPage(ctx context.Context, kr *rekeyv1alpha1.KeyRotation, rn *run) (bool, error) {
	start := time.Now()
	list := &corev1.SecretList{}
	err := r.APIReader.List(ctx, list, client.InNamespace(kr.Namespace), client.Limit(r.PageSize),
		client.Continue(kr.Status.Continue), client.MatchingLabelsSelector{Selector: rn.selector})
	if apierrors.IsResourceExpired(err) {
		// The continue token outlived etcd's compaction: list again from the
		// start and count again; Secrets this run already rotated carry its
		// mark and count as rotated without being written again.
		restartPass(kr)
		r.event(kr, corev1.EventTypeNormal, ReasonListRestarted, "List", "the list checkpoint expired; counting again from the first Secret")
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("listing Secrets: %w", err)
	}

	listed := time.Since(start)
	tally := &pageTally{inventory: map[invKey]int64{}}
	workers := int(cmp.Or(kr.Spec.MaxConcurrency, 8))
	work := make(chan *corev1.Secret)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range work {
				tally.add(r.rotateSecret(ctx, rn, s))
			}
		}()
	}
	for i := range list.Items {
		if selected(&list.Items[i]) {
			work <- &list.Items[i]
		}
	}
	close(work)
	wg.Wait()
	if tally.err != nil {
		return false, tally.err
	}

	st := &kr.Status
	st.Secrets.Rotated += tally.secrets.Rotated
	st.Secrets.Skipped += tally.secrets.Skipped
	st.Secrets.Failed += tally.secrets.Failed
	st.Blobs.Total += tally.blobs.Total
	st.Blobs.Rotated += tally.blobs.Rotated
	st.Blobs.Skipped += tally.blobs.Skipped
	st.Blobs.Failed += tally.blobs.Failed
	for _, f := range tally.failures {
		// Events and status.failures share one bound, so a namespace of bad
		// blobs cannot flood the cluster with Events; the counts stay exact.
		if len(kr.Status.Failures) < maxFailures {
			r.event(kr, corev1.EventTypeWarning, f.Reason, "ReEncrypt", "Secret %s, key %s: %s", f.Secret, f.Key, f.Message)
		}
		addFailure(kr, f)
	}
	mergeInventory(kr, tally.inventory)
	if kr.Spec.DryRun {
		slices.Sort(tally.rotated)
		for _, name := range tally.rotated {
			if len(st.DryRunSample) < maxDryRunSample {
				st.DryRunSample = append(st.DryRunSample, name)
			}
		}
	}
	if done := st.Secrets.Rotated + st.Secrets.Skipped + st.Secrets.Failed; done > st.Secrets.Total {
		st.Secrets.Total = done // Secrets created since the count
	}
	metricSecretsRemaining.WithLabelValues(kr.Namespace, kr.Name).Set(float64(remaining(kr)))
	st.Continue = list.Continue
	logf.FromContext(ctx).V(1).Info("page done", "secrets", len(list.Items), "rotated", tally.secrets.Rotated,
		"list", listed.Round(time.Millisecond), "total", time.Since(start).Round(time.Millisecond))
	return list.Continue == "", nil
}

func remaining(kr *rekeyv1alpha1.KeyRotation) int64 {
	s := kr.Status.Secrets
	return max(0, s.Total-s.Rotated-s.Skipped-s.Failed)
}

func restartPass(kr *rekeyv1alpha1.KeyRotation) {
	st := &kr.Status
	total := st.Secrets.Total
	st.Secrets = rekeyv1alpha1.SecretCounts{Total: total}
	st.Blobs = rekeyv1alpha1.BlobCounts{}
	st.Failures, st.Inventory, st.Continue, st.DryRunSample = nil, nil, "", nil
}

// maxDryRunSample bounds status.dryRunSample.
const maxDryRunSample = 10

// maxInventory bounds status.inventory.
const maxInventory = 50

func mergeInventory(kr *rekeyv1alpha1.KeyRotation, add map[invKey]int64) {
	for k, n := range add {
		i := slices.IndexFunc(kr.Status.Inventory, func(e rekeyv1alpha1.InventoryEntry) bool {
			return e.KeyARN == k.arn && e.KeyMaterialID == k.material
		})
		switch {
		case i >= 0:
			kr.Status.Inventory[i].Blobs += n
		case len(kr.Status.Inventory) < maxInventory:
			kr.Status.Inventory = append(kr.Status.Inventory, rekeyv1alpha1.InventoryEntry{KeyARN: k.arn, KeyMaterialID: k.material, Blobs: n})
		}
	}
	slices.SortFunc(kr.Status.Inventory, func(a, b rekeyv1alpha1.InventoryEntry) int {
		return cmp.Or(cmp.Compare(a.KeyARN, b.KeyARN), cmp.Compare(a.KeyMaterialID, b.KeyMaterialID))
	})
}

// finish ends a run whose listing is complete: phase Succeeded, or Failed
// when any Secret failed (never silently Succeeded); Ready; and
// SourceKeysDrained from the inventory of blobs.
func (r *KeyRotationReconciler) finish(ctx context.Context, kr *rekeyv1alpha1.KeyRotation, rn *run) {
	st := &kr.Status
	st.Secrets.Total = st.Secrets.Rotated + st.Secrets.Skipped + st.Secrets.Failed
	now := metav1.NewTime(r.Clock())
	st.CompletionTime = &now
	setProgress(kr)
	meta.RemoveStatusCondition(&st.Conditions, rekeyv1alpha1.ConditionReconciling)
	summary := fmt.Sprintf("%d Secrets rotated, %d skipped, %d failed; %d blobs re-encrypted",
		st.Secrets.Rotated, st.Secrets.Skipped, st.Secrets.Failed, st.Blobs.Rotated)
	switch {
	case st.Secrets.Failed > 0:
		st.Phase = rekeyv1alpha1.PhaseFailed
		msg := fmt.Sprintf("%s; see status.failures", summary)
		setCondition(kr, rekeyv1alpha1.ConditionReady, metav1.ConditionFalse, ReasonSecretsFailed, msg)
		setCondition(kr, rekeyv1alpha1.ConditionStalled, metav1.ConditionTrue, ReasonSecretsFailed, msg)
		r.event(kr, corev1.EventTypeWarning, ReasonSecretsFailed, "Complete", "%s", msg)
	case kr.Spec.DryRun:
		st.Phase = rekeyv1alpha1.PhaseSucceeded
		msg := fmt.Sprintf("dry run: %d Secrets (%d blobs) would be rotated, %d skipped; nothing was written",
			st.Secrets.Rotated, st.Blobs.Rotated, st.Secrets.Skipped)
		setCondition(kr, rekeyv1alpha1.ConditionReady, metav1.ConditionTrue, ReasonDryRunComplete, msg)
		meta.RemoveStatusCondition(&st.Conditions, rekeyv1alpha1.ConditionStalled)
		r.event(kr, corev1.EventTypeNormal, ReasonDryRunComplete, "Complete", "%s", msg)
	default:
		st.Phase = rekeyv1alpha1.PhaseSucceeded
		setCondition(kr, rekeyv1alpha1.ConditionReady, metav1.ConditionTrue, ReasonSucceeded, summary)
		meta.RemoveStatusCondition(&st.Conditions, rekeyv1alpha1.ConditionStalled)
		r.event(kr, corev1.EventTypeNormal, ReasonSucceeded, "Complete", "%s", summary)
	}
	setDrained(ctx, kr, rn)
	metricSecretsRemaining.DeleteLabelValues(kr.Namespace, kr.Name)
}

// setDrained sets SourceKeysDrained: True only when no selected blob is under
// a source key any more (for a same-key rotation: under an older version).
func setDrained(ctx context.Context, kr *rekeyv1alpha1.KeyRotation, rn *run) {
	st := &kr.Status
	set := func(s metav1.ConditionStatus, reason, msg string) {
		setCondition(kr, rekeyv1alpha1.ConditionSourceKeysDrained, s, reason, msg)
	}
	switch {
	case kr.Spec.DryRun:
		set(metav1.ConditionFalse, ReasonDrainUnknown, "dry run: nothing was re-encrypted")
		return
	case st.Blobs.Failed > 0 || st.Secrets.Failed > 0:
		set(metav1.ConditionFalse, ReasonNotDrained, fmt.Sprintf("%d blobs failed and may still be under a source key", st.Blobs.Failed))
		return
	case rn.inspector == nil:
		set(metav1.ConditionTrue, ReasonDrained, "every selected blob was re-encrypted to the destination key")
		return
	}
	// The destination's current version, asked once, when the run ends.
	_, destCurrent, err := rn.ks.DescribeKey(ctx, rn.dest)
	if err != nil {
		set(metav1.ConditionUnknown, ReasonDrainUnknown, fmt.Sprintf("describing the destination key: %v", err))
		return
	}
	var under int64
	for _, e := range st.Inventory {
		atDest := e.KeyARN == rn.dest && e.KeyMaterialID == destCurrent
		if rn.sources[e.KeyARN] && !atDest {
			under += e.Blobs
		}
	}
	if under > 0 {
		set(metav1.ConditionFalse, ReasonNotDrained, fmt.Sprintf("%d selected blobs are still under a source key", under))
		return
	}
	set(metav1.ConditionTrue, ReasonDrained, "no selected blob is under a source key")
}
