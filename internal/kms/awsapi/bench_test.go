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

package awsapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/rekey-dev/rekey/internal/keypolicy"
	"github.com/rekey-dev/rekey/internal/kms"
	"github.com/rekey-dev/rekey/internal/podidentity"
)

// BenchmarkServeReEncrypt measures the server side of one ReEncrypt request
// (SigV4 check, JSON in and out, the engine), without a network or a client:
// as an admin (the one-credential mode) and as a principal whose policy
// names the two keys by alias, with the audit log on.
func BenchmarkServeReEncrypt(b *testing.B) {
	b.Run("admin", func(b *testing.B) { benchServeReEncrypt(b, false) })
	b.Run("policy+audit", func(b *testing.B) { benchServeReEncrypt(b, true) })
}

func benchServeReEncrypt(b *testing.B, withPolicy bool) {
	ctx := context.Background()
	e, err := kms.New(ctx, kms.Options{})
	if err != nil {
		b.Fatal(err)
	}
	src, _ := e.CreateKey(ctx, &kms.CreateKeyInput{})
	dst, _ := e.CreateKey(ctx, &kms.CreateKeyInput{})
	ec := map[string]string{"app": "bench"}
	enc, err := e.Encrypt(ctx, &kms.EncryptInput{KeyID: src.KeyMetadata.KeyID, Plaintext: make([]byte, 1024), EncryptionContext: ec})
	if err != nil {
		b.Fatal(err)
	}
	body, _ := json.Marshal(&kms.ReEncryptInput{CiphertextBlob: enc.CiphertextBlob, SourceKeyID: src.KeyMetadata.Arn,
		SourceEncryptionContext: ec, DestinationKeyID: dst.KeyMetadata.Arn, DestinationEncryptionContext: ec})
	for name, k := range map[string]*kms.CreateKeyOutput{"alias/src": src, "alias/dst": dst} {
		if _, err := e.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: name, TargetKeyID: k.KeyMetadata.KeyID}); err != nil {
			b.Fatal(err)
		}
	}
	o := Options{Credentials: Credentials{"AK": "SK"}, Hosts: []string{"127.0.0.1"}}
	if withPolicy {
		p, err := ParsePolicy([]byte(`{"principals":{"AK":{"operations":["DescribeKey","ReEncrypt"],"keys":["alias/src","alias/dst"]}}}`))
		if err != nil {
			b.Fatal(err)
		}
		o.Policy, o.Audit = p, io.Discard
	}
	srv := New(e, o)
	now := time.Now()
	sum := sha256.Sum256(body)
	req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:9/", bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("X-Amz-Target", "TrentService.ReEncrypt")
	if err := v4.NewSigner().SignHTTP(ctx, aws.Credentials{AccessKeyID: "AK", SecretAccessKey: "SK"}, req,
		hex.EncodeToString(sum[:]), "kms", "eu-west-1", now); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		r := req.Clone(ctx)
		r.Body = http.NoBody
		r.Body = readCloser{bytes.NewReader(body)}
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

// BenchmarkServeDecrypt measures the server side of one Decrypt (1 KiB
// plaintext) with the audit log on: signed with a static credential under
// a policy file, and signed with pod-identity session credentials (the
// session token verified, the key's rekey.dev/decrypt tag read), so the
// two figures show what a session costs per request.
func BenchmarkServeDecrypt(b *testing.B) {
	b.Run("static+policy", func(b *testing.B) { benchServeDecrypt(b, false) })
	b.Run("session+tags", func(b *testing.B) { benchServeDecrypt(b, true) })
}

func benchServeDecrypt(b *testing.B, session bool) {
	ctx := context.Background()
	e, err := kms.New(ctx, kms.Options{})
	if err != nil {
		b.Fatal(err)
	}
	k, _ := e.CreateKey(ctx, &kms.CreateKeyInput{Tags: []kms.Tag{{TagKey: keypolicy.DecryptTag, TagValue: "other,team-b/web,team-a/app"}}})
	if _, err := e.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: "alias/app", TargetKeyID: k.KeyMetadata.KeyID}); err != nil {
		b.Fatal(err)
	}
	ec := map[string]string{"app": "bench"}
	enc, err := e.Encrypt(ctx, &kms.EncryptInput{KeyID: k.KeyMetadata.KeyID, Plaintext: make([]byte, 1024), EncryptionContext: ec})
	if err != nil {
		b.Fatal(err)
	}
	body, _ := json.Marshal(&kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: ec})
	p, err := ParsePolicy([]byte(`{"principals":{"AK":{"operations":["Decrypt"],"keys":["alias/app"]}}}`))
	if err != nil {
		b.Fatal(err)
	}
	sessions, err := podidentity.NewSessions(bytes.Repeat([]byte{1}, 32), nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	srv := New(e, Options{Credentials: Credentials{"AK": "SK"}, Policy: p, Hosts: []string{"127.0.0.1"}, Audit: io.Discard,
		PodIdentity: &PodIdentity{Sessions: sessions, Duration: time.Hour}})
	creds := aws.Credentials{AccessKeyID: "AK", SecretAccessKey: "SK"}
	if session {
		c, err := sessions.Issue(podidentity.Identity{Namespace: "team-a", Name: "app", UID: "4f1c2b9e-0000-4000-8000-000000000001"}, time.Now().Add(time.Hour))
		if err != nil {
			b.Fatal(err)
		}
		creds = aws.Credentials{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: c.SessionToken}
	}
	sum := sha256.Sum256(body)
	req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:9/", bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("X-Amz-Target", "TrentService.Decrypt")
	if err := v4.NewSigner().SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), "kms", "eu-west-1", time.Now()); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	start := processCPU()
	for b.Loop() {
		r := req.Clone(ctx)
		r.Body = readCloser{bytes.NewReader(body)}
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
	reportCPU(b, start)
}

// instantReviewer accepts every token at once: BenchmarkIssueCredentials
// measures the server's own work per issuance, the TokenReview excluded
// (cmd/rekey's BenchmarkPodIdentityCredentials includes it).
type instantReviewer struct{}

func (instantReviewer) Review(context.Context, string) (podidentity.Review, error) {
	return podidentity.Review{Identity: podidentity.Identity{Namespace: "team-a", Name: "app", UID: "4f1c2b9e-0000-4000-8000-000000000001"},
		Expires: time.Now().Add(time.Hour)}, nil
}

// BenchmarkIssueCredentials is GET /v1/credentials without the TokenReview:
// header checks, minting, the JSON response and the audit line.
func BenchmarkIssueCredentials(b *testing.B) {
	e, err := kms.New(context.Background(), kms.Options{})
	if err != nil {
		b.Fatal(err)
	}
	sessions, err := podidentity.NewSessions(bytes.Repeat([]byte{1}, 32), nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	srv := New(e, Options{Hosts: []string{"127.0.0.1"}, Audit: io.Discard,
		PodIdentity: &PodIdentity{Reviewer: instantReviewer{}, Sessions: sessions, Duration: 15 * time.Minute}})
	req, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1:9"+CredentialsPath, nil)
	req.Header.Set("Authorization", "eyJhbGciOiJSUzI1NiJ9.eyJleHAiOjE3OTYwNDAwMDB9.c2ln")
	b.ReportAllocs()
	start := processCPU()
	for b.Loop() {
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
	reportCPU(b, start)
}
