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
	"context"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rekey-dev/rekey/internal/kms"
	"github.com/rekey-dev/rekey/internal/kms/awsapi"
	"github.com/rekey-dev/rekey/internal/podidentity"
)

// countingReviewer refuses every token after a fixed latency (a
// kube-apiserver answering a TokenReview), and counts the calls and
// whether each had a deadline.
type countingReviewer struct {
	latency    time.Duration
	calls      atomic.Int64
	noDeadline atomic.Int64
	block      chan struct{}
	started    chan struct{}
}

func (c *countingReviewer) Review(ctx context.Context, token string) (podidentity.Review, error) {
	c.calls.Add(1)
	if _, ok := ctx.Deadline(); !ok {
		c.noDeadline.Add(1)
	}
	if c.started != nil {
		select {
		case c.started <- struct{}{}:
		default:
		}
	}
	if c.block != nil {
		select {
		case <-c.block:
		case <-ctx.Done():
		}
	}
	time.Sleep(c.latency)
	return podidentity.Review{}, podidentity.ErrRefused
}

func podEndpoint(t *testing.T, rev awsapi.TokenReviewer, l awsapi.Limits, perSecond float64) (addr string) {
	t.Helper()
	e, err := kms.New(context.Background(), kms.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sessions, err := podidentity.NewSessions(make([]byte, 32), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := awsapi.New(e, awsapi.Options{PodIdentity: &awsapi.PodIdentity{Reviewer: rev, Sessions: sessions, Duration: 15 * time.Minute, ReviewsPerSecond: perSecond}})
	srv := awsapi.NewHTTPServer(h, l, nil, logr.Discard())
	done := make(chan struct{})
	go func() { _ = srv.Serve(ln); close(done) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })
	return ln.Addr().String()
}

func testJWT(header, claims string) string {
	b := base64.RawURLEncoding
	return b.EncodeToString([]byte(header)) + "." + b.EncodeToString([]byte(claims)) + "." + b.EncodeToString([]byte("not a signature"))
}

// A credentials request whose token is under review is "working" for the
// connection limiter, as a KMS request in flight is: new connections do
// not close it (review 12, finding 6).
func TestCredentialsRequestInReviewNotShed(t *testing.T) {
	const limit = 4
	rev := &countingReviewer{block: make(chan struct{}), started: make(chan struct{}, 1)}
	defer close(rev.block)
	l := awsapi.Limits{MaxConnections: limit, ReadHeaderTimeout: time.Minute, ReadTimeout: time.Minute,
		WriteTimeout: time.Minute, IdleTimeout: time.Minute, MaxHeaderBytes: 16 << 10}
	addr := podEndpoint(t, rev, l, 0)
	victim, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = victim.Close() }()
	if _, err := io.WriteString(victim, "GET /v1/credentials HTTP/1.1\r\nHost: "+addr+"\r\nAuthorization: a.b.c\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	<-rev.started // the request is being reviewed (the kube-apiserver is slow)
	for range limit {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = c.Close() }()
		time.Sleep(20 * time.Millisecond)
	}
	_ = victim.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	b, err := io.ReadAll(victim)
	if err != nil && strings.Contains(err.Error(), "timeout") {
		return // still open: fine
	}
	t.Errorf("the in-flight credentials request's connection was closed by the limiter (read %q, %v)", b, err)
}

// The TokenReview runs under a deadline: a hung kube-apiserver holds a
// review slot for at most reviewTimeout (review 12, finding 7).
func TestTokenReviewHasDeadline(t *testing.T) {
	rev := &countingReviewer{}
	addr := podEndpoint(t, rev, awsapi.DefaultLimits(), 0)
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+awsapi.CredentialsPath, nil)
	req.Header.Set("Authorization", "a.b.c")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if rev.noDeadline.Load() != 0 {
		t.Error("the TokenReview was called with a context without a deadline")
	}
}

// TokenReviews are rate-limited (ReviewsPerSecond, burst twice that):
// beyond it a request is told to retry, and the kube-apiserver is not
// asked (review 12, finding 1).
func TestTokenReviewsRateLimited(t *testing.T) {
	rev := &countingReviewer{}
	addr := podEndpoint(t, rev, awsapi.DefaultLimits(), 5)
	throttled := 0
	for range 40 {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+awsapi.CredentialsPath, nil)
		req.Header.Set("Authorization", "a.b.c")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests {
			throttled++
		}
	}
	// 40 requests within well under a second at 5/s, burst 10: about 10
	// reviews (one more per 200 ms elapsed), the rest 429.
	if n := rev.calls.Load(); n > 15 || throttled < 25 {
		t.Fatalf("%d TokenReviews and %d throttled of 40 at 5/s", n, throttled)
	}
}

// What is plainly not a ServiceAccount token for the audience never
// reaches the kube-apiserver, nor uses up the review rate that real
// tokens need (podidentity.Reviewer.Precheck, before the rate limit;
// review 12, finding 1).
func TestJunkTokensNeverReviewed(t *testing.T) {
	reviews := &countingReviews{}
	addr := podEndpoint(t, &podidentity.Reviewer{Reviews: reviews, Audience: "rekey"}, awsapi.DefaultLimits(), 0.1)
	junk := []string{
		"a.b.c",
		testJWT(`{"alg":"none"}`, `{}`),
		testJWT(`{"alg":"RS256"}`, `{"aud":["other"],"exp":4102444800,"iat":4102441200,"sub":"system:serviceaccount:a:b"}`),
		testJWT(`{"alg":"RS256"}`, `{"aud":["rekey"],"exp":1,"iat":0,"sub":"system:serviceaccount:a:b"}`),
		testJWT(`{"alg":"RS256"}`, `{"aud":["rekey"],"exp":4102444800,"sub":"alice"}`),
	}
	for _, tok := range append(junk, junk...) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+awsapi.CredentialsPath, nil)
		req.Header.Set("Authorization", tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || reviews.calls.Load() != 0 {
			t.Fatalf("token %.40q: status %d, %d TokenReviews", tok, resp.StatusCode, reviews.calls.Load())
		}
	}
}

type countingReviews struct{ calls atomic.Int64 }

func (c *countingReviews) Create(_ context.Context, tr *authnv1.TokenReview, _ metav1.CreateOptions) (*authnv1.TokenReview, error) {
	c.calls.Add(1)
	return tr, nil
}

// A static access key id cannot take a session principal's name in the
// audit log (review 12, finding 10).
func TestStaticKeyIDsCannotLookLikeSessions(t *testing.T) {
	for _, line := range []string{"system:serviceaccount:team-b:app secret\n", "AK/ID secret\n"} {
		if _, err := awsapi.ParseCredentials(strings.NewReader(line)); err == nil {
			t.Errorf("credentials %q accepted", line)
		}
	}
	if _, err := awsapi.ParseCredentials(strings.NewReader("AKIDADMIN secret\n")); err != nil {
		t.Fatal(err)
	}
}
