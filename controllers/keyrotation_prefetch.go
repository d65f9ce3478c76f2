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
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/rekey-dev/rekey/internal/secretpage"
)

// prefetchTimeout bounds the listing of a prefetched page.
const prefetchTimeout = 30 * time.Second

// prefetch is the next page of a run, listed while the current one is
// written, so the apiserver is never idle between pages. It is a hint, not
// a record: it is used only by the same rotation (UID), run and continue
// token, and its Secrets are written with the resourceVersion listed, so a
// Secret changed since is re-read on the conflict like any other.
//
// It is kept only from a committed page to the rotation's next reconcile
// (a reconcile that commits no page drops it), and at most as many are
// kept as rotations reconcile at once (a slot each; with none free, no
// prefetch): memory holds at most two pages per concurrent rotation.
type prefetch struct {
	uid, runID, token string
	done              chan struct{}
	page              *secretpage.Page
	err               error
	release           func() // cancels the listing and frees the slot, once
}

// startPrefetch lists the page after token in the background, when a slot
// is free, and keeps it for the next reconcile of the rotation.
func (r *KeyRotationReconciler) startPrefetch(ctx context.Context, rn *run, token string) {
	select {
	case r.prefetchSlots <- struct{}{}:
	default:
		return // as many pages are kept as rotations run at once
	}
	// Its own deadline: the reconcile that starts it ends before it is used.
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), prefetchTimeout)
	var once sync.Once
	p := &prefetch{uid: string(rn.kr.UID), runID: rn.runID(), token: token, done: make(chan struct{}),
		release: func() { once.Do(func() { cancel(); <-r.prefetchSlots }) }}
	req := secretpage.Request{Namespace: rn.kr.Namespace, Selector: rn.selector, Limit: r.PageSize, Continue: token}
	go func() {
		defer close(p.done)
		p.page, p.err = r.Pages.Page(pctx, req)
	}()
	if old, ok := r.prefetched.Swap(client.ObjectKeyFromObject(rn.kr), p); ok {
		old.(*prefetch).release()
	}
}

// takePrefetch returns the kept page of this rotation, run and token, or
// nil; whatever was kept is dropped either way.
func (r *KeyRotationReconciler) takePrefetch(ctx context.Context, rn *run, token string) (page *secretpage.Page, ok bool, err error) {
	v, kept := r.prefetched.LoadAndDelete(client.ObjectKeyFromObject(rn.kr))
	if !kept {
		return nil, false, nil
	}
	p := v.(*prefetch)
	defer p.release()
	if p.uid != string(rn.kr.UID) || p.runID != rn.runID() || p.token != token || token == "" {
		return nil, false, nil
	}
	select {
	case <-p.done:
		// A failed prefetch (a stream reset, its own deadline) says nothing
		// about a fresh listing, which is tried instead; only an expired
		// continue token is the same answer either way.
		if p.err != nil && !apierrors.IsResourceExpired(p.err) {
			return nil, false, nil
		}
		return p.page, true, p.err
	case <-ctx.Done():
		return nil, false, nil
	}
}

// dropPrefetch forgets the kept page of a rotation.
func (r *KeyRotationReconciler) dropPrefetch(key types.NamespacedName) {
	if v, ok := r.prefetched.LoadAndDelete(key); ok {
		v.(*prefetch).release()
	}
}
