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

// Package testkms starts AWS KMS-compatible servers on 127.0.0.1 for tests:
// rekey's own endpoint over an in-memory engine, and local-kms
// (github.com/nsmithuk/local-kms) through its exported handler — its own
// binary listens on every interface, so it is never run as is. A wrapper
// injects ThrottlingException into a share of calls.
package testkms

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	localkms "github.com/nsmithuk/local-kms/src"
	lkconfig "github.com/nsmithuk/local-kms/src/config"
	lkdata "github.com/nsmithuk/local-kms/src/data"

	"github.com/rekey-dev/rekey/internal/kms"
	"github.com/rekey-dev/rekey/internal/kms/awsapi"
)

// Test credentials every server here accepts (local-kms ignores signatures).
const (
	AccessKeyID     = "AKIDREKEYTEST"
	SecretAccessKey = "rekey-test-secret"
	Region          = "eu-west-2"
	Account         = "111122223333"
)

// RequestIDHeader is the response header in which a Server names each
// request it received over its listener; a client that reads it back proves
// its call went over HTTP to this server.
const RequestIDHeader = "X-Testkms-Request-Id"

// Server is a running KMS endpoint.
type Server struct {
	// Name is the implementation ("rekey-endpoint", "local-kms"); it
	// prefixes the request ids.
	Name string
	URL  string
	// Engine is set for rekey's endpoint.
	Engine *kms.Engine
	// ReEncrypts counts ReEncrypt requests that reached the server.
	ReEncrypts atomic.Int64
	// Throttled counts ReEncrypt requests answered with ThrottlingException.
	Throttled     atomic.Int64
	throttleEvery atomic.Int64

	// addr is the listener's address, set before the server starts.
	addr     string
	received atomic.Int64
	mu       sync.Mutex
	ops      map[string]string // request id -> operation
}

// Received is how many requests reached the server over its listener.
func (s *Server) Received() int64 { return s.received.Load() }

// Operation returns the operation (ReEncrypt, DescribeKey, ...) of the
// request this server gave id, and false when it gave no such id.
func (s *Server) Operation(id string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	op, ok := s.ops[id]
	return op, ok
}

// ThrottleEvery makes every nth ReEncrypt fail with ThrottlingException (0: none).
func (s *Server) ThrottleEvery(n int) { s.throttleEvery.Store(int64(n)) }

func (s *Server) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Only a request that arrived on this server's own listener gets an
		// id: one handed to the handler in-process has no local address.
		if addr, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok && addr.String() == s.addr {
			id := s.Name + "-" + strconv.FormatInt(s.received.Add(1), 10)
			_, op, _ := strings.Cut(r.Header.Get("X-Amz-Target"), ".")
			s.mu.Lock()
			if s.ops == nil {
				s.ops = map[string]string{}
			}
			s.ops[id] = op
			s.mu.Unlock()
			w.Header().Set(RequestIDHeader, id)
		}
		if strings.HasSuffix(r.Header.Get("X-Amz-Target"), ".ReEncrypt") {
			n := s.ReEncrypts.Add(1)
			if every := s.throttleEvery.Load(); every > 0 && n%every == 0 {
				s.Throttled.Add(1)
				w.Header().Set("Content-Type", "application/x-amz-json-1.1")
				w.WriteHeader(http.StatusBadRequest)
				_, _ = w.Write([]byte(`{"__type":"ThrottlingException","message":"Rate exceeded"}`))
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

func serve(t testing.TB, s *Server, h http.Handler) *Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(s.wrap(h))
	s.addr = srv.Listener.Addr().String()
	srv.Start()
	t.Cleanup(srv.Close)
	if !strings.HasPrefix(srv.URL, "http://127.0.0.1:") {
		t.Fatalf("test KMS is not on loopback: %s", srv.URL)
	}
	s.URL = srv.URL
	return s
}

// Rekey serves rekey's AWS-compatible endpoint over a fresh in-memory engine.
func Rekey(t testing.TB) *Server {
	t.Helper()
	e, err := kms.New(context.Background(), kms.Options{Region: Region, AccountID: Account})
	if err != nil {
		t.Fatal(err)
	}
	h := awsapi.New(e, awsapi.Options{Credentials: awsapi.Credentials{AccessKeyID: SecretAccessKey}})
	return serve(t, &Server{Name: "rekey-endpoint", Engine: e}, h)
}

var lkOnce sync.Once

// LocalKMSHandler returns local-kms's exported handler over a database in
// dir (region eu-west-2, account 111122223333), for a server the caller
// binds to loopback, and a function that closes the database.
func LocalKMSHandler(dir string) (http.Handler, func()) {
	lkOnce.Do(func() { lkconfig.AWSRegion, lkconfig.AWSAccountId = Region, Account })
	db := lkdata.NewDatabase(dir)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { localkms.HandleRequest(w, r, db) }), db.Close
}

// LocalKMS serves local-kms's handler over a fresh database.
func LocalKMS(t testing.TB) *Server {
	t.Helper()
	h, closeDB := LocalKMSHandler(t.TempDir())
	t.Cleanup(closeDB)
	return serve(t, &Server{Name: "local-kms"}, h)
}

// Client returns an AWS SDK client for the server (one attempt: no retries).
func (s *Server) Client() *awskms.Client {
	return awskms.New(awskms.Options{
		Region: Region, BaseEndpoint: aws.String(s.URL), RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider(AccessKeyID, SecretAccessKey, ""),
	})
}
