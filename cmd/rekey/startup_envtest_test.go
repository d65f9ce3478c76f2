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
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// gate is a TCP proxy in front of the apiserver that drops every connection
// until it is opened.
type gate struct {
	ln      net.Listener
	target  string
	open    atomic.Bool
	dropped chan struct{} // one value per dropped connection
}

func newGate(t *testing.T, target string) *gate {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{ln: ln, target: target, dropped: make(chan struct{}, 1000)}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if !g.open.Load() {
				_ = c.Close()
				g.dropped <- struct{}{}
				continue
			}
			go g.forward(c)
		}
	}()
	return g
}

// forwardAt listens on addr and forwards every connection to target.
func forwardAt(t *testing.T, addr, target string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go forward(c, target)
		}
	}()
}

func (g *gate) forward(c net.Conn) { forward(c, g.target) }

func forward(c net.Conn, target string) {
	defer func() { _ = c.Close() }()
	up, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	defer func() { _ = up.Close() }()
	go func() { _, _ = io.Copy(up, c); _ = up.Close() }()
	_, _ = io.Copy(c, up)
}

// logWatch collects log output and lets a test wait for a line.
type logWatch struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func newLogWatch() *logWatch { return &logWatch{changed: make(chan struct{}, 1)} }

func (w *logWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	select {
	case w.changed <- struct{}{}:
	default:
	}
	return w.buf.Write(p)
}

func (w *logWatch) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// waitFor waits until the log holds s; it fails the test after limit, or
// at once when the controller returns (on exited) first.
func (w *logWatch) waitFor(t *testing.T, s string, limit time.Duration, exited <-chan error) {
	t.Helper()
	deadline := time.After(limit)
	for !strings.Contains(w.String(), s) {
		select {
		case <-w.changed:
		case err := <-exited:
			t.Fatalf("the controller returned (%v) before %q was logged:\n%s", err, s, w.String())
		case <-deadline:
			t.Fatalf("no %q in the log after %s:\n%s", s, limit, w.String())
		}
	}
}

var installCRDs sync.Once

// gatedKubeconfig writes a kubeconfig for an admin user whose server is
// addr, and one straight to the apiserver.
func gatedKubeconfig(t *testing.T, addr string) (gated, direct string) {
	t.Helper()
	installCRDs.Do(func() {
		if _, err := envtest.InstallCRDs(env.Config, envtest.CRDInstallOptions{
			Paths: []string{filepath.Join("..", "..", "config", "crd", "bases")}, ErrorIfPathMissing: true}); err != nil {
			t.Fatalf("installing the CRDs: %v", err)
		}
	})
	user, err := env.Env.AddUser(envtest.User{Name: "startup-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(env.Config.Host)
	if err != nil || !bytes.Contains(kc, []byte(u.Host)) {
		t.Fatalf("kubeconfig does not name %s (%v)", env.Config.Host, err)
	}
	dir := t.TempDir()
	direct, gated = filepath.Join(dir, "direct"), filepath.Join(dir, "gated")
	if err := os.WriteFile(direct, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(gated, bytes.ReplaceAll(kc, []byte(u.Host), []byte(addr)), 0o600); err != nil {
		t.Fatal(err)
	}
	return gated, direct
}

// TestControllerWaitsForTheAPIServer: 'rekey controller' started while
// nothing listens at the apiserver's address does not exit: it answers
// liveness (not readiness), retries reading the keystore Secret, logging
// each failure, and starts the manager once the apiserver is there.
func TestControllerWaitsForTheAPIServer(t *testing.T) {
	saved := defaultStartupRetry
	defaultStartupRetry.first, defaultStartupRetry.max = 20*time.Millisecond, 100*time.Millisecond
	t.Cleanup(func() { defaultStartupRetry = saved })

	u, err := url.Parse(env.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	apiserver := freeAddr(t) // the apiserver appears here later
	gated, direct := gatedKubeconfig(t, apiserver)
	ns := env.Namespace(t)
	keystoreRef := "k8s://" + ns + "/rekey-keystore"

	// A key in the keystore Secret, written straight to the apiserver.
	t.Setenv("KUBECONFIG", direct)
	c := newCLI(t)
	c.useKeystore(keystoreRef)
	c.ok("", "key", "create", "--alias", "alias/startup")

	t.Setenv("KUBECONFIG", gated)
	probes := freeAddr(t)
	logs := newLogWatch()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	result := make(chan error, 1)
	go func() {
		result <- runController(ctx, []string{"--keystore", keystoreRef, "--root-key-file", filepath.Join(c.dir, "root.key"),
			"--metrics-bind-address", "0", "--health-probe-bind-address", probes}, logs)
	}()

	// Nothing listens: the controller keeps trying, and stays alive.
	logs.waitFor(t, `"attempt":3`, time.Minute, result)
	if !strings.Contains(logs.String(), "connection refused") {
		t.Fatalf("the failures do not say why:\n%s", logs.String())
	}
	wantStatus(t, "http://"+probes+"/healthz", http.StatusOK)
	wantStatus(t, "http://"+probes+"/readyz", http.StatusServiceUnavailable)

	forwardAt(t, apiserver, u.Host)
	logs.waitFor(t, "opening the keystore "+keystoreRef+": done", time.Minute, result)
	logs.waitFor(t, "starting manager", time.Minute, result)
	if n, last := strings.Count(logs.String(), "failed, retrying"), lastAttempt(logs.String()); n != last {
		t.Fatalf("%d failures logged for %d failed attempts; want one line per attempt:\n%s", n, last, logs.String())
	}
	// The manager serves the probes now, on the same address.
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := http.Get("http://" + probes + "/readyz") //nolint:noctx // loopback
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the manager was not ready in a minute:\n%s", logs.String())
		}
		select {
		case err := <-result:
			t.Fatalf("the controller exited: %v\n%s", err, logs.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	cancel()
	if err := <-result; err != nil {
		t.Fatalf("controller: %v", err)
	}
}

// lastAttempt is the highest attempt number of a "failed, retrying" line.
func lastAttempt(log string) int {
	last := 0
	for _, l := range strings.Split(log, "\n") {
		if _, rest, ok := strings.Cut(l, "failed, retrying"); ok {
			if _, n, ok := strings.Cut(rest, `"attempt":`); ok {
				v, _ := strconv.Atoi(strings.SplitN(n, ",", 2)[0])
				last = max(last, v)
			}
		}
	}
	return last
}

// TestControllerStopsWhileWaiting: a SIGTERM (cancelled context) while the
// apiserver drops every connection ends the controller cleanly and well
// within the pod's 10 s grace period. It also checks that the controller set
// the Go memory limit to 90% of its cgroup's.
func TestControllerStopsWhileWaiting(t *testing.T) {
	savedFS := rootFS
	rootFS = fstest.MapFS{
		"proc/self/cgroup":         {Data: []byte("0::/\n")},
		"sys/fs/cgroup/memory.max": {Data: []byte("268435456\n")},
	}
	savedLimit := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { rootFS = savedFS; debug.SetMemoryLimit(savedLimit) })
	t.Setenv("GOMEMLIMIT", "")

	u, err := url.Parse(env.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	g := newGate(t, u.Host)
	gated, _ := gatedKubeconfig(t, g.ln.Addr().String())
	t.Setenv("KUBECONFIG", gated)
	c := newCLI(t)
	logs := newLogWatch()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	result := make(chan error, 1)
	go func() {
		result <- runController(ctx, []string{"--keystore", "k8s://rekey-system/rekey-keystore", "--root-key-file",
			filepath.Join(c.dir, "root.key"), "--metrics-bind-address", "0", "--health-probe-bind-address", "0"}, logs)
	}()
	<-g.dropped
	cancel()
	select {
	case err := <-result:
		if err != nil {
			t.Fatalf("controller: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the controller did not stop within 5 s of its context")
	}
	if got := debug.SetMemoryLimit(-1); got != 241591910 {
		t.Fatalf("Go memory limit %d, want 90%% of the cgroup's 256 MiB", got)
	}
	if !strings.Contains(logs.String(), "stopped while waiting for the keystore") {
		t.Fatalf("log:\n%s", logs.String())
	}
}

// TestControllerExitsOnWrongRootKey: a keystore the root key cannot open is
// not waited for: the controller exits and says why.
func TestControllerExitsOnWrongRootKey(t *testing.T) {
	u, err := url.Parse(env.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	_, direct := gatedKubeconfig(t, u.Host)
	t.Setenv("KUBECONFIG", direct)
	ns := env.Namespace(t)
	keystoreRef := "k8s://" + ns + "/rekey-keystore"
	owner := newCLI(t)
	owner.useKeystore(keystoreRef)
	owner.ok("", "key", "create", "--alias", "alias/other-root")

	other := newCLI(t) // another root key
	logs := newLogWatch()
	done := make(chan error, 1)
	go func() {
		done <- runController(context.Background(), []string{"--keystore", keystoreRef, "--root-key-file",
			filepath.Join(other.dir, "root.key"), "--metrics-bind-address", "0", "--health-probe-bind-address", "0"}, logs)
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "root key") {
			t.Fatalf("controller: %v", err)
		}
		if strings.Contains(logs.String(), "retrying") {
			t.Fatalf("a wrong root key was retried:\n%s", logs.String())
		}
	case <-time.After(time.Minute):
		t.Fatalf("the controller did not exit:\n%s", logs.String())
	}
}
