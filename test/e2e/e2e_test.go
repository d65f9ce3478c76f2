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

// Package e2e is the end-to-end suite: rekey installed as a real Deployment
// in a real single-node cluster (etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler, kubelet, containerd; see
// hack/e2e/cluster.sh), from dist/install.yaml with the image built here.
//
// It installs the bundle on the empty cluster in one command, creates the
// root key, the keystore and two keys as docs/operations.md says, and runs
// a rotation through the operator's Pod. It runs the key service for
// workloads as Pods (dist/kms-service.yaml), and a workload Pod that
// decrypts its namespace's value with the AWS SDK's default configuration
// and is refused another namespace's key (workload_test.go), then
// uninstalls the key service. Then, for every uninstall route —
// `make undeploy`, `kubectl delete -f dist/install.yaml` with and without
// `-l 'rekey.dev/uninstall!=keep'`, and `helm uninstall` after switching to
// the chart (charts/rekey) as the guide says — it uninstalls, checks that
// the namespace rekey-system with the Secrets rekey-keystore and
// rekey-root-key is still there, unchanged and not being deleted (a real
// kube-controller-manager would finish any deletion), and that the
// operator's Pods are gone; then reinstalls the same way and rotates again
// with the same keys. Last it removes the keys for good the documented way
// and waits for the namespace to be gone.
//
// It runs only under `make test-e2e`, which starts the cluster, loads the
// image and sets REKEY_E2E_*; plain `go test ./...` skips it.
//
// This cluster has no kube-proxy and its apiserver listens on 127.0.0.1
// only, so the bundle's Deployment is applied with what this cluster needs
// and nothing else (see forThisCluster): the host network, the apiserver at
// 127.0.0.1, and the probe and metrics ports on 127.0.0.1. Uninstalling
// uses the bundle as rendered. The chart is installed with the same
// settings, through its values (helmInstall).
package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	rekeyv1alpha1 "github.com/rekey-dev/rekey/api/v1alpha1"
	"github.com/rekey-dev/rekey/internal/kms"
	"github.com/rekey-dev/rekey/internal/kms/keystore"
	"github.com/rekey-dev/rekey/internal/testenv"
)

const (
	repoRoot   = "../.."
	ns         = "rekey-system"
	deployName = "rekey-controller-manager"
	keystoreID = "k8s://rekey-system/rekey-keystore"
	appNS      = "billing"
	nSecrets   = 20
)

// keyAliases are the two keys; each rotation moves the Secrets from one to
// the other.
var (
	keyAliases        = [2]string{"alias/billing-2025", "alias/billing-2026"}
	encryptionContext = map[string]string{"app": "billing"}
)

var skipReason string

func TestMain(m *testing.M) {
	if os.Getenv("REKEY_E2E_KUBECONFIG") == "" {
		skipReason = "test/e2e needs a real cluster: run `make test-e2e` (it starts one with hack/e2e/cluster.sh and sets REKEY_E2E_*)"
	}
	os.Exit(m.Run())
}

// suite is what the steps share.
type suite struct {
	t          *testing.T
	ctx        context.Context
	dir        string // the reader's working directory: dist/install.yaml, root.key
	root       string // the checkout
	kubeconfig string
	kubectl    string
	helm       string
	image      string
	// workloadImage is hack/e2e/workload's (workload_test.go); kmsPort is
	// the key service's on 127.0.0.1, once workloads ran.
	workloadImage string
	kmsPort       int
	// apiserverPort is the apiserver's on 127.0.0.1, for the operator's Pod.
	apiserverPort string
	c             client.Client
	cs            *kubernetes.Clientset
	// bundle is the patched bundle applied to this cluster.
	bundle string
	// healthPort and metricsPort are the operator's on 127.0.0.1.
	healthPort, metricsPort int
	secureMetrics           bool
	engine                  *kms.Engine
	written                 []value
	rotations               int
}

type value struct{ secret, key, plaintext string }

func TestInstallRotateUninstall(t *testing.T) {
	if skipReason != "" {
		t.Skip(skipReason)
	}
	s := newSuite(t)
	t.Cleanup(func() {
		if t.Failed() {
			s.dump()
		}
	})

	s.step("install on the empty cluster: kubectl apply -f dist/install.yaml, one command")
	s.mustKubectl("apply", "-f", s.bundle)
	s.step("root key, keystore and two keys, as docs/operations.md says")
	s.createKeys()
	s.waitOperator()
	s.checkLogs()
	s.checkMetrics()
	s.step("Secrets under " + keyAliases[0] + ", then a rotation through the operator's Pod")
	s.writeSecrets()
	s.rotate("first")
	s.workloads()

	bundle := func() { s.mustKubectl("apply", "-f", s.bundle) }
	routes := []struct {
		id, name string
		// install, when set, replaces the bundle the previous route left
		// with this route's install, which then rotates once.
		install func()
		// uninstall is the route; reinstall installs again the same way.
		uninstall, reinstall func()
		// kept: the keep-keys policy outlives the uninstall; crdKept: so
		// does the CRD.
		kept, crdKept bool
	}{
		{"undeploy", "make undeploy", nil, s.makeUndeploy, bundle, true, false},
		{"delete-kept", "kubectl delete -f dist/install.yaml -l 'rekey.dev/uninstall!=keep'", nil, s.kubectlDeleteKept, bundle, true, false},
		{"delete-all", "kubectl delete -f dist/install.yaml", nil, s.kubectlDeletePlain, bundle, false, false},
		{"helm", "helm uninstall", s.switchToHelm, s.helmUninstall, s.helmInstall, true, true},
	}
	uninstall := s.makeUndeploy
	for _, r := range routes {
		ok := t.Run(r.id, func(t *testing.T) {
			s.t = t
			if r.id == "helm" && !s.helmChart() {
				t.Skip("no Helm chart (charts/rekey): the helm install / helm uninstall route is not run")
			}
			if r.install != nil {
				r.install()
				s.waitOperator()
				s.checkMetrics()
				s.rotate(r.id + "-installed")
				if r.id == "helm" {
					s.step("the chart's key service (kms.enabled), and the workload Pod against it")
					s.waitKMS(s.kmsPort)
					s.runWorkload("workload-helm")
				}
				uninstall = r.uninstall
			}
			s.waitProtected()
			before := s.keys()
			s.step("uninstall: " + r.name)
			r.uninstall()
			s.assertUninstalled(r.name, before, r.kept, r.crdKept)
			s.step("reinstall, and rotate with the same keys")
			r.reinstall()
			s.waitOperator()
			if fmt.Sprint(s.keys()) != fmt.Sprint(before) {
				t.Fatalf("the reinstall changed rekey-keystore or rekey-root-key")
			}
			s.rotate("after-" + r.id)
		})
		s.t = t
		if !ok {
			t.FailNow()
		}
	}

	s.step("remove the keys for good, the documented way: uninstall, label, delete")
	uninstall()
	s.mustKubectl("label", "namespace", ns, "rekey.dev/allow-delete=true")
	s.mustKubectl("delete", "namespace", ns, "--wait=false")
	s.mustKubectl("delete", "validatingadmissionpolicybinding,validatingadmissionpolicy", "rekey-keep-keys", "--ignore-not-found")
	s.eventually(2*time.Minute, "namespace "+ns+" deleted", func() error {
		err := s.c.Get(s.ctx, client.ObjectKey{Name: ns}, &corev1.Namespace{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there (%w)", err)
	})
	t.Logf("namespace %s and its keys are gone, as asked", ns)
}

func newSuite(t *testing.T) *suite {
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	s := &suite{t: t, ctx: context.Background(), root: root,
		kubeconfig: os.Getenv("REKEY_E2E_KUBECONFIG"), kubectl: os.Getenv("REKEY_E2E_KUBECTL"), helm: os.Getenv("REKEY_E2E_HELM"), image: os.Getenv("REKEY_E2E_IMAGE"),
		apiserverPort: os.Getenv("REKEY_E2E_APISERVER_PORT"), workloadImage: os.Getenv("REKEY_E2E_WORKLOAD_IMAGE")}
	if s.kubectl == "" || s.image == "" {
		t.Fatal("REKEY_E2E_KUBECTL and REKEY_E2E_IMAGE must be set with REKEY_E2E_KUBECONFIG (make test-e2e sets them)")
	}
	port := s.apiserverPort
	if port == "" {
		t.Fatal("REKEY_E2E_APISERVER_PORT must be set: the apiserver's port on 127.0.0.1, for the operator's Pod")
	}
	if s.dir = os.Getenv("REKEY_E2E_DIR"); s.dir == "" {
		s.dir = t.TempDir()
	} else if err := os.MkdirAll(s.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", s.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if s.c, err = client.New(cfg, client.Options{Scheme: testenv.Scheme()}); err != nil {
		t.Fatal(err)
	}
	if s.cs, err = kubernetes.NewForConfig(cfg); err != nil {
		t.Fatal(err)
	}
	if err := s.c.Get(s.ctx, client.ObjectKey{Name: ns}, &corev1.Namespace{}); !apierrors.IsNotFound(err) {
		t.Fatalf("namespace %s exists already (%v): the suite needs a cluster without rekey", ns, err)
	}

	s.step("rekey CLI from this checkout, and dist/install.yaml for image " + s.image)
	build := exec.Command("go", "build", "-o", filepath.Join(s.dir, "bin", "rekey"), "./cmd/rekey")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/rekey: %v\n%s", err, out)
	}
	// The reader's copy of the bundle, as `make build-installer` rendered it.
	raw, err := os.ReadFile(filepath.Join(root, "dist", "install.yaml"))
	if err != nil {
		t.Fatalf("%v: make test-e2e renders it with `make build-installer IMG=%s`", err, s.image)
	}
	if err := os.MkdirAll(filepath.Join(s.dir, "dist"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.dir, "dist", "install.yaml"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if s.healthPort, err = freePort(); err != nil {
		t.Fatal(err)
	}
	if s.metricsPort, err = freePort(); err != nil {
		t.Fatal(err)
	}
	patched, secure, err := forThisCluster(raw, s.image, port, s.healthPort, s.metricsPort)
	if err != nil {
		t.Fatal(err)
	}
	s.secureMetrics = secure
	s.bundle = filepath.Join(s.dir, "install-e2e.yaml")
	if err := os.WriteFile(s.bundle, patched, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("the bundle's Deployment for this cluster: hostNetwork, KUBERNETES_SERVICE_HOST=127.0.0.1:%s, probes on 127.0.0.1:%d, metrics on 127.0.0.1:%d",
		port, s.healthPort, s.metricsPort)
	return s
}

// forThisCluster returns the bundle with the Deployment changed for a
// cluster without kube-proxy whose apiserver listens on 127.0.0.1:port:
// the host network, the apiserver's address in the environment (as
// rest.InClusterConfig reads it), the health and metrics listeners and the
// probes on 127.0.0.1, and imagePullPolicy Never (the image was imported,
// there is no registry). It fails unless the Deployment runs image. secure
// reports whether the bundle serves metrics over HTTPS on :8443.
func forThisCluster(bundle []byte, image, port string, health, metrics int) (out []byte, secure bool, err error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(bundle), 4096)
	var docs [][]byte
	found := false
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, false, fmt.Errorf("dist/install.yaml: %w", err)
		}
		if len(u.Object) == 0 {
			continue
		}
		if u.GetKind() == "Deployment" && u.GetName() == deployName {
			found = true
			d := &appsv1.Deployment{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, d); err != nil {
				return nil, false, err
			}
			if secure, err = patchDeployment(d, image, port, health, metrics); err != nil {
				return nil, false, err
			}
			if u.Object, err = runtime.DefaultUnstructuredConverter.ToUnstructured(d); err != nil {
				return nil, false, err
			}
			delete(u.Object, "status")
			unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
			unstructured.RemoveNestedField(u.Object, "spec", "template", "metadata", "creationTimestamp")
		}
		b, err := yaml.Marshal(u.Object)
		if err != nil {
			return nil, false, err
		}
		docs = append(docs, b)
	}
	if !found {
		return nil, false, fmt.Errorf("dist/install.yaml has no Deployment %s", deployName)
	}
	return bytes.Join(docs, []byte("---\n")), secure, nil
}

func patchDeployment(d *appsv1.Deployment, image, port string, health, metrics int) (secure bool, err error) {
	spec := &d.Spec.Template.Spec
	spec.HostNetwork = true
	var c *corev1.Container
	for i := range spec.Containers {
		if spec.Containers[i].Name == "manager" {
			c = &spec.Containers[i]
		}
	}
	if c == nil {
		return false, errors.New("the Deployment has no container manager")
	}
	if c.Image != image {
		return false, fmt.Errorf("dist/install.yaml runs image %q, want %q (make build-installer IMG=%s)", c.Image, image, image)
	}
	c.ImagePullPolicy = corev1.PullNever
	c.Env = append(c.Env,
		corev1.EnvVar{Name: "KUBERNETES_SERVICE_HOST", Value: "127.0.0.1"},
		corev1.EnvVar{Name: "KUBERNETES_SERVICE_PORT", Value: port})
	args := c.Args[:0:0]
	for _, a := range c.Args {
		switch {
		case strings.HasPrefix(a, "--health-probe-bind-address="):
			a = "--health-probe-bind-address=127.0.0.1:" + strconv.Itoa(health)
		case strings.HasPrefix(a, "--metrics-bind-address="):
			secure = strings.HasSuffix(a, ":8443")
			a = "--metrics-bind-address=127.0.0.1:" + strconv.Itoa(metrics)
		}
		args = append(args, a)
	}
	c.Args = args
	for i := range c.Ports {
		switch c.Ports[i].ContainerPort {
		case 8081:
			c.Ports[i].ContainerPort = int32(health)
		default:
			c.Ports[i].ContainerPort = int32(metrics)
		}
	}
	for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
		if p != nil && p.HTTPGet != nil {
			p.HTTPGet.Host = "127.0.0.1"
			p.HTTPGet.Port = intstr.FromInt32(int32(health))
		}
	}
	return secure, nil
}

// createKeys runs docs/operations.md's root-key and keys steps.
func (s *suite) createKeys() {
	s.t.Helper()
	enc, err := keystore.GenerateRootKey()
	if err != nil {
		s.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.dir, "root.key"), []byte(enc+"\n"), 0o600); err != nil {
		s.t.Fatal(err)
	}
	s.mustKubectl("-n", ns, "create", "secret", "generic", "rekey-root-key", "--from-file=root.key")
	s.mustRekey("keystore", "init", "--keystore", keystoreID, "--root-key-file", "root.key")
	for _, alias := range keyAliases {
		s.mustRekey("key", "create", "--keystore", keystoreID, "--root-key-file", "root.key", "--alias", alias, "--allow-namespace", appNS)
	}
	root, err := keystore.ParseRootKey([]byte(enc))
	if err != nil {
		s.t.Fatal(err)
	}
	if s.engine, err = kms.New(s.ctx, kms.Options{Store: keystore.NewSecret(s.c, ns, "rekey-keystore", root)}); err != nil {
		s.t.Fatal(err)
	}
}

// waitOperator waits until the Deployment's one Pod is Ready, and fails if
// its container restarted.
func (s *suite) waitOperator() {
	s.t.Helper()
	t0 := time.Now()
	s.eventually(3*time.Minute, "the operator's Deployment available", func() error {
		d := &appsv1.Deployment{}
		if err := s.c.Get(s.ctx, client.ObjectKey{Namespace: ns, Name: deployName}, d); err != nil {
			return err
		}
		if d.Status.ObservedGeneration < d.Generation || d.Status.UpdatedReplicas != 1 || d.Status.ReadyReplicas != 1 || d.Status.Replicas != 1 {
			return fmt.Errorf("replicas %d, updated %d, ready %d", d.Status.Replicas, d.Status.UpdatedReplicas, d.Status.ReadyReplicas)
		}
		return nil
	})
	p := s.operatorPod()
	for _, cs := range p.Status.ContainerStatuses {
		if cs.RestartCount > 0 {
			prev, _ := s.kubectlOut("-n", ns, "logs", p.Name, "--previous")
			s.t.Fatalf("container %s of %s restarted %d times; its previous log:\n%s", cs.Name, p.Name, cs.RestartCount, prev)
		}
	}
	s.t.Logf("Pod %s Ready in %.1fs (node %s, host network, image %s)", p.Name, time.Since(t0).Seconds(), p.Spec.NodeName, p.Spec.Containers[0].Image)
}

func (s *suite) operatorPod() *corev1.Pod {
	s.t.Helper()
	pods := &corev1.PodList{}
	if err := s.c.List(s.ctx, pods, client.InNamespace(ns), client.MatchingLabels{"control-plane": "controller-manager"}); err != nil {
		s.t.Fatal(err)
	}
	var live []corev1.Pod
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil {
			live = append(live, p)
		}
	}
	if len(live) != 1 {
		s.t.Fatalf("%d operator Pods, want 1", len(live))
	}
	return &live[0]
}

// checkLogs reads the operator's log through the apiserver and the kubelet.
func (s *suite) checkLogs() {
	s.t.Helper()
	s.eventually(time.Minute, "the operator's log shows the lease acquired", func() error {
		out, err := s.kubectlOut("-n", ns, "logs", "deploy/"+deployName)
		if err != nil {
			return err
		}
		if !strings.Contains(out, "Successfully acquired lease") {
			return fmt.Errorf("not yet; the log so far:\n%s", indent(out))
		}
		return nil
	})
	s.t.Log("kubectl logs: the operator acquired its leader election lease")
}

// checkMetrics checks that /metrics over HTTPS refuses an anonymous caller
// and serves a ServiceAccount bound to the metrics-reader ClusterRole.
func (s *suite) checkMetrics() {
	s.t.Helper()
	if !s.secureMetrics {
		s.t.Log("the bundle serves no metrics on :8443: metrics authn/authz not checked")
		return
	}
	s.step("metrics over HTTPS with authn/authz (TokenReview, SubjectAccessReview)")
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "e2e-scraper", Namespace: "default"}}
	if err := s.c.Create(s.ctx, sa); err != nil && !apierrors.IsAlreadyExists(err) {
		s.t.Fatal(err)
	}
	crb := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "e2e-scraper-metrics-reader"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "rekey-metrics-reader"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa.Name, Namespace: sa.Namespace}}}
	if err := s.c.Create(s.ctx, crb); err != nil && !apierrors.IsAlreadyExists(err) {
		s.t.Fatal(err)
	}
	tr, err := s.cs.CoreV1().ServiceAccounts(sa.Namespace).CreateToken(s.ctx, sa.Name, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		s.t.Fatal(err)
	}
	url := fmt.Sprintf("https://127.0.0.1:%d/metrics", s.metricsPort)
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		// The operator's serving certificate is self-signed.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	get := func(token string) (int, string, error) {
		req, _ := http.NewRequestWithContext(s.ctx, http.MethodGet, url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	s.eventually(time.Minute, "metrics served to the bound ServiceAccount", func() error {
		code, body, err := get(tr.Status.Token)
		if err != nil {
			return err
		}
		if code != http.StatusOK || !strings.Contains(body, "controller_runtime_") {
			return fmt.Errorf("status %d: %.200s", code, body)
		}
		return nil
	})
	code, _, err := get("")
	if err != nil {
		s.t.Fatal(err)
	}
	if code != http.StatusUnauthorized && code != http.StatusForbidden {
		s.t.Fatalf("GET %s without a token: status %d, want 401 or 403", url, code)
	}
	s.t.Logf("GET %s: 200 with the metrics-reader's token, %d without", url, code)
}

// writeSecrets writes nSecrets annotated Secrets in appNS, two values each
// under the first key.
func (s *suite) writeSecrets() {
	s.t.Helper()
	if err := s.c.Create(s.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: appNS}}); err != nil {
		s.t.Fatal(err)
	}
	for i := range nSecrets {
		name := fmt.Sprintf("billing-db-%02d", i)
		sec := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: appNS, Labels: map[string]string{"team": "billing"},
				Annotations: map[string]string{rekeyv1alpha1.EncryptedKeysAnnotation: "password,dsn"}},
			Data: map[string][]byte{"plain": []byte("not encrypted, left alone")},
		}
		for _, k := range []string{"password", "dsn"} {
			pt := fmt.Sprintf("%s of %s", k, name)
			out, err := s.engine.Encrypt(s.ctx, &kms.EncryptInput{KeyID: keyAliases[0], Plaintext: []byte(pt), EncryptionContext: encryptionContext})
			if err != nil {
				s.t.Fatal(err)
			}
			sec.Data[k] = out.CiphertextBlob
			s.written = append(s.written, value{name, k, pt})
		}
		if err := s.c.Create(s.ctx, sec); err != nil {
			s.t.Fatal(err)
		}
	}
}

// rotate applies a KeyRotation from the key the Secrets are under to the
// other one, waits for it to succeed and checks every value.
func (s *suite) rotate(name string) {
	s.t.Helper()
	from, to := keyAliases[s.rotations%2], keyAliases[(s.rotations+1)%2]
	t0 := time.Now()
	kr := &rekeyv1alpha1.KeyRotation{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: appNS},
		Spec: rekeyv1alpha1.KeyRotationSpec{
			SourceKeyIDs:            []string{from},
			DestinationKeyID:        to,
			SourceEncryptionContext: encryptionContext,
			SecretSelector:          &metav1.LabelSelector{MatchLabels: map[string]string{"team": "billing"}},
		},
	}
	if err := s.c.Create(s.ctx, kr); err != nil {
		s.t.Fatal(err)
	}
	s.eventually(3*time.Minute, "KeyRotation "+name+" ended", func() error {
		if err := s.c.Get(s.ctx, client.ObjectKeyFromObject(kr), kr); err != nil {
			return err
		}
		if kr.Status.Phase != rekeyv1alpha1.PhaseSucceeded && kr.Status.Phase != rekeyv1alpha1.PhaseFailed {
			return fmt.Errorf("phase %q", kr.Status.Phase)
		}
		for _, c := range kr.Status.Conditions {
			if c.Type == rekeyv1alpha1.ConditionSourceKeysDrained && c.Status != metav1.ConditionUnknown {
				return nil
			}
		}
		return errors.New("SourceKeysDrained not decided")
	})
	if kr.Status.Phase != rekeyv1alpha1.PhaseSucceeded {
		s.t.Fatalf("KeyRotation %s ended %s: %+v", name, kr.Status.Phase, kr.Status.Failures)
	}
	dest, err := s.engine.DescribeKey(s.ctx, &kms.DescribeKeyInput{KeyID: to})
	if err != nil {
		s.t.Fatal(err)
	}
	for _, v := range s.written {
		sec := &corev1.Secret{}
		if err := s.c.Get(s.ctx, client.ObjectKey{Namespace: appNS, Name: v.secret}, sec); err != nil {
			s.t.Fatal(err)
		}
		out, err := s.engine.Decrypt(s.ctx, &kms.DecryptInput{CiphertextBlob: sec.Data[v.key], EncryptionContext: encryptionContext})
		if err != nil {
			s.t.Fatalf("%s/%s: %v", v.secret, v.key, err)
		}
		if out.KeyID != dest.KeyMetadata.Arn || string(out.Plaintext) != v.plaintext {
			s.t.Fatalf("%s/%s is under %s (want %s) or does not hold what was written", v.secret, v.key, out.KeyID, dest.KeyMetadata.Arn)
		}
		if string(sec.Data["plain"]) != "not encrypted, left alone" {
			s.t.Fatalf("%s: a value that is not annotated was changed", v.secret)
		}
	}
	s.rotations++
	s.t.Logf("KeyRotation %s: %s -> %s Succeeded in %.1fs (%d Secrets, %d blobs); every value decrypts under %s to what was written",
		name, from, to, time.Since(t0).Seconds(), kr.Status.Secrets.Rotated, kr.Status.Blobs.Rotated, to)
}

// --- uninstall routes ---------------------------------------------------

func (s *suite) makeUndeploy() {
	s.t.Helper()
	cmd := exec.Command("make", "--no-print-directory", "undeploy", "KUBECTL="+s.kubectl)
	cmd.Dir = s.root
	cmd.Env = s.environ()
	out, err := cmd.CombinedOutput()
	if err != nil {
		s.t.Fatalf("make undeploy: %v\n%s", err, out)
	}
	s.t.Logf("make undeploy:\n%s", indent(string(out)))
}

func (s *suite) kubectlDeleteKept() {
	s.t.Helper()
	out := s.mustKubectl("delete", "-f", "dist/install.yaml", "-l", "rekey.dev/uninstall!=keep")
	s.t.Logf("kubectl delete:\n%s", indent(out))
}

// kubectlDeletePlain deletes everything in the bundle: the namespace's
// deletion must be refused (kubectl exits 1 for it), the rest deleted.
func (s *suite) kubectlDeletePlain() {
	s.t.Helper()
	out, err := s.kubectlOut("delete", "-f", "dist/install.yaml")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(out, "rekey.dev/allow-delete=true") {
		s.t.Fatalf("kubectl delete -f dist/install.yaml: want exit status 1 with the namespace's deletion refused, got %v:\n%s", err, out)
	}
	s.t.Logf("kubectl delete (exit status 1, as documented):\n%s", indent(out))
}

// helmChart reports whether the chart exists.
func (s *suite) helmChart() bool {
	_, err := os.Stat(filepath.Join(s.root, "charts", "rekey", "Chart.yaml"))
	return err == nil
}

// switchToHelm goes from the bundle to the chart as docs/operations.md
// says: uninstall the bundle, hand the keep-keys policy it kept to Helm,
// helm install.
func (s *suite) switchToHelm() {
	s.t.Helper()
	s.step("from the bundle to the chart: make undeploy, hand rekey-keep-keys to Helm, helm install")
	s.makeUndeploy()
	s.mustKubectl("label", "validatingadmissionpolicy,validatingadmissionpolicybinding", "rekey-keep-keys",
		"app.kubernetes.io/managed-by=Helm", "--overwrite")
	s.mustKubectl("annotate", "validatingadmissionpolicy,validatingadmissionpolicybinding", "rekey-keep-keys",
		"meta.helm.sh/release-name=rekey", "meta.helm.sh/release-namespace="+ns, "--overwrite")
	s.helmInstall()
}

// helmInstall installs charts/rekey as release rekey in rekey-system, with
// the image and this cluster's settings (as forThisCluster sets them for
// the bundle) in a values file.
func (s *suite) helmInstall() {
	s.t.Helper()
	repo, tag := s.image, ""
	if i := strings.LastIndex(s.image, ":"); i > strings.LastIndex(s.image, "/") {
		repo, tag = s.image[:i], s.image[i+1:]
	}
	values := fmt.Sprintf(`image: {repository: %q, tag: %q, pullPolicy: Never}
hostNetwork: true
healthProbe: {host: 127.0.0.1, port: %d}
metrics: {host: 127.0.0.1, port: %d}
env:
- {name: KUBERNETES_SERVICE_HOST, value: "127.0.0.1"}
- {name: KUBERNETES_SERVICE_PORT, value: %q}
`, repo, tag, s.healthPort, s.metricsPort, s.apiserverPort)
	if s.kmsPort != 0 {
		// The key service for workloads, as workloads ran it from
		// dist/kms-service.yaml: one replica on the host network.
		values += fmt.Sprintf(`kms:
  enabled: true
  replicas: 1
  podDisruptionBudget: {enabled: false}
  hostNetwork: true
  host: 127.0.0.1
  port: %d
  env:
  - {name: KUBERNETES_SERVICE_HOST, value: "127.0.0.1"}
  - {name: KUBERNETES_SERVICE_PORT, value: %q}
`, s.kmsPort, s.apiserverPort)
	}
	file := filepath.Join(s.dir, "values-e2e.yaml")
	if err := os.WriteFile(file, []byte(values), 0o644); err != nil {
		s.t.Fatal(err)
	}
	out := s.mustHelm("install", "rekey", "charts/rekey", "-n", ns, "--create-namespace", "-f", file)
	s.t.Logf("helm install rekey charts/rekey -n %s --create-namespace -f values-e2e.yaml:\n%s", ns, indent(out))
}

func (s *suite) helmUninstall() {
	s.t.Helper()
	out := s.mustHelm("uninstall", "rekey", "-n", ns)
	s.t.Logf("helm uninstall:\n%s", indent(out))
}

// mustHelm runs helm in the checkout (charts/rekey), with its own
// configuration and cache in the suite's directory.
func (s *suite) mustHelm(args ...string) string {
	s.t.Helper()
	if s.helm == "" {
		s.t.Fatal("REKEY_E2E_HELM is not set: the helm binary (make test-e2e sets it to bin/helm)")
	}
	cmd := exec.Command(s.helm, args...)
	cmd.Dir = s.root
	h := filepath.Join(s.dir, "helm")
	cmd.Env = append(s.environ(), "HELM_CACHE_HOME="+h+"/cache", "HELM_CONFIG_HOME="+h+"/config", "HELM_DATA_HOME="+h+"/data")
	out, err := cmd.CombinedOutput()
	if err != nil {
		s.t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// --- checks ---------------------------------------------------------------

// keys returns the data of the two Secrets every route must keep.
func (s *suite) keys() map[string]map[string][]byte {
	s.t.Helper()
	out := map[string]map[string][]byte{}
	for _, name := range []string{"rekey-keystore", "rekey-root-key"} {
		sec := &corev1.Secret{}
		if err := s.c.Get(s.ctx, client.ObjectKey{Namespace: ns, Name: name}, sec); err != nil {
			s.t.Fatalf("Secret %s/%s: %v", ns, name, err)
		}
		out[name] = sec.Data
	}
	return out
}

// waitProtected waits until deleting the namespace is refused (the
// apiserver loads a new admission policy within about a second).
func (s *suite) waitProtected() {
	s.t.Helper()
	s.eventually(time.Minute, "namespace deletion refused by the keep-keys policy", func() error {
		out, err := s.kubectlOut("delete", "namespace", ns, "--dry-run=server")
		if err == nil {
			return fmt.Errorf("a server-side dry run of the deletion was accepted: %s", out)
		}
		if strings.Contains(out, "rekey.dev/allow-delete=true") {
			return nil
		}
		return fmt.Errorf("%w: %s", err, out)
	})
}

// assertUninstalled checks that the operator is gone (its Pods too: the
// garbage collector and the kubelet really remove them here) and its keys
// are not.
func (s *suite) assertUninstalled(route string, before map[string]map[string][]byte, kept, crdKept bool) {
	s.t.Helper()
	n := &corev1.Namespace{}
	if err := s.c.Get(s.ctx, client.ObjectKey{Name: ns}, n); err != nil {
		s.t.Fatalf("%s: namespace %s: %v", route, ns, err)
	}
	if n.DeletionTimestamp != nil || n.Status.Phase != corev1.NamespaceActive {
		s.t.Fatalf("%s: namespace %s is being deleted (phase %s), and every key with it", route, ns, n.Status.Phase)
	}
	if fmt.Sprint(s.keys()) != fmt.Sprint(before) {
		s.t.Fatalf("%s: rekey-keystore or rekey-root-key changed", route)
	}
	for _, o := range []client.Object{
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: deployName}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: deployName}},
	} {
		if err := s.c.Get(s.ctx, client.ObjectKeyFromObject(o), o); !apierrors.IsNotFound(err) {
			s.t.Fatalf("%s: %T %s still there (%v)", route, o, o.GetName(), err)
		}
	}
	out, err := s.kubectlOut("get", "crd", "keyrotations.rekey.dev")
	switch {
	case crdKept && err != nil:
		s.t.Fatalf("%s: the CRD is gone, want it kept: %v\n%s", route, err, out)
	case !crdKept && (err == nil || !strings.Contains(out, "NotFound")):
		s.t.Fatalf("%s: the CRD is still there: %v\n%s", route, err, out)
	}
	s.eventually(time.Minute, "the operator's Pods gone", func() error {
		pods := &corev1.PodList{}
		if err := s.c.List(s.ctx, pods, client.InNamespace(ns)); err != nil {
			return err
		}
		if len(pods.Items) > 0 {
			return fmt.Errorf("%d Pods left, %s first", len(pods.Items), pods.Items[0].Name)
		}
		return nil
	})
	if kept {
		out, err := s.kubectlOut("delete", "namespace", ns, "--dry-run=server")
		if err == nil || !strings.Contains(out, "rekey.dev/allow-delete=true") {
			s.t.Fatalf("%s: namespace %s no longer protected after the uninstall: %v\n%s", route, ns, err, out)
		}
	}
	// A clean stop releases the leader election lease (it is kept with the
	// namespace); noted, not failed on.
	leases := &coordinationv1.LeaseList{}
	if err := s.c.List(s.ctx, leases, client.InNamespace(ns)); err == nil {
		for _, l := range leases.Items {
			if l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != "" {
				s.t.Logf("NOTE: %s: lease %s still held by %s after the operator stopped", route, l.Name, *l.Spec.HolderIdentity)
			}
		}
	}
	s.t.Logf("%s: operator and its Pods removed; namespace %s with rekey-keystore and rekey-root-key kept, unchanged%s%s",
		route, ns, map[bool]string{true: ", still protected", false: ""}[kept], map[bool]string{true: "; the CRD kept", false: ""}[crdKept])
}

// --- helpers ----------------------------------------------------------------

func (s *suite) step(msg string) { s.t.Logf("==> %s", msg) }

func (s *suite) environ() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KUBECONFIG=") && !strings.HasPrefix(kv, "REKEY_") {
			env = append(env, kv)
		}
	}
	return append(env, "KUBECONFIG="+s.kubeconfig)
}

// kubectlOut runs kubectl in the reader's directory; the output includes stderr.
func (s *suite) kubectlOut(args ...string) (string, error) {
	cmd := exec.Command(s.kubectl, args...)
	cmd.Dir = s.dir
	cmd.Env = s.environ()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (s *suite) mustKubectl(args ...string) string {
	s.t.Helper()
	out, err := s.kubectlOut(args...)
	if err != nil {
		s.t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (s *suite) mustRekey(args ...string) {
	s.t.Helper()
	cmd := exec.Command(filepath.Join(s.dir, "bin", "rekey"), args...)
	cmd.Dir = s.dir
	cmd.Env = s.environ()
	out, err := cmd.CombinedOutput()
	if err != nil {
		s.t.Fatalf("rekey %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	s.t.Logf("rekey %s:\n%s", args[0]+" "+args[1], indent(string(out)))
}

// eventually retries f every 200 ms until it succeeds or timeout passes.
func (s *suite) eventually(timeout time.Duration, what string, f func() error) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s: not after %s: %v", what, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// dump prints what helps after a failure.
func (s *suite) dump() {
	for _, args := range [][]string{
		{"get", "nodes,pods", "-A", "-o", "wide"},
		{"-n", ns, "describe", "deployment,pods"},
		{"get", "events", "-A", "--sort-by=.lastTimestamp"},
		{"-n", ns, "logs", "deploy/" + deployName, "--all-containers", "--tail=200"},
		{"-n", ns, "logs", "deploy/" + kmsName, "--tail=100"},
	} {
		out, err := s.kubectlOut(args...)
		s.t.Logf("$ kubectl %s (%v)\n%s", strings.Join(args, " "), err, indent(out))
	}
}

func indent(s string) string {
	if s == "" {
		return ""
	}
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ") + "\n"
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
