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

// Package install tests the install bundle and the operations guide against
// a real kube-apiserver (envtest): the bundle applies on an empty cluster in
// one command, every uninstall route keeps the keystore and the root key, a
// reinstall rotates with the old keys, and the guide's install, backup,
// restore, disaster recovery, upgrade and removal commands — the shell
// blocks of docs/operations.md marked <!-- test: NAME --> — run as written,
// with kubectl and a rekey binary built from this checkout.
//
// envtest runs no kube-controller-manager: a namespace that is deleted
// stays Terminating and keeps its Secrets. So "the keys are kept" is
// asserted on the namespace itself (never marked for deletion), not only on
// the Secrets, and the removal step is asserted to be accepted.
package install

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	rekeyv1alpha1 "github.com/rekey-dev/rekey/api/v1alpha1"
	"github.com/rekey-dev/rekey/internal/docblocks"
	"github.com/rekey-dev/rekey/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	os.Exit(testenv.Run(m, "", func(e *testenv.Env) { env = e }))
}

const (
	repoRoot = "../.."
	ns       = "rekey-system"
	keystore = "k8s://rekey-system/rekey-keystore"
	// The operator's identity, as its ServiceAccount in the bundle.
	operatorUser = "system:serviceaccount:rekey-system:rekey-controller-manager"
)

// cluster is an apiserver the guide's commands run against.
type cluster struct {
	env        *testenv.Env
	kubeconfig string // an admin's
	operator   string // the operator's ServiceAccount's
}

// guide runs the operations guide's blocks in one working directory (the
// reader's: dist/install.yaml, root.key, backups), with kubectl and rekey
// on PATH.
type guide struct {
	t      *testing.T
	dir    string
	bin    string
	blocks map[string]string
	ran    map[string]bool
}

func newCluster(t *testing.T, e *testenv.Env) *cluster {
	t.Helper()
	dir := t.TempDir()
	c := &cluster{env: e}
	for _, u := range []struct {
		user   envtest.User
		target *string
	}{
		{envtest.User{Name: "install-admin", Groups: []string{"system:masters"}}, &c.kubeconfig},
		{envtest.User{Name: operatorUser, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns}}, &c.operator},
	} {
		au, err := e.Env.AddUser(u.user, nil)
		if err != nil {
			t.Fatal(err)
		}
		kc, err := au.KubeConfig()
		if err != nil {
			t.Fatal(err)
		}
		*u.target = filepath.Join(dir, strings.NewReplacer(":", "-").Replace(u.user.Name)+".kubeconfig")
		if err := os.WriteFile(*u.target, kc, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// newGuide builds rekey, renders the bundle as `make build-installer`
// does, and reads the guide's blocks.
func newGuide(t *testing.T) *guide {
	t.Helper()
	g := &guide{t: t, dir: t.TempDir(), bin: t.TempDir(), ran: map[string]bool{}}
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if err := os.Symlink(filepath.Join(assets, "kubectl"), filepath.Join(g.bin, "kubectl")); err != nil {
		t.Fatal(err)
	}
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-o", filepath.Join(g.bin, "rekey"), "./cmd/rekey")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/rekey: %v\n%s", err, out)
	}
	if err := os.Mkdir(filepath.Join(g.dir, "dist"), 0o755); err != nil {
		t.Fatal(err)
	}
	g.writeBundle("controller:latest")
	raw, err := os.ReadFile(filepath.Join(root, "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	g.blocks = parseBlocks(t, string(raw))
	return g
}

// writeBundle renders config/default to dist/install.yaml with image img.
func (g *guide) writeBundle(img string) {
	g.t.Helper()
	root, _ := filepath.Abs(repoRoot)
	mk := exec.Command("make", "-s", "kustomize")
	mk.Dir = root
	if out, err := mk.CombinedOutput(); err != nil {
		g.t.Fatalf("make kustomize: %v\n%s", err, out)
	}
	out, err := exec.Command(filepath.Join(root, "bin", "kustomize"), "build", filepath.Join(root, "config", "default")).Output()
	if err != nil {
		g.t.Fatalf("kustomize build config/default: %v", err)
	}
	out = bytes.ReplaceAll(out, []byte("image: controller:latest"), []byte("image: "+img))
	if err := os.WriteFile(filepath.Join(g.dir, "dist", "install.yaml"), out, 0o644); err != nil {
		g.t.Fatal(err)
	}
}

// parseBlocks returns docs/operations.md's blocks marked <!-- test: NAME -->.
func parseBlocks(t *testing.T, doc string) map[string]string {
	t.Helper()
	blocks, err := docblocks.Parse(doc, "test")
	if err != nil {
		t.Fatalf("docs/operations.md: %v", err)
	}
	return blocks
}

// run runs the guide's block name with bash -eu -o pipefail in dir (the
// guide's directory when ""), against cluster c.
func (g *guide) run(c *cluster, name, dir string) string {
	g.t.Helper()
	script, ok := g.blocks[name]
	if !ok {
		g.t.Fatalf("docs/operations.md has no block <!-- test: %s -->", name)
	}
	g.ran[name] = true
	out, err := g.shell(c, script, dir)
	if err != nil {
		g.t.Fatalf("docs/operations.md block %s:\n%s\nfailed: %v\n%s", name, script, err, out)
	}
	g.t.Logf("block %s: ok", name)
	return out
}

func (g *guide) shell(c *cluster, script, dir string) (string, error) {
	if dir == "" {
		dir = g.dir
	}
	cmd := exec.Command("bash", "-eu", "-o", "pipefail", "-c", script)
	cmd.Dir = dir
	cmd.Env = g.environ(c)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (g *guide) environ(c *cluster) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "REKEY_") && !strings.HasPrefix(kv, "KUBECONFIG=") && !strings.HasPrefix(kv, "PATH=") {
			env = append(env, kv)
		}
	}
	return append(env, "KUBECONFIG="+c.kubeconfig, "PATH="+g.bin+string(os.PathListSeparator)+os.Getenv("PATH"))
}

// rekey runs the rekey binary with the guide's keystore.
func (g *guide) rekey(c *cluster, stdin string, args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(g.bin, "rekey"), args...)
	cmd.Dir = g.dir
	cmd.Env = append(g.environ(c), "REKEY_KEYSTORE="+keystore, "REKEY_ROOT_KEY_FILE=root.key")
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (g *guide) mustRekey(c *cluster, stdin string, args ...string) string {
	g.t.Helper()
	out, err := g.rekey(c, stdin, args...)
	if err != nil {
		g.t.Fatalf("rekey %v: %v\n%s", args, err, out)
	}
	return out
}

// keys are the two Secrets every route must keep, with their data.
func (c *cluster) keys(t *testing.T) map[string]map[string][]byte {
	t.Helper()
	out := map[string]map[string][]byte{}
	for _, name := range []string{"rekey-keystore", "rekey-root-key"} {
		s := &corev1.Secret{}
		if err := c.env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, s); err != nil {
			t.Fatalf("Secret %s/%s: %v", ns, name, err)
		}
		out[name] = s.Data
	}
	return out
}

func (c *cluster) namespace(t *testing.T) *corev1.Namespace {
	t.Helper()
	n := &corev1.Namespace{}
	if err := c.env.Client.Get(context.Background(), client.ObjectKey{Name: ns}, n); err != nil {
		t.Fatalf("namespace %s: %v", ns, err)
	}
	return n
}

// waitProtected waits until the keep-keys policy a fresh apply created is
// enforced (the apiserver loads policies within about a second).
func (g *guide) waitProtected(c *cluster) {
	g.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		out, err := g.shell(c, "kubectl delete namespace "+ns+" --dry-run=server", "")
		if err != nil && strings.Contains(out, "rekey.dev/allow-delete=true") {
			return
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("namespace deletion not refused a minute after install: %v\n%s", err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// assertUninstalled checks that the operator is gone and its keys are not.
func (g *guide) assertUninstalled(c *cluster, route string, before map[string]map[string][]byte) {
	g.t.Helper()
	ctx := context.Background()
	n := c.namespace(g.t)
	if n.DeletionTimestamp != nil || n.Status.Phase != corev1.NamespaceActive {
		g.t.Fatalf("%s: namespace %s is being deleted (phase %s): every key with it", route, ns, n.Status.Phase)
	}
	after := c.keys(g.t)
	for name, data := range before {
		if fmt.Sprint(after[name]) != fmt.Sprint(data) {
			g.t.Fatalf("%s: Secret %s changed", route, name)
		}
	}
	// ... and the operator really went.
	for _, o := range []client.Object{
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "rekey-controller-manager"}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "rekey-controller-manager"}},
	} {
		err := c.env.Client.Get(ctx, client.ObjectKeyFromObject(o), o)
		if !apierrors.IsNotFound(err) {
			g.t.Fatalf("%s: %T %s still there (%v)", route, o, o.GetName(), err)
		}
	}
	out, err := g.shell(c, "kubectl get crd keyrotations.rekey.dev", "")
	if err == nil || !strings.Contains(out, "NotFound") {
		g.t.Fatalf("%s: CRD left: %v\n%s", route, err, out)
	}
	g.t.Logf("%s: operator removed; namespace %s, rekey-keystore and rekey-root-key kept", route, ns)
}

// assertStillProtected checks that the keep-keys policy outlived the
// uninstall: the namespace cannot be deleted without the label.
func (g *guide) assertStillProtected(c *cluster, route string) {
	g.t.Helper()
	out, err := g.shell(c, "kubectl delete namespace "+ns+" --dry-run=server", "")
	if err == nil || !strings.Contains(out, "rekey.dev/allow-delete=true") {
		g.t.Fatalf("%s: namespace %s no longer protected after the uninstall: %v\n%s", route, ns, err, out)
	}
}

// operator is 'rekey controller' run as a process with the bundle's
// ServiceAccount identity, as its pod runs it.
type operator struct {
	cmd  *exec.Cmd
	logs *bytes.Buffer
	done chan error
}

func (g *guide) startOperator(c *cluster) *operator {
	g.t.Helper()
	// The root key as the pod reads it, from the Secret.
	s := &corev1.Secret{}
	if err := c.env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "rekey-root-key"}, s); err != nil {
		g.t.Fatal(err)
	}
	rootFile := filepath.Join(g.t.TempDir(), "root.key")
	if err := os.WriteFile(rootFile, s.Data["root.key"], 0o600); err != nil {
		g.t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(g.bin, "rekey"), "controller", "--keystore", keystore, "--root-key-file", rootFile,
		"--leader-elect", "--leader-election-namespace", ns,
		"--metrics-bind-address", "127.0.0.1:0", "--health-probe-bind-address", "0")
	cmd.Env = append(g.environ(c), "KUBECONFIG="+c.operator)
	o := &operator{cmd: cmd, logs: &bytes.Buffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = o.logs, o.logs
	if err := cmd.Start(); err != nil {
		g.t.Fatal(err)
	}
	go func() { o.done <- cmd.Wait() }()
	g.t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
	})
	return o
}

// stop sends SIGTERM, as the kubelet does, and checks the stop was clean.
func (o *operator) stop(t *testing.T) {
	t.Helper()
	_ = o.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-o.done:
		if err != nil {
			t.Fatalf("rekey controller exited with %v after SIGTERM:\n%s", err, o.logs)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("rekey controller did not stop within 15 s of SIGTERM:\n%s", o.logs)
	}
	if strings.Contains(o.logs.String(), `"level":"error"`) {
		t.Fatalf("rekey controller logged errors:\n%s", o.logs)
	}
}

// rotate moves the billing Secrets from one key to the other with a
// KeyRotation, through an operator running as the bundle's ServiceAccount,
// and checks every value decrypts under the destination.
func (g *guide) rotate(c *cluster, name, from, to string) {
	g.t.Helper()
	ctx := context.Background()
	o := g.startOperator(c)
	kr := &rekeyv1alpha1.KeyRotation{
		ObjectMeta: metav1.ObjectMeta{Namespace: "billing", Name: name},
		Spec: rekeyv1alpha1.KeyRotationSpec{
			SourceKeyIDs: []string{from}, DestinationKeyID: to,
			SourceEncryptionContext: map[string]string{"app": "billing"},
			SecretSelector:          &metav1.LabelSelector{MatchLabels: map[string]string{"team": "billing"}},
		},
	}
	// Right after an install the CRD may not be served yet.
	for start := time.Now(); ; time.Sleep(200 * time.Millisecond) {
		err := c.env.Client.Create(ctx, kr)
		if err == nil {
			break
		}
		if time.Since(start) > 30*time.Second {
			g.t.Fatalf("creating KeyRotation %s: %v", name, err)
		}
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if err := c.env.Client.Get(ctx, client.ObjectKeyFromObject(kr), kr); err != nil {
			g.t.Fatal(err)
		}
		if kr.Status.Phase == rekeyv1alpha1.PhaseSucceeded {
			break
		}
		if kr.Status.Phase == rekeyv1alpha1.PhaseFailed || time.Now().After(deadline) {
			g.t.Fatalf("KeyRotation %s: phase %q, status %+v\noperator:\n%s", name, kr.Status.Phase, kr.Status, o.logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	o.stop(g.t)
	for i := range 3 {
		s := &corev1.Secret{}
		if err := c.env.Client.Get(ctx, client.ObjectKey{Namespace: "billing", Name: fmt.Sprintf("app-%d", i)}, s); err != nil {
			g.t.Fatal(err)
		}
		pt := g.mustRekey(c, base64.StdEncoding.EncodeToString(s.Data["password"]), "decrypt", "--key", to, "--context", "app=billing")
		if pt != fmt.Sprintf("secret-%d", i) {
			g.t.Fatalf("app-%d decrypts to %q under %s", i, pt, to)
		}
	}
	g.t.Logf("KeyRotation %s: %s -> %s, %s Secrets, by the operator as %s", name, from, to, kr.Status.Progress, operatorUser)
}

// billingSecrets writes three Secrets whose values are encrypted under key.
func (g *guide) billingSecrets(c *cluster, key string) {
	g.t.Helper()
	ctx := context.Background()
	if err := c.env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "billing"}}); err != nil {
		g.t.Fatal(err)
	}
	for i := range 3 {
		out := g.mustRekey(c, fmt.Sprintf("secret-%d", i), "encrypt", "--key", key, "--context", "app=billing")
		blob, err := base64.StdEncoding.DecodeString(strings.TrimSpace(out))
		if err != nil {
			g.t.Fatalf("rekey encrypt printed %q: %v", out, err)
		}
		s := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: "billing", Name: fmt.Sprintf("app-%d", i),
				Labels:      map[string]string{"team": "billing"},
				Annotations: map[string]string{rekeyv1alpha1.EncryptedKeysAnnotation: "password"}},
			Data: map[string][]byte{"password": blob},
		}
		if err := c.env.Client.Create(ctx, s); err != nil {
			g.t.Fatal(err)
		}
	}
}

// TestInstallUninstallRestore is the operations guide end to end.
func TestInstallUninstallRestore(t *testing.T) {
	ctx := context.Background()
	c := newCluster(t, env)
	g := newGuide(t)

	// Install on an empty cluster: one command.
	if err := c.env.Client.Get(ctx, client.ObjectKey{Name: ns}, &corev1.Namespace{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the cluster is not empty: namespace %s: %v", ns, err)
	}
	g.run(c, "install", "")
	g.run(c, "root-key", "")
	g.run(c, "keys", "")
	g.waitProtected(c)
	g.run(c, "backup", "")
	g.billingSecrets(c, "alias/billing-2025")
	g.rotate(c, "first", "alias/billing-2025", "alias/billing-2026")

	// Every uninstall route keeps the keys; a reinstall rotates with them.
	root, _ := filepath.Abs(repoRoot)
	routes := []struct {
		name string
		run  func()
	}{
		{"make undeploy", func() { g.run(c, "uninstall-make", root); g.assertStillProtected(c, "make undeploy") }},
		{"kubectl delete -f -l", func() { g.run(c, "uninstall-kubectl", ""); g.assertStillProtected(c, "kubectl delete -f -l") }},
		{"kubectl delete -f", func() {
			out, err := g.shell(c, "kubectl delete -f dist/install.yaml", "")
			if err == nil || !strings.Contains(out, `namespaces "rekey-system" is forbidden`) ||
				!strings.Contains(out, "kubectl label namespace rekey-system rekey.dev/allow-delete=true") {
				t.Fatalf("kubectl delete -f dist/install.yaml: %v, want the namespace's deletion refused:\n%s", err, out)
			}
		}},
		// helm uninstall is test/chart's (TestChartOnAPIServer).
	}
	for i, r := range routes {
		before := c.keys(t)
		r.run()
		g.assertUninstalled(c, r.name, before)
		g.run(c, "reinstall", "")
		g.waitProtected(c)
		from, to := "alias/billing-2026", "alias/billing-2025"
		if i%2 == 1 {
			from, to = to, from
		}
		g.rotate(c, fmt.Sprintf("after-route-%d", i), from, to)
	}

	// The Secrets cannot be deleted by accident while installed.
	for _, s := range []string{"rekey-keystore", "rekey-root-key"} {
		out, err := g.shell(c, "kubectl -n rekey-system delete secret "+s, "")
		if err == nil || !strings.Contains(out, "rekey.dev/allow-delete=true") {
			t.Fatalf("deleting Secret %s: %v, want it refused:\n%s", s, err, out)
		}
	}

	// Restore, undoing a change of keys: refused without the flag, with the
	// key that would change named.
	g.mustRekey(c, "", "key", "disable", "alias/billing-2026")
	out, err := g.rekey(c, "", "keystore", "restore", "--from", newestBackup(t, g.dir))
	if err == nil || !strings.Contains(out, "allow-rollback") {
		t.Fatalf("restore of an older backup: %v, want it refused:\n%s", err, out)
	}
	t.Logf("restore without --allow-rollback, refused:\n%s", out)
	g.run(c, "restore", "")
	if out := g.mustRekey(c, "", "key", "describe", "alias/billing-2026"); !strings.Contains(out, `"Enabled": true`) {
		t.Fatalf("alias/billing-2026 after the restore:\n%s", out)
	}

	// Restore of a damaged keystore Secret.
	if _, err := g.shell(c, `kubectl -n rekey-system patch secret rekey-keystore -p '{"data":{"keystore":"ZGFtYWdlZA=="}}'`, ""); err != nil {
		t.Fatal(err)
	}
	if out, err := g.rekey(c, "", "keystore", "verify"); err == nil {
		t.Fatalf("a damaged keystore verifies:\n%s", out)
	}
	g.run(c, "restore-damaged", "")
	g.rotate(c, "after-restore", "alias/billing-2025", "alias/billing-2026")

	// Upgrade: the next release's bundle (here: another image) over this one.
	g.writeBundle("rekey:next")
	before := c.keys(t)
	if out := g.run(c, "upgrade", ""); !strings.Contains(out, "rekey:next") {
		t.Fatalf("the upgrade did not change the image:\n%s", out)
	}
	if fmt.Sprint(c.keys(t)) != fmt.Sprint(before) {
		t.Fatal("the upgrade changed the keystore or the root key")
	}
	g.waitProtected(c)
	g.rotate(c, "after-upgrade", "alias/billing-2026", "alias/billing-2025")

	// Disaster recovery: a new, empty cluster, with root.key and the backups.
	other, err := testenv.Start("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Stop() })
	dr := newCluster(t, other)
	g.run(dr, "disaster-recovery", "")
	// The blobs come back with the cluster's own backup; copy them over.
	list := &corev1.SecretList{}
	if err := c.env.Client.List(ctx, list, client.InNamespace("billing")); err != nil {
		t.Fatal(err)
	}
	if err := dr.env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "billing"}}); err != nil {
		t.Fatal(err)
	}
	for _, s := range list.Items {
		if s.Labels["team"] != "billing" {
			continue
		}
		copied := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "billing", Name: s.Name, Labels: s.Labels,
			Annotations: s.Annotations}, Data: s.Data}
		if err := dr.env.Client.Create(ctx, copied); err != nil {
			t.Fatal(err)
		}
	}
	g.rotate(dr, "after-disaster", "alias/billing-2025", "alias/billing-2026")

	// Removing the keys for good: one explicit step, accepted.
	g.run(c, "remove-keys", "")
	if n := c.namespace(t); n.DeletionTimestamp == nil {
		t.Fatalf("namespace %s not being deleted after the removal step", ns)
	}
	if out, err := g.shell(c, "kubectl get validatingadmissionpolicy rekey-keep-keys", ""); err == nil {
		t.Fatalf("the keep-keys policy is left after the removal step:\n%s", out)
	}

	for name := range g.blocks {
		if !g.ran[name] {
			t.Errorf("docs/operations.md block %s is not run by this test", name)
		}
	}
}

// newestBackup is what `ls -t keystore-*.rks | head -1` names.
func newestBackup(t *testing.T, dir string) string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "keystore-*.rks"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no backup in %s (%v)", dir, err)
	}
	newest, when := "", time.Time{}
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil && fi.ModTime().After(when) {
			newest, when = f, fi.ModTime()
		}
	}
	return newest
}
