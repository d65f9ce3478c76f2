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

	"github.com/rekey-dev/rekey/internal/kms"
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
