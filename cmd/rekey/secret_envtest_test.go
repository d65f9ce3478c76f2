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

package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rekeyv1alpha1 "github.com/rekey-dev/rekey/api/v1alpha1"
)

func getSecret(t *testing.T, ns, name string) *corev1.Secret {
	t.Helper()
	s := &corev1.Secret{}
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, s); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSecretCreateApply: --apply creates the Secret by server-side apply as
// field manager rekey, updates its own Secret, refuses a Secret it did not
// make unless --force, and a manifest printed to stdout is one kubectl
// applies. Then the controller itself rotates the applied Secret: it reads
// the annotations as written and re-encrypts under the context they hold.
func TestSecretCreateApply(t *testing.T) {
	adminKubeconfig(t) // also installs the CRDs
	ns := env.Namespace(t)
	ctx := context.Background()
	c := newCLI(t)
	oldARN := strings.TrimSpace(c.ok("", "key", "create", "--alias", "alias/app-2025", "--allow-namespace", ns))
	newARN := strings.TrimSpace(c.ok("", "key", "create", "--alias", "alias/app-2026", "--allow-namespace", ns))
	e := c.engine()
	ec := map[string]string{"app": "billing"}

	apply := func(args ...string) (string, string, int) {
		return c.secretCreate("", append([]string{"db", "--namespace", ns, "--key", "alias/app-2025", "--context", "app=billing", "--apply"}, args...)...)
	}
	out, errOut, code := apply("--from-literal", "password=first", "--from-literal", "token=t0k3n", "--label", "team=billing")
	if code != 0 || out != "secret/db created in namespace "+ns+" (rekey.dev/encrypted-keys: password,token)\n" {
		t.Fatalf("create: exit %d, stdout %q, stderr %s", code, out, errOut)
	}
	s := getSecret(t, ns, "db")
	checkBlobs(t, e, s, oldARN, ec, map[string]string{"password": "first", "token": "t0k3n"})
	if s.Type != corev1.SecretTypeOpaque || s.Labels["team"] != "billing" {
		t.Fatalf("type %q labels %v", s.Type, s.Labels)
	}
	if len(s.ManagedFields) != 1 || s.ManagedFields[0].Manager != fieldManager || s.ManagedFields[0].Operation != metav1.ManagedFieldsOperationApply {
		t.Fatalf("managed fields %+v", s.ManagedFields)
	}

	// The README's way to read a value back: kubectl's base64 of the blob
	// into rekey decrypt.
	kubectl := filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kubectl")
	if fileExists(kubectl) {
		b64, err := exec.Command(kubectl, "get", "secret", "db", "-n", ns, "-o", "jsonpath={.data.password}").Output()
		if err != nil {
			t.Fatal(err)
		}
		if pt := c.ok(string(b64), "decrypt", "--context", "app=billing"); pt != "first" {
			t.Fatalf("kubectl get | rekey decrypt: %d bytes", len(pt))
		}
	}

	// Its own Secret: updated, and a data key no longer given is gone.
	out, errOut, code = apply("--from-literal", "password=second")
	if code != 0 || !strings.HasPrefix(out, "secret/db updated") {
		t.Fatalf("update: exit %d, stdout %q, stderr %s", code, out, errOut)
	}
	s = getSecret(t, ns, "db")
	checkBlobs(t, e, s, oldARN, ec, map[string]string{"password": "second"})
	if _, ok := s.Labels["team"]; ok {
		t.Fatal("the label rekey no longer applies is still there")
	}

	// A Secret rekey did not make: refused, untouched; --force takes it
	// over and its other data keys stay.
	plain := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "plain", Namespace: ns}, Data: map[string][]byte{"other": []byte("kept")}}
	if err := env.Client.Create(ctx, plain); err != nil {
		t.Fatal(err)
	}
	args := []string{"plain", "--namespace", ns, "--key", "alias/app-2025", "--from-literal", "password=third", "--apply"}
	out, errOut, code = c.secretCreate("", args...)
	if code != 1 || out != "" || !strings.Contains(errOut, "the Secret "+ns+"/plain exists without the rekey.dev/encrypted-keys annotation: not writing over it (--force") {
		t.Fatalf("over a plain Secret: exit %d, stdout %q, stderr %s", code, out, errOut)
	}
	if now := getSecret(t, ns, "plain"); now.ResourceVersion != plain.ResourceVersion {
		t.Fatal("the refused Secret was written")
	}
	out, errOut, code = c.secretCreate("", append(args, "--force")...)
	if code != 0 || !strings.HasPrefix(out, "secret/plain updated") {
		t.Fatalf("--force: exit %d, stdout %q, stderr %s", code, out, errOut)
	}
	s = getSecret(t, ns, "plain")
	if string(s.Data["other"]) != "kept" || s.Annotations[rekeyv1alpha1.EncryptedKeysAnnotation] != "password" {
		t.Fatalf("after --force: annotations %v, other %q", s.Annotations, s.Data["other"])
	}
	delete(s.Data, "other")
	checkBlobs(t, e, s, oldARN, nil, map[string]string{"password": "third"})

	// stdout's manifest, applied by kubectl (server-side dry run: the
	// apiserver validates it).
	if fileExists(kubectl) {
		manifest, errOut, code := c.secretCreate("", "printed", "--namespace", ns, "--key", "alias/app-2025", "--context", "app=billing",
			"--from-literal", "password=p", "--label", "team=billing")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		cmd := exec.Command(kubectl, "apply", "--dry-run=server", "-f", "-")
		cmd.Stdin = strings.NewReader(manifest)
		if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "secret/printed created (server dry run)") {
			t.Fatalf("kubectl apply: %v\n%s", err, out)
		}
	} else {
		t.Logf("no kubectl in KUBEBUILDER_ASSETS: the printed manifest is not applied by kubectl")
	}

	// Without --namespace: the kubeconfig context's namespace, here none,
	// so default.
	out, errOut, code = c.secretCreate("", "rekey-secret-create-test", "--key", "alias/app-2025", "--from-literal", "a=b", "--apply")
	if code != 0 || out != "secret/rekey-secret-create-test created in namespace default (rekey.dev/encrypted-keys: a)\n" {
		t.Fatalf("--apply without --namespace: exit %d, stdout %q, stderr %s", code, out, errOut)
	}
	if err := env.Client.Delete(ctx, getSecret(t, "default", "rekey-secret-create-test")); err != nil {
		t.Fatal(err)
	}

	// The controller rotates what --apply wrote: the annotated keys, under
	// the annotated context (a misread context fails ReEncrypt).
	startManager(t, c, "--metrics-bind-address", "0")
	kr := &rekeyv1alpha1.KeyRotation{ObjectMeta: metav1.ObjectMeta{Name: "rotate", Namespace: ns},
		Spec: rekeyv1alpha1.KeyRotationSpec{SourceKeyIDs: []string{"alias/app-2025"}, DestinationKeyID: "alias/app-2026"}}
	if err := env.Client.Create(ctx, kr); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for kr.Status.Phase != rekeyv1alpha1.PhaseSucceeded && kr.Status.Phase != rekeyv1alpha1.PhaseFailed {
		if time.Now().After(deadline) {
			t.Fatalf("the rotation did not finish: %+v", kr.Status)
		}
		time.Sleep(100 * time.Millisecond) // polling the rotation's status; bounded by the deadline
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(kr), kr); err != nil {
			t.Fatal(err)
		}
	}
	if kr.Status.Phase != rekeyv1alpha1.PhaseSucceeded || kr.Status.Blobs.Rotated != 2 || kr.Status.Blobs.Failed != 0 {
		t.Fatalf("rotation: %+v", kr.Status)
	}
	checkBlobs(t, e, getSecret(t, ns, "db"), newARN, ec, map[string]string{"password": "second"})
	s = getSecret(t, ns, "plain")
	delete(s.Data, "other")
	checkBlobs(t, e, s, newARN, nil, map[string]string{"password": "third"})
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
