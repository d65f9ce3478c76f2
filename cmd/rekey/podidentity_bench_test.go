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
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/rekey-dev/rekey/internal/kms"
	"github.com/rekey-dev/rekey/internal/kms/awsapi"
	"github.com/rekey-dev/rekey/internal/podidentity"
)

// BenchmarkPodIdentityCredentials measures GET /v1/credentials end to end
// against envtest's kube-apiserver (a real TokenReview each time), from 8
// concurrent clients over loopback HTTP: "same-token" presents one token
// (the kube-apiserver caches a token it authenticated for 10 s), "distinct
// tokens" cycles through a pool of 256 TokenRequest tokens made before the
// timer starts (run it with -benchtime 256x so that none repeats).
// Reported as issuances per second; internal/kms/awsapi's
// BenchmarkIssueCredentials is the same without the TokenReview.
func BenchmarkPodIdentityCredentials(b *testing.B) {
	ctx := context.Background()
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		b.Fatal(err)
	}
	ns := env.Namespace(b)
	tokens := make([]string, 256)
	for i := range tokens {
		if tokens[i], err = makeToken(cs, ns, "app", "rekey", 3600); err != nil {
			b.Fatal(err)
		}
	}
	e, err := kms.New(ctx, kms.Options{})
	if err != nil {
		b.Fatal(err)
	}
	sessions, err := podidentity.NewSessions(bytes.Repeat([]byte{1}, 32), nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(awsapi.New(e, awsapi.Options{Audit: io.Discard, PodIdentity: &awsapi.PodIdentity{
		Reviewer: &podidentity.Reviewer{Reviews: cs.AuthenticationV1().TokenReviews(), Audience: "rekey", AllowUnbound: true},
		Sessions: sessions, Duration: 15 * time.Minute, MaxConcurrentReviews: 64, ReviewsPerSecond: 1e6}}))
	defer srv.Close()
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	get := func(token string) {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+awsapi.CredentialsPath, nil)
		req.Header.Set("Authorization", token)
		resp, err := hc.Do(req)
		if err != nil {
			b.Error(err)
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Errorf("status %d", resp.StatusCode)
		}
	}
	for name, pick := range map[string]func(i int64) string{
		"same-token":      func(int64) string { return tokens[0] },
		"distinct-tokens": func(i int64) string { return tokens[i%int64(len(tokens))] },
	} {
		b.Run(name, func(b *testing.B) {
			var n atomic.Int64
			b.SetParallelism(4) // 8 clients on 2 CPUs
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					get(pick(n.Add(1)))
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "issues/s")
		})
	}
}
