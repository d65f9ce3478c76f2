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
//     written twice, and the final counts;
//  6. cost per Secret at two sizes (-n and 5n by default): wall time and
//     controller CPU per Secret, and their ratio;
//  7. same-namespace memory: the controller's peak RSS and heap for a
//     rotation whose namespace also holds large unrelated Secrets (150 of
//     ~1 MiB, shaped like Helm release Secrets), against the rotation of 4.
//
// Every controller runs with GOMEMLIMIT (-gomemlimit, 230MiB), as under the
// 256Mi memory limit config/manager gives it.
//
// Figures are printed, never asserted: the machine is shared and noisy.
package main

import (
	"bufio"
	"bytes"
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
	"slices"
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
	gomemlimit                           string
	bigN, bigSize                        int
	scaleSmall, scaleLarge, scaleRounds  int
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
	flag.IntVar(&c.rounds, "rounds", 3, "alternate ceiling and rekey this many times; the median of the rounds' ratios is the figure")
	flag.StringVar(&c.pprof, "pprof", "0", "the first controller's --pprof-bind-address (for profiling a run)")
	flag.StringVar(&c.gomemlimit, "gomemlimit", "230MiB", "GOMEMLIMIT of every controller process (as under a 256Mi container limit); empty: not set")
	flag.IntVar(&c.bigN, "big-n", 150, "unrelated large Secrets added to the rotation's namespace for the same-namespace memory figure (0: skip)")
	flag.IntVar(&c.bigSize, "big-size", 1<<20-1<<10, "bytes of random data in each large Secret (a Secret holds at most 1 MiB)")
	flag.IntVar(&c.scaleSmall, "scale-small", 0, "Secrets of the smaller rotation for the cost-per-Secret figure (0: -n)")
	flag.IntVar(&c.scaleLarge, "scale-large", 0, "Secrets of the larger rotation for the cost-per-Secret figure (0: 5 x the smaller; -1: skip)")
	flag.IntVar(&c.scaleRounds, "scale-rounds", 1, "rotate the smaller then the larger namespace this many times; the median ratio is the figure")
	flag.Parse()
	if c.scaleSmall == 0 {
		c.scaleSmall = c.n
	}
	if c.scaleLarge == 0 {
		c.scaleLarge = 5 * c.scaleSmall
	}
	if c.rounds < 1 || c.scaleRounds < 1 {
		fmt.Fprintln(os.Stderr, "bench: -rounds and -scale-rounds must be at least 1")
		os.Exit(2)
	}
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
	if c.gomemlimit != "" {
		fmt.Printf("bench: every controller runs with GOMEMLIMIT=%s, as in a container with a 256Mi limit (config/manager)\n", c.gomemlimit)
	} else {
		fmt.Println("bench: the controllers run without GOMEMLIMIT (-gomemlimit '')")
	}
	if err := b.setup(ctx); err != nil {
		return err
	}
	var sum summary
	if err := b.throughput(ctx, &sum); err != nil {
		return err
	}
	if err := b.memory(ctx, &sum); err != nil {
		return err
	}
	if err := b.resume(ctx); err != nil {
		return err
	}
	if err := b.scale(ctx, &sum); err != nil {
		return err
	}
	if err := b.sameNamespace(ctx, &sum); err != nil {
		return err
	}
	sum.print(c)
	fmt.Println("\nBENCH OK")
	return nil
}

// summary holds the figures the last step prints again, each beside its
// target and the baseline it is compared with.
type summary struct {
	ratios                 []float64 // rekey / ceiling, one per round
	first, sameNS          rotation
	scaleSmall, scaleLarge []rotation
}

func (s summary) print(c config) {
	step("Summary: the figures with their targets and same-run baselines")
	fmt.Printf("    rekey / ceiling, median of %d rounds:       %.2f (rounds %s; target >= 0.90)\n", len(s.ratios), median(s.ratios), fmtFloats(s.ratios))
	if c.bigN > 0 {
		fmt.Printf("    peak RSS, %d x %.0f KiB unrelated Secrets in the namespace: %.1f MiB, heap %.1f MiB (target <= 128 MiB; baseline without them %.1f MiB, heap %.1f MiB; GOMEMLIMIT=%s)\n",
			c.bigN, float64(c.bigSize)/1024, mib(s.sameNS.peakRSS), mib(s.sameNS.peakHeap), mib(s.first.peakRSS), mib(s.first.peakHeap), orNone(c.gomemlimit))
	}
	if len(s.scaleLarge) > 0 {
		small, large := perSecret(s.scaleSmall, c.scaleSmall), perSecret(s.scaleLarge, c.scaleLarge)
		fmt.Printf("    time per Secret at %d / at %d:          %.0f µs / %.0f µs, ratio %.2f (target 0.90–1.10; baseline: the %d-Secret rotation)\n",
			c.scaleLarge, c.scaleSmall, large.wall, small.wall, large.wall/small.wall, c.scaleSmall)
		fmt.Printf("    controller CPU per Secret at %d / at %d: %.0f µs / %.0f µs, ratio %.2f (target 0.90–1.10)\n",
			c.scaleLarge, c.scaleSmall, large.cpu, small.cpu, large.cpu/small.cpu)
	}
}

// throughput alternates the write ceiling and a rekey rotation of the same
// number of Secrets, rounds times, and compares each round's pair: the
// figure is the median of the rounds' ratios.
func (b *bench) throughput(ctx context.Context, sum *summary) error {
	c := b.c
	step("1 and 3. The apiserver's write ceiling and rekey, alternately, %d rounds", c.rounds)
	fmt.Println("    ceiling: a bare client, paged List, Update with the resourceVersion read, fresh bytes of the same sizes")
	fmt.Println("    rekey:   a KeyRotation over the same number of annotated Secrets, kubectl-visible start to Succeeded")
	if err := b.createPlain(ctx, "bench-plain", c.n, 3, blobPlain+58, true); err != nil {
		return err
	}
	if err := b.createEncrypted(ctx, "bench-rekey", c.n, "alias/bench-1"); err != nil {
		return err
	}
	var ceilings, rekeys []float64
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
			sum.first = r
		}
		ratio := rate(c.n, r.took) / rate(c.n, ceil)
		fmt.Printf("    round %d: ceiling %d writes in %.2fs = %.0f writes/s; rekey %d Secrets (%d blobs) in %.2fs = %.0f Secrets/s, %.0f blobs/s; ratio %.2f\n",
			i, c.n, ceil.Seconds(), rate(c.n, ceil), c.n, 3*c.n, r.took.Seconds(), rate(c.n, r.took), 3*rate(c.n, r.took), ratio)
		ceilings, rekeys, sum.ratios = append(ceilings, rate(c.n, ceil)), append(rekeys, rate(c.n, r.took)), append(sum.ratios, ratio)
	}
	fmt.Printf("    rekey / ceiling, same round: %s; median %.2f (target >= 0.90)\n", fmtFloats(sum.ratios), median(sum.ratios))

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

	rk := median(rekeys)
	step("Throughput summary (medians of %d rounds)", c.rounds)
	fmt.Printf("    ceiling %.0f writes/s, naive loop %.0f writes/s, recipe %.0f writes/s, rekey %.0f Secrets/s (%.0f blobs/s)\n",
		median(ceilings), rate(c.n, naive), rate(c.recipeN, recipe), rk, 3*rk)
	fmt.Printf("    rekey / ceiling: %.2f (median of the rounds' ratios; target >= 0.90)   rekey / naive loop: %.2f   rekey / recipe: %.2f (target >= 3)\n",
		median(sum.ratios), rk/rate(c.n, naive), rk/rate(c.recipeN, recipe))
	return nil
}

// memory is the controller's peak RSS and heap for the first round's
// rotation, and again after unrelated Secrets fill another namespace.
func (b *bench) memory(ctx context.Context, sum *summary) error {
	c := b.c
	step("4. Memory of the controller (peak RSS from /proc, peak heap from its /metrics)")
	fmt.Printf("    rotation of %d Secrets:                     peak RSS %6.1f MiB, peak heap %6.1f MiB\n", c.n, mib(sum.first.peakRSS), mib(sum.first.peakHeap))
	if err := b.createPlain(ctx, "bench-noise", c.noise, 1, 10<<10, false); err != nil {
		return err
	}
	k := c.rounds + 1
	r, err := b.rotate(ctx, "bench-rekey", "rot-noise", fmt.Sprintf("alias/bench-%d", k), fmt.Sprintf("alias/bench-%d", k+1), false)
	if err != nil {
		return err
	}
	fmt.Printf("    same, with %d unrelated 10 KiB Secrets added: peak RSS %6.1f MiB, peak heap %6.1f MiB\n", c.noise, mib(r.peakRSS), mib(r.peakHeap))
	fmt.Printf("    RSS growth from the unrelated Secrets: %+.1f MiB (target <= 20 MiB)\n", mib(r.peakRSS)-mib(sum.first.peakRSS))
	return nil
}

// resume SIGKILLs the controller a third of the way through a rotation,
// starts another, and counts the Secrets written twice.
func (b *bench) resume(ctx context.Context) error {
	c := b.c
	step("5. Resume: SIGKILL mid-rotation, restart")
	k := c.rounds + 2
	r, err := b.rotate(ctx, "bench-rekey", "rot-resume", fmt.Sprintf("alias/bench-%d", k), fmt.Sprintf("alias/bench-%d", k+1), true)
	if err != nil {
		return err
	}
	fmt.Printf("    killed after %d/%d Secrets were written; finished %s: rotated %d, skipped %d, failed %d (of %d)\n",
		r.killedAt, c.n, r.phase, r.counts.Rotated, r.counts.Skipped, r.counts.Failed, r.counts.Total)
	fmt.Printf("    Secrets written twice: %d (target: at most one page, %d)\n", r.writtenTwice, c.pageSize)
	return nil
}

// sameNamespace adds large unrelated Secrets (no annotation, Helm release
// shaped) to the rotation's own namespace and measures the controller's
// peak memory for a rotation there, against the first round's rotation.
// It runs last: every later List of that namespace would carry them.
func (b *bench) sameNamespace(ctx context.Context, sum *summary) error {
	c := b.c
	if c.bigN <= 0 {
		return nil
	}
	step("7. Same-namespace memory: %d unrelated %.0f KiB Secrets beside the %d rotated ones", c.bigN, float64(c.bigSize)/1024, c.n)
	fmt.Printf("    the controller runs with GOMEMLIMIT=%s (a 256Mi container limit); peak RSS from /proc, peak heap from its /metrics\n", orNone(c.gomemlimit))
	if err := b.createBig(ctx, "bench-rekey", c.bigN, c.bigSize); err != nil {
		return err
	}
	before, err := b.bigVersions(ctx, "bench-rekey")
	if err != nil {
		return err
	}
	k := c.rounds + 3
	r, err := b.rotate(ctx, "bench-rekey", "rot-samens", fmt.Sprintf("alias/bench-%d", k), fmt.Sprintf("alias/bench-%d", k+1), false)
	if err != nil {
		return err
	}
	after, err := b.bigVersions(ctx, "bench-rekey")
	if err != nil {
		return err
	}
	touched := 0
	for name, rv := range before {
		if after[name] != rv {
			touched++
		}
	}
	sum.sameNS = r
	fmt.Printf("    rotation of %d Secrets in %.2fs (%.0f Secrets/s): rotated %d, skipped %d, failed %d (of %d); large Secrets written: %d\n",
		c.n, r.took.Seconds(), rate(c.n, r.took), r.counts.Rotated, r.counts.Skipped, r.counts.Failed, r.counts.Total, touched)
	fmt.Printf("    peak RSS %6.1f MiB, peak heap %6.1f MiB (target: RSS <= 128 MiB)\n", mib(r.peakRSS), mib(r.peakHeap))
	fmt.Printf("    baseline, the same rotation without them (round 1): peak RSS %6.1f MiB, peak heap %6.1f MiB; growth %+.1f MiB\n",
		mib(sum.first.peakRSS), mib(sum.first.peakHeap), mib(r.peakRSS)-mib(sum.first.peakRSS))
	return nil
}

// scale rotates two namespaces of different sizes with fresh controllers
// and compares wall time and controller CPU per Secret: a rotation should
// cost the same per Secret at any size.
func (b *bench) scale(ctx context.Context, sum *summary) error {
	c := b.c
	if c.scaleLarge < 0 {
		return nil
	}
	step("6. Cost per Secret: a rotation of %d and of %d Secrets, %d round(s)", c.scaleSmall, c.scaleLarge, c.scaleRounds)
	fmt.Println("    wall time from the KeyRotation's creation to Succeeded; controller CPU from /proc/PID/stat (utime+stime) over the same span")
	if err := b.createEncrypted(ctx, "bench-scale-s", c.scaleSmall, "alias/bench-1"); err != nil {
		return err
	}
	if err := b.createEncrypted(ctx, "bench-scale-l", c.scaleLarge, "alias/bench-1"); err != nil {
		return err
	}
	var ratios []float64
	for i := 1; i <= c.scaleRounds; i++ {
		from, to := fmt.Sprintf("alias/bench-%d", i), fmt.Sprintf("alias/bench-%d", i+1)
		small, err := b.rotate(ctx, "bench-scale-s", fmt.Sprintf("rot-scale-s-%d", i), from, to, false)
		if err != nil {
			return err
		}
		large, err := b.rotate(ctx, "bench-scale-l", fmt.Sprintf("rot-scale-l-%d", i), from, to, false)
		if err != nil {
			return err
		}
		sum.scaleSmall, sum.scaleLarge = append(sum.scaleSmall, small), append(sum.scaleLarge, large)
		s, l := perSecret([]rotation{small}, c.scaleSmall), perSecret([]rotation{large}, c.scaleLarge)
		ratios = append(ratios, l.wall/s.wall)
		fmt.Printf("    round %d: %d Secrets in %.2fs = %.0f µs/Secret, CPU %.2fs = %.0f µs/Secret; %d Secrets in %.2fs = %.0f µs/Secret, CPU %.2fs = %.0f µs/Secret; ratio %.2f (CPU %.2f)\n",
			i, c.scaleSmall, small.took.Seconds(), s.wall, small.cpu.Seconds(), s.cpu,
			c.scaleLarge, large.took.Seconds(), l.wall, large.cpu.Seconds(), l.cpu, l.wall/s.wall, l.cpu/s.cpu)
	}
	s, l := perSecret(sum.scaleSmall, c.scaleSmall), perSecret(sum.scaleLarge, c.scaleLarge)
	fmt.Printf("    time per Secret at %d / at %d: %.0f µs / %.0f µs = %.2f (target: within 10%%; the %d-Secret rotation is the baseline)\n",
		c.scaleLarge, c.scaleSmall, l.wall, s.wall, l.wall/s.wall, c.scaleSmall)
	fmt.Printf("    controller CPU per Secret at %d / at %d: %.0f µs / %.0f µs = %.2f (target: within 10%%)\n",
		c.scaleLarge, c.scaleSmall, l.cpu, s.cpu, l.cpu/s.cpu)
	if c.scaleRounds > 1 {
		fmt.Printf("    (medians of %d rounds; the rounds' time ratios: %s)\n", c.scaleRounds, fmtFloats(ratios))
	}
	return nil
}

type cost struct{ wall, cpu float64 } // microseconds per Secret

// perSecret is the median wall time and controller CPU per Secret of rotations of n Secrets.
func perSecret(rs []rotation, n int) cost {
	wall, cpu := make([]float64, 0, len(rs)), make([]float64, 0, len(rs))
	for _, r := range rs {
		wall = append(wall, float64(r.took.Microseconds())/float64(n))
		cpu = append(cpu, float64(r.cpu.Microseconds())/float64(n))
	}
	return cost{wall: median(wall), cpu: median(cpu)}
}

// median of xs (the mean of the middle two for an even count); 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func fmtFloats(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf("%.2f", x)
	}
	return strings.Join(parts, ", ")
}

func orNone(s string) string {
	if s == "" {
		return "(not set)"
	}
	return s
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
	for _, ns := range []string{opNamespace, "bench-plain", "bench-recipe", "bench-rekey", "bench-noise", "bench-scale-s", "bench-scale-l"} {
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
	// Rotations chain alias/bench-i to alias/bench-i+1: the rounds, then the
	// noise, resume and same-namespace rotations in bench-rekey; the scale
	// rounds start again from alias/bench-1 in their own namespaces.
	for i := 1; i <= max(b.c.rounds+4, b.c.scaleRounds+1); i++ {
		k, err := b.engine.CreateKey(ctx, &kms.CreateKeyInput{Tags: []kms.Tag{{TagKey: rekeyv1alpha1.KeyNamespacesTag, TagValue: "bench-rekey,bench-scale-s,bench-scale-l"}}})
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

// createBig creates n unrelated Secrets shaped like Helm release Secrets
// (type helm.sh/release.v1, Helm's labels, no rekey annotation) of size
// random bytes each: what shares a namespace with an application's Secrets.
func (b *bench) createBig(ctx context.Context, ns string, n, size int) error {
	t0 := time.Now()
	err := parallel(n, 4, func(i int) error {
		name := fmt.Sprintf("app-%03d", i)
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "sh.helm.release.v1." + name + ".v1", Namespace: ns,
			Labels: map[string]string{"owner": "helm", "name": name, "status": "deployed", "version": "1"}},
			Type: "helm.sh/release.v1", Data: map[string][]byte{"release": randomBytes(size)}}
		return b.cl.Create(ctx, s)
	})
	fmt.Printf("    (created %d unrelated %.0f KiB Secrets in %s in %.1fs)\n", n, float64(size)/1024, ns, time.Since(t0).Seconds())
	return err
}

// bigVersions returns the resourceVersions of the Helm-shaped Secrets of
// createBig, from their metadata alone.
func (b *bench) bigVersions(ctx context.Context, ns string) (map[string]string, error) {
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("SecretList"))
	if err := b.cl.List(ctx, list, client.InNamespace(ns), client.MatchingLabels{"owner": "helm"}); err != nil {
		return nil, err
	}
	out := make(map[string]string, len(list.Items))
	for _, it := range list.Items {
		out[it.Name] = it.ResourceVersion
	}
	return out, nil
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
	cpu               time.Duration // the controller's utime+stime over the rotation (not with kill)
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
	cmd := b.cp.Command(b.rekeyBin, "controller",
		"--keystore", keystoreRef, "--root-key-file", b.rootKey,
		// Plain HTTP on loopback: the benchmark reads the heap from /metrics.
		"--metrics-bind-address", metrics, "--metrics-secure=false", "--health-probe-bind-address", probes, "--pprof-bind-address", b.pprofFor(name),
		"--page-size", strconv.Itoa(b.c.pageSize), "--kube-api-qps", fmt.Sprint(b.c.qps), "--kube-api-burst", fmt.Sprint(int(2*b.c.qps)))
	if b.c.gomemlimit != "" {
		cmd.Env = append(cmd.Env, "GOMEMLIMIT="+b.c.gomemlimit) // the last one wins over an inherited one
	}
	p, err := harness.StartProcess(cmd, filepath.Join(b.dir, name+".log"))
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
	cpu0 := procCPU(proc.Cmd.Process.Pid)
	t0 := time.Now()
	if err := b.cl.Create(ctx, kr); err != nil {
		return r, err
	}
	deadline := time.Now().Add(30 * time.Minute)
	for poll := 0; ; poll++ {
		r.peakRSS = max(r.peakRSS, peakRSS(proc.Cmd.Process.Pid))
		if poll%4 == 0 { // every 200 ms: scraping /metrics costs the controller CPU
			r.peakHeap = max(r.peakHeap, heapInuse(metricsURL))
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
	r.peakRSS = max(r.peakRSS, peakRSS(proc.Cmd.Process.Pid))
	if !kill {
		r.cpu = procCPU(proc.Cmd.Process.Pid) - cpu0
	}
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

// peakRSS is the process's peak resident set so far: the kernel's
// high-water mark (VmHWM in /proc/PID/status), so no short peak between two
// samples is missed. Reading it costs the process nothing; 0 if unreadable.
func peakRSS(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer func() { _ = f.Close() }()
	var hwm int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "VmHWM:")
		if !ok {
			v, ok = strings.CutPrefix(sc.Text(), "VmRSS:")
		}
		if fields := strings.Fields(v); ok && len(fields) > 0 {
			kb, _ := strconv.ParseInt(fields[0], 10, 64)
			hwm = max(hwm, kb<<10)
		}
	}
	return hwm
}

// heapInuse is the heap in use that the controller's metrics report now.
func heapInuse(metricsURL string) (heap int64) {
	resp, err := http.Get(metricsURL) //nolint:noctx // loopback, short-lived
	if err != nil {
		return 0
	}
	defer func() { _ = resp.Body.Close() }()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_memstats_heap_inuse_bytes "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			heap = int64(f)
		}
	}
	return heap
}

// procCPU is the process's user plus system CPU time from /proc/PID/stat
// (fields 14 and 15, in clock ticks of 1/100 s, Linux's USER_HZ); 0 if unreadable.
func procCPU(pid int) time.Duration {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces: count fields after its ')'.
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * (time.Second / 100)
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
