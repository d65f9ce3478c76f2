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
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/rekey-dev/rekey/internal/kms"
)

// signed returns a request signed by the AWS SDK's own SigV4 signer at t.
func signed(t *testing.T, body string, at time.Time) *http.Request {
	t.Helper()
	r, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:9/", strings.NewReader(body))
	r.Header.Set("Content-Type", contentType)
	r.Header.Set("X-Amz-Target", "TrentService.ListKeys")
	sum := sha256.Sum256([]byte(body))
	err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: "AK", SecretAccessKey: "SK"},
		r, hex.EncodeToString(sum[:]), "kms", "eu-west-1", at)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestVerifySigV4(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	v := &verifier{creds: Credentials{"AK": "SK"}, service: "kms", now: func() time.Time { return now }}
	body := `{"Limit":10}`
	if _, err := v.verify(signed(t, body, now), []byte(body)); err != nil {
		t.Fatalf("a request the SDK signed was rejected: %v", err)
	}
	cases := []struct {
		name string
		req  func() (*http.Request, string)
		code kms.ErrorCode
	}{
		{"body changed", func() (*http.Request, string) { return signed(t, body, now), `{"Limit":11}` }, kms.CodeInvalidSignature},
		{"signed header changed", func() (*http.Request, string) {
			r := signed(t, body, now)
			r.Header.Set("X-Amz-Target", "TrentService.DisableKey")
			return r, body
		}, kms.CodeInvalidSignature},
		{"host changed", func() (*http.Request, string) { r := signed(t, body, now); r.Host = "127.0.0.2:9"; return r, body }, kms.CodeInvalidSignature},
		{"too old", func() (*http.Request, string) { return signed(t, body, now.Add(-16*time.Minute)), body }, kms.CodeInvalidSignature},
		{"from the future", func() (*http.Request, string) { return signed(t, body, now.Add(16*time.Minute)), body }, kms.CodeInvalidSignature},
		{"garbage authorization", func() (*http.Request, string) {
			r := signed(t, body, now)
			r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AK")
			return r, body
		}, kms.CodeIncompleteSignature},
		{"other scheme", func() (*http.Request, string) {
			r := signed(t, body, now)
			r.Header.Set("Authorization", "Basic QUs6U0s=")
			return r, body
		}, kms.CodeIncompleteSignature},
		{"signature not hex", func() (*http.Request, string) {
			r := signed(t, body, now)
			h := r.Header.Get("Authorization")
			r.Header.Set("Authorization", h[:len(h)-64]+strings.Repeat("z", 64))
			return r, body
		}, kms.CodeIncompleteSignature},
		{"date header removed", func() (*http.Request, string) { r := signed(t, body, now); r.Header.Del("X-Amz-Date"); return r, body }, kms.CodeIncompleteSignature},
		{"other service", func() (*http.Request, string) {
			r := signed(t, body, now)
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "/kms/", "/s3/", 1))
			return r, body
		}, kms.CodeInvalidSignature},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, b := tc.req()
			_, err := v.verify(r, []byte(b))
			if kms.CodeOf(err) != tc.code {
				t.Fatalf("want %s, got %v", tc.code, err)
			}
		})
	}
}

func TestParseCredentials(t *testing.T) {
	c, err := ParseCredentials(strings.NewReader("# comment\n\nAK1 SK1\n  AK2   SK2  \n"))
	if err != nil || c["AK1"] != "SK1" || c["AK2"] != "SK2" || len(c) != 2 {
		t.Fatalf("ParseCredentials: %v %v", c, err)
	}
	for _, bad := range []string{"", "AK1\n", "AK1 SK1 extra\n", "AK1 SK1\nAK1 SK2\n"} {
		if _, err := ParseCredentials(strings.NewReader(bad)); err == nil {
			t.Fatalf("accepted %q", bad)
		}
	}
}
