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

package chart

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/rekey-dev/rekey/internal/docblocks"
	"github.com/rekey-dev/rekey/internal/testenv"
)

// cluster is an envtest apiserver with an admin's kubeconfig, and a
// reader's working directory (charts/ of this checkout, helm and kubectl
// on PATH) in which docs/operations.md's Helm blocks run as written.
type cluster struct {
	t      *testing.T
	env    *testenv.Env
	dir    string
	bin    string
	kc     string
	blocks map[string]string
	ran    map[string]bool
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		t.Fatal("KUBEBUILDER_ASSETS is not set: run 'make envtest', then\n" +
			"  export KUBEBUILDER_ASSETS=$(bin/setup-envtest use -i -p path 1.37.2)\n" +
			"(make test sets it)")
	}
	helmBin := tool(t, "helm")
	env, err := testenv.Start("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Logf("stopping envtest: %v", err)
		}
	})
	c := &cluster{t: t, env: env, dir: t.TempDir(), bin: t.TempDir(), ran: map[string]bool{}}
	au, err := env.Env.AddUser(envtest.User{Name: "chart-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := au.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	c.kc = filepath.Join(c.dir, "admin.kubeconfig")
	if err := os.WriteFile(c.kc, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{"kubectl": filepath.Join(assets, "kubectl"), "helm": helmBin} {
		if err := os.Symlink(target, filepath.Join(c.bin, name)); err != nil {
			t.Fatal(err)
		}
	}
	root, _ := filepath.Abs(repoRoot)
	if err := os.Symlink(filepath.Join(root, "charts"), filepath.Join(c.dir, "charts")); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(root, "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	c.blocks = parseBlocks(t, string(raw))
	return c
}

// parseBlocks returns docs/operations.md's blocks marked <!-- test/chart: NAME -->.
func parseBlocks(t *testing.T, doc string) map[string]string {
	t.Helper()
	blocks, err := docblocks.Parse(doc, "test/chart")
	if err != nil {
		t.Fatalf("docs/operations.md: %v", err)
	}
	return blocks
}

// shell runs a script with bash -eu -o pipefail in the reader's directory.
func (c *cluster) shell(script string) (string, error) {
	cmd := exec.Command("bash", "-eu", "-o", "pipefail", "-c", script)
	cmd.Dir = c.dir
	cmd.Env = append(helmEnv(c.t), "KUBECONFIG="+c.kc, "PATH="+c.bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (c *cluster) must(script string) string {
	c.t.Helper()
	out, err := c.shell(script)
	if err != nil {
		c.t.Fatalf("%s\nfailed: %v\n%s", script, err, out)
	}
	return out
}

// run runs docs/operations.md's block name.
func (c *cluster) run(name string) string {
	c.t.Helper()
	script, ok := c.blocks[name]
	if !ok {
		c.t.Fatalf("docs/operations.md has no block <!-- test/chart: %s -->", name)
	}
	c.ran[name] = true
	out, err := c.shell(script)
	if err != nil {
		c.t.Fatalf("docs/operations.md block %s:\n%s\nfailed: %v\n%s", name, script, err, out)
	}
	c.t.Logf("block %s: ok\n%s", name, indent(out))
	return out
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ")
}

// write saves data in the reader's directory.
func (c *cluster) write(name string, data []byte) {
	c.t.Helper()
	if err := os.WriteFile(filepath.Join(c.dir, name), data, 0o644); err != nil {
		c.t.Fatal(err)
	}
}

// exists reports whether u's object is in the cluster.
func (c *cluster) exists(u *unstructured.Unstructured) bool {
	c.t.Helper()
	got := &unstructured.Unstructured{}
	got.SetGroupVersionKind(u.GroupVersionKind())
	key := client.ObjectKey{Name: u.GetName()}
	if !clusterScoped[u.GetKind()] {
		key.Namespace = u.GetNamespace()
	}
	err := c.env.Client.Get(context.Background(), key, got)
	if apierrors.IsNotFound(err) {
		return false
	}
	if err != nil {
		c.t.Fatalf("get %s: %v", id(u), err)
	}
	return true
}

// keys returns the data of the two Secrets every uninstall must keep.
func (c *cluster) keys() map[string]map[string][]byte {
	c.t.Helper()
	out := map[string]map[string][]byte{}
	for _, name := range []string{"rekey-keystore", "rekey-root-key"} {
		s := &corev1.Secret{}
		if err := c.env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, s); err != nil {
			c.t.Fatalf("Secret %s/%s: %v", ns, name, err)
		}
		out[name] = s.Data
	}
	return out
}

// protected waits until deleting the namespace and each key Secret is
// refused by the keep-keys policy (the apiserver loads a new policy within
// about a second).
func (c *cluster) protected(when string) {
	c.t.Helper()
	for _, target := range []string{"namespace " + ns, "-n " + ns + " secret rekey-keystore", "-n " + ns + " secret rekey-root-key"} {
		deadline := time.Now().Add(time.Minute)
		for {
			out, err := c.shell("kubectl delete " + target + " --dry-run=server")
			if err != nil && strings.Contains(out, "rekey.dev/allow-delete=true") {
				break
			}
			if time.Now().After(deadline) {
				c.t.Fatalf("%s: kubectl delete %s is not refused by the keep-keys policy: %v\n%s", when, target, err, out)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// dryRun applies a rendering with kubectl apply --dry-run=server and
// checks that the apiserver accepted every object (strict field
// validation: an unknown field is an error).
func (c *cluster) dryRun(what string, rendered []byte) {
	c.t.Helper()
	c.write("rendered.yaml", rendered)
	objs := parseDocs(c.t, rendered)
	out := c.must("kubectl apply --dry-run=server -f rendered.yaml")
	accepted := strings.Count(out, "(server dry run)")
	if accepted != len(objs) {
		c.t.Fatalf("%s: %d objects rendered, %d accepted:\n%s", what, len(objs), accepted, out)
	}
	kinds := map[string]int{}
	for _, u := range objs {
		kinds[u.GetKind()]++
	}
	c.t.Logf("%s: kubectl apply --dry-run=server accepted all %d objects %v", what, len(objs), kinds)
}

// TestChartOnAPIServer: the chart's renderings are accepted by a real
// apiserver object for object, and docs/operations.md's Helm commands —
// install (over what an uninstalled bundle kept), uninstall, reinstall,
// upgrade, removal of the keys — do what the guide says, keeping the
// namespace, the keystore, the root key and the policy protecting them.
func TestChartOnAPIServer(t *testing.T) {
	c := newCluster(t)
	ctx := context.Background()

	// The Prometheus Operator's CRDs, for the ServiceMonitor and the
	// PrometheusRule.
	crds, _ := filepath.Abs("testdata/crds")
	c.must(fmt.Sprintf("kubectl create -f %q && kubectl wait --for condition=established --timeout=60s "+
		"crd/servicemonitors.monitoring.coreos.com crd/prometheusrules.monitoring.coreos.com", crds))

	// 1. Server-side dry run of the defaults and of every feature on.
	c.must("kubectl create namespace " + ns)
	c.dryRun("defaults", template(t))
	c.dryRun("every feature on (testdata/all-on.yaml)", template(t, "-f", "testdata/all-on.yaml"))

	// 2. The bundle installed and uninstalled (make undeploy's way): the
	// keys and the keep-keys policy stay, without Helm's ownership.
	b, err := exec.Command(tool(t, "kustomize"), "build", filepath.Join(repoRoot, "config", "default")).Output()
	if err != nil {
		t.Fatal(err)
	}
	c.write("install.yaml", b)
	c.must("kubectl apply -f install.yaml")
	c.must("(umask 077; head -c 32 /dev/urandom | base64 > root.key)\n" +
		"kubectl -n " + ns + " create secret generic rekey-root-key --from-file=root.key\n" +
		"kubectl -n " + ns + " create secret generic rekey-keystore --from-literal=keystore=stand-in")
	keys := c.keys()
	c.protected("the bundle applied")
	c.must("kubectl delete -f install.yaml -l 'rekey.dev/uninstall!=keep'")

	// 3. helm install, after handing the kept policy to Helm.
	if out, err := c.shell(c.blocks["helm-install"]); err == nil || !strings.Contains(out, "invalid ownership metadata") {
		t.Fatalf("helm install over the policy the bundle kept: want Helm's ownership error, got %v:\n%s", err, out)
	}
	c.run("helm-adopt")
	c.run("helm-install")
	defaults := parseDocs(t, []byte(c.must("helm get manifest rekey -n "+ns)))
	if len(defaults) != len(render(t)) {
		t.Fatalf("the release holds %d objects, helm template renders %d", len(defaults), len(render(t)))
	}
	for _, u := range defaults {
		if !c.exists(u) {
			t.Errorf("installed, but %s is not in the cluster", id(u))
		}
	}
	c.protected("helm install")

	// 4. helm uninstall: the operator goes; the namespace, the keys, the
	// policy and the CRD stay.
	out := c.run("helm-uninstall")
	for _, kept := range []string{"rekey-keep-keys", "keyrotations.rekey.dev"} {
		if !strings.Contains(out, kept) {
			t.Errorf("helm uninstall does not list %s among what it kept", kept)
		}
	}
	c.assertUninstalled("helm uninstall", defaults, keys)

	// 5. Reinstall over what was kept, and upgrade.
	c.run("helm-install")
	c.protected("helm reinstall")
	c.run("helm-upgrade")
	c.must("helm upgrade rekey charts/rekey -n " + ns + " --set goMemLimit=100MiB")
	d := find(t, parseDocs(t, []byte(c.must("kubectl -n "+ns+" get deployment rekey-controller-manager -o yaml"))),
		"Deployment", "rekey-controller-manager")
	if env, _, _ := unstructured.NestedSlice(container(t, d), "env"); len(env) != 1 || env[0].(map[string]any)["value"] != "100MiB" {
		t.Errorf("after helm upgrade --set goMemLimit=100MiB: env %v", env)
	}
	c.run("helm-uninstall")
	c.assertUninstalled("helm uninstall after an upgrade", defaults, keys)

	// 6. Removing the keys for good: one explicit step, accepted.
	c.run("helm-remove-keys")
	n := &corev1.Namespace{}
	if err := c.env.Client.Get(ctx, client.ObjectKey{Name: ns}, n); err != nil || n.DeletionTimestamp == nil {
		t.Fatalf("namespace %s not being deleted after the removal step (%v)", ns, err)
	}
	for _, u := range defaults {
		if c.exists(u) {
			t.Errorf("%s is left after the removal step", id(u))
		}
	}

	for name := range c.blocks {
		if !c.ran[name] {
			t.Errorf("docs/operations.md block test/chart: %s is not run by this test", name)
		}
	}
}

// assertUninstalled checks that what the release installed is gone but
// the keep-keys policy, its binding and the CRD, and that the namespace
// and the two Secrets are untouched and still protected.
func (c *cluster) assertUninstalled(route string, installed []*unstructured.Unstructured, keys map[string]map[string][]byte) {
	c.t.Helper()
	n := &corev1.Namespace{}
	if err := c.env.Client.Get(context.Background(), client.ObjectKey{Name: ns}, n); err != nil {
		c.t.Fatalf("%s: namespace %s: %v", route, ns, err)
	}
	if n.DeletionTimestamp != nil {
		c.t.Fatalf("%s: namespace %s is being deleted: every key with it", route, ns)
	}
	after := c.keys()
	for name, data := range keys {
		if fmt.Sprint(after[name]) != fmt.Sprint(data) {
			c.t.Fatalf("%s: Secret %s changed", route, name)
		}
	}
	keep := map[string]bool{
		"ValidatingAdmissionPolicy rekey-keep-keys":        true,
		"ValidatingAdmissionPolicyBinding rekey-keep-keys": true,
		"CustomResourceDefinition keyrotations.rekey.dev":  true,
	}
	var kept, gone int
	for _, u := range installed {
		switch ex := c.exists(u); {
		case keep[id(u)] && !ex:
			c.t.Errorf("%s: %s was deleted", route, id(u))
		case !keep[id(u)] && ex:
			c.t.Errorf("%s: %s is still there", route, id(u))
		case ex:
			kept++
		default:
			gone++
		}
	}
	c.protected(route)
	c.t.Logf("%s: %d objects removed; kept the keep-keys policy and binding, the CRD, namespace %s with rekey-keystore and rekey-root-key (still protected)",
		route, gone, ns)
	if kept != len(keep) {
		c.t.Errorf("%s: %d of the %d objects to keep found", route, kept, len(keep))
	}
}
