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
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"

	"github.com/rekey-dev/rekey/internal/kms"
	"github.com/rekey-dev/rekey/internal/kms/keystore"
)

// startupRetry is how the controller waits for what it reads at start-up
// (the keystore Secret): attempts of at most timeout each, separated by a
// wait that doubles from first up to max.
type startupRetry struct {
	first, max, timeout time.Duration
	// wait waits d or until ctx is done (a timer; tests replace it).
	wait func(ctx context.Context, d time.Duration) error
}

var defaultStartupRetry = startupRetry{first: 500 * time.Millisecond, max: 30 * time.Second, timeout: 30 * time.Second, wait: sleepCtx}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// retryUntil calls open until it succeeds, returns an error permanent says
// retrying cannot fix, or ctx is done (then it returns ctx's error). Every
// failed attempt is logged once, with its number and the wait before the
// next.
func retryUntil[T any](ctx context.Context, log logr.Logger, what string, r startupRetry,
	permanent func(error) bool, open func(context.Context) (T, error)) (T, error) {
	var zero T
	delay := r.first
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, r.timeout)
		v, err := open(actx)
		cancel()
		switch {
		case err == nil:
			if attempt > 1 {
				log.Info(what+": done", "attempt", attempt)
			}
			return v, nil
		case ctx.Err() != nil:
			return zero, ctx.Err()
		case permanent(err):
			return zero, err
		}
		log.Error(err, what+": failed, retrying", "attempt", attempt, "retryIn", delay.String())
		if err := r.wait(ctx, delay); err != nil {
			return zero, err
		}
		delay = min(2*delay, r.max)
	}
}

// permanentStartError reports whether opening the keystore failed in a way
// that reading it again cannot fix: the root key does not open it, it is not
// a usable keystore, it was rolled back or swapped for another, or it is in
// an old format. Anything else (the apiserver unreachable, slow, refusing
// for now, the keystore not created yet) is retried.
func permanentStartError(err error) bool {
	for _, target := range []error{keystore.ErrWrongRootKey, keystore.ErrCorrupt, kms.ErrBadState,
		keystore.ErrRollback, keystore.ErrForeign, keystore.ErrOldFormat} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// serveStartupProbes answers the kubelet's probes on addr while start-up
// waits, before the manager serves them: /healthz 200 (the process is alive,
// waiting is progress) and /readyz 503. Without it a controller waiting for
// the apiserver would fail its liveness probe and be restarted. stop closes
// the listener, so the manager can bind the address. addr "" or "0" serves
// nothing.
func serveStartupProbes(addr string) (stop func(), err error) {
	if addr == "" || addr == "0" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("health probe address %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "starting: waiting for the keystore", http.StatusServiceUnavailable)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() { _ = srv.Serve(ln); close(done) }()
	return func() { _ = srv.Close(); <-done }, nil
}

// memoryLimitShare is the part of the container's memory limit given to the
// Go runtime as its soft limit (GOMEMLIMIT); the rest is left for what the
// runtime does not count (stacks, fragmentation, cgo).
const memoryLimitShare = 0.9

// noCgroupLimit: cgroup v1 reports "no limit" as a number near 2^63.
const noCgroupLimit = 1 << 60

// cgroupMemoryLimit returns the memory limit of this process's cgroup
// (v2 memory.max, or v1 memory.limit_in_bytes), read from fsys (the root
// file system), and false when there is none.
func cgroupMemoryLimit(fsys fs.FS) (int64, bool) {
	f, err := fsys.Open("proc/self/cgroup")
	if err != nil {
		return 0, false
	}
	defer func() { _ = f.Close() }()
	var candidates []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// hierarchy-id:controllers:path
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		p := strings.TrimPrefix(parts[2], "/")
		switch {
		case parts[0] == "0" && parts[1] == "":
			// v2; in a cgroup namespace the container's own cgroup is the
			// mount's root, so try the root too.
			candidates = append(candidates, path.Join("sys/fs/cgroup", p, "memory.max"), "sys/fs/cgroup/memory.max")
		case slices.Contains(strings.Split(parts[1], ","), "memory"):
			candidates = append(candidates, path.Join("sys/fs/cgroup/memory", p, "memory.limit_in_bytes"),
				"sys/fs/cgroup/memory/memory.limit_in_bytes")
		}
	}
	for _, c := range candidates {
		b, err := fs.ReadFile(fsys, c)
		if err != nil {
			continue
		}
		s := strings.TrimSpace(string(b))
		if s == "max" {
			return 0, false
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 || n >= noCgroupLimit {
			return 0, false
		}
		return n, true
	}
	return 0, false
}

// rootFS is the file system the cgroup files are read from (tests replace it).
var rootFS = os.DirFS("/")

// goMemoryLimit decides the Go runtime's memory limit at start-up: none when
// GOMEMLIMIT is set (the runtime has read it), else memoryLimitShare of the
// cgroup's limit, if there is one. It returns the limit to set, or 0.
func goMemoryLimit(getenv func(string) string, fsys fs.FS) int64 {
	if getenv("GOMEMLIMIT") != "" {
		return 0
	}
	limit, ok := cgroupMemoryLimit(fsys)
	if !ok {
		return 0
	}
	return int64(float64(limit) * memoryLimitShare)
}
