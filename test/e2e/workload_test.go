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

package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

const (
	kmsName = "rekey-kms"
	// The workload's keys: its namespace's (appNS) and another namespace's.
	workloadKey, otherKey = "alias/workload-billing", "alias/workload-payments"
	otherNS               = "payments"
	// valuesSecret-own holds a value under workloadKey, valuesSecret-other
	// one under otherKey, both in appNS.
	valuesSecret = "workload-values"
)

// workloads is docs/workloads.md on this cluster: the key service
// (dist/kms-service.yaml, config/kms-service) runs as Pods with its TLS
// Secret made by hack/kms-tls.sh; a key granted to the namespace billing,
// another to payments; a Secret of billing's written with `rekey secret
// create`, holding a value under each; and a workload Pod — a projected
// ServiceAccount token (audience rekey), the CA, the standard AWS variables,
// the image of hack/e2e/workload (the AWS SDK for Go v2's default
// configuration, nothing of rekey's) — decrypts its namespace's value and is
// refused the other key with AccessDeniedException, which its log and its
// exit status say. The key service's audit log must show both. Then the key
// service is uninstalled, so that the uninstall routes find only the
// operator in rekey-system. The Helm route installs it again with the
// chart (kms.enabled, helmInstall) and runs the same Pod against it.
//
// This cluster has no Service routing, so the key service runs as one
// replica on the host network, listening on 127.0.0.1 with a certificate
// for 127.0.0.1 and localhost, and the workload (host network too) calls
// it at https://127.0.0.1:PORT. Two replicas sharing the keystore are
// proven in envtest (internal/kms/awsapi, cmd/rekey).
func (s *suite) workloads() {
	s.t.Helper()
	if s.workloadImage == "" {
		s.t.Fatal("REKEY_E2E_WORKLOAD_IMAGE is not set: the image of hack/e2e/workload (make test-e2e builds and loads it)")
	}
	t0 := time.Now()
	s.step("the key service for workloads: TLS with hack/kms-tls.sh, dist/kms-service.yaml as Pods")
	port, err := freePort()
	if err != nil {
		s.t.Fatal(err)
	}
	tlsDir := filepath.Join(s.dir, "kms-tls")
	_ = os.RemoveAll(tlsDir)
	s.mustRun(filepath.Join(s.root, "hack", "kms-tls.sh"), "ca", tlsDir)
	s.mustRun(filepath.Join(s.root, "hack", "kms-tls.sh"), "cert", tlsDir, "127.0.0.1", "localhost")
	s.mustKubectl("-n", ns, "create", "secret", "tls", "rekey-kms-tls", "--cert="+filepath.Join(tlsDir, "tls.crt"), "--key="+filepath.Join(tlsDir, "tls.key"))
	raw, err := os.ReadFile(filepath.Join(s.root, "dist", "kms-service.yaml"))
	if err != nil {
		s.t.Fatalf("%v: make test-e2e renders it with `make build-installer IMG=%s`", err, s.image)
	}
	patched, err := kmsForThisCluster(raw, s.image, s.apiserverPort, port)
	if err != nil {
		s.t.Fatal(err)
	}
	kmsBundle := filepath.Join(s.dir, "kms-service-e2e.yaml")
	if err := os.WriteFile(kmsBundle, patched, 0o644); err != nil {
		s.t.Fatal(err)
	}
	s.mustKubectl("apply", "-f", kmsBundle)
	s.waitKMS(port)
	s.kmsPort = port

	s.step("keys granted to billing and to payments; a Secret of billing's with a value under each, by rekey secret create")
	keyFlags := []string{"--keystore", keystoreID, "--root-key-file", "root.key"}
	for _, k := range []struct{ alias, ns string }{{workloadKey, appNS}, {otherKey, otherNS}} {
		s.mustRekey(append([]string{"key", "create", "--alias", k.alias}, keyFlags...)...)
		s.mustRekey(append(append([]string{"key", "grant", k.alias, "--operations", "decrypt"}, keyFlags...), k.ns)...)
	}
	s.mustRekey(append([]string{"secret", "create", valuesSecret + "-own", "--namespace", appNS, "--key", workloadKey,
		"--context", "app=billing", "--from-literal", "value=the billing value", "--apply"}, keyFlags...)...)
	s.mustRekey(append([]string{"secret", "create", valuesSecret + "-other", "--namespace", appNS, "--key", otherKey,
		"--context", "app=billing", "--from-literal", "value=a payments value", "--apply"}, keyFlags...)...)

	s.step("a workload Pod: projected token (audience rekey), the CA, the standard AWS variables, the AWS SDK for Go v2")
	ca, err := os.ReadFile(filepath.Join(tlsDir, "ca.crt"))
	if err != nil {
		s.t.Fatal(err)
	}
	for _, o := range []client.Object{
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: appNS}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "rekey-kms-ca", Namespace: appNS}, Data: map[string]string{"ca.crt": string(ca)}},
	} {
		if err := s.c.Create(s.ctx, o); err != nil {
			s.t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}
	s.runWorkload("workload")

	s.step("uninstall the key service: kubectl delete -f dist/kms-service.yaml")
	s.mustKubectl("delete", "-f", kmsBundle)
	s.eventually(time.Minute, "the key service's Pods gone", func() error {
		pods := &corev1.PodList{}
		if err := s.c.List(s.ctx, pods, client.InNamespace(ns), client.MatchingLabels{"app.kubernetes.io/component": "kms"}); err != nil {
			return err
		}
		if len(pods.Items) > 0 {
			return fmt.Errorf("%d Pods left", len(pods.Items))
		}
		return nil
	})
	s.t.Logf("the key service and its workload in %.1fs, from the TLS Secret to the key service's Pods gone", time.Since(t0).Seconds())
}

// waitKMS waits until the key service's one replica is Ready.
func (s *suite) waitKMS(port int) {
	s.t.Helper()
	t0 := time.Now()
	s.eventually(3*time.Minute, "the key service's Deployment available", func() error {
		d := &appsv1.Deployment{}
		if err := s.c.Get(s.ctx, client.ObjectKey{Namespace: ns, Name: kmsName}, d); err != nil {
			return err
		}
		if d.Status.ObservedGeneration < d.Generation || d.Status.ReadyReplicas != 1 || d.Status.UpdatedReplicas != 1 {
			return fmt.Errorf("replicas %d, updated %d, ready %d", d.Status.Replicas, d.Status.UpdatedReplicas, d.Status.ReadyReplicas)
		}
		return nil
	})
	s.t.Logf("the key service is Ready in %.1fs, on https://127.0.0.1:%d (host network, one replica)", time.Since(t0).Seconds(), port)
}

// runWorkload runs the workload Pod name in appNS against the key service
// on s.kmsPort and checks, from its log, its exit status and the key
// service's audit log, that it decrypted its namespace's value and was
// refused the other key; then deletes the Pod.
func (s *suite) runWorkload(name string) {
	s.t.Helper()
	pod := workloadPod(name, s.workloadImage, s.kmsPort, valuesSecret)
	if err := s.c.Create(s.ctx, pod); err != nil {
		s.t.Fatalf("creating Pod %s: %v", name, err)
	}
	s.eventually(2*time.Minute, "the workload Pod finished", func() error {
		if err := s.c.Get(s.ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
			return err
		}
		if pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed {
			return fmt.Errorf("phase %s", pod.Status.Phase)
		}
		return nil
	})
	logs := s.mustKubectl("-n", appNS, "logs", name)
	s.t.Logf("kubectl logs %s (phase %s):\n%s", name, pod.Status.Phase, indent(logs))
	if pod.Status.Phase != corev1.PodSucceeded {
		kmsLogs, _ := s.kubectlOut("-n", ns, "logs", "deploy/"+kmsName, "--tail=50")
		s.t.Fatalf("the workload Pod ended %s; the key service's log:\n%s", pod.Status.Phase, indent(kmsLogs))
	}
	for _, want := range []string{
		"credentials from CredentialsEndpointProvider",
		"DECRYPTED /var/run/values/own/value under arn:aws:kms:",
		"DENIED /var/run/values/other/value: AccessDeniedException: system:serviceaccount:billing:app",
		"\nOK\n",
	} {
		if !strings.Contains(logs, want) {
			s.t.Fatalf("the workload's log does not say %q", want)
		}
	}
	if strings.Contains(logs, "the billing value") || strings.Contains(logs, "a payments value") {
		s.t.Fatal("the workload's log holds a plaintext")
	}
	s.eventually(30*time.Second, "the key service's audit log shows the credentials and both Decrypts", func() error {
		out, err := s.kubectlOut("-n", ns, "logs", "deploy/"+kmsName)
		if err != nil {
			return err
		}
		var creds, allowed, denied bool
		for _, l := range strings.Split(out, "\n") {
			if !strings.Contains(l, "system:serviceaccount:billing:app") {
				continue
			}
			creds = creds || strings.Contains(l, "GetCredentials")
			allowed = allowed || (strings.Contains(l, `"Decrypt"`) && !strings.Contains(l, "AccessDenied"))
			denied = denied || (strings.Contains(l, `"Decrypt"`) && strings.Contains(l, "AccessDeniedException"))
		}
		if !creds || !allowed || !denied {
			return fmt.Errorf("GetCredentials %t, Decrypt allowed %t, Decrypt denied %t, in:\n%s", creds, allowed, denied, indent(out))
		}
		return nil
	})
	s.t.Logf("the workload %s decrypted billing's value and was refused payments' key (AccessDeniedException), "+
		"as its log, its exit status and the key service's audit log say", name)
	if err := s.c.Delete(s.ctx, pod); err != nil && !apierrors.IsNotFound(err) {
		s.t.Fatal(err)
	}
}

// workloadPod is docs/workloads.md's Pod, on the host network of this
// cluster: it calls the key service at https://127.0.0.1:port.
func workloadPod(name, image string, port int, secretName string) *corev1.Pod {
	url := "https://127.0.0.1:" + strconv.Itoa(port)
	secretVol := func(v string) corev1.Volume {
		return corev1.Volume{Name: v, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: secretName + "-" + v}}}
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: appNS},
		Spec: corev1.PodSpec{
			ServiceAccountName: "app",
			HostNetwork:        true,
			RestartPolicy:      corev1.RestartPolicyNever,
			SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
			Containers: []corev1.Container{{
				Name:            "app",
				Image:           image,
				ImagePullPolicy: corev1.PullNever,
				Args: []string{"-context", "app=billing",
					"-decrypt", "/var/run/values/own/value", "-denied", "/var/run/values/other/value"},
				Env: []corev1.EnvVar{
					{Name: "AWS_CONTAINER_CREDENTIALS_FULL_URI", Value: url + "/v1/credentials"},
					{Name: "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", Value: "/var/run/secrets/rekey/token"},
					{Name: "AWS_ENDPOINT_URL_KMS", Value: url},
					{Name: "AWS_REGION", Value: "local"},
					{Name: "AWS_CA_BUNDLE", Value: "/etc/rekey-kms-ca/ca.crt"},
					// The Go SDK fetches credentials with the system's
					// roots, not AWS_CA_BUNDLE (docs/workloads.md).
					{Name: "SSL_CERT_FILE", Value: "/etc/rekey-kms-ca/ca.crt"},
				},
				SecurityContext: &corev1.SecurityContext{ReadOnlyRootFilesystem: ptr.To(true), AllowPrivilegeEscalation: ptr.To(false),
					Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}},
				VolumeMounts: []corev1.VolumeMount{
					{Name: "rekey-token", MountPath: "/var/run/secrets/rekey", ReadOnly: true},
					{Name: "rekey-kms-ca", MountPath: "/etc/rekey-kms-ca", ReadOnly: true},
					{Name: "own", MountPath: "/var/run/values/own", ReadOnly: true},
					{Name: "other", MountPath: "/var/run/values/other", ReadOnly: true},
				},
			}},
			Volumes: []corev1.Volume{
				{Name: "rekey-token", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
					Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
						Audience: "rekey", ExpirationSeconds: ptr.To[int64](3600), Path: "token"}}}}}},
				{Name: "rekey-kms-ca", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
					LocalObjectReference: corev1.LocalObjectReference{Name: "rekey-kms-ca"}}}},
				secretVol("own"), secretVol("other"),
			},
		},
	}
}

// kmsForThisCluster returns dist/kms-service.yaml with the Deployment changed
// for this cluster, as forThisCluster changes the operator's: one replica
// on the host network, the apiserver at 127.0.0.1 in the environment,
// listening (and probed) on 127.0.0.1:port, imagePullPolicy Never. It
// fails unless the Deployment runs image.
func kmsForThisCluster(bundle []byte, image, apiserverPort string, port int) ([]byte, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(bundle), 4096)
	var docs [][]byte
	found := false
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, fmt.Errorf("dist/kms-service.yaml: %w", err)
		}
		if len(u.Object) == 0 {
			continue
		}
		if u.GetKind() == "Deployment" && u.GetName() == kmsName {
			found = true
			d := &appsv1.Deployment{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, d); err != nil {
				return nil, err
			}
			d.Spec.Replicas = ptr.To[int32](1)
			spec := &d.Spec.Template.Spec
			spec.HostNetwork = true
			if len(spec.Containers) != 1 || spec.Containers[0].Image != image {
				return nil, fmt.Errorf("dist/kms-service.yaml: want one container running %q (make build-installer IMG=%s)", image, image)
			}
			c := &spec.Containers[0]
			c.ImagePullPolicy = corev1.PullNever
			c.Env = append(c.Env,
				corev1.EnvVar{Name: "KUBERNETES_SERVICE_HOST", Value: "127.0.0.1"},
				corev1.EnvVar{Name: "KUBERNETES_SERVICE_PORT", Value: apiserverPort})
			listen := false
			for i, a := range c.Args {
				if strings.HasPrefix(a, "--listen=") {
					c.Args[i], listen = "--listen=127.0.0.1:"+strconv.Itoa(port), true
				}
			}
			if !listen {
				return nil, errors.New("dist/kms-service.yaml: the key service has no --listen")
			}
			c.Ports[0].ContainerPort = int32(port)
			for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe} {
				if p != nil && p.TCPSocket != nil {
					p.TCPSocket.Host = "127.0.0.1"
					p.TCPSocket.Port = intstr.FromInt32(int32(port))
				}
			}
			var err error
			if u.Object, err = runtime.DefaultUnstructuredConverter.ToUnstructured(d); err != nil {
				return nil, err
			}
			delete(u.Object, "status")
			unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
			unstructured.RemoveNestedField(u.Object, "spec", "template", "metadata", "creationTimestamp")
		}
		// One replica here: a budget of one available would block every
		// eviction; it is applied as it is all the same.
		b, err := yaml.Marshal(u.Object)
		if err != nil {
			return nil, err
		}
		docs = append(docs, b)
	}
	if !found {
		return nil, fmt.Errorf("dist/kms-service.yaml has no Deployment %s", kmsName)
	}
	return bytes.Join(docs, []byte("---\n")), nil
}

// mustRun runs a program of the checkout in the suite's directory and logs
// its output.
func (s *suite) mustRun(name string, args ...string) {
	s.t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = s.dir
	cmd.Env = s.environ()
	out, err := cmd.CombinedOutput()
	if err != nil {
		s.t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	s.t.Logf("%s %s:\n%s", filepath.Base(name), strings.Join(args, " "), indent(string(out)))
}
