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

// Package chart tests the Helm chart charts/rekey, with helm and kustomize
// from ./bin (`make helm kustomize`):
//
//   - TestChartLint: `helm lint --strict`, with the defaults and with every
//     optional feature on (testdata/all-on.yaml);
//   - TestChartMatchesBundle: rendered with the defaults, the chart holds
//     the kustomize bundle's objects (config/default), object for object and
//     field for field, but for the differences listed there (the namespace,
//     Helm's labels, the image); `make verify` runs it;
//   - TestChartKMSMatchesComponent: with kms.enabled, the key service's
//     objects are config/kms-service's, field for field; `make verify`
//     runs it;
//   - TestChartValues, TestChartAlerts: what each setting renders, and
//     what is refused;
//   - TestChartOnAPIServer (needs envtest, KUBEBUILDER_ASSETS): `helm
//     template | kubectl apply --dry-run=server` accepted object for object,
//     with the defaults and with every feature on (the ServiceMonitor and
//     PrometheusRule against the Prometheus Operator's own CRDs, vendored in
//     testdata/crds); then docs/operations.md's Helm commands (blocks marked
//     <!-- test/chart: NAME -->) run as written: `helm install`, `helm
//     uninstall` keeping the namespace, the keystore, the root key and the
//     policy that protects them, a reinstall and an upgrade over what was
//     kept, and the removal of the keys.
package chart

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

const (
	repoRoot = "../.."
	release  = "rekey"
	ns       = "rekey-system"
)

// clusterScoped are the kinds, among the chart's and the bundle's, that
// have no namespace (kustomize sets one on the admission policies anyway).
var clusterScoped = map[string]bool{
	"Namespace": true, "CustomResourceDefinition": true, "ClusterRole": true, "ClusterRoleBinding": true,
	"ValidatingAdmissionPolicy": true, "ValidatingAdmissionPolicyBinding": true,
}

var tools struct {
	once sync.Once
	out  []byte
	err  error
}

// tool returns the path of bin/NAME, installing helm and kustomize into
// ./bin (pinned, from the Go module proxy) the first time.
func tool(t *testing.T, name string) string {
	t.Helper()
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	tools.once.Do(func() {
		mk := exec.Command("make", "-s", "helm", "kustomize")
		mk.Dir = root
		tools.out, tools.err = mk.CombinedOutput()
	})
	if tools.err != nil {
		t.Fatalf("make helm kustomize: %v\n%s", tools.err, tools.out)
	}
	return filepath.Join(root, "bin", name)
}

func chartDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join(repoRoot, "charts", "rekey"))
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// helmEnv keeps helm's cache, configuration and data out of $HOME.
func helmEnv(t *testing.T) []string {
	t.Helper()
	home := t.TempDir()
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HELM_") && !strings.HasPrefix(kv, "KUBECONFIG=") {
			env = append(env, kv)
		}
	}
	return append(env, "HELM_CACHE_HOME="+filepath.Join(home, "cache"), "HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"))
}

// helm runs bin/helm.
func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(tool(t, "helm"), args...)
	cmd.Env = helmEnv(t)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String() + stderr.String(), err
	}
	return stdout.String(), nil
}

// template renders the chart as release rekey in rekey-system, with more
// helm arguments (--set, -f).
func template(t *testing.T, args ...string) []byte {
	t.Helper()
	out, err := helm(t, append([]string{"template", release, chartDir(t), "-n", ns}, args...)...)
	if err != nil {
		t.Fatalf("helm template %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return []byte(out)
}

func render(t *testing.T, args ...string) []*unstructured.Unstructured {
	t.Helper()
	return parseDocs(t, template(t, args...))
}

// bundle is config/default rendered, as `make build-installer` renders
// dist/install.yaml.
func bundle(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	root, _ := filepath.Abs(repoRoot)
	out, err := exec.Command(tool(t, "kustomize"), "build", filepath.Join(root, "config", "default")).Output()
	if err != nil {
		t.Fatalf("kustomize build config/default: %v", err)
	}
	return parseDocs(t, out)
}

func parseDocs(t *testing.T, raw []byte) []*unstructured.Unstructured {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096)
	var objs []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return objs
			}
			t.Fatalf("parsing rendered YAML: %v", err)
		}
		if len(u.Object) > 0 {
			objs = append(objs, u)
		}
	}
}

// id names an object: kind, namespace (none when cluster-scoped), name.
func id(u *unstructured.Unstructured) string {
	if clusterScoped[u.GetKind()] {
		return u.GetKind() + " " + u.GetName()
	}
	return u.GetKind() + " " + u.GetNamespace() + "/" + u.GetName()
}

func byID(t *testing.T, objs []*unstructured.Unstructured) map[string]*unstructured.Unstructured {
	t.Helper()
	m := map[string]*unstructured.Unstructured{}
	for _, u := range objs {
		if _, dup := m[id(u)]; dup {
			t.Fatalf("%s twice", id(u))
		}
		m[id(u)] = u
	}
	return m
}

func find(t *testing.T, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, u := range objs {
		if u.GetKind() == kind && u.GetName() == name {
			return u
		}
	}
	t.Fatalf("no %s %s rendered", kind, name)
	return nil
}

func TestChartLint(t *testing.T) {
	for _, args := range [][]string{nil, {"-f", "testdata/all-on.yaml"}} {
		out, err := helm(t, append([]string{"lint", "--strict", chartDir(t), "-n", ns}, args...)...)
		if err != nil {
			t.Errorf("helm lint --strict %s: %v\n%s", strings.Join(args, " "), err, out)
			continue
		}
		t.Logf("helm lint --strict %s:\n%s", strings.Join(args, " "), out)
	}
}

// helmLabels are the labels the chart puts on every object, which the
// bundle has not (or has with another value: managed-by kustomize).
var helmLabels = []string{"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
	"app.kubernetes.io/managed-by", "helm.sh/chart"}

// TestChartMatchesBundle: the chart, rendered with the defaults as release
// rekey in rekey-system, holds the same objects as the kustomize bundle —
// kinds, names, namespaces, RBAC rules, policies, the Deployment, the CRD —
// field for field, but for what is meant to differ:
//
//   - the Namespace is the bundle's only: Helm creates it outside the
//     release (--create-namespace), so that `helm uninstall` never deletes
//     it, nor the keys in it;
//   - the chart's labels are Helm's (managed-by Helm, instance, version,
//     chart), on every object;
//   - the CRD carries helm.sh/resource-policy: keep (crds.keep): `helm
//     uninstall` keeps every KeyRotation;
//   - the image (the bundle's placeholder controller:latest).
//
// Strings are compared with runs of white space made one space (YAML's
// folding of the CEL expressions differs between kustomize and the chart).
func TestChartMatchesBundle(t *testing.T) {
	chart := byID(t, render(t))
	kust := byID(t, bundle(t))

	if _, ok := kust["Namespace "+ns]; !ok {
		t.Fatalf("the bundle has no Namespace %s", ns)
	}
	delete(kust, "Namespace "+ns)
	var missing, extra []string
	for k := range kust {
		if _, ok := chart[k]; !ok {
			missing = append(missing, k)
		}
	}
	for k := range chart {
		if _, ok := kust[k]; !ok {
			extra = append(extra, k)
		}
	}
	slices.Sort(missing)
	slices.Sort(extra)
	if len(missing) > 0 {
		t.Errorf("in the bundle (config/default), not in the chart's defaults: %s", strings.Join(missing, "; "))
	}
	if len(extra) > 0 {
		t.Errorf("in the chart's defaults, not in the bundle: %s", strings.Join(extra, "; "))
	}

	for k, b := range kust {
		c, ok := chart[k]
		if !ok {
			continue
		}
		// Helm's labels on every object of the chart.
		cl := c.GetLabels()
		want := map[string]string{"app.kubernetes.io/name": "rekey", "app.kubernetes.io/instance": release,
			"app.kubernetes.io/managed-by": "Helm"}
		for l, v := range want {
			if cl[l] != v {
				t.Errorf("%s: label %s=%q, want %q", k, l, cl[l], v)
			}
		}
		bn, cn := normalise(b), normalise(c)
		if c.GetKind() == "CustomResourceDefinition" {
			if got := c.GetAnnotations()["helm.sh/resource-policy"]; got != "keep" {
				t.Errorf("%s: helm.sh/resource-policy %q, want keep (crds.keep)", k, got)
			}
			unstructured.RemoveNestedField(cn, "metadata", "annotations", "helm.sh/resource-policy")
		}
		if c.GetKind() == "Deployment" {
			maskImages(bn, cn)
		}
		for _, d := range diff("", bn, cn) {
			t.Errorf("%s: %s", k, d)
		}
	}
	if !t.Failed() {
		t.Logf("%d objects, the bundle's and the chart's alike: the chart's defaults are the bundle but the Namespace", len(chart))
	}
}

// TestChartKMSMatchesComponent: with kms.enabled, the chart adds the key
// service for workloads, and those objects are config/kms-service's
// (kustomize build), object for object and field for field, but for Helm's
// labels and the image (the component's placeholder controller:latest, set
// by make build-installer).
func TestChartKMSMatchesComponent(t *testing.T) {
	chart := map[string]*unstructured.Unstructured{}
	for id, u := range byID(t, render(t, "--set", "kms.enabled=true")) {
		if u.GetLabels()["app.kubernetes.io/component"] == "kms" {
			chart[id] = u
		}
	}
	root, _ := filepath.Abs(repoRoot)
	out, err := exec.Command(tool(t, "kustomize"), "build", filepath.Join(root, "config", "kms-service")).Output()
	if err != nil {
		t.Fatalf("kustomize build config/kms-service: %v", err)
	}
	kust := byID(t, parseDocs(t, out))
	if len(kust) == 0 {
		t.Fatal("config/kms-service renders nothing")
	}
	for k := range kust {
		if _, ok := chart[k]; !ok {
			t.Errorf("in config/kms-service, not in the chart with kms.enabled (or without app.kubernetes.io/component: kms): %s", k)
		}
	}
	for k, c := range chart {
		b, ok := kust[k]
		if !ok {
			t.Errorf("in the chart with kms.enabled, not in config/kms-service: %s", k)
			continue
		}
		if b.GetLabels()["app.kubernetes.io/component"] != "kms" {
			t.Errorf("%s: config/kms-service's object has no label app.kubernetes.io/component: kms", k)
		}
		bn, cn := normalise(b), normalise(c)
		if c.GetKind() == "Deployment" {
			if img := container(t, c, "kms")["image"]; img != "rekey:latest" {
				t.Errorf("%s: image %v, want the operator's (rekey:latest)", k, img)
			}
			maskImages(bn, cn)
		}
		for _, d := range diff("", bn, cn) {
			t.Errorf("%s: %s", k, d)
		}
	}
	if !t.Failed() {
		t.Logf("%d objects, config/kms-service's and the chart's kms.enabled alike", len(chart))
	}
}

// maskImages replaces every container's image in Deployments' objects.
func maskImages(objs ...map[string]any) {
	for _, o := range objs {
		cs, _, _ := unstructured.NestedSlice(o, "spec", "template", "spec", "containers")
		for _, ct := range cs {
			ct.(map[string]any)["image"] = "IMAGE"
		}
		_ = unstructured.SetNestedSlice(o, cs, "spec", "template", "spec", "containers")
	}
}

var space = regexp.MustCompile(`\s+`)

// normalise returns a copy of u's object without what may differ: the
// namespace of cluster-scoped objects, Helm's and kustomize's labels (then
// an empty labels map), and with white space runs in strings made one.
func normalise(u *unstructured.Unstructured) map[string]any {
	o := u.DeepCopy().Object
	if clusterScoped[u.GetKind()] {
		unstructured.RemoveNestedField(o, "metadata", "namespace")
	}
	if labels, ok, _ := unstructured.NestedStringMap(o, "metadata", "labels"); ok {
		for _, l := range helmLabels {
			delete(labels, l)
		}
		if len(labels) == 0 {
			unstructured.RemoveNestedField(o, "metadata", "labels")
		} else {
			_ = unstructured.SetNestedStringMap(o, labels, "metadata", "labels")
		}
	}
	return squash(o).(map[string]any)
}

func squash(v any) any {
	switch v := v.(type) {
	case string:
		return strings.TrimSpace(space.ReplaceAllString(v, " "))
	case map[string]any:
		for k, e := range v {
			v[k] = squash(e)
		}
	case []any:
		for i, e := range v {
			v[i] = squash(e)
		}
	}
	return v
}

// diff lists where a (the bundle's) and b (the chart's) differ, by path.
func diff(path string, a, b any) []string {
	am, aok := a.(map[string]any)
	bm, bok := b.(map[string]any)
	if aok && bok {
		var keys []string
		for k := range am {
			keys = append(keys, k)
		}
		for k := range bm {
			if _, ok := am[k]; !ok {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		out := make([]string, 0, len(keys))
		for _, k := range keys {
			out = append(out, diff(path+"."+k, am[k], bm[k])...)
		}
		return out
	}
	as, aok := a.([]any)
	bs, bok := b.([]any)
	if aok && bok && len(as) == len(bs) {
		var out []string
		for i := range as {
			out = append(out, diff(fmt.Sprintf("%s[%d]", path, i), as[i], bs[i])...)
		}
		return out
	}
	if reflect.DeepEqual(a, b) {
		return nil
	}
	show := func(v any) string {
		if v == nil {
			return "(none)"
		}
		j, _ := yaml.Marshal(v)
		return strings.TrimSpace(string(j))
	}
	return []string{fmt.Sprintf("%s: bundle %s, chart %s", strings.TrimPrefix(path, "."), show(a), show(b))}
}

// container returns the Deployment's container name (manager without a name).
func container(t *testing.T, d *unstructured.Unstructured, name ...string) map[string]any {
	t.Helper()
	want := "manager"
	if len(name) > 0 {
		want = name[0]
	}
	cs, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
	for _, c := range cs {
		if c.(map[string]any)["name"] == want {
			return c.(map[string]any)
		}
	}
	t.Fatalf("the Deployment %s has no container %s", d.GetName(), want)
	return nil
}

// args returns the arguments of the Deployment's container name (manager
// without a name).
func args(t *testing.T, d *unstructured.Unstructured, name ...string) []string {
	t.Helper()
	a, _, _ := unstructured.NestedStringSlice(container(t, d, name...), "args")
	return a
}

// TestChartValues: what the settings render, and what the chart refuses.
func TestChartValues(t *testing.T) {
	deploy := "rekey-controller-manager"

	t.Run("all-on", func(t *testing.T) {
		objs := render(t, "-f", "testdata/all-on.yaml")
		ids := byID(t, objs)
		for _, k := range []string{
			"ServiceMonitor rekey-system/rekey-controller-manager-metrics-monitor",
			"PrometheusRule rekey-system/rekey-alerts",
			"NetworkPolicy rekey-system/rekey-controller-manager",
			"PodDisruptionBudget rekey-system/rekey-controller-manager",
			"ClusterRoleBinding rekey-metrics-reader-rolebinding",
		} {
			if ids[k] == nil {
				t.Errorf("every feature on: no %s", k)
			}
		}
		d := find(t, objs, "Deployment", deploy)
		c := container(t, d)
		a := args(t, d)
		for _, w := range []string{"--leader-elect", "--health-probe-bind-address=127.0.0.1:18081",
			"--metrics-bind-address=127.0.0.1:18443", "--metrics-cert-dir=/etc/rekey/metrics-certs",
			"--keystore=k8s://rekey-system/rekey-keystore", "--root-key-file=/etc/rekey/root-key/root.key", "--page-size=500"} {
			if !slices.Contains(a, w) {
				t.Errorf("args %q: no %s", a, w)
			}
		}
		env, _, _ := unstructured.NestedSlice(c, "env")
		if len(env) == 0 || env[0].(map[string]any)["name"] != "GOMEMLIMIT" || env[0].(map[string]any)["value"] != "200MiB" {
			t.Errorf("env %v: want GOMEMLIMIT=200MiB first", env)
		}
		if c["image"] != "registry.example/rekey:v0.1.0" || c["imagePullPolicy"] != "IfNotPresent" {
			t.Errorf("image %v, pull policy %v", c["image"], c["imagePullPolicy"])
		}
		if h, _, _ := unstructured.NestedString(c, "readinessProbe", "httpGet", "host"); h != "127.0.0.1" {
			t.Errorf("readiness probe host %q, want 127.0.0.1", h)
		}
		if hn, _, _ := unstructured.NestedBool(d.Object, "spec", "template", "spec", "hostNetwork"); !hn {
			t.Error("hostNetwork not set")
		}
		kd := ids["Deployment rekey-system/rekey-kms"]
		if kd == nil {
			t.Fatal("every feature on: no Deployment rekey-kms")
		}
		ka := args(t, kd, "kms")
		for _, w := range []string{"--listen=127.0.0.1:18300", "--tls-cert-file=/etc/rekey/kms-tls/tls.crt", "--pod-identity",
			"--token-audience=kms.example", "--session-duration=30m", "--keystore=k8s://rekey-system/rekey-keystore", "--refresh-interval=2s"} {
			if !slices.Contains(ka, w) {
				t.Errorf("kms args %q: no %s", ka, w)
			}
		}
		kc := container(t, kd, "kms")
		if h, _, _ := unstructured.NestedString(kc, "readinessProbe", "tcpSocket", "host"); h != "127.0.0.1" {
			t.Errorf("kms readiness probe host %q, want 127.0.0.1", h)
		}
		if kc["image"] != "registry.example/rekey:v0.1.0" {
			t.Errorf("kms image %v, want the operator's", kc["image"])
		}
		if hn, _, _ := unstructured.NestedBool(kd.Object, "spec", "template", "spec", "hostNetwork"); !hn {
			t.Error("kms: hostNetwork not set")
		}
		vols, _, _ := unstructured.NestedSlice(kd.Object, "spec", "template", "spec", "volumes")
		if len(vols) != 2 || vols[1].(map[string]any)["secret"].(map[string]any)["secretName"] != "kms-serving-cert" {
			t.Errorf("kms volumes %v: want the TLS Secret kms-serving-cert", vols)
		}
		if p, _, _ := unstructured.NestedSlice(ids["Service rekey-system/rekey-kms"].Object, "spec", "ports"); len(p) != 1 ||
			fmt.Sprint(p[0].(map[string]any)["port"]) != "8300" {
			t.Errorf("kms Service ports %v, want 8300", p)
		}
		if ids["PodDisruptionBudget rekey-system/rekey-kms"] == nil {
			t.Error("every feature on: no PodDisruptionBudget rekey-kms")
		}
		sm := ids["ServiceMonitor rekey-system/rekey-controller-manager-metrics-monitor"]
		svc := ids["Service rekey-system/rekey-controller-manager-metrics-service"]
		if sm != nil && svc != nil {
			sel, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
			for l, v := range sel {
				if svc.GetLabels()[l] != v {
					t.Errorf("the ServiceMonitor selects %s=%s, which the metrics Service has not", l, v)
				}
			}
		}
	})

	t.Run("root key from a CSI volume", func(t *testing.T) {
		d := find(t, render(t, "--set", "rootKey.volume.csi.driver=secrets-store.csi.k8s.io",
			"--set", "rootKey.volume.csi.readOnly=true", "--set", "rootKey.secretKey=rekey-root.key"), "Deployment", deploy)
		vols, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "volumes")
		v := vols[0].(map[string]any)
		if v["name"] != "root-key" || v["csi"] == nil || v["secret"] != nil {
			t.Errorf("root-key volume %v: want the CSI volume instead of the Secret", v)
		}
		if !slices.Contains(args(t, d), "--root-key-file=/etc/rekey/root-key/rekey-root.key") {
			t.Errorf("args %q", args(t, d))
		}
	})

	t.Run("keystore and root key names", func(t *testing.T) {
		objs := render(t, "--set", "keystore.secretName=ks", "--set", "rootKey.secretName=rk")
		if !slices.Contains(args(t, find(t, objs, "Deployment", deploy)), "--keystore=k8s://rekey-system/ks") {
			t.Error("--keystore does not name the Secret ks")
		}
		p := find(t, objs, "ValidatingAdmissionPolicy", "rekey-keep-keys")
		rules, _, _ := unstructured.NestedSlice(p.Object, "spec", "matchConstraints", "resourceRules")
		names, _, _ := unstructured.NestedStringSlice(rules[1].(map[string]any), "resourceNames")
		if !slices.Equal(names, []string{"ks", "rk"}) {
			t.Errorf("the keep-keys policy protects Secrets %q, want ks and rk", names)
		}
	})

	t.Run("other release and namespace", func(t *testing.T) {
		out, err := helm(t, "template", "ops", chartDir(t), "-n", "security")
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		objs := parseDocs(t, []byte(out))
		p := find(t, objs, "ValidatingAdmissionPolicy", "ops-rekey-keep-keys")
		sel, _, _ := unstructured.NestedString(p.Object, "spec", "matchConstraints", "namespaceSelector", "matchLabels", "kubernetes.io/metadata.name")
		if sel != "security" {
			t.Errorf("the keep-keys policy protects namespace %q, want security", sel)
		}
		if !slices.Contains(args(t, find(t, objs, "Deployment", "ops-rekey-controller-manager")), "--keystore=k8s://security/rekey-keystore") {
			t.Error("--keystore is not in the release's namespace")
		}
	})

	t.Run("leader election elsewhere, or off", func(t *testing.T) {
		objs := render(t, "--set", "leaderElection.namespace=kube-system")
		if r := find(t, objs, "Role", "rekey-leader-election-role"); r.GetNamespace() != "kube-system" {
			t.Errorf("leader election Role in %s", r.GetNamespace())
		}
		if !slices.Contains(args(t, find(t, objs, "Deployment", deploy)), "--leader-election-namespace=kube-system") {
			t.Error("no --leader-election-namespace")
		}
		objs = render(t, "--set", "leaderElection.enabled=false")
		for _, u := range objs {
			if strings.HasPrefix(u.GetName(), "rekey-leader-election") {
				t.Errorf("%s with leader election off", id(u))
			}
		}
		if slices.Contains(args(t, find(t, objs, "Deployment", deploy)), "--leader-elect") {
			t.Error("--leader-elect with leader election off")
		}
	})

	t.Run("metrics off", func(t *testing.T) {
		objs := render(t, "--set", "metrics.enabled=false", "--set", "metrics.serviceMonitor.enabled=true")
		for _, u := range objs {
			if u.GetKind() == "Service" || u.GetKind() == "ServiceMonitor" {
				t.Errorf("%s with metrics off", id(u))
			}
		}
		if !slices.Contains(args(t, find(t, objs, "Deployment", deploy)), "--metrics-bind-address=0") {
			t.Error("metrics off: no --metrics-bind-address=0")
		}
	})

	t.Run("CRD not kept, or not installed", func(t *testing.T) {
		crd := find(t, render(t, "--set", "crds.keep=false"), "CustomResourceDefinition", "keyrotations.rekey.dev")
		if _, ok := crd.GetAnnotations()["helm.sh/resource-policy"]; ok {
			t.Error("crds.keep=false: the CRD is still kept")
		}
		for _, u := range render(t, "--set", "crds.install=false") {
			if u.GetKind() == "CustomResourceDefinition" {
				t.Error("crds.install=false: the CRD is rendered")
			}
		}
	})

	t.Run("the requester policy off; the keep-keys policy stays", func(t *testing.T) {
		objs := render(t, "--set", "admissionPolicy.enabled=false")
		for _, u := range objs {
			if strings.HasSuffix(u.GetName(), "keyrotation-requester") {
				t.Errorf("%s with admissionPolicy.enabled=false", id(u))
			}
		}
		find(t, objs, "ValidatingAdmissionPolicy", "rekey-keep-keys")
		find(t, objs, "ValidatingAdmissionPolicyBinding", "rekey-keep-keys")
	})

	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"a PDB that blocks every drain", []string{"--set", "podDisruptionBudget.enabled=true"}, "would block every node drain"},
		{"replicas without leader election", []string{"--set", "replicaCount=2", "--set", "leaderElection.enabled=false"}, "needs leaderElection.enabled"},
		{"a key service PDB that blocks every drain", []string{"--set", "kms.enabled=true", "--set", "kms.replicas=1"}, "would block every node drain"},
		{"a key service on every node address", []string{"--set", "kms.enabled=true", "--set", "kms.hostNetwork=true"}, "kms.host"},
		{"a key service session over its type", []string{"--set", "kms.podIdentity.sessionDuration=1day"}, "sessionDuration"},
		{"a misspelt setting", []string{"--set", "metrics.servicemonitor.enabled=true"}, "servicemonitor"},
		{"a Secret name CEL could not hold", []string{"--set", "rootKey.secretName=root'key"}, "/rootKey/secretName"},
		{"a reader without a namespace", []string{"--set", "metrics.readers[0].name=prometheus"}, "namespace"},
	} {
		t.Run("refused: "+c.name, func(t *testing.T) {
			out, err := helm(t, append([]string{"template", release, chartDir(t), "-n", ns}, c.args...)...)
			if err == nil || !strings.Contains(out, c.want) {
				t.Errorf("helm template %s: want an error saying %q, got %v:\n%.2000s", strings.Join(c.args, " "), c.want, err, out)
			}
		})
	}
}

// TestChartAlerts: the PrometheusRule holds config/prometheus/rekey-alerts.yaml's
// rules as they are, and the settings change only what they name.
func TestChartAlerts(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(repoRoot, "config", "prometheus", "rekey-alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Groups []any `json:"groups"`
	}
	if err := yaml.Unmarshal(raw, &file); err != nil {
		t.Fatal(err)
	}
	pr := find(t, render(t, "--set", "prometheusRule.enabled=true"), "PrometheusRule", "rekey-alerts")
	groups, _, _ := unstructured.NestedSlice(pr.Object, "spec", "groups")
	want, _ := yaml.Marshal(file.Groups)
	got, _ := yaml.Marshal(groups)
	if !bytes.Equal(want, got) {
		t.Errorf("the PrometheusRule's groups are not config/prometheus/rekey-alerts.yaml's:\n%s\nwant:\n%s", got, want)
	}

	pr = find(t, render(t, "-f", "testdata/all-on.yaml"), "PrometheusRule", "rekey-alerts")
	if pr.GetLabels()["release"] != "prometheus" {
		t.Errorf("PrometheusRule labels %v: no release=prometheus", pr.GetLabels())
	}
	groups, _, _ = unstructured.NestedSlice(pr.Object, "spec", "groups")
	alerts := map[string]map[string]any{}
	for _, g := range groups {
		rules, _, _ := unstructured.NestedSlice(g.(map[string]any), "rules")
		for _, r := range rules {
			alerts[r.(map[string]any)["alert"].(string)] = r.(map[string]any)
		}
	}
	if _, ok := alerts["RekeyRotationNotProgressing"]; ok {
		t.Error("RekeyRotationNotProgressing is rendered with enabled: false")
	}
	for name, r := range alerts {
		labels, _, _ := unstructured.NestedStringMap(r, "labels")
		if labels["team"] != "platform" {
			t.Errorf("%s: labels %v, want team=platform (alertLabels)", name, labels)
		}
		if _, ok := r["enabled"]; ok {
			t.Errorf("%s: enabled rendered into the rule", name)
		}
	}
	st := alerts["RekeyRotationStalled"]
	if st["for"] != "1h" || st["labels"].(map[string]any)["severity"] != "critical" || st["expr"] == nil {
		t.Errorf("RekeyRotationStalled: %v, want for 1h, severity critical, its expr", st)
	}
	if len(alerts) != 4 {
		t.Errorf("%d alerts rendered, want 4", len(alerts))
	}
}
