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
	"math/rand/v2"
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

// TestParseAmzDate: the hand-written X-Amz-Date parser accepts exactly
// what time.Parse accepts, with the same time.
func TestParseAmzDate(t *testing.T) {
	check := func(s string) {
		t.Helper()
		want, werr := time.Parse(amzDateFmt, s)
		got, ok := parseAmzDate(s)
		if ok != (werr == nil) || (ok && !got.Equal(want)) {
			t.Fatalf("parseAmzDate(%q) = %v, %v; time.Parse: %v, %v", s, got, ok, want, werr)
		}
	}
	for _, s := range []string{"20261130T215959Z", "20240229T000000Z", "20250229T000000Z", "20260431T120000Z", "20261231T235959Z",
		"20260101T240000Z", "20260101T236000Z", "20260101T235960Z", "20261301T000000Z", "20260001T000000Z", "20260100T000000Z",
		"00000101T000000Z", "2026113OT215959Z", "20261130 215959Z", "20261130T215959z", "20261130T215959", "+0261130T215959Z",
		"20261130T21595 Z", "-2026113T215959Z", ""} {
		check(s)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const digits = "0123456789"
	for range 200000 {
		b := []byte("20261130T215959Z")
		for range 1 + rng.IntN(3) {
			i := rng.IntN(len(b))
			switch rng.IntN(8) {
			case 0:
				b[i] = byte(rng.IntN(256))
			default:
				b[i] = digits[rng.IntN(10)]
			}
		}
		check(string(b))
	}
}

// TestCanonicalHeader: the names spelled out by hand are net/http's.
func TestCanonicalHeader(t *testing.T) {
	for _, name := range []string{"content-type", "x-amz-date", "x-amz-target", "x-amz-security-token", "x-amz-content-sha256",
		"amz-sdk-invocation-id", "amz-sdk-request", "x-amz-user-agent", "x-amz-meta-other", "content-length"} {
		if got, want := canonicalHeader(name), http.CanonicalHeaderKey(name); got != want {
			t.Errorf("canonicalHeader(%q) = %q, want %q", name, got, want)
		}
	}
	for _, v := range []string{"a b", " a", "a ", "a  b", "a\tb", "a\nb", "", "a b c"} {
		want := v != strings.Join(strings.Fields(v), " ")
		if got := needsFolding(v); got != want {
			t.Errorf("needsFolding(%q) = %v, want %v", v, got, want)
		}
	}
}
