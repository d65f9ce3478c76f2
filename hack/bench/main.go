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

// Command bench is 'make bench': in one run on a local control plane it
// measures and prints
//
//  1. the apiserver's write ceiling: a bare client listing Secrets page by
//     page and writing each back (Update with the resourceVersion read) with
//     fresh bytes of the same sizes, at the controller's concurrency; and the
//     naive loop (Get, then merge-patch fresh bytes) for reference;
//  2. the documented recipe: kubectl get -o json | (change values) |
//     kubectl replace -f -;
//  3. rekey: a KeyRotation over N annotated Secrets (3 blobs of ~200 B),
//     start to Succeeded, and the ratios against 1 and 2;
//  4. memory: the controller's peak RSS and heap for that rotation, and again
//     after 10,000 unrelated 10 KiB Secrets are added;
//  5. resume: the controller SIGKILLed mid-rotation and restarted; Secrets
//     written twice, and the final counts.
//
// Figures are printed, never asserted: the machine is shared and noisy.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rekeyv1alpha1 "github.com/rekey-dev/rekey/api/v1alpha1"
	"github.com/rekey-dev/rekey/hack/internal/harness"
	"github.com/rekey-dev/rekey/internal/kms"
	"github.com/rekey-dev/rekey/internal/kms/keystore"
)

const (
	opNamespace = "rekey-system"
	keystoreRef = "k8s://" + opNamespace + "/rekey-keystore"
	blobPlain   = 200 // plaintext bytes per value; a blob is 258 bytes
	team        = "bench"
)

type config struct {
	n, noise, recipeN, workers, pageSize int
	rekeyBin                             string
	qps                                  float64
	keep                                 bool
	rounds                               int
	pprof                                string
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "mutate" {
		if err := mutate(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "mutate:", err)
			os.Exit(1)
		}
		return
	}
	var c config
	flag.IntVar(&c.n, "n", 10000, "Secrets to rotate (3 blobs each)")
	flag.IntVar(&c.noise, "noise", 10000, "unrelated 10 KiB Secrets added for the second memory measurement")
	flag.IntVar(&c.recipeN, "recipe-n", 500, "Secrets for the kubectl recipe (one request at a time)")
	flag.IntVar(&c.workers, "workers", 8, "concurrency: the KeyRotation's maxConcurrency and the bare client's workers")
	flag.IntVar(&c.pageSize, "page-size", 1000, "list page size, for the controller and the bare client")
	flag.Float64Var(&c.qps, "qps", 5000, "client-side QPS for every client (the controller's --kube-api-qps); high = unthrottled")
	flag.StringVar(&c.rekeyBin, "rekey", "bin/rekey", "the rekey binary")
	flag.BoolVar(&c.keep, "keep", false, "keep the controller logs (printed directory)")
	flag.IntVar(&c.rounds, "rounds", 2, "alternate ceiling and rekey this many times; the best of each is compared")
	flag.StringVar(&c.pprof, "pprof", "0", "the first controller's --pprof-bind-address (for profiling a run)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, c); err != nil {
		fmt.Fprintln(os.Stderr, "\nbench FAILED:", err)
		os.Exit(1)
	}
}

func step(format string, args ...any) { fmt.Printf("\n==> "+format+"\n", args...) }

type bench struct {
	c        config
	cp       *harness.ControlPlane
	cl       client.Client
	dir      string
	rootKey  string
	engine   *kms.Engine
	rekeyBin string
}

func run(ctx context.Context, c config) error {
	rekeyBin, err := filepath.Abs(c.rekeyBin)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "rekey-bench-")
	if err != nil {
		return err
	}
	if c.keep {
		fmt.Println("bench: keeping logs in", dir)
	} else {
		defer func() { _ = os.RemoveAll(dir) }()
	}
	cp, err := harness.Start(dir)
	if err != nil {
		return err
	}
	defer func() { _ = cp.Stop() }()
	cfg := rest.CopyConfig(cp.Config)
	cfg.QPS, cfg.Burst = float32(c.qps), int(2*c.qps)
	cl, err := client.New(cfg, client.Options{Scheme: cp.Scheme})
	if err != nil {
		return err
	}
	b := &bench{c: c, cp: cp, cl: cl, dir: dir, rekeyBin: rekeyBin}
	fmt.Printf("bench: N=%d Secrets x 3 blobs of %d B plaintext, %d workers, page %d, %d cores, %s\n",
		c.n, blobPlain, c.workers, c.pageSize, cores(), time.Now().UTC().Format(time.RFC3339))
	if err := b.setup(ctx); err != nil {
		return err
	}

	step("1 and 3. The apiserver's write ceiling and rekey, alternately, %d rounds", c.rounds)
	fmt.Println("    ceiling: a bare client, paged List, Update with the resourceVersion read, fresh bytes of the same sizes")
	fmt.Println("    rekey:   a KeyRotation over the same number of annotated Secrets, kubectl-visible start to Succeeded")
	if err := b.createPlain(ctx, "bench-plain", c.n, 3, blobPlain+58, true); err != nil {
		return err
	}
	if err := b.createEncrypted(ctx, "bench-rekey", c.n, "alias/bench-1"); err != nil {
		return err
	}
	var bestCeiling, bestRekey time.Duration
	var first rotation
	for i := 1; i <= c.rounds; i++ {
		ceil, err := b.ceiling(ctx, "bench-plain")
		if err != nil {
			return err
		}
		r, err := b.rotate(ctx, "bench-rekey", fmt.Sprintf("rot-%d", i), fmt.Sprintf("alias/bench-%d", i), fmt.Sprintf("alias/bench-%d", i+1), false)
		if err != nil {
			return err
		}
		if i == 1 {
			first = r
		}
		fmt.Printf("    round %d: ceiling %d writes in %.2fs = %.0f writes/s; rekey %d Secrets (%d blobs) in %.2fs = %.0f Secrets/s, %.0f blobs/s; ratio %.2f\n",
			i, c.n, ceil.Seconds(), rate(c.n, ceil), c.n, 3*c.n, r.took.Seconds(), rate(c.n, r.took), 3*rate(c.n, r.took), rate(c.n, r.took)/rate(c.n, ceil))
		if bestCeiling == 0 || ceil < bestCeiling {
			bestCeiling = ceil
		}
		if bestRekey == 0 || r.took < bestRekey {
			bestRekey = r.took
		}
	}

	step("The naive loop (Get, then merge-patch fresh bytes), for reference")
	naive, err := b.naive(ctx, "bench-plain")
	if err != nil {
		return err
	}
	fmt.Printf("    %d writes in %.2fs: %.0f writes/s\n", c.n, naive.Seconds(), rate(c.n, naive))

	step("2. The documented recipe: kubectl get -o json | (change values) | kubectl replace -f -")
	if err := b.createPlain(ctx, "bench-recipe", c.recipeN, 3, blobPlain+58, true); err != nil {
		return err
	}
	recipe, err := b.recipe("bench-recipe")
	if err != nil {
		return err
	}
	fmt.Printf("    %d Secrets in %.2fs: %.0f writes/s\n", c.recipeN, recipe.Seconds(), rate(c.recipeN, recipe))

	rk := rate(c.n, bestRekey)
	step("Summary (best of %d rounds each)", c.rounds)
	fmt.Printf("    ceiling %.0f writes/s, naive loop %.0f writes/s, recipe %.0f writes/s, rekey %.0f Secrets/s (%.0f blobs/s)\n",
		rate(c.n, bestCeiling), rate(c.n, naive), rate(c.recipeN, recipe), rk, 3*rk)
	fmt.Printf("    rekey / ceiling: %.2f (target >= 0.90)   rekey / naive loop: %.2f   rekey / recipe: %.2f (target >= 3)\n",
		rk/rate(c.n, bestCeiling), rk/rate(c.n, naive), rk/rate(c.recipeN, recipe))

	step("4. Memory of the controller (peak RSS from /proc, peak heap from its /metrics)")
	fmt.Printf("    rotation of %d Secrets:                     peak RSS %6.1f MiB, peak heap %6.1f MiB\n", c.n, mib(first.peakRSS), mib(first.peakHeap))
	if err := b.createPlain(ctx, "bench-noise", c.noise, 1, 10<<10, false); err != nil {
		return err
	}
	k := c.rounds + 1
	r2, err := b.rotate(ctx, "bench-rekey", "rot-noise", fmt.Sprintf("alias/bench-%d", k), fmt.Sprintf("alias/bench-%d", k+1), false)
	if err != nil {
		return err
	}
	fmt.Printf("    same, with %d unrelated 10 KiB Secrets added: peak RSS %6.1f MiB, peak heap %6.1f MiB\n", c.noise, mib(r2.peakRSS), mib(r2.peakHeap))
	fmt.Printf("    RSS growth from the unrelated Secrets: %+.1f MiB (target <= 20 MiB)\n", mib(r2.peakRSS)-mib(first.peakRSS))

	step("5. Resume: SIGKILL mid-rotation, restart")
	r3, err := b.rotate(ctx, "bench-rekey", "rot-resume", fmt.Sprintf("alias/bench-%d", k+1), fmt.Sprintf("alias/bench-%d", k+2), true)
	if err != nil {
		return err
	}
	fmt.Printf("    killed after %d/%d Secrets were written; finished %s: rotated %d, skipped %d, failed %d (of %d)\n",
		r3.killedAt, c.n, r3.phase, r3.counts.Rotated, r3.counts.Skipped, r3.counts.Failed, r3.counts.Total)
	fmt.Printf("    Secrets written twice: %d (target: at most one page, %d)\n", r3.writtenTwice, c.pageSize)
	fmt.Println("\nBENCH OK")
	return nil
}

func rate(n int, d time.Duration) float64 { return float64(n) / d.Seconds() }
func mib(b int64) float64                 { return float64(b) / (1 << 20) }

func cores() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Count(string(b), "processor\t:")
}

// setup installs the CRD, makes the namespaces, the root key and the keys.
func (b *bench) setup(ctx context.Context) error {
	cp := b.cp
	if err := cp.Echo(cp.Kubectl, "apply", "-f", "config/crd/bases/"); err != nil {
		return err
	}
	if err := cp.Echo(cp.Kubectl, "wait", "--for=condition=Established", "crd/keyrotations.rekey.dev"); err != nil {
		return err
	}
	for _, ns := range []string{opNamespace, "bench-plain", "bench-recipe", "bench-rekey", "bench-noise"} {
		if err := b.cl.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return err
		}
	}
	enc, err := keystore.GenerateRootKey()
	if err != nil {
		return err
	}
	b.rootKey = filepath.Join(b.dir, "root.key")
	if err := os.WriteFile(b.rootKey, []byte(enc), 0o600); err != nil {
		return err
	}
	root, err := keystore.ParseRootKey([]byte(enc))
	if err != nil {
		return err
	}
	if b.engine, err = kms.New(ctx, kms.Options{Store: keystore.NewSecret(b.cl, opNamespace, "rekey-keystore", root)}); err != nil {
		return err
	}
	for i := 1; i <= b.c.rounds+3; i++ {
		k, err := b.engine.CreateKey(ctx, &kms.CreateKeyInput{Tags: []kms.Tag{{TagKey: rekeyv1alpha1.KeyNamespacesTag, TagValue: "bench-rekey"}}})
		if err != nil {
			return err
		}
		if _, err := b.engine.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: fmt.Sprintf("alias/bench-%d", i), TargetKeyID: k.KeyMetadata.KeyID}); err != nil {
			return err
		}
	}
	return nil
}

// parallel runs fn(i) for i in [0, n) on w workers and returns the first error.
func parallel(n, w int, fn func(i int) error) error {
	var next atomic.Int64
	var first error
	var once sync.Once
	var wg sync.WaitGroup
	for range w {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					once.Do(func() { first = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// createPlain creates n Secrets of random values. With shaped, they look
// like the rotation's Secrets (labels, annotation, three values), so the
// ceiling writes objects of the same shape and size.
func (b *bench) createPlain(ctx context.Context, ns string, n, values, size int, shaped bool) error {
	t0 := time.Now()
	err := parallel(n, 16, func(i int) error {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("s-%05d", i), Namespace: ns}, Data: map[string][]byte{}}
		if shaped {
			s.Labels = map[string]string{"team": team}
			s.Annotations = map[string]string{rekeyv1alpha1.EncryptedKeysAnnotation: "*"}
		}
		for v := range values {
			s.Data[fmt.Sprintf("v%d", v)] = randomBytes(size)
		}
		return b.cl.Create(ctx, s)
	})
	fmt.Printf("    (created %d Secrets in %s in %.1fs)\n", n, ns, time.Since(t0).Seconds())
	return err
}

func (b *bench) createEncrypted(ctx context.Context, ns string, n int, key string) error {
	t0 := time.Now()
	ec := map[string]string{"app": team}
	err := parallel(n, 16, func(i int) error {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("s-%05d", i), Namespace: ns,
			Labels:      map[string]string{"team": team},
			Annotations: map[string]string{rekeyv1alpha1.EncryptedKeysAnnotation: "*"}}, Data: map[string][]byte{}}
		for _, k := range []string{"password", "apiToken", "dsn"} {
			out, err := b.engine.Encrypt(ctx, &kms.EncryptInput{KeyID: key, Plaintext: randomBytes(blobPlain), EncryptionContext: ec})
			if err != nil {
				return err
			}
			s.Data[k] = out.CiphertextBlob
		}
		return b.cl.Create(ctx, s)
	})
	fmt.Printf("    (created %d annotated Secrets in %s in %.1fs)\n", n, ns, time.Since(t0).Seconds())
	return err
}

// ceiling lists the namespace page by page and Updates every Secret with
// fresh bytes of the same sizes, on the same number of workers as the
// controller, page after page. Like rekey's write, it also sets the two
// annotations rekey marks a rotated Secret with, so both send the apiserver
// the same change.
func (b *bench) ceiling(ctx context.Context, ns string) (time.Duration, error) {
	t0 := time.Now()
	cont := ""
	for {
		list := &corev1.SecretList{}
		if err := b.cl.List(ctx, list, client.InNamespace(ns), client.Limit(int64(b.c.pageSize)), client.Continue(cont)); err != nil {
			return 0, err
		}
		err := parallel(len(list.Items), b.c.workers, func(i int) error {
			s := &list.Items[i]
			for k, v := range s.Data {
				s.Data[k] = randomBytes(len(v))
			}
			if s.Annotations == nil {
				s.Annotations = map[string]string{}
			}
			s.Annotations[rekeyv1alpha1.RotatedByAnnotation] = string(uuid.NewUUID())
			s.Annotations["rekey.dev/rotated-blobs"] = strconv.Itoa(len(s.Data))
			return b.cl.Update(ctx, s)
		})
		if err != nil {
			return 0, err
		}
		if cont = list.Continue; cont == "" {
			return time.Since(t0), nil
		}
	}
}

// naive gets each Secret and merge-patches fresh bytes into it.
func (b *bench) naive(ctx context.Context, ns string) (time.Duration, error) {
	t0 := time.Now()
	err := parallel(b.c.n, b.c.workers, func(i int) error {
		s := &corev1.Secret{}
		if err := b.cl.Get(ctx, client.ObjectKey{Namespace: ns, Name: fmt.Sprintf("s-%05d", i)}, s); err != nil {
			return err
		}
		data := map[string][]byte{}
		for k, v := range s.Data {
			data[k] = randomBytes(len(v))
		}
		patch, _ := json.Marshal(map[string]any{"data": data})
		return b.cl.Patch(ctx, s, client.RawPatch(types.MergePatchType, patch))
	})
	return time.Since(t0), err
}

// recipe runs kubectl get | bench mutate | kubectl replace.
func (b *bench) recipe(ns string) (time.Duration, error) {
	self, err := os.Executable()
	if err != nil {
		return 0, err
	}
	script := fmt.Sprintf("%q get secrets -n %s -o json | %q mutate | %q replace -f - > /dev/null", b.cp.Kubectl, ns, self, b.cp.Kubectl)
	fmt.Printf("    $ kubectl get secrets -n %s -o json | bench mutate | kubectl replace -f -\n", ns)
	t0 := time.Now()
	out, err := b.cp.Command("bash", "-o", "pipefail", "-c", script).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("recipe: %w: %s", err, out)
	}
	return time.Since(t0), nil
}

// mutate replaces every data value of a SecretList with fresh bytes of the
// same length, so that every replace is a real write.
func mutate(in io.Reader, out io.Writer) error {
	var list map[string]any
	if err := json.NewDecoder(in).Decode(&list); err != nil {
		return err
	}
	items, _ := list["items"].([]any)
	for _, it := range items {
		data, _ := it.(map[string]any)["data"].(map[string]any)
		for k, v := range data {
			s, _ := v.(string)
			raw, err := base64.StdEncoding.DecodeString(s)
			if err != nil {
				return err
			}
			data[k] = randomBytes(len(raw))
		}
	}
	return json.NewEncoder(out).Encode(list)
}

type rotation struct {
	took              time.Duration
	peakRSS, peakHeap int64
	phase             rekeyv1alpha1.Phase
	counts            rekeyv1alpha1.SecretCounts
	killedAt          int64
	writtenTwice      int
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// controller starts 'rekey controller' with its metrics and probes on
// loopback ports and waits until it is ready, so start-up is not timed.
func (b *bench) controller(name string) (*harness.Process, string, error) {
	mport, err := freePort()
	if err != nil {
		return nil, "", err
	}
	pport, err := freePort()
	if err != nil {
		return nil, "", err
	}
	metrics, probes := fmt.Sprintf("127.0.0.1:%d", mport), fmt.Sprintf("127.0.0.1:%d", pport)
	p, err := harness.StartProcess(b.cp.Command(b.rekeyBin, "controller",
		"--keystore", keystoreRef, "--root-key-file", b.rootKey,
		"--metrics-bind-address", metrics, "--health-probe-bind-address", probes, "--pprof-bind-address", b.pprofFor(name),
		"--page-size", strconv.Itoa(b.c.pageSize), "--kube-api-qps", fmt.Sprint(b.c.qps), "--kube-api-burst", fmt.Sprint(int(2*b.c.qps))),
		filepath.Join(b.dir, name+".log"))
	if err != nil {
		return nil, "", err
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + probes + "/readyz") //nolint:noctx // loopback, short-lived
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, "http://" + metrics + "/metrics", nil
			}
		}
		if time.Now().After(deadline) {
			_ = p.Kill()
			return nil, "", fmt.Errorf("the controller was not ready in 60s (log in %s)", b.dir)
		}
		select {
		case err := <-p.Exited():
			return nil, "", fmt.Errorf("the controller exited at start: %w", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// rotate runs a KeyRotation from one alias to another with a fresh
// controller process (so its peak RSS is this run's), sampling memory; with
// kill, it SIGKILLs the controller a third of the way and starts another.
func (b *bench) rotate(ctx context.Context, ns, name, from, to string, kill bool) (rotation, error) {
	var r rotation
	proc, metricsURL, err := b.controller(name)
	if err != nil {
		return r, err
	}
	defer func() { _ = proc.Stop(10 * time.Second) }()

	if err := b.warmUp(ctx, ns, name); err != nil {
		return r, err
	}
	// Only the resume run watches the Secrets: a watch costs the apiserver
	// work per write, which the ceiling does not pay.
	writes := func() map[string]int { return nil }
	if kill {
		var stopWatch func()
		if writes, stopWatch, err = b.countWrites(ctx, ns); err != nil {
			return r, err
		}
		defer stopWatch()
	}

	kr := &rekeyv1alpha1.KeyRotation{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: rekeyv1alpha1.KeyRotationSpec{SourceKeyIDs: []string{from}, DestinationKeyID: to,
			SourceEncryptionContext: map[string]string{"app": team}, MaxConcurrency: int32(b.c.workers)}}
	t0 := time.Now()
	if err := b.cl.Create(ctx, kr); err != nil {
		return r, err
	}
	deadline := time.Now().Add(30 * time.Minute)
	for poll := 0; ; poll++ {
		if poll%4 == 0 { // every 200 ms: scraping /metrics costs the controller CPU
			rss, heap := sample(proc.Cmd.Process.Pid, metricsURL)
			r.peakRSS, r.peakHeap = max(r.peakRSS, rss), max(r.peakHeap, heap)
		}
		if err := b.cl.Get(ctx, client.ObjectKeyFromObject(kr), kr); err != nil {
			return r, err
		}
		st := kr.Status
		if st.Phase == rekeyv1alpha1.PhaseSucceeded || st.Phase == rekeyv1alpha1.PhaseFailed {
			break
		}
		if written := len(writes()); kill && r.killedAt == 0 && written >= b.c.n/3 {
			// A crash in the middle of a page: some of its Secrets written, none checkpointed.
			r.killedAt = int64(written)
			_ = proc.Kill()
			if proc, metricsURL, err = b.controller(name + "-restarted"); err != nil {
				return r, err
			}
		}
		select {
		case err := <-proc.Exited():
			return r, fmt.Errorf("the controller exited (log in %s): %w", b.dir, err)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return r, errors.New("the rotation did not finish in 30 minutes")
		}
	}
	r.took = time.Since(t0)
	r.phase, r.counts = kr.Status.Phase, kr.Status.Secrets
	if r.phase != rekeyv1alpha1.PhaseSucceeded {
		return r, fmt.Errorf("rotation %s ended %s: %+v", name, r.phase, kr.Status.Failures)
	}
	for _, n := range writes() {
		if n > 1 {
			r.writtenTwice++
		}
	}
	return r, nil
}

func (b *bench) pprofFor(name string) string {
	if name == "rot-2" {
		return b.c.pprof
	}
	return "0"
}

// warmUp waits until the controller reconciles KeyRotations (its informer
// synced), with a paused one, so that start-up is not part of the timing.
func (b *bench) warmUp(ctx context.Context, ns, name string) error {
	kr := &rekeyv1alpha1.KeyRotation{ObjectMeta: metav1.ObjectMeta{Name: "warmup-" + name, Namespace: ns},
		Spec: rekeyv1alpha1.KeyRotationSpec{SourceKeyIDs: []string{"alias/bench-1"}, DestinationKeyID: "alias/bench-1", Paused: true}}
	if err := b.cl.Create(ctx, kr); err != nil {
		return err
	}
	defer func() { _ = b.cl.Delete(ctx, kr) }()
	deadline := time.Now().Add(60 * time.Second)
	for kr.Status.Phase == "" {
		if time.Now().After(deadline) {
			return errors.New("the controller never reconciled the warm-up KeyRotation")
		}
		time.Sleep(20 * time.Millisecond) // polling the apiserver; bounded by the deadline
		if err := b.cl.Get(ctx, client.ObjectKeyFromObject(kr), kr); err != nil {
			return err
		}
	}
	return nil
}

// sample reads the process's RSS and the heap its metrics report.
func sample(pid int, metricsURL string) (rss, heap int64) {
	if f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
				kb, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
				rss = kb << 10
			}
		}
		_ = f.Close()
	}
	resp, err := http.Get(metricsURL) //nolint:noctx // loopback, short-lived
	if err != nil {
		return rss, 0
	}
	defer func() { _ = resp.Body.Close() }()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_memstats_heap_inuse_bytes "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			heap = int64(f)
		}
	}
	return rss, heap
}

// countWrites watches the namespace's Secrets and counts modifications per Secret.
func (b *bench) countWrites(ctx context.Context, ns string) (func() map[string]int, func(), error) {
	wc, err := client.NewWithWatch(b.cp.Config, client.Options{Scheme: b.cp.Scheme})
	if err != nil {
		return nil, nil, err
	}
	w, err := wc.Watch(ctx, &metav1.PartialObjectMetadataList{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "SecretList"}}, client.InNamespace(ns))
	if err != nil {
		return nil, nil, err
	}
	var mu sync.Mutex
	counts := map[string]int{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			if ev.Type != watch.Modified {
				continue
			}
			if o, ok := ev.Object.(client.Object); ok {
				mu.Lock()
				counts[o.GetName()]++
				mu.Unlock()
			}
		}
	}()
	get := func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		out := make(map[string]int, len(counts))
		for k, v := range counts {
			out[k] = v
		}
		return out
	}
	return get, func() { w.Stop(); <-done }, nil
}
