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

// Command bench-kms is the endpoint load benchmark ('make bench-kms'): in one
// run it drives concurrent AWS SDK clients doing ReEncrypt over loopback for
// a fixed time against
//
//	(a) rekey's AWS-compatible endpoint ('rekey kms serve', SigV4 verified),
//	(b) local-kms (github.com/nsmithuk/local-kms), its exported handler served
//	    on 127.0.0.1 by this program (its own binary listens on every interface),
//	(c) a null server answering every call with a canned ReEncrypt response:
//	    the floor, HTTP and JSON alone,
//
// each in its own process, and reports ops/s, p50/p99 latency and each
// server's own CPU time per operation from /proc/PID/stat. Every server
// runs from the start and the load goes to one at a time, in rounds
// (-rounds, 5 by default), so that whatever else the machine does during
// the run falls on every server alike; the ratios are printed round by
// round too. On 2 cores the
// SDK client is the bottleneck, so CPU per operation is the honest figure.
//
// rekey runs as it would in production: a policy file (the load comes from
// a principal allowed only ReEncrypt and DescribeKey on two aliases; an
// admin principal creates the keys) and an audit log written to a file.
// With -tls (the default) the null server and rekey run again over TLS, and
// their figures are printed beside the plain ones.
//
// With -decrypt-session it measures Decrypt through rekey kms serve
// --pod-identity signed with a static credential and with session
// credentials, and prints the CPU per Decrypt of each (session.go).
//
// With -attacks it runs the resource attacks of issue 10 against
// 'rekey kms serve' instead and prints what they cost the server
// (attacks.go).
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/rekey-dev/rekey/internal/kms/keystore"
	"github.com/rekey-dev/rekey/internal/testcert"
	"github.com/rekey-dev/rekey/internal/testkms"
)

const (
	akid        = "AKIDBENCH"
	secret      = "bench-secret-access-key"
	adminAKID   = "AKIDBENCHADMIN"
	adminSecret = "bench-admin-secret-access-key"
	// policy lets the load principal do what the controller does, on the
	// two keys, named by alias (resolved on every request).
	policy = `{"principals": {
  "AKIDBENCHADMIN": {"admin": true},
  "AKIDBENCH": {"operations": ["DescribeKey", "ReEncrypt"], "keys": ["alias/bench-src", "alias/bench-dst"]}
}}`
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "serve-localkms":
			serveLocalKMS()
			return
		case "serve-null":
			serveNull()
			return
		}
	}
	attacks := flag.Bool("attacks", false, "run the resource attacks against rekey kms serve instead of the load benchmark")
	rekeyBin := flag.String("rekey", "bin/rekey", "the rekey binary")
	duration := flag.Duration("duration", 10*time.Second, "measured load per server, in all rounds together")
	rounds := flag.Int("rounds", 5, "rounds: each server is loaded for duration/rounds in turn, rounds times")
	warmup := flag.Duration("warmup", 2*time.Second, "unmeasured load before each measurement")
	clients := flag.Int("clients", 8, "concurrent SDK clients")
	size := flag.Int("size", 1024, "plaintext bytes in the blob")
	gogc := flag.Int("gogc", 400, "GOGC for every server process (rekey kms serve's own default is 400)")
	withTLS := flag.Bool("tls", true, "also measure the null server and rekey over TLS")
	decryptSession := flag.Bool("decrypt-session", false, "measure Decrypt with a static credential and with pod-identity "+
		"session credentials instead of the ReEncrypt comparison (session.go)")
	flag.Parse()
	var err error
	switch {
	case *attacks:
		err = runAttacks(*rekeyBin)
	case *decryptSession:
		err = runDecryptSession(*rekeyBin, *duration, *warmup, *clients, *size, *gogc)
	default:
		err = run(*rekeyBin, *duration, *warmup, *rounds, *clients, *size, *gogc, *withTLS)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-kms:", err)
		os.Exit(1)
	}
}

// server is one server process under test.
type server struct {
	name string
	cmd  *exec.Cmd
	url  string
}

// start runs a server process and waits for the "listening on http://ADDR" line.
func start(name string, cmd *exec.Cmd) (*server, error) {
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if _, url, ok := strings.Cut(sc.Text(), "listening on "); ok {
			go func() { _, _ = io.Copy(io.Discard, out) }()
			return &server{name: name, cmd: cmd, url: strings.TrimSpace(url)}, nil
		}
	}
	_ = cmd.Process.Kill()
	return nil, fmt.Errorf("%s did not report its address", name)
}

func (s *server) stop() {
	_ = s.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
}

// cpuTime is the process's user+system CPU time, from /proc/PID/stat.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the parenthesised command name; utime and stime are 14 and 15.
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b)[i+2:])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// clockTicks is USER_HZ, 100 on every Linux this runs on.
const clockTicks = 100

// client is an SDK client for url signing as id; roots trust the bench's
// certificate for https URLs.
func client(url, id, key string, roots *x509.CertPool) *awskms.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	if roots != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: roots}
	}
	return awskms.New(awskms.Options{
		Region: "eu-west-2", BaseEndpoint: aws.String(url),
		Credentials:      credentials.NewStaticCredentialsProvider(id, key, ""),
		RetryMaxAttempts: 1,
		HTTPClient:       &http.Client{Transport: tr},
	})
}

type result struct {
	name     string
	ops      int
	races    int // calls not counted in ops: see load
	elapsed  time.Duration
	cpu      time.Duration
	p50, p99 time.Duration
}

// load runs clients making call (one KMS request) for d and returns what
// they saw.
//
// A call whose response came back 200 but whose body the client could not
// read because its connection had been closed under it (net.ErrClosed) is
// usually the AWS SDK's known race between net/http's write loop and the
// response body (aws-sdk-go-v2 issues 1825 and 2737; the SDK retries it by
// default, and these clients do not retry). But net/http also closes its
// own connection when the server resets it mid-body, so a server fault can
// end the same way. Such a call is therefore not counted as an operation
// (its CPU stays in the figure, a few in a run change nothing) and is
// reported in races; more than one in a thousand calls fails the run, as
// does any other error.
func load(ctx context.Context, call func(context.Context) error, clients int, d time.Duration) (lr loadResult) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	deadline := time.Now().Add(d)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine loadResult
			for time.Now().Before(deadline) {
				t0 := time.Now()
				err := call(ctx)
				switch {
				case err == nil:
					mine.ops++
					mine.lat = append(mine.lat, time.Since(t0))
				case clientRace(err):
					mine.races++
				default:
					mine.errs++
					if mine.firstErr == nil {
						mine.firstErr = err
					}
				}
			}
			mu.Lock()
			lr.ops, lr.errs, lr.races = lr.ops+mine.ops, lr.errs+mine.errs, lr.races+mine.races
			lr.lat = append(lr.lat, mine.lat...)
			if lr.firstErr == nil {
				lr.firstErr = mine.firstErr
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	return lr
}

// loadResult is what load's clients saw.
type loadResult struct {
	ops, errs, races int
	lat              []time.Duration
	firstErr         error
}

// maxRacesPerMille is how many calls in a thousand may end in the
// closed-connection race (see load) before the run fails.
const maxRacesPerMille = 1

// err is the run's failure, if a call failed or too many raced.
func (lr loadResult) err() error {
	calls := lr.ops + lr.errs + lr.races
	switch {
	case lr.errs > 0:
		return fmt.Errorf("%d of %d calls failed, first: %w", lr.errs, calls, lr.firstErr)
	case lr.races*1000 > maxRacesPerMille*calls:
		return fmt.Errorf("%d of %d calls got a 200 whose body could not be read (connection closed under it): "+
			"more than the SDK's race explains, so the server may be cutting responses off", lr.races, calls)
	}
	return nil
}

// clientRace reports whether err is a 200 response whose body the client
// could not read because its connection was closed under it (see load).
func clientRace(err error) bool {
	var re *awshttp.ResponseError
	return errors.Is(err, net.ErrClosed) && errors.As(err, &re) && re.HTTPStatusCode() == http.StatusOK
}

// target is one server under measurement: the request it is sent, and
// what its slices added up to.
type target struct {
	s    *server
	call func(context.Context) error
	res  result
	lat  []time.Duration
	// perRound is the server's CPU per operation in each round.
	perRound []float64
}

// slice loads t for d and adds what it cost to t.res.
func (t *target) slice(ctx context.Context, clients int, d time.Duration) error {
	cpu0, err := cpuTime(t.s.cmd.Process.Pid)
	if err != nil {
		return err
	}
	t0 := time.Now()
	lr := load(ctx, t.call, clients, d)
	elapsed := time.Since(t0)
	cpu1, err := cpuTime(t.s.cmd.Process.Pid)
	if err != nil {
		return err
	}
	if err := lr.err(); err != nil {
		return fmt.Errorf("%s: %w", t.s.name, err)
	}
	if lr.ops == 0 {
		return fmt.Errorf("%s: no call completed in %v", t.s.name, d)
	}
	t.res.ops += lr.ops
	t.res.races += lr.races
	t.res.elapsed += elapsed
	t.res.cpu += cpu1 - cpu0
	t.lat = append(t.lat, lr.lat...)
	t.perRound = append(t.perRound, (cpu1-cpu0).Seconds()/float64(lr.ops))
	return nil
}

func (t *target) finish() result {
	slices.Sort(t.lat)
	t.res.name = t.s.name
	t.res.p50, t.res.p99 = t.lat[len(t.lat)/2], t.lat[len(t.lat)*99/100]
	return t.res
}

// setup creates a source and a destination key with their aliases on a
// real KMS endpoint (as the admin) and returns a ReEncrypt request for a
// fresh blob.
func setup(ctx context.Context, url string, size int, roots *x509.CertPool) (*awskms.ReEncryptInput, error) {
	c := client(url, adminAKID, adminSecret, roots)
	src, err := c.CreateKey(ctx, &awskms.CreateKeyInput{Description: aws.String("bench source")})
	if err != nil {
		return nil, err
	}
	dst, err := c.CreateKey(ctx, &awskms.CreateKeyInput{Description: aws.String("bench destination")})
	if err != nil {
		return nil, err
	}
	for alias, k := range map[string]*string{"alias/bench-src": src.KeyMetadata.KeyId, "alias/bench-dst": dst.KeyMetadata.KeyId} {
		if _, err := c.CreateAlias(ctx, &awskms.CreateAliasInput{AliasName: aws.String(alias), TargetKeyId: k}); err != nil {
			return nil, err
		}
	}
	ec := map[string]string{"app": "bench"}
	enc, err := c.Encrypt(ctx, &awskms.EncryptInput{KeyId: src.KeyMetadata.KeyId, Plaintext: make([]byte, size), EncryptionContext: ec})
	if err != nil {
		return nil, err
	}
	return &awskms.ReEncryptInput{CiphertextBlob: enc.CiphertextBlob, SourceKeyId: src.KeyMetadata.Arn, SourceEncryptionContext: ec,
		DestinationKeyId: dst.KeyMetadata.Arn, DestinationEncryptionContext: ec}, nil
}

// workDir makes a run's temporary directory: a fresh root key
// (root.key), the load and admin access keys (creds), policy
// (policy.json) and the files of more, all mode 0600, and an empty
// keystore for each name in keystores (rekey keystore init: kms serve
// opens only an existing one). remove deletes it.
func workDir(rekeyBin, prefix, policy string, more map[string]string, keystores ...string) (dir string, remove func(), err error) {
	if dir, err = os.MkdirTemp("", prefix); err != nil {
		return "", nil, err
	}
	remove = func() { _ = os.RemoveAll(dir) }
	root, err := keystore.GenerateRootKey()
	if err != nil {
		remove()
		return "", nil, err
	}
	files := map[string]string{
		"root.key":    root,
		"creds":       akid + " " + secret + "\n" + adminAKID + " " + adminSecret + "\n",
		"policy.json": policy,
	}
	maps.Copy(files, more)
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			remove()
			return "", nil, err
		}
	}
	for _, ks := range keystores {
		if out, err := exec.Command(rekeyBin, "keystore", "init", "--keystore", filepath.Join(dir, ks),
			"--root-key-file", filepath.Join(dir, "root.key")).CombinedOutput(); err != nil {
			remove()
			return "", nil, fmt.Errorf("rekey keystore init: %w: %s", err, out)
		}
	}
	return dir, remove, nil
}

func run(rekeyBin string, d, warmup time.Duration, rounds, clients, size, gogc int, withTLS bool) error {
	ctx := context.Background()
	// The TLS server has a keystore (and an audit log) of its own.
	dir, remove, err := workDir(rekeyBin, "rekey-bench-kms-", policy, nil, "keys.rks", "keys-tls.rks")
	if err != nil {
		return err
	}
	defer remove()
	certFile, keyFile, roots, err := testcert.Write(dir)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}

	if rounds < 1 {
		return fmt.Errorf("-rounds must be at least 1")
	}
	fmt.Printf("bench-kms: ReEncrypt of a %d-byte plaintext, %d SDK clients, %v per server in %d rounds (after %v warm-up), GOGC=%d for every server, %d cores\n",
		size, clients, d, rounds, warmup, gogc, numCPU())
	fmt.Printf("rekey: --policy-file (load principal: ReEncrypt and DescribeKey on two aliases), --audit-log to a file\n\n")
	rekeyArgs := func(ks string, tlsArgs ...string) *exec.Cmd {
		args := append([]string{"kms", "serve", "--listen", "127.0.0.1:0",
			"--keystore", filepath.Join(dir, ks), "--root-key-file", filepath.Join(dir, "root.key"),
			"--credentials-file", filepath.Join(dir, "creds"), "--policy-file", filepath.Join(dir, "policy.json"),
			"--audit-log", filepath.Join(dir, strings.TrimSuffix(ks, ".rks")+"-audit.log")}, tlsArgs...)
		return exec.Command(rekeyBin, args...)
	}
	// spec is one server to measure: real ones get keys made by setup.
	type spec struct {
		name      string
		cmd       *exec.Cmd
		real, tls bool
	}
	specs := []spec{
		{"null (HTTP floor)", exec.Command(self, "serve-null"), false, false},
		{"rekey kms serve", rekeyArgs("keys.rks"), true, false},
		{"local-kms", exec.Command(self, "serve-localkms", filepath.Join(dir, "local-kms")), true, false},
	}
	if withTLS {
		specs = append(specs,
			spec{"null, TLS", exec.Command(self, "serve-null", certFile, keyFile), false, true},
			spec{"rekey kms serve, TLS", rekeyArgs("keys-tls.rks", "--tls-cert-file", certFile, "--tls-key-file", keyFile), true, true})
	}
	// Every server runs from the start; the load goes to one at a time, in
	// rounds, so that whatever else the machine does in a minute falls on
	// every server alike instead of on the one measured then.
	var targets []*target
	defer func() {
		for _, t := range targets {
			t.s.stop()
		}
	}()
	for _, spec := range specs {
		// The same GC target for every server, so none is favoured.
		spec.cmd.Env = append(os.Environ(), fmt.Sprintf("GOGC=%d", gogc))
		s, err := start(spec.name, spec.cmd)
		if err != nil {
			return err
		}
		var r *x509.CertPool
		if spec.tls {
			r = roots
		}
		t := &target{s: s}
		targets = append(targets, t)
		in := &awskms.ReEncryptInput{CiphertextBlob: make([]byte, size+58), DestinationKeyId: aws.String("alias/null")}
		if spec.real {
			if in, err = setup(ctx, s.url, size, r); err != nil {
				return fmt.Errorf("%s setup: %w", s.name, err)
			}
		}
		c := client(s.url, akid, secret, r)
		t.call = func(ctx context.Context) error { _, err := c.ReEncrypt(ctx, in); return err }
		if err := load(ctx, t.call, clients, warmup).err(); err != nil {
			return fmt.Errorf("%s warm-up: %w", s.name, err)
		}
	}
	for range rounds {
		for _, t := range targets {
			if err := t.slice(ctx, clients, d/time.Duration(rounds)); err != nil {
				return err
			}
		}
	}
	results := map[string]result{}
	byName := map[string]*target{}
	var order []string
	for _, t := range targets {
		results[t.s.name] = t.finish()
		byName[t.s.name] = t
		order = append(order, t.s.name)
	}
	for _, t := range targets {
		t.s.stop()
	}
	targets = nil
	if n, err := countLines(filepath.Join(dir, "keys-audit.log")); err == nil {
		fmt.Printf("rekey's audit log: %d lines\n\n", n)
	}

	perOp := func(name string) float64 { r := results[name]; return r.cpu.Seconds() / float64(r.ops) }
	null := perOp("null (HTTP floor)")
	fmt.Printf("%-22s %9s %9s %9s %9s %14s %9s\n", "server", "ops", "ops/s", "p50", "p99", "server CPU/op", "vs null")
	for _, name := range order {
		r := results[name]
		fmt.Printf("%-22s %9d %9.0f %9s %9s %11.1f µs %8.2fx\n", r.name, r.ops, float64(r.ops)/r.elapsed.Seconds(),
			r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), perOp(name)*1e6, perOp(name)/null)
	}
	printRaces(results, order)
	rk, lk := perOp("rekey kms serve"), perOp("local-kms")
	fmt.Printf("\nrekey/null CPU per op: %.2fx (target <= 1.5x); rekey/local-kms: %.2fx (target <= 0.6x)\n", rk/null, rk/lk)
	fmt.Printf("round by round: rekey/null %s; rekey/local-kms %s\n",
		ratios(byName["rekey kms serve"], byName["null (HTTP floor)"]), ratios(byName["rekey kms serve"], byName["local-kms"]))
	if withTLS {
		tn, tr := perOp("null, TLS"), perOp("rekey kms serve, TLS")
		fmt.Printf("over TLS: rekey %.1f µs per op, %.2fx the TLS null server (%.1f µs), %.2fx rekey over plain HTTP\n",
			tr*1e6, tr/tn, tn*1e6, tr/rk)
	}
	return nil
}

// printRaces names the servers some of whose 200 responses the client
// failed to read (see load), so that a reader knows they were counted.
func printRaces(results map[string]result, order []string) {
	for _, name := range order {
		if r := results[name]; r.races > 0 {
			fmt.Printf("%s: %d calls got a 200 whose body the client could not read, its connection closed under it (the AWS SDK's known race; not counted as operations)\n",
				name, r.races)
		}
	}
}

// ratios lists a's CPU per operation over b's, round by round.
func ratios(a, b *target) string {
	parts := make([]string, len(a.perRound))
	for i := range a.perRound {
		parts[i] = fmt.Sprintf("%.2f", a.perRound[i]/b.perRound[i])
	}
	return strings.Join(parts, " ")
}

func countLines(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strings.Count(string(b), "\n"), nil
}

func numCPU() int {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	return strings.Count(string(b), "processor\t:")
}

// listen binds a loopback port and prints the line start() waits for;
// with a certificate and key it serves TLS.
func listen(certKey ...string) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if len(certKey) == 2 {
		cert, err := tls.LoadX509KeyPair(certKey[0], certKey[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Printf("listening on https://%s\n", ln.Addr())
		return tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}})
	}
	fmt.Printf("listening on http://%s\n", ln.Addr())
	return ln
}

// serveLocalKMS serves local-kms's exported handler on 127.0.0.1 only.
func serveLocalKMS() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: bench-kms serve-localkms DATA_DIR")
		os.Exit(2)
	}
	h, closeDB := testkms.LocalKMSHandler(os.Args[2])
	defer closeDB()
	serveUntilSignal(h, listen())
}

// serveNull answers every request with the same ReEncrypt response, over
// TLS when given a certificate and key (serve-null [CERT KEY]).
func serveNull() {
	body := `{"CiphertextBlob":"` + strings.Repeat("A", 1400) + `","KeyId":"arn:aws:kms:eu-west-2:111122223333:key/00000000-0000-4000-8000-000000000000",` +
		`"SourceKeyId":"arn:aws:kms:eu-west-2:111122223333:key/00000000-0000-4000-8000-000000000001",` +
		`"SourceEncryptionAlgorithm":"SYMMETRIC_DEFAULT","DestinationEncryptionAlgorithm":"SYMMETRIC_DEFAULT"}`
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		_, _ = io.WriteString(w, body)
	})
	serveUntilSignal(h, listen(os.Args[2:]...))
}

func serveUntilSignal(h http.Handler, ln net.Listener) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		sig := make(chan os.Signal, 1)
		notify(sig)
		<-sig
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
