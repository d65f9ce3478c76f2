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

package aws

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/rekey-dev/rekey/internal/kms"
)

// marker is put into response bodies; it must never reach an error message.
const marker = "MARKER-7f3a-BODY-BYTES"

// server answers every call with one response and counts the requests.
type server struct {
	URL      string
	requests atomic.Int64
}

func respond(t *testing.T, status int, contentType, body string) *server {
	t.Helper()
	s := &server{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.requests.Add(1)
		w.Header().Set("Content-Type", contentType)
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// kmsError answers every call with one AWS error in KMS's JSON protocol.
func kmsError(t *testing.T, status int, code string) *server {
	return respond(t, status, "application/x-amz-json-1.1", `{"__type":"`+code+`","message":"from the test server"}`)
}

func newProvider(t *testing.T, o Options) *Provider {
	t.Helper()
	o.Region = "eu-west-1"
	if o.StaticCredentials == nil {
		o.StaticCredentials = &StaticCredentials{AccessKeyID: "AK", SecretAccessKey: "SK"}
	}
	p, err := New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func provider(t *testing.T, endpoint string) *Provider {
	t.Helper()
	return newProvider(t, Options{Endpoint: endpoint})
}

func reEncrypt(p *Provider) error {
	_, err := p.ReEncrypt(context.Background(), &kms.ReEncryptInput{CiphertextBlob: []byte("x"), DestinationKeyID: "alias/k"})
	return err
}

// wantError checks an error's code and class, and that its message is one
// short line without anything of a response body.
func wantError(t *testing.T, err error, code kms.ErrorCode, class kms.Class) *kms.Error {
	t.Helper()
	var ke *kms.Error
	if !errors.As(err, &ke) {
		t.Fatalf("got %T %v, want a *kms.Error", err, err)
	}
	if ke.Code != code || kms.ClassOfError(err) != class {
		t.Fatalf("got %s (class %v): %q; want %s (class %v)", ke.Code, kms.ClassOfError(err), ke.Message, code, class)
	}
	if len(ke.Message) > maxMessage || strings.ContainsAny(ke.Message, "\r\n\t") {
		t.Fatalf("message is not one short line (%d bytes): %q", len(ke.Message), ke.Message)
	}
	for _, body := range []string{marker, "<html", "<body", "{"} {
		if strings.Contains(err.Error(), body) {
			t.Fatalf("error shows response body bytes (%q): %v", body, err)
		}
	}
	return ke
}

// TestErrorsMapToClasses: every AWS error reaches the controller as a
// *kms.Error with its AWS name, in the class that decides retry, fail the
// blob, or stop the run — after exactly one request: the SDK does not retry,
// throttling and internal errors included (the controller is the one retry
// layer).
func TestErrorsMapToClasses(t *testing.T) {
	cases := []struct {
		status int
		code   string
		class  kms.Class
	}{
		{400, "ThrottlingException", kms.ClassRetry},
		{500, "KMSInternalException", kms.ClassRetry},
		{500, "DependencyTimeoutException", kms.ClassRetry},
		{400, "IncorrectKeyException", kms.ClassFailBlob},
		{400, "InvalidCiphertextException", kms.ClassFailBlob},
		{400, "InvalidGrantTokenException", kms.ClassFailBlob},
		{409, "DisabledException", kms.ClassStopRun},
		{409, "KMSInvalidStateException", kms.ClassStopRun},
		{400, "NotFoundException", kms.ClassStopRun},
		{400, "AccessDeniedException", kms.ClassStopRun},
		{400, "UnrecognizedClientException", kms.ClassStopRun},
		{412, "DryRunOperationException", kms.ClassStopRun},
	}
	for _, tc := range cases {
		t.Run(tc.code, func(t *testing.T) {
			srv := kmsError(t, tc.status, tc.code)
			ke := wantError(t, reEncrypt(provider(t, srv.URL)), kms.ErrorCode(tc.code), tc.class)
			if ke.Message != "from the test server" {
				t.Fatalf("message %q, want the service's", ke.Message)
			}
			if n := srv.requests.Load(); n != 1 {
				t.Fatalf("%d requests for one call, want 1 (no SDK retries)", n)
			}
		})
	}
}

// TestMaxAttemptsOptionIsKept: a caller that wants SDK retries still gets them.
func TestMaxAttemptsOptionIsKept(t *testing.T) {
	srv := kmsError(t, 400, "ThrottlingException")
	p := newProvider(t, Options{Endpoint: srv.URL, MaxAttempts: 3, MaxBackoff: time.Millisecond})
	_ = wantError(t, reEncrypt(p), kms.CodeThrottling, kms.ClassRetry)
	if n := srv.requests.Load(); n != 3 {
		t.Fatalf("%d requests with MaxAttempts 3", n)
	}
}

// countingClient counts the HTTP requests the SDK sends.
type countingClient struct {
	base awskms.HTTPClient
	n    atomic.Int64
}

func (c *countingClient) Do(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.base.Do(r)
}

// TestClosedPortIsRetriedByTheController: a KMS that cannot be reached is a
// transient DependencyTimeoutException naming the endpoint, after one
// attempt.
func TestClosedPortIsRetriedByTheController(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there any more
	hc := &countingClient{base: awshttp.NewBuildableClient()}
	p := newProvider(t, Options{Endpoint: url, HTTPClient: hc})
	for i := range 3 {
		ke := wantError(t, reEncrypt(p), kms.CodeDependencyTimeout, kms.ClassRetry)
		if !strings.Contains(ke.Message, "connection refused") || !strings.Contains(ke.Message, url) {
			t.Fatalf("message %q does not name the endpoint and the problem", ke.Message)
		}
		if n := hc.n.Load(); n != int64(i+1) {
			t.Fatalf("%d HTTP attempts after %d calls, want one per call", n, i+1)
		}
	}
}

// TestDroppedConnectionIsRetriedByTheController: a server that accepts and
// closes the connection without answering is a transport failure too, and
// is tried once per call.
func TestDroppedConnectionIsRetriedByTheController(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	var accepted atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			_ = c.Close()
		}
	}()
	p := provider(t, "http://"+ln.Addr().String())
	for i := range 10 { // the client sees EOF, a reset or a closed idle connection, by timing
		ke := wantError(t, reEncrypt(p), kms.CodeDependencyTimeout, kms.ClassRetry)
		if !strings.Contains(ke.Message, ln.Addr().String()) {
			t.Fatalf("message %q does not name the endpoint", ke.Message)
		}
		if n := accepted.Load(); n != int64(i+1) {
			t.Fatalf("%d connections after %d calls, want one per call", n, i+1)
		}
	}
}

// TestTruncatedResponseIsRetried: a connection that drops in the middle of
// a response is a transport failure, not a response that is not KMS's.
func TestTruncatedResponseIsRetried(t *testing.T) {
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		requests.Add(1)
		c, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		_, _ = buf.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: 400\r\n\r\n{\"KeyId\":\"arn:aws:kms:")
		_ = buf.Flush()
		_ = c.Close()
	}))
	t.Cleanup(srv.Close)
	ke := wantError(t, reEncrypt(provider(t, srv.URL)), kms.CodeDependencyTimeout, kms.ClassRetry)
	if !strings.Contains(ke.Message, srv.URL) {
		t.Fatalf("message %q does not name the endpoint", ke.Message)
	}
	if n := requests.Load(); n != 1 {
		t.Fatalf("%d requests, want 1", n)
	}
}

// TestTLSRefusalStopsTheRun: an endpoint whose certificate is not trusted,
// or that does not speak TLS, is not a transient failure: the run stops
// with RequestFailedException after one attempt.
func TestTLSRefusalStopsTheRun(t *testing.T) {
	var requests atomic.Int64
	h := http.HandlerFunc(func(http.ResponseWriter, *http.Request) { requests.Add(1) })
	untrusted := httptest.NewUnstartedServer(h)
	untrusted.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshake errors are expected
	untrusted.StartTLS()
	t.Cleanup(untrusted.Close)
	plain := httptest.NewServer(h)
	t.Cleanup(plain.Close)
	for endpoint, why := range map[string]string{
		untrusted.URL: "certificate signed by unknown authority",
		strings.Replace(plain.URL, "http://", "https://", 1): "server gave HTTP response to HTTPS client",
	} {
		hc := &countingClient{base: awshttp.NewBuildableClient()}
		p := newProvider(t, Options{Endpoint: endpoint, HTTPClient: hc})
		ke := wantError(t, reEncrypt(p), kms.CodeRequestFailed, kms.ClassStopRun)
		if !strings.Contains(ke.Message, endpoint) || !strings.Contains(ke.Message, why) {
			t.Fatalf("message %q does not name the endpoint and %q", ke.Message, why)
		}
		if n := hc.n.Load(); n != 1 {
			t.Fatalf("%s: %d attempts, want 1", endpoint, n)
		}
	}
	if n := requests.Load(); n != 0 {
		t.Fatalf("%d requests reached a handler", n)
	}
}

// TestNonKMSResponsesStopTheRun: an endpoint that is not KMS (an HTML
// page, a 404 from another server, JSON that is not KMS's) is
// InvalidResponseException — stop the run, never retried — and the message
// gives the status, never the body.
func TestNonKMSResponsesStopTheRun(t *testing.T) {
	html := "<html><body><h1>Not Found</h1><p>" + marker + "</p></body></html>"
	cases := []struct {
		name        string
		status      int
		contentType string
		body        string
	}{
		{"HTML 404", 404, "text/html", html},
		{"HTML 200", 200, "text/html", html},
		{"HTML 503 from a proxy", 503, "text/html", html},
		{"plain 404", 404, "text/plain", "404 page not found " + marker},
		{"JSON 500 without an error type", 500, "application/json", `{"error":"` + marker + `"}`},
		{"JSON 200 of another shape", 200, "application/x-amz-json-1.1", `{"CiphertextBlob":12,"note":"` + marker + `"}`},
		{"JSON error of another service", 400, "application/json", `{"__type":"BucketNotFound","message":"` + marker + `"}`},
		{"empty 404", 404, "text/plain", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := respond(t, tc.status, tc.contentType, tc.body)
			ke := wantError(t, reEncrypt(provider(t, srv.URL)), kms.CodeInvalidResponse, kms.ClassStopRun)
			if want := fmt.Sprintf("HTTP %d", tc.status); !strings.Contains(ke.Message, want) || !strings.Contains(ke.Message, srv.URL) {
				t.Fatalf("message %q does not name the endpoint and %s", ke.Message, want)
			}
			if n := srv.requests.Load(); n != 1 {
				t.Fatalf("%d requests, want 1", n)
			}
		})
	}
}

// TestKMSErrorMessageIsBounded: a KMS error's message is kept, as one line
// of at most maxMessage bytes; nothing else of the body is.
func TestKMSErrorMessageIsBounded(t *testing.T) {
	long := "Key is disabled.\n" + strings.Repeat("a", 300) + " " + marker
	srv := respond(t, 409, "application/x-amz-json-1.1",
		`{"__type":"DisabledException","message":"`+strings.ReplaceAll(long, "\n", `\n`)+`","Detail":"`+marker+`"}`)
	ke := wantError(t, reEncrypt(provider(t, srv.URL)), kms.CodeDisabled, kms.ClassStopRun)
	if !strings.HasPrefix(ke.Message, "Key is disabled. aaa") || !strings.HasSuffix(ke.Message, "…") {
		t.Fatalf("message %q", ke.Message)
	}
}

// TestCredentialFailureStopsTheRun: when the credentials chain fails, no
// request is sent and the run stops with CredentialsException.
func TestCredentialFailureStopsTheRun(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config")
	if err := os.WriteFile(cfg, []byte("[profile broken]\ncredential_process = sh -c 'exit 3'\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		"AWS_CONFIG_FILE": cfg, "AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "none"), "AWS_PROFILE": "broken",
		"AWS_EC2_METADATA_DISABLED": "true", "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": "",
		"AWS_WEB_IDENTITY_TOKEN_FILE": "", "AWS_ROLE_ARN": "", "AWS_CONTAINER_CREDENTIALS_FULL_URI": "",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "",
	} {
		t.Setenv(k, v)
	}
	srv := kmsError(t, 400, "NotFoundException")
	p, err := New(context.Background(), Options{Region: "eu-west-1", Endpoint: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	ke := wantError(t, reEncrypt(p), kms.CodeCredentials, kms.ClassStopRun)
	if !strings.Contains(ke.Message, "credential") {
		t.Fatalf("message %q", ke.Message)
	}
	_, _, err = p.DescribeKey(context.Background(), "alias/k")
	_ = wantError(t, err, kms.CodeCredentials, kms.ClassStopRun)
	if n := srv.requests.Load(); n != 0 {
		t.Fatalf("%d requests sent without credentials", n)
	}
}

// TestCallerCancellationIsReturnedAsIs: the caller's cancellation and
// deadline are not turned into key service errors.
func TestCallerCancellationIsReturnedAsIs(t *testing.T) {
	arrived := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // so that the server notices the client leave
		arrived <- struct{}{}
		<-r.Context().Done() // answer only when the client gives up
	}))
	t.Cleanup(srv.Close)
	p := provider(t, srv.URL)
	in := &kms.ReEncryptInput{CiphertextBlob: []byte("x"), DestinationKeyID: "alias/k"}

	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-arrived; cancel() }()
	_, err := p.ReEncrypt(ctx, in)
	if !errors.Is(err, context.Canceled) || kms.CodeOf(err) != "" {
		t.Fatalf("cancelled call: %v", err)
	}

	ctx, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = p.ReEncrypt(ctx, in)
	<-arrived
	if !errors.Is(err, context.DeadlineExceeded) || kms.CodeOf(err) != "" {
		t.Fatalf("call past its deadline: %v", err)
	}
}

func TestSanitize(t *testing.T) {
	for in, want := range map[string]string{
		"one line":                  "one line",
		"two\nlines\r\n\tand a tab": "two lines and a tab",
		"bell\a and \x00 nul":       "bell and nul",
		strings.Repeat("é", 150):    strings.Repeat("é", 98) + "…",
	} {
		if got := sanitize(in); got != want {
			t.Errorf("sanitize(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestStaticCredentialsNeverPrintTheSecret(t *testing.T) {
	c := StaticCredentials{AccessKeyID: "AKID", SecretAccessKey: "TOP-SECRET"}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		if s := fmt.Sprintf(verb, c); s != "StaticCredentials(AKID, redacted)" {
			t.Fatalf("%s printed %q", verb, s)
		}
	}
}
