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
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	authenticationv1 "k8s.io/client-go/kubernetes/typed/authentication/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/rekey-dev/rekey/internal/kms"
	"github.com/rekey-dev/rekey/internal/kms/awsapi"
	"github.com/rekey-dev/rekey/internal/kms/keystore"
	"github.com/rekey-dev/rekey/internal/podidentity"
)

const kmsServeLong = `Serves the embedded engine over the AWS KMS JSON protocol, so AWS SDKs and
the AWS CLI work against it (endpoint URL https://ADDR, or http://ADDR on
loopback). Every request must be signed (SigV4) with a pair from the
credentials file, one "ACCESS_KEY_ID SECRET_ACCESS_KEY" a line, and is
authorised by the policy file: which operations on which keys each access
key may call (docs/kms.md). Without a policy file the credentials file must
hold one pair, and it is an admin. Every request is written to the audit
log, one JSON line each. Plain HTTP is refused on a non-loopback address.

With --pod-identity, Pods trade their ServiceAccount token (audience
--token-audience) for session credentials at GET /v1/credentials (the AWS
container-credentials protocol), checked with a TokenReview through the
kubeconfig or the in-cluster config; a session may call Decrypt, Encrypt
and GenerateDataKey on the keys whose rekey.dev/decrypt, rekey.dev/encrypt
and rekey.dev/generate-data-key tags list its namespace or ServiceAccount
(rekey key grant). --credentials-file is then optional.`

const kmsServeExample = `  rekey kms serve --keystore keys.rks --root-key-file root.key --credentials-file creds
  rekey kms serve --listen :8443 --tls-cert-file tls.crt --tls-key-file tls.key --pod-identity \
      --keystore k8s://rekey-system/rekey-keystore --root-key-file /etc/rekey/root-key/root.key`

func newKMSCmd(s streams) *cobra.Command {
	c := &cobra.Command{
		Use:   "kms",
		Short: "serve the engine over the AWS KMS API (kms serve)",
	}
	c.AddCommand(newKMSServeCmd(s))
	return c
}

func newKMSServeCmd(s streams) *cobra.Command {
	var f kmsServeFlags
	cmd := &cobra.Command{
		Use:               "serve (--credentials-file FILE | --pod-identity)",
		Short:             "serve the embedded engine over the AWS KMS JSON protocol (and Pods' credentials)",
		Long:              kmsServeLong,
		Example:           kmsServeExample,
		Args:              noArgs,
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runKMSServe(cmd.Context(), &f, s.out, s.err)
		},
	}
	f.bind(cmd.Flags(), s.err)
	return cmd
}

// kmsServeFlags are rekey kms serve's own flags.
type kmsServeFlags struct {
	engine                engineFlags
	hosts                 []string
	listen                string
	credsFile, policyFile string
	auditLog              string
	certFile, keyFile     string
	maxConns              int
	refresh               time.Duration
	gcPercent             int
	memoryLimitMiB        int64
	podIdentity           bool
	tokenAudience         string
	sessionDuration       time.Duration
	allowUnbound          bool
	maxTokenLifetime      time.Duration
	reviewsPerSecond      float64
}

func (f *kmsServeFlags) bind(fs *pflag.FlagSet, stderr io.Writer) {
	f.engine.bind(fs, stderr)
	fs.StringVar(&f.listen, "listen", "127.0.0.1:8300", "`ADDRESS` to listen on (loopback by default; port 0 picks a free one); "+
		"any other address needs --tls-cert-file and --tls-key-file")
	fs.StringVar(&f.credsFile, "credentials-file", "", "`FILE` of ACCESS_KEY_ID SECRET_ACCESS_KEY pairs whose signatures are accepted "+
		"(required unless --pod-identity)")
	fs.StringVar(&f.policyFile, "policy-file", "", "JSON `FILE` saying which operations on which keys each access key may call (docs/kms.md); "+
		"without it the credentials file must hold one pair, which is an admin")
	fs.StringVar(&f.auditLog, "audit-log", "-", "`FILE` to append the audit log to, one JSON line per request (- is stdout)")
	fs.StringVar(&f.certFile, "tls-cert-file", "", "PEM certificate (chain) `FILE` to serve TLS with; reloaded when it changes")
	fs.StringVar(&f.keyFile, "tls-key-file", "", "PEM private key `FILE` of --tls-cert-file")
	fs.Var(repeated{&f.hosts, "HOST", commaSeparated}, "host", "a host name clients use to reach this server (repeatable, comma-separated); the Host header of "+
		"every request must name it, the certificate's names, or the address the client connected to")
	fs.IntVar(&f.maxConns, "max-connections", awsapi.DefaultLimits().MaxConnections, "most connections open at once "+
		"(lowered to half the open-file limit); beyond it the connection that has waited longest for its client is closed")
	fs.DurationVar(&f.refresh, "refresh-interval", time.Second, "how often to pick up keystore changes made by other processes")
	fs.IntVar(&f.gcPercent, "gc-percent", 400, "Go GC target for this server when GOGC is not set: its live heap is a few MiB, "+
		"so a higher target trades a few MiB for less CPU per request (docs/benchmarks.md)")
	fs.BoolVar(&f.podIdentity, "pod-identity", false, "serve GET /v1/credentials on the same listener: Pods trade a ServiceAccount token "+
		"(checked with a TokenReview) for session credentials, authorised by the keys' rekey.dev/decrypt, -encrypt and "+
		"-generate-data-key tags (docs/kms.md)")
	fs.StringVar(&f.tokenAudience, "token-audience", "rekey", "with --pod-identity: the audience a ServiceAccount token must be issued for")
	fs.DurationVar(&f.sessionDuration, "session-duration", time.Hour, "with --pod-identity: how long issued credentials last "+
		"(1m to 1h), never past the token's own expiry; under 16m, boto3 and the AWS CLI fetch credentials before every request")
	fs.BoolVar(&f.allowUnbound, "allow-unbound-tokens", false, "with --pod-identity: accept ServiceAccount tokens bound to no Pod "+
		"(kubectl create token); by default only a Pod's projected token, which dies with its Pod")
	fs.DurationVar(&f.maxTokenLifetime, "max-token-lifetime", 24*time.Hour, "with --pod-identity: refuse a token whose exp is further "+
		"than this from its iat (0: no bound)")
	fs.Float64Var(&f.reviewsPerSecond, "token-reviews-per-second", awsapi.DefaultReviewsPerSecond, "with --pod-identity: most TokenReviews "+
		"a second (burst twice that); beyond it credentials requests are told to retry (429)")
	fs.Int64Var(&f.memoryLimitMiB, "memory-limit-mib", 64, "Go soft memory limit when GOMEMLIMIT is not set: the GC works harder "+
		"near it instead of letting --gc-percent's headroom grow with what clients make the server hold (0: none)")
}

// check refuses flag combinations that cannot be served safely.
func (f *kmsServeFlags) check(ctx context.Context) error {
	if f.credsFile == "" && !f.podIdentity {
		return usageErrorf("--credentials-file is required (or --pod-identity)")
	}
	if f.credsFile == "" && f.policyFile != "" {
		return usageErrorf("--policy-file says what the access keys of --credentials-file may do: give both")
	}
	if f.podIdentity {
		if f.sessionDuration < time.Minute || f.sessionDuration > podidentity.MaxDuration {
			return usageErrorf("--session-duration must be between 1m and %v, got %v", podidentity.MaxDuration, f.sessionDuration)
		}
		if f.tokenAudience == "" {
			return usageErrorf("--token-audience must not be empty")
		}
		if f.maxTokenLifetime < 0 || f.reviewsPerSecond <= 0 {
			return usageErrorf("--max-token-lifetime must not be negative and --token-reviews-per-second must be positive")
		}
	}
	if (f.certFile == "") != (f.keyFile == "") {
		return usageErrorf("--tls-cert-file and --tls-key-file go together")
	}
	if f.maxConns < 1 {
		return usageErrorf("--max-connections must be at least 1")
	}
	if f.certFile == "" {
		return requireLoopback(ctx, f.listen)
	}
	return nil
}

func runKMSServe(ctx context.Context, f *kmsServeFlags, stdout, stderr io.Writer) error {
	if err := f.check(ctx); err != nil {
		return err
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(f.gcPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" && f.memoryLimitMiB > 0 {
		debug.SetMemoryLimit(f.memoryLimitMiB << 20)
	}
	log := zap.New(zap.WriteTo(stderr))
	ctrl.SetLogger(log)
	for _, file := range []struct{ flag, path string }{{"credentials-file", f.credsFile}, {"tls-key-file", f.keyFile}} {
		if err := checkSecretFile(file.flag, file.path, stderr); err != nil {
			return err
		}
	}
	creds, policy, err := f.access()
	if err != nil {
		return err
	}
	tlsConfig, err := f.tlsConfig(log)
	if err != nil {
		return err
	}
	audit, closeAudit, err := f.openAudit(stdout)
	if err != nil {
		return err
	}
	defer closeAudit()
	e, err := f.engine.open(ctx)
	if err != nil {
		return err
	}
	if policy != nil {
		unlisted, err := policy.Check(e, creds)
		if err != nil {
			return fmt.Errorf("%s: %w", f.policyFile, err)
		}
		if len(unlisted) > 0 {
			log.Info("access keys without a policy entry may authenticate but do nothing", "accessKeyIds", unlisted)
		}
	} else {
		for id := range creds {
			log.Info("no --policy-file: the only access key is an admin", "accessKeyId", id)
		}
	}
	if f.credsFile == "" {
		log.Info("no --credentials-file: only Pods' session credentials are accepted; manage keys with rekey key on the keystore")
	}
	limits := awsapi.DefaultLimits()
	limits.MaxConnections = awsapi.FitConnectionLimit(f.maxConns)
	if limits.MaxConnections < f.maxConns {
		log.Info("lowered --max-connections to half the open-file limit", "maxConnections", limits.MaxConnections)
	}
	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", f.listen, err)
	}
	if tlsConfig == nil && !isLoopback(ln.Addr()) {
		_ = ln.Close()
		return usageErrorf("%s is not a loopback address: serve TLS (--tls-cert-file, --tls-key-file)", ln.Addr())
	}
	pod, err := f.podIdentityOptions(creds)
	if err != nil {
		_ = ln.Close()
		return err
	}
	fresh := newFreshness(time.Now, max(30*time.Second, 10*f.refresh))
	if pod != nil {
		pod.PolicyFresh = fresh.check
	}
	if pod != nil {
		log.Info("pod identity: serving session credentials", "path", awsapi.CredentialsPath, "audience", f.tokenAudience,
			"sessionDuration", f.sessionDuration, "allowUnboundTokens", f.allowUnbound, "maxTokenLifetime", f.maxTokenLifetime)
		if f.sessionDuration < 16*time.Minute {
			log.Info("--session-duration under 16m: boto3 and the AWS CLI refresh credentials that expire within 15 minutes, "+
				"so they will fetch new ones (one TokenReview) before every request", "sessionDuration", f.sessionDuration)
		}
	}
	handler := awsapi.New(e, awsapi.Options{Credentials: creds, Policy: policy, Hosts: f.hosts, Audit: audit, Log: log.WithName("kms"),
		PodIdentity: pod})
	srv := awsapi.NewHTTPServer(handler, limits, tlsConfig, log.WithName("http"))
	scheme := "http"
	if tlsConfig != nil {
		scheme = "https"
	}
	fmt.Fprintf(stdout, "rekey kms: listening on %s://%s\n", scheme, ln.Addr())
	go refreshEvery(ctx, e, f.refresh, fresh, log)
	err = serveUntilDone(ctx, srv, ln)
	handler.FlushAudit()
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, "rekey kms: stopped")
	return nil
}

// checkSecretFile refuses a file of secrets that other users may read or
// anyone but its owner may write, and warns about one its group may read
// (keystore.CheckKeyFileMode: the rule of the root key file).
func checkSecretFile(name, path string, stderr io.Writer) error {
	if path == "" {
		return nil
	}
	w, err := keystore.CheckKeyFileMode(path)
	if err != nil {
		return fmt.Errorf("--%s: %w", name, err)
	}
	if w != "" {
		fmt.Fprintf(stderr, "rekey: --%s: %s\n", name, w)
	}
	return nil
}

// podIdentityOptions sets up pod identity when --pod-identity is given:
// the TokenReview client (through the kubeconfig or the in-cluster
// config) and the session key, derived from the root key. A static access
// key id that looks like a session's is refused: it would be ambiguous.
func (f *kmsServeFlags) podIdentityOptions(creds awsapi.Credentials) (*awsapi.PodIdentity, error) {
	if !f.podIdentity {
		return nil, nil
	}
	if err := checkAudience(f.tokenAudience, inClusterTokenFile); err != nil {
		return nil, err
	}
	for id := range creds {
		if podidentity.IsSessionKeyID(id) {
			return nil, usageErrorf("%s: access key id %s has the form of a session's (%s and 20 characters): rename it", f.credsFile, id, podidentity.KeyIDPrefix)
		}
	}
	root, err := f.engine.rootKey()
	if err != nil {
		return nil, err
	}
	// Sessions are bound to this keystore and audience: another
	// deployment sharing the root key (a restored copy, another cluster)
	// does not accept them.
	key, err := root.DeriveKey(podidentity.KeyInfo(f.engine.keystore, f.tokenAudience))
	if err != nil {
		return nil, err
	}
	sessions, err := podidentity.NewSessions(key, nil, nil)
	if err != nil {
		return nil, err
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return nil, fmt.Errorf("--pod-identity checks tokens with the kube-apiserver and needs a kubeconfig or the in-cluster config: %w", err)
	}
	cfg = rest.CopyConfig(cfg)
	cfg.Timeout = 10 * time.Second // the handler's own deadline is shorter; this bounds a hung connection
	reviews, err := authenticationv1.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &awsapi.PodIdentity{
		Reviewer: &podidentity.Reviewer{Reviews: reviews.TokenReviews(), Audience: f.tokenAudience,
			MaxLifetime: f.maxTokenLifetime, AllowUnbound: f.allowUnbound},
		Sessions:         sessions,
		Duration:         f.sessionDuration,
		ReviewsPerSecond: f.reviewsPerSecond,
	}, nil
}

// inClusterTokenFile is where a Pod's default ServiceAccount token is
// mounted; its audiences are the kube-apiserver's.
const inClusterTokenFile = "/var/run/secrets/kubernetes.io/serviceaccount/token"

// checkAudience refuses a --token-audience that is the kube-apiserver's
// own: every Pod's default token would then be a rekey credential, and
// every token sent to rekey a credential for the kube-apiserver. The
// kube-apiserver's audiences are read from the Pod's own default token
// (tokenFile, when there is one) besides the usual defaults.
func checkAudience(audience, tokenFile string) error {
	apiAudiences := []string{"https://kubernetes.default.svc", "https://kubernetes.default.svc.cluster.local",
		"kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "api"}
	if b, err := os.ReadFile(tokenFile); err == nil {
		apiAudiences = append(apiAudiences, jwtAudiences(string(b))...)
	}
	if slices.Contains(apiAudiences, audience) {
		return usageErrorf("--token-audience %s is the kube-apiserver's audience: use an audience of rekey's alone (rekey)", audience)
	}
	return nil
}

// jwtAudiences reads the aud claim of a JWT without verifying it (the
// Pod's own token, read from its own file).
func jwtAudiences(token string) []string {
	parts := strings.Split(strings.TrimSpace(token), ".")
	if len(parts) != 3 {
		return nil
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil
	}
	var claims struct {
		Aud json.RawMessage `json:"aud"`
	}
	if json.Unmarshal(b, &claims) != nil {
		return nil
	}
	var many []string
	if json.Unmarshal(claims.Aud, &many) == nil {
		return many
	}
	var one string
	if json.Unmarshal(claims.Aud, &one) == nil {
		return []string{one}
	}
	return nil
}

// access reads the credentials and the policy. Without a policy the
// credentials must be one pair: it is an admin. With --pod-identity and
// no credentials file there are none.
func (f *kmsServeFlags) access() (awsapi.Credentials, *awsapi.Policy, error) {
	if f.credsFile == "" {
		return awsapi.Credentials{}, nil, nil
	}
	creds, err := awsapi.ReadCredentialsFile(f.credsFile)
	if err != nil {
		return nil, nil, err
	}
	if f.policyFile == "" {
		if len(creds) != 1 {
			return nil, nil, usageErrorf("%s holds %d access keys: give --policy-file to say what each may do "+
				"(without one, the only access key is an admin)", f.credsFile, len(creds))
		}
		return creds, nil, nil
	}
	policy, err := awsapi.ReadPolicyFile(f.policyFile)
	if err != nil {
		return nil, nil, err
	}
	return creds, policy, nil
}

// tlsConfig loads the certificate, if any, and adds its names to the hosts
// the server answers to.
func (f *kmsServeFlags) tlsConfig(log logr.Logger) (*tls.Config, error) {
	if f.certFile == "" {
		return nil, nil
	}
	certs, err := awsapi.NewCertificateLoader(f.certFile, f.keyFile, log.WithName("tls"))
	if err != nil {
		return nil, err
	}
	if leaf := certs.Certificate().Leaf; leaf != nil {
		f.hosts = append(f.hosts, leaf.DNSNames...)
		for _, ip := range leaf.IPAddresses {
			f.hosts = append(f.hosts, ip.String())
		}
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.GetCertificate}, nil
}

// openAudit opens the audit log: stdout, or a file appended to (0600).
func (f *kmsServeFlags) openAudit(stdout io.Writer) (io.Writer, func(), error) {
	if f.auditLog == "-" {
		return stdout, func() {}, nil
	}
	file, err := os.OpenFile(f.auditLog, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("opening the audit log: %w", err)
	}
	return file, func() { _ = file.Close() }, nil
}

// refreshEvery picks up keystore changes other processes made, and
// records each success in fresh.
func refreshEvery(ctx context.Context, e *kms.Engine, every time.Duration, fresh *freshness, log logr.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := e.Refresh(ctx); err != nil && ctx.Err() == nil {
				log.Error(err, "refreshing the keystore")
			} else if err == nil {
				fresh.ok()
			}
		}
	}
}

// freshness says whether the keystore was read successfully lately: the
// workloads' key policy is in it, so a server that cannot read it must not
// go on authorising sessions with tags that may have been revoked.
type freshness struct {
	now    func() time.Time
	within time.Duration
	last   atomic.Int64 // UnixNano of the last success
}

func newFreshness(now func() time.Time, within time.Duration) *freshness {
	f := &freshness{now: now, within: within}
	f.ok() // the engine has just opened the keystore
	return f
}

func (f *freshness) ok() { f.last.Store(f.now().UnixNano()) }

func (f *freshness) check() error {
	if age := f.now().Sub(time.Unix(0, f.last.Load())); age > f.within {
		return fmt.Errorf("the keystore was last read %v ago", age.Round(time.Second))
	}
	return nil
}

// serveUntilDone serves until ctx ends, then shuts down gracefully.
func serveUntilDone(ctx context.Context, srv *awsapi.HTTPServer, ln net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutting down: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// requireLoopback refuses a listen address that is not loopback: plain
// HTTP would carry signed requests, plaintexts and data keys in the clear.
func requireLoopback(ctx context.Context, listen string) error {
	ok, err := loopbackListen(ctx, listen)
	if err != nil {
		return fmt.Errorf("%w: --listen %s: %w", errUsage, listen, err)
	}
	if !ok {
		return usageErrorf("--listen %s is not a loopback address: plain HTTP is only served on loopback; "+
			"give --tls-cert-file and --tls-key-file", listen)
	}
	return nil
}

// loopbackListen says whether a listen address (host:port) is on loopback
// only: an empty host (every interface) is not; a name is, when every
// address it resolves to is.
func loopbackListen(ctx context.Context, listen string) (bool, error) {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false, err
	}
	if host == "" {
		return false, nil
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip.IsLoopback(), nil
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return false, err
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return false, nil
		}
	}
	return len(ips) > 0, nil
}

func isLoopback(a net.Addr) bool {
	ap, err := netip.ParseAddrPort(a.String())
	return err == nil && ap.Addr().IsLoopback()
}
