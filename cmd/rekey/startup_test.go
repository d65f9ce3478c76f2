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
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"syscall"
	"testing"
	"testing/fstest"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/rekey-dev/rekey/internal/kms"
	"github.com/rekey-dev/rekey/internal/kms/keystore"
)

// logLines is a logger that keeps its lines.
func logLines() (logr.Logger, *[]string) {
	var lines []string
	return funcr.New(func(prefix, args string) { lines = append(lines, prefix+" "+args) }, funcr.Options{}), &lines
}

// TestRetryUntilBacksOffAndLogs: transient failures are retried with a
// doubling, capped wait, each logged once with its attempt number; every
// attempt has its own deadline.
func TestRetryUntilBacksOffAndLogs(t *testing.T) {
	log, lines := logLines()
	var waits []time.Duration
	r := startupRetry{first: time.Second, max: 8 * time.Second, timeout: time.Minute,
		wait: func(_ context.Context, d time.Duration) error { waits = append(waits, d); return nil }}
	attempts := 0
	got, err := retryUntil(context.Background(), log, "opening the keystore", r, permanentStartError,
		func(ctx context.Context) (string, error) {
			attempts++
			if _, ok := ctx.Deadline(); !ok {
				t.Fatal("attempt without a deadline")
			}
			if attempts <= 6 {
				return "", fmt.Errorf("reading keystore: %w", syscall.ECONNREFUSED)
			}
			return "engine", nil
		})
	if err != nil || got != "engine" {
		t.Fatalf("got %q, %v", got, err)
	}
	want := []time.Duration{1, 2, 4, 8, 8, 8}
	for i := range want {
		want[i] *= time.Second
	}
	if attempts != 7 || !slices.Equal(waits, want) {
		t.Fatalf("%d attempts, waits %v; want 7 attempts, waits %v", attempts, waits, want)
	}
	if len(*lines) != 7 {
		t.Fatalf("%d log lines, want one per failure and one when done:\n%s", len(*lines), strings.Join(*lines, "\n"))
	}
	for i, l := range (*lines)[:6] {
		if !strings.Contains(l, fmt.Sprintf(`"attempt"=%d`, i+1)) || !strings.Contains(l, "connection refused") ||
			!strings.Contains(l, "retrying") {
			t.Fatalf("line %d: %s", i+1, l)
		}
	}
	if !strings.Contains((*lines)[6], "done") {
		t.Fatalf("last line: %s", (*lines)[6])
	}
}

// TestRetryUntilStopsOnPermanentError: a keystore the root key cannot open
// is not retried.
func TestRetryUntilStopsOnPermanentError(t *testing.T) {
	log, lines := logLines()
	r := defaultStartupRetry
	r.wait = func(context.Context, time.Duration) error { t.Fatal("waited after a permanent error"); return nil }
	attempts := 0
	_, err := retryUntil(context.Background(), log, "opening", r, permanentStartError, func(context.Context) (int, error) {
		attempts++
		return 0, fmt.Errorf("keystore secret ns/name: %w", keystore.ErrWrongRootKey)
	})
	if !errors.Is(err, keystore.ErrWrongRootKey) || attempts != 1 || len(*lines) != 0 {
		t.Fatalf("err %v after %d attempts, %d log lines", err, attempts, len(*lines))
	}
}

// TestRetryUntilStopsWhenCancelled: waiting ends with the context, and an
// attempt cut short by it is not logged as a failure.
func TestRetryUntilStopsWhenCancelled(t *testing.T) {
	log, lines := logLines()
	ctx, cancel := context.WithCancel(context.Background())
	r := defaultStartupRetry
	r.wait = func(context.Context, time.Duration) error { t.Fatal("waited after the context ended"); return nil }
	_, err := retryUntil(ctx, log, "opening", r, permanentStartError, func(ctx context.Context) (int, error) {
		cancel()
		return 0, fmt.Errorf("reading keystore: %w", ctx.Err())
	})
	if !errors.Is(err, context.Canceled) || len(*lines) != 0 {
		t.Fatalf("err %v, log %v", err, *lines)
	}
}

// TestRetryUntilStopsWhileWaiting: a cancel during the wait ends it.
func TestRetryUntilStopsWhileWaiting(t *testing.T) {
	log, _ := logLines()
	ctx, cancel := context.WithCancel(context.Background())
	r := startupRetry{first: time.Hour, max: time.Hour, timeout: time.Minute,
		wait: func(ctx context.Context, d time.Duration) error { cancel(); return sleepCtx(ctx, d) }}
	attempts := 0
	_, err := retryUntil(ctx, log, "opening", r, permanentStartError, func(context.Context) (int, error) {
		attempts++
		return 0, apierrors.NewServiceUnavailable("starting")
	})
	if !errors.Is(err, context.Canceled) || attempts != 1 {
		t.Fatalf("err %v after %d attempts", err, attempts)
	}
}

var schemaGR = schema.GroupResource{Resource: "secrets"}

func TestPermanentStartError(t *testing.T) {
	for err, want := range map[error]bool{
		fmt.Errorf("keystore x: %w", keystore.ErrWrongRootKey):                    true,
		fmt.Errorf("keystore x: %w", keystore.ErrCorrupt):                         true,
		fmt.Errorf("%w: state format 9", kms.ErrBadState):                         true,
		fmt.Errorf("keystore x: %w", keystore.ErrRollback):                        true,
		fmt.Errorf("keystore x: %w", keystore.ErrForeign):                         true,
		fmt.Errorf("keystore x: %w", keystore.ErrOldFormat):                       true,
		fmt.Errorf("keystore x: %w", keystore.ErrMissing):                         false, // created by an admin later
		apierrors.NewServiceUnavailable("x"):                                      false,
		apierrors.NewForbidden(schemaGR, "x", errors.New("RBAC not applied yet")): false,
		&url.Error{Op: "Get", URL: "https://10.0.0.1", Err: syscall.ECONNREFUSED}: false,
		io.ErrUnexpectedEOF: false,
	} {
		if got := permanentStartError(err); got != want {
			t.Errorf("permanentStartError(%v) = %v, want %v", err, got, want)
		}
	}
}

// TestStartupProbes: while start-up waits the process is alive but not ready.
func TestStartupProbes(t *testing.T) {
	stop, err := serveStartupProbes("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stop()
	addr := freeAddr(t)
	stop, err = serveStartupProbes(addr)
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, "http://"+addr+"/healthz", http.StatusOK)
	wantStatus(t, "http://"+addr+"/readyz", http.StatusServiceUnavailable)
	stop()
	// The address is free again for the manager.
	stop, err = serveStartupProbes(addr)
	if err != nil {
		t.Fatalf("address not released: %v", err)
	}
	stop()
	if stop, err = serveStartupProbes("0"); err != nil {
		t.Fatal(err)
	}
	stop()
}

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

func wantStatus(t *testing.T, target string, status int) {
	t.Helper()
	resp, err := http.Get(target) //nolint:noctx // loopback test server
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != status {
		t.Fatalf("GET %s: %d, want %d", target, resp.StatusCode, status)
	}
}

func TestCgroupMemoryLimit(t *testing.T) {
	cases := []struct {
		name  string
		fs    fstest.MapFS
		limit int64
		ok    bool
	}{
		{"v2 in a cgroup namespace", fstest.MapFS{
			"proc/self/cgroup":         {Data: []byte("0::/\n")},
			"sys/fs/cgroup/memory.max": {Data: []byte("268435456\n")},
		}, 268435456, true},
		{"v2 with the cgroup's path", fstest.MapFS{
			"proc/self/cgroup": {Data: []byte("0::/kubepods/burstable/pod1/ctr\n")},
			"sys/fs/cgroup/kubepods/burstable/pod1/ctr/memory.max": {Data: []byte("536870912\n")},
			"sys/fs/cgroup/memory.max":                             {Data: []byte("max\n")},
		}, 536870912, true},
		{"v2 without a limit", fstest.MapFS{
			"proc/self/cgroup":         {Data: []byte("0::/\n")},
			"sys/fs/cgroup/memory.max": {Data: []byte("max\n")},
		}, 0, false},
		{"v1", fstest.MapFS{
			"proc/self/cgroup": {Data: []byte("12:cpu,cpuacct:/x\n11:memory:/kubepods/pod1\n")},
			"sys/fs/cgroup/memory/kubepods/pod1/memory.limit_in_bytes": {Data: []byte("134217728\n")},
		}, 134217728, true},
		{"v1 without a limit", fstest.MapFS{
			"proc/self/cgroup":                           {Data: []byte("11:memory:/\n")},
			"sys/fs/cgroup/memory/memory.limit_in_bytes": {Data: []byte("9223372036854771712\n")},
		}, 0, false},
		{"no cgroup files", fstest.MapFS{}, 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			limit, ok := cgroupMemoryLimit(tc.fs)
			if limit != tc.limit || ok != tc.ok {
				t.Fatalf("got %d, %v; want %d, %v", limit, ok, tc.limit, tc.ok)
			}
		})
	}
}

// TestGoMemoryLimit: 90% of the container's limit, unless GOMEMLIMIT says.
func TestGoMemoryLimit(t *testing.T) {
	fsys := fstest.MapFS{
		"proc/self/cgroup":         {Data: []byte("0::/\n")},
		"sys/fs/cgroup/memory.max": {Data: []byte("268435456\n")},
	}
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	if got := goMemoryLimit(getenv, fsys); got != 241591910 {
		t.Fatalf("limit %d, want 90%% of 256 MiB (241591910)", got)
	}
	env["GOMEMLIMIT"] = "200MiB"
	if got := goMemoryLimit(getenv, fsys); got != 0 {
		t.Fatalf("GOMEMLIMIT set, but the limit was changed to %d", got)
	}
	delete(env, "GOMEMLIMIT")
	if got := goMemoryLimit(getenv, fstest.MapFS{}); got != 0 {
		t.Fatalf("no cgroup limit, but the limit was changed to %d", got)
	}
}

// Flags that would break the memory bound are refused before anything
// starts, with the usage exit code.
func TestControllerRefusesBadListFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"--list-budget-bytes", "1048576"}, "--list-budget-bytes 1048576 is below 4194304"},
		{[]string{"--page-size", "0"}, "--page-size 0"},
	} {
		var stderr bytes.Buffer
		code := run(context.Background(), append([]string{"controller"}, tc.args...), strings.NewReader(""), io.Discard, &stderr)
		if code != 2 || !strings.Contains(stderr.String(), tc.msg) {
			t.Errorf("%v: exit %d, stderr %q (want 2, %q)", tc.args, code, stderr.String(), tc.msg)
		}
	}
}
