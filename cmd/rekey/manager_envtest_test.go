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
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	authenticationv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/yaml"
)

// manager is one 'rekey controller' run in-process, stopped at the end of
// the test if it is still running.
type manager struct {
	logs   *logWatch
	cancel context.CancelFunc
	result chan error    // what runController returned, for logWatch.waitFor
	done   chan struct{} // closed when it returned
	err    error
}

func startManager(t *testing.T, c *cli, args ...string) *manager {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	m := &manager{logs: newLogWatch(), cancel: cancel, result: make(chan error, 1), done: make(chan struct{})}
	argv := append([]string{"--keystore", c.args[1], "--root-key-file", filepath.Join(c.dir, "root.key"),
		"--health-probe-bind-address", "0"}, args...)
	go func() {
		m.err = runController(ctx, argv, m.logs)
		close(m.done)
		m.result <- m.err
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-m.done:
		case <-time.After(30 * time.Second):
			t.Error("the manager did not stop within 30 s")
		}
	})
	return m
}

// stop stops the manager as a SIGTERM does and returns what it returned.
func (m *manager) stop(t *testing.T) error {
	t.Helper()
	m.cancel()
	select {
	case <-m.done:
		return m.err
	case <-time.After(15 * time.Second):
		t.Fatalf("the manager did not stop within 15 s:\n%s", m.logs.String())
		return nil
	}
}

func adminKubeconfig(t *testing.T) {
	t.Helper()
	u, err := url.Parse(env.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	_, direct := gatedKubeconfig(t, u.Host)
	t.Setenv("KUBECONFIG", direct)
}

// holder is the lease's holder ("" when it has none or there is no lease).
func holder(t *testing.T, ns string) string {
	t.Helper()
	l := &coordinationv1.Lease{}
	err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: leaderElectionID}, l)
	if apierrors.IsNotFound(err) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	if l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

func waitHolder(t *testing.T, ns string, m *manager, other string, limit time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		if h := holder(t, ns); h != "" && h != other {
			return h
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new holder of the lease after %s:\n%s", limit, m.logs.String())
		}
		select {
		case <-m.done:
			t.Fatalf("the manager exited: %v\n%s", m.err, m.logs.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestCleanStopReleasesTheLease: a SIGTERM (the context cancelled) stops a
// leader cleanly: no error, no stack trace, the lease given up; a second
// manager then leads at once, instead of waiting out the 15 s lease.
func TestCleanStopReleasesTheLease(t *testing.T) {
	adminKubeconfig(t)
	ns := env.Namespace(t)
	c := newCLI(t)
	leaderArgs := []string{"--leader-elect", "--leader-election-namespace", ns, "--metrics-bind-address", "0"}

	first := startManager(t, c, leaderArgs...)
	firstID := waitHolder(t, ns, first, "", time.Minute)
	first.logs.waitFor(t, "Starting workers", 30*time.Second, first.result)
	if err := first.stop(t); err != nil {
		t.Fatalf("a clean stop returned %v\n%s", err, first.logs.String())
	}
	logs := first.logs.String()
	for _, bad := range []string{`"level":"error"`, "stacktrace", "leader election lost"} {
		if strings.Contains(logs, bad) {
			t.Errorf("a clean stop logged %s:\n%s", bad, logs)
		}
	}
	if h := holder(t, ns); h != "" {
		t.Fatalf("the lease is still held by %q after a clean stop", h)
	}

	began := time.Now()
	second := startManager(t, c, leaderArgs...)
	secondID := waitHolder(t, ns, second, firstID, time.Minute)
	took := time.Since(began)
	second.logs.waitFor(t, "Starting workers", 30*time.Second, second.result)
	t.Logf("second manager %s leads %s after it started (first was %s)", secondID, took.Round(time.Millisecond), firstID)
	// The lease lasts 15 s: a lease that was not given up would be taken
	// only after it expired.
	if took >= 15*time.Second {
		t.Fatalf("the second manager waited %s for the lease", took)
	}
	if err := second.stop(t); err != nil {
		t.Fatal(err)
	}
	if h := holder(t, ns); h != "" {
		t.Fatalf("the lease is still held by %q after the second stopped", h)
	}
}

// TestMetricsNeedAnAuthorisedToken: /metrics is served over HTTPS to
// callers the apiserver authenticates and authorises: 401 without a token,
// 403 for a ServiceAccount without the metrics-reader role, 200 once it is
// bound to the role shipped in config/rbac.
func TestMetricsNeedAnAuthorisedToken(t *testing.T) {
	adminKubeconfig(t)
	ns := env.Namespace(t)
	c := newCLI(t)
	addr := freeAddr(t)
	m := startManager(t, c, "--metrics-bind-address", addr)

	scraper := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		// The manager's self-signed certificate (--metrics-cert-dir gives a real one).
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // a test against a self-signed certificate
	}}
	get := func(token string) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, "https://"+addr+"/metrics", nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		deadline := time.Now().Add(time.Minute)
		for {
			resp, err := scraper.Do(req)
			if err == nil {
				body, _ := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusInternalServerError { // the first reviews while starting
					return resp.StatusCode, string(body)
				}
				err = errors.New(string(body))
			}
			if time.Now().After(deadline) {
				t.Fatalf("GET /metrics: %v", err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	if code, _ := get(""); code != http.StatusUnauthorized {
		t.Fatalf("without a token: %d, want 401", code)
	}
	// controller-runtime's filter answers 500 to a token the apiserver
	// rejects (logged at level 4 here, not as an error).
	if code, body := getOnce(t, scraper, addr, "not-a-token"); code == http.StatusOK || strings.Contains(body, "controller_runtime_") {
		t.Fatalf("with a bogus token: %d %.200s", code, body)
	}
	// Plain HTTP on the same port gets nothing.
	if resp, err := http.Get("http://" + addr + "/metrics"); err == nil { //nolint:noctx // loopback
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("metrics served over plain HTTP")
		}
	}

	ctx := context.Background()
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	token := func(name string) string {
		t.Helper()
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
		if err := env.Client.Create(ctx, sa); err != nil {
			t.Fatal(err)
		}
		tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{
			Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptrTo(int64(600))}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tr.Status.Token
	}

	// The scraper's role, as shipped, bound to one ServiceAccount.
	raw, err := os.ReadFile(filepath.Join("..", "..", "config", "rbac", "metrics_reader_role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	role := &rbacv1.ClusterRole{}
	if err := yaml.UnmarshalStrict(raw, role); err != nil {
		t.Fatal(err)
	}
	role.Name = ns + "-metrics-reader"
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: ns + "-metrics-reader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "prometheus", Namespace: ns}},
	}
	for _, o := range []client.Object{role, binding} {
		if err := env.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = env.Client.Delete(context.Background(), o) })
	}

	if code, body := get(token("someone")); code != http.StatusForbidden {
		t.Fatalf("a ServiceAccount without the metrics-reader role: %d %s, want 403", code, body)
	}
	code, body := get(token("prometheus"))
	if code != http.StatusOK || !strings.Contains(body, "controller_runtime_") {
		t.Fatalf("a ServiceAccount with the metrics-reader role: %d %.500s, want 200 and metrics", code, body)
	}
	if err := m.stop(t); err != nil {
		t.Fatal(err)
	}
}

func getOnce(t *testing.T, c *http.Client, addr, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, "https://"+addr+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestMetricsFlags: plain HTTP metrics only on loopback; a certificate
// directory that lacks its files is an error, not a self-signed fallback.
func TestMetricsFlags(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		o    controllerOptions
		fail string
	}{
		{o: controllerOptions{metricsAddr: ":8443", metricsSecure: true}},
		{o: controllerOptions{metricsAddr: "0"}},
		{o: controllerOptions{metricsAddr: "127.0.0.1:8080"}},
		{o: controllerOptions{metricsAddr: "localhost:8080"}},
		{o: controllerOptions{metricsAddr: ":8080"}, fail: "not a loopback address"},
		{o: controllerOptions{metricsAddr: "0.0.0.0:8080"}, fail: "not a loopback address"},
		{o: controllerOptions{metricsAddr: "127.0.0.1:8080", metricsCertDir: t.TempDir()}, fail: "needs --metrics-secure"},
		{o: controllerOptions{metricsAddr: ":8443", metricsSecure: true, metricsCertDir: t.TempDir()}, fail: "tls.crt"},
	} {
		opts, err := tc.o.metricsServerOptions(ctx)
		switch {
		case tc.fail == "" && err != nil:
			t.Errorf("%+v: %v", tc.o, err)
		case tc.fail != "" && (err == nil || !strings.Contains(err.Error(), tc.fail) || !errors.Is(err, errUsage)):
			t.Errorf("%+v: %v, want a usage error with %q", tc.o, err, tc.fail)
		case tc.fail == "" && opts.SecureServing != tc.o.metricsSecure:
			t.Errorf("%+v: secure %v", tc.o, opts.SecureServing)
		case tc.fail == "" && tc.o.metricsSecure && opts.FilterProvider == nil:
			t.Errorf("%+v: served without authentication", tc.o)
		}
	}
}

// TestCleanStopSink: once stopped, the manager's "leader election lost"
// from its own lease release, an informer that could not sync and a
// reconcile cancelled by the stop are logged at info level; before a stop,
// and any other error, they stay errors. (The manager logs it from a goroutine
// of its own, sometimes after Start returned, so the test above cannot
// count on seeing it.)
func TestCleanStopSink(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var buf strings.Builder
	logger := quietCleanStop(ctx, zap.New(zap.WriteTo(&buf)).WithName("manager"))
	lost := errors.New("leader election lost")
	informer := errors.New("Timeout: failed waiting for *v1alpha1.KeyRotation Informer to sync")
	cut := fmt.Errorf("patching status: %w", context.Canceled)
	logger.Error(lost, stopMessage)
	logger.Error(informer, informerMessage)
	logger.Error(cut, "Reconciler error")
	cancel()
	logger.Error(lost, stopMessage)
	logger.Error(informer, informerMessage)
	logger.Error(cut, "Reconciler error")
	logger.Error(errors.New("boom"), stopMessage)
	logger.Error(errors.New("boom"), "Reconciler error")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 8 {
		t.Fatalf("%d lines:\n%s", len(lines), buf.String())
	}
	for i, want := range []string{`"level":"error"`, `"level":"error"`, `"level":"error"`,
		`"level":"info"`, `"level":"info"`, `"level":"info"`, `"level":"error"`, `"level":"error"`} {
		if !strings.Contains(lines[i], want) || !strings.Contains(lines[i], `"logger":"manager"`) {
			t.Errorf("line %d: %s, want %s", i, lines[i], want)
		}
	}
	for i, want := range map[int]string{3: "leader election lease released on stop",
		4: "stopped before the informer synced", 5: "Reconciler error: cut short by the stop"} {
		if !strings.Contains(lines[i], want) || strings.Contains(lines[i], "stacktrace") {
			t.Errorf("line %d: %s, want %s", i, lines[i], want)
		}
	}
	if strings.Contains(lines[3], "leader election lost") {
		t.Errorf("the release reads as a loss: %s", lines[3])
	}

	// The metrics filter: a rejected token at level 4, other failures errors.
	for _, verbosity := range []int{0, 4} {
		buf.Reset()
		metrics := quietBadTokens(zap.New(zap.WriteTo(&buf), zap.Level(zapcore.Level(-verbosity))))
		metrics.Error(errors.New("invalid bearer token"), authFailedMessage, "path", "/metrics")
		metrics.Error(errors.New(`tokenreviews.authentication.k8s.io is forbidden`), authFailedMessage, "path", "/metrics")
		lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
		want := []string{`"level":"error"`}
		if verbosity == 4 {
			want = []string{`"msg":"Authentication failed: invalid bearer token"`, `"level":"error"`}
		}
		if len(lines) != len(want) {
			t.Fatalf("verbosity %d: %d lines:\n%s", verbosity, len(lines), buf.String())
		}
		for i := range want {
			if !strings.Contains(lines[i], want[i]) || (i < len(want)-1 && strings.Contains(lines[i], "error\"")) {
				t.Errorf("verbosity %d, line %d: %s, want %s", verbosity, i, lines[i], want[i])
			}
		}
		if !strings.Contains(lines[len(lines)-1], "forbidden") {
			t.Errorf("the RBAC failure is not an error: %s", lines[len(lines)-1])
		}
	}
}

func ptrTo[T any](v T) *T { return &v }

// Tests run several managers in one process.
func init() { skipControllerNameValidation = true }
