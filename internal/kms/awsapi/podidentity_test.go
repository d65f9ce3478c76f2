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

package awsapi_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/endpointcreds"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/rekey-dev/rekey/internal/keypolicy"
	"github.com/rekey-dev/rekey/internal/kms"
	"github.com/rekey-dev/rekey/internal/kms/awsapi"
	"github.com/rekey-dev/rekey/internal/podidentity"
)

// stubReviewer stands in for the kube-apiserver's TokenReview, which
// cmd/rekey's envtest test (TestKMSServePodIdentity) uses for real: these
// tests move the server's clock, which a real token cannot follow.
type stubReviewer struct {
	review  podidentity.Review
	err     error
	block   chan struct{}
	started chan struct{}
	calls   atomic.Int32
}

func (s *stubReviewer) Review(ctx context.Context, token string) (podidentity.Review, error) {
	s.calls.Add(1)
	if s.started != nil {
		s.started <- struct{}{}
	}
	if s.block != nil {
		<-s.block
	}
	if token != "good-token" {
		return podidentity.Review{}, podidentity.ErrRefused
	}
	return s.review, s.err
}

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type podServer struct {
	url    string
	engine *kms.Engine
	clock  *testClock
	rev    *stubReviewer
	audit  *bytes.Buffer
	srv    *awsapi.Server
}

func startPodServer(t *testing.T, engine *kms.Engine, clock *testClock, rev *stubReviewer, maxReviews int) *podServer {
	t.Helper()
	sessions, err := podidentity.NewSessions(bytes.Repeat([]byte{7}, 32), clock.now, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := &podServer{engine: engine, clock: clock, rev: rev, audit: &bytes.Buffer{}}
	var auditMu sync.Mutex
	p.srv = awsapi.New(engine, awsapi.Options{Now: clock.now, Audit: lockedWriter{&auditMu, p.audit},
		PodIdentity: &awsapi.PodIdentity{Reviewer: rev, Sessions: sessions, Duration: 15 * time.Minute, MaxConcurrentReviews: maxReviews}})
	hs := httptest.NewServer(p.srv)
	t.Cleanup(hs.Close)
	p.url = hs.URL
	return p
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func (p *podServer) fetch(t *testing.T, token string) (aws.Credentials, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second) // a bound that fails to hold fails, not hangs
	defer cancel()
	return endpointcreds.New(p.url+awsapi.CredentialsPath, func(o *endpointcreds.Options) {
		o.AuthorizationToken = token
		o.Retryer = aws.NopRetryer{}
	}).Retrieve(ctx)
}

func (p *podServer) client(c aws.Credentials) *awskms.Client {
	return sdkClient(p.url, c.AccessKeyID, c.SecretAccessKey, c.SessionToken)
}

// sdkClient is the AWS SDK's KMS client for the endpoint at url, signing
// with the access key, secret and (for a session) security token given,
// one attempt per call.
func sdkClient(url, akid, secret, token string) *awskms.Client {
	return awskms.New(awskms.Options{Region: "local", BaseEndpoint: aws.String(url), RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider(akid, secret, token)})
}

// Session credentials end at their Expiration, by the server's clock;
// a token already past its exp by the server's clock gets none; a
// session lasts --session-duration at most, and never past the token.
func TestSessionExpiry(t *testing.T) {
	ctx := context.Background()
	engine, err := kms.New(ctx, kms.Options{})
	if err != nil {
		t.Fatal(err)
	}
	key, err := engine.CreateKey(ctx, &kms.CreateKeyInput{Tags: []kms.Tag{{TagKey: keypolicy.DecryptTag, TagValue: "team-a"}}})
	if err != nil {
		t.Fatal(err)
	}
	enc, err := engine.Encrypt(ctx, &kms.EncryptInput{KeyID: key.KeyMetadata.KeyID, Plaintext: []byte("v")})
	if err != nil {
		t.Fatal(err)
	}
	clock := &testClock{t: time.Now()}
	rev := &stubReviewer{review: podidentity.Review{Identity: podidentity.Identity{Namespace: "team-a", Name: "app"},
		Expires: clock.now().Add(time.Hour)}}
	p := startPodServer(t, engine, clock, rev, 0)

	creds, err := p.fetch(t, "good-token")
	if err != nil {
		t.Fatal(err)
	}
	if d := creds.Expires.Sub(clock.now()); d > 15*time.Minute || d < 15*time.Minute-time.Second {
		t.Fatalf("credentials last %v, want 15m", d)
	}
	k := p.client(creds)
	if _, err := k.Decrypt(ctx, &awskms.DecryptInput{CiphertextBlob: enc.CiphertextBlob}); err != nil {
		t.Fatalf("Decrypt: %v", err)
	}
	// The session token is checked before the request's time, so a
	// request signed now is refused as expired once the server's clock is
	// past the session's end.
	clock.add(15 * time.Minute)
	_, err = k.Decrypt(ctx, &awskms.DecryptInput{CiphertextBlob: enc.CiphertextBlob})
	if errorCode(err) != "ExpiredTokenException" {
		t.Fatalf("Decrypt after the session's end: want ExpiredTokenException, got %v", err)
	}

	// A token whose own expiry is nearer than the session's caps it.
	rev.review.Expires = clock.now().Add(4 * time.Minute)
	if c, err := p.fetch(t, "good-token"); err != nil || !c.Expires.Equal(rev.review.Expires.Truncate(time.Second)) {
		t.Fatalf("credentials from a token expiring in 4m: %v, %v", c.Expires, err)
	}
	// A token past its expiry by the server's clock (the kube-apiserver
	// still accepting it) gets nothing.
	rev.review.Expires = clock.now().Add(-time.Second)
	_, err = p.fetch(t, "good-token")
	var re interface{ HTTPStatusCode() int }
	if errorCode(err) != "AccessDeniedException" || !errors.As(err, &re) || re.HTTPStatusCode() != http.StatusForbidden {
		t.Fatalf("an expired token: want 403 AccessDeniedException, got %v", err)
	}
	// The kube-apiserver failing is a 503 the SDKs retry, never a grant.
	rev.review.Expires, rev.err = time.Time{}, errors.New("connection refused")
	if _, err := p.fetch(t, "good-token"); errorCode(err) != "DependencyTimeoutException" || !errors.As(err, &re) || re.HTTPStatusCode() != http.StatusServiceUnavailable {
		t.Fatalf("TokenReview failing: want 503 DependencyTimeoutException, got %v", err)
	}
}

// At most MaxConcurrentReviews TokenReviews run at once: a flood of
// tokens costs the kube-apiserver that many requests, and the rest are
// told to retry (429, which the SDKs retry).
func TestCredentialsReviewsBounded(t *testing.T) {
	engine, err := kms.New(context.Background(), kms.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rev := &stubReviewer{block: make(chan struct{}), started: make(chan struct{}, 8)}
	p := startPodServer(t, engine, &testClock{t: time.Now()}, rev, 1)
	var unblock sync.Once
	t.Cleanup(func() { unblock.Do(func() { close(rev.block) }) }) // before the server's Close waits for handlers
	first := make(chan error, 1)
	go func() { _, err := p.fetch(t, "bad-token"); first <- err }()
	<-rev.started // the one slot is taken
	_, err = p.fetch(t, "bad-token")
	var re interface{ HTTPStatusCode() int }
	if errorCode(err) != "ThrottlingException" || !errors.As(err, &re) || re.HTTPStatusCode() != http.StatusTooManyRequests {
		t.Fatalf("a second token while one is reviewed: want 429 ThrottlingException, got %v", err)
	}
	unblock.Do(func() { close(rev.block) })
	if err := <-first; errorCode(err) != "AccessDeniedException" {
		t.Fatalf("the first: %v", err)
	}
	if n := rev.calls.Load(); n != 1 {
		t.Fatalf("%d TokenReviews, want 1", n)
	}
}

// An admin's policy tag that does not parse is refused, not stored to
// grant nothing.
func TestPolicyTagsValidated(t *testing.T) {
	ctx := context.Background()
	engine, err := kms.New(ctx, kms.Options{})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(awsapi.New(engine, awsapi.Options{Credentials: awsapi.Credentials{"AKADMIN": "admin-secret"}}))
	t.Cleanup(hs.Close)
	admin := sdkClient(hs.URL, "AKADMIN", "admin-secret", "")
	tag := func(k, v string) []types.Tag { return []types.Tag{{TagKey: aws.String(k), TagValue: aws.String(v)}} }
	for _, bad := range []string{"*", "team-a/*", "team-a, team-b", "Team-A"} {
		if _, err := admin.CreateKey(ctx, &awskms.CreateKeyInput{Tags: tag(keypolicy.DecryptTag, bad)}); errorCode(err) != "ValidationException" {
			t.Errorf("CreateKey with %s=%q: want ValidationException, got %v", keypolicy.DecryptTag, bad, err)
		}
	}
	k, err := admin.CreateKey(ctx, &awskms.CreateKeyInput{Tags: tag(keypolicy.EncryptTag, "team-a/app,team-b")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.TagResource(ctx, &awskms.TagResourceInput{KeyId: k.KeyMetadata.KeyId, Tags: tag(keypolicy.GenerateDataKeyTag, "team-a/*")}); errorCode(err) != "ValidationException" {
		t.Errorf("TagResource with a wildcard: want ValidationException, got %v", err)
	}
	if _, err := admin.TagResource(ctx, &awskms.TagResourceInput{KeyId: k.KeyMetadata.KeyId, Tags: tag("team", "*")}); err != nil {
		t.Errorf("another tag is not a policy: %v", err)
	}
	// A long-term access key has no session: a security token with it is
	// refused, as AWS refuses it.
	withToken := sdkClient(hs.URL, "AKADMIN", "admin-secret", "some-token")
	if _, err := withToken.ListKeys(ctx, &awskms.ListKeysInput{}); errorCode(err) != "UnrecognizedClientException" {
		t.Errorf("a long-term key with a security token: want UnrecognizedClientException, got %v", err)
	}
}

// While the key policy cannot be read (PolicyFresh fails), sessions are
// refused with a retryable error instead of being authorised by tags that
// may have been revoked; static principals are not affected (review 12,
// finding 8).
func TestStalePolicyRefusesSessions(t *testing.T) {
	ctx := context.Background()
	engine, err := kms.New(ctx, kms.Options{})
	if err != nil {
		t.Fatal(err)
	}
	key, err := engine.CreateKey(ctx, &kms.CreateKeyInput{Tags: []kms.Tag{{TagKey: keypolicy.DecryptTag, TagValue: "team-a"}}})
	if err != nil {
		t.Fatal(err)
	}
	enc, err := engine.Encrypt(ctx, &kms.EncryptInput{KeyID: key.KeyMetadata.KeyID, Plaintext: []byte("v")})
	if err != nil {
		t.Fatal(err)
	}
	sessions, err := podidentity.NewSessions(bytes.Repeat([]byte{7}, 32), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var stale atomic.Bool
	hs := httptest.NewServer(awsapi.New(engine, awsapi.Options{Credentials: awsapi.Credentials{"AKADMIN": "admin-secret"},
		PodIdentity: &awsapi.PodIdentity{Reviewer: &stubReviewer{}, Sessions: sessions, Duration: time.Hour,
			PolicyFresh: func() error {
				if stale.Load() {
					return errors.New("stale")
				}
				return nil
			}}}))
	t.Cleanup(hs.Close)
	c, err := sessions.Issue(podidentity.Identity{Namespace: "team-a", Name: "app"}, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	session, admin := sdkClient(hs.URL, c.AccessKeyID, c.SecretAccessKey, c.SessionToken), sdkClient(hs.URL, "AKADMIN", "admin-secret", "")
	if _, err := session.Decrypt(ctx, &awskms.DecryptInput{CiphertextBlob: enc.CiphertextBlob}); err != nil {
		t.Fatalf("fresh policy: %v", err)
	}
	stale.Store(true)
	if _, err := session.Decrypt(ctx, &awskms.DecryptInput{CiphertextBlob: enc.CiphertextBlob}); errorCode(err) != "DependencyTimeoutException" {
		t.Fatalf("stale policy: want DependencyTimeoutException, got %v", err)
	}
	if _, err := admin.Decrypt(ctx, &awskms.DecryptInput{CiphertextBlob: enc.CiphertextBlob}); err != nil {
		t.Fatalf("a static admin with a stale policy: %v", err)
	}
}

// A request that names its key by alias runs under the key it was
// authorised for, even when an admin moves the alias meanwhile (review
// 12, finding 12). The alias is moved back and forth between a key the
// session may use and one it may not, as fast as the engine allows, while
// the session encrypts by alias: every success must be under the first.
// (Probabilistic: without the pinning it fails within a few hundred
// requests on this machine; with it, it cannot fail.)
func TestAliasPinnedToAuthorisedKey(t *testing.T) {
	ctx := context.Background()
	engine, err := kms.New(ctx, kms.Options{})
	if err != nil {
		t.Fatal(err)
	}
	allowed, err := engine.CreateKey(ctx, &kms.CreateKeyInput{Tags: []kms.Tag{{TagKey: keypolicy.EncryptTag, TagValue: "team-a"}}})
	if err != nil {
		t.Fatal(err)
	}
	other, err := engine.CreateKey(ctx, &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := engine.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: "alias/app", TargetKeyID: allowed.KeyMetadata.KeyID}); err != nil {
		t.Fatal(err)
	}
	sessions, err := podidentity.NewSessions(bytes.Repeat([]byte{7}, 32), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(awsapi.New(engine, awsapi.Options{PodIdentity: &awsapi.PodIdentity{Reviewer: &stubReviewer{}, Sessions: sessions, Duration: time.Hour}}))
	t.Cleanup(hs.Close)
	c, err := sessions.Issue(podidentity.Identity{Namespace: "team-a", Name: "app"}, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	k := sdkClient(hs.URL, c.AccessKeyID, c.SecretAccessKey, c.SessionToken)
	stop := make(chan struct{})
	flipped := make(chan int)
	go func() {
		n := 0
		for targets := []string{other.KeyMetadata.KeyID, allowed.KeyMetadata.KeyID}; ; n++ {
			select {
			case <-stop:
				flipped <- n
				return
			default:
			}
			_, _ = engine.UpdateAlias(ctx, &kms.UpdateAliasInput{AliasName: "alias/app", TargetKeyID: targets[n%2]})
		}
	}()
	ok := 0
	for range 600 {
		out, err := k.Encrypt(ctx, &awskms.EncryptInput{KeyId: aws.String("alias/app"), Plaintext: []byte("x")})
		if err != nil {
			continue // denied: the alias named the other key when authorised
		}
		ok++
		if aws.ToString(out.KeyId) != allowed.KeyMetadata.Arn {
			close(stop)
			<-flipped
			t.Fatalf("an Encrypt authorised for %s ran under %s", allowed.KeyMetadata.Arn, aws.ToString(out.KeyId))
		}
	}
	close(stop)
	if n := <-flipped; ok == 0 || n < 100 {
		t.Fatalf("%d successes, %d alias moves: the test did not exercise the race", ok, n)
	}
}
