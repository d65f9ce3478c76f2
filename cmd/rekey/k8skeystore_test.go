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
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/rekey-dev/rekey/internal/kms/keystore"
)

// TestCLIKeystoreInSecret: the CLI works on a keystore Secret through the
// kubeconfig, as users and the demo create keys for the operator.
func TestCLIKeystoreInSecret(t *testing.T) {
	user, err := env.Env.AddUser(envtest.User{Name: "cli-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "kubeconfig"), kc, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBECONFIG", filepath.Join(dir, "kubeconfig"))
	ns := env.Namespace(t)

	c := newCLI(t)
	c.args[1] = "k8s://" + ns + "/rekey-keystore"
	if _, errOut, code := c.run("", "key", "create"); code != 1 || !strings.Contains(errOut, "does not exist") {
		t.Fatalf("key create on a missing keystore Secret: exit %d, %s", code, errOut)
	}
	c.useKeystore("k8s://" + ns + "/rekey-keystore")
	c.ok("", "key", "create", "--alias", "alias/in-cluster")
	blob := c.ok("cluster secret", "encrypt", "--key", "alias/in-cluster")
	if pt := c.ok(blob, "decrypt"); pt != "cluster secret" {
		t.Fatalf("decrypt: %q", pt)
	}
	var s corev1.Secret
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "rekey-keystore"}, &s); err != nil {
		t.Fatalf("keystore Secret: %v", err)
	}
	if len(s.Data[keystore.SecretDataKey]) == 0 || strings.Contains(string(s.Data[keystore.SecretDataKey]), "alias/in-cluster") {
		t.Fatal("keystore Secret missing or not encrypted")
	}

	// Backup, verify and restore through the kubeconfig. A backup restored
	// into another Secret needs --rebind (the location is in the AAD).
	backup := filepath.Join(c.dir, "secret.rks")
	c.ok("", "keystore", "backup", "--to", backup)
	if out := c.ok("", "keystore", "verify", backup); !strings.Contains(out, "location    k8s://"+ns+"/rekey-keystore") {
		t.Fatalf("verify:\n%s", out)
	}
	c.args[1] = "k8s://" + ns + "/moved"
	c.fails(1, "--rebind", "", "keystore", "restore", "--from", backup)
	c.ok("", "keystore", "restore", "--from", backup, "--rebind")
	if list := c.ok("", "key", "list"); !strings.Contains(list, "alias/in-cluster") {
		t.Fatalf("key list in the moved keystore:\n%s", list)
	}
	// The data put back on its own (as kubectl patch or a GitOps tool that
	// owns only the data would) after a change: refused, by the annotations.
	c.args[1] = "k8s://" + ns + "/rekey-keystore"
	c.ok("", "key", "disable", "alias/in-cluster")
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "rekey-keystore"}, &s); err != nil {
		t.Fatal(err)
	}
	old, _ := os.ReadFile(backup)
	s.Data[keystore.SecretDataKey] = old
	if err := env.Client.Update(context.Background(), &s); err != nil {
		t.Fatal(err)
	}
	c.fails(1, "rolled back", "", "key", "list")

	for _, bad := range []string{"k8s://only-namespace", "k8s:///name", "s3://bucket/key"} {
		c.args[1] = bad
		if _, errOut, code := c.run("", "key", "list"); code != 2 || !strings.Contains(errOut, "keystore") {
			t.Fatalf("--keystore %s: exit %d, %s", bad, code, errOut)
		}
	}
}
