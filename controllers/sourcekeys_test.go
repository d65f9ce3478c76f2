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
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	rekeyv1alpha1 "github.com/rekey-dev/rekey/api/v1alpha1"
	"github.com/rekey-dev/rekey/internal/kms"
	"github.com/rekey-dev/rekey/internal/provider/embedded"
)

// recordingOpaque is an opaque key service (no blob headers read) that
// records the SourceKeyId of every ReEncrypt and which ones the key
// service carried out.
type recordingOpaque struct {
	opaqueKeyService
	mu    sync.Mutex
	named []string // SourceKeyId of each call
	done  []string // the blob's key, for each call that re-encrypted
}

func (r *recordingOpaque) ReEncrypt(ctx context.Context, in *kms.ReEncryptInput) (*kms.ReEncryptOutput, error) {
	out, err := r.opaqueKeyService.ReEncrypt(ctx, in)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.named = append(r.named, in.SourceKeyID)
	if err == nil && !in.DryRun {
		r.done = append(r.done, out.SourceKeyID)
	}
	return out, err
}

// With several source keys and opaque blobs, every ReEncrypt names a
// source key, so the key service refuses a blob under another key before
// opening it — it is never re-encrypted, even to be thrown away — and the
// Secret fails with the service's own IncorrectKeyException.
func TestEverySourceKeyIsNamedToTheKeyService(t *testing.T) {
	f := newFixture(t)
	old1, old2 := f.key("alias/old1"), f.key("alias/old2")
	newKey := f.key("alias/new")
	other := f.key("alias/other")
	for i, key := range []string{"alias/old1", "alias/old1", "alias/old2", "alias/old2"} {
		pt := "PLAINTEXT-" + string(rune('a'+i))
		name := "s-" + string(rune('a'+i))
		f.createSecret(name, map[string][]byte{"v": f.encrypt(key, pt, nil)}, "v")
		f.plaintexts[name+"/v"] = pt
	}
	f.createSecret("foreign", map[string][]byte{"v": f.encrypt("alias/other", "PLAINTEXT-foreign", nil)}, "v")
	ks := &recordingOpaque{opaqueKeyService: opaqueKeyService{p: embedded.New(f.engine)}}
	f.embedded = ks
	f.start(10)
	f.rotation("r", func(kr *rekeyv1alpha1.KeyRotation) {
		kr.Spec.SourceKeyIDs = []string{"alias/old1", "alias/old2"}
		kr.Spec.DestinationKeyID = "alias/new"
	})
	kr := f.wait("r", "finished", finishedRun)
	if kr.Status.Secrets != (rekeyv1alpha1.SecretCounts{Total: 5, Rotated: 4, Failed: 1}) || len(kr.Status.Failures) != 1 ||
		kr.Status.Failures[0].Secret != "foreign" || kr.Status.Failures[0].Reason != string(kms.CodeIncorrectKey) {
		t.Fatalf("%+v %+v", kr.Status.Secrets, kr.Status.Failures)
	}
	if drained(kr) == metav1.ConditionTrue {
		t.Fatal("drained while the foreign blob's key is unknown")
	}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	for _, id := range ks.named {
		if id != old1.Arn && id != old2.Arn && id != newKey.Arn {
			t.Fatalf("a ReEncrypt named SourceKeyId %q, not a declared source (or the destination, asked whether a blob moved)", id)
		}
	}
	for _, k := range ks.done {
		if k == other.Arn {
			t.Fatal("the key service re-encrypted the blob under the undeclared key")
		}
	}
	// Four blobs, at most one wrong guess each; the foreign one tried
	// under both sources and the destination, twice (a failure is judged
	// again on the Secret as it is now).
	if n := len(ks.named); n > 4*2+2*3 {
		t.Fatalf("%d ReEncrypt calls for 5 blobs", n)
	}
	f.verify(newKey, "foreign")
}
