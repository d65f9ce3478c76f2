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
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/rekey-dev/rekey/internal/kms"
)

// errorServer answers every KMS call with one AWS error.
func errorServer(t *testing.T, status int, code string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(`{"__type":"` + code + `","message":"from the test server"}`))
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func provider(t *testing.T, endpoint string) *Provider {
	t.Helper()
	p, err := New(context.Background(), Options{Region: "eu-west-1", Endpoint: endpoint, MaxAttempts: 2, MaxBackoff: time.Millisecond,
		StaticCredentials: &StaticCredentials{AccessKeyID: "AK", SecretAccessKey: "SK"}})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestErrorsMapToClasses: every AWS error reaches the controller as a
// *kms.Error with its AWS name, in the class that decides retry, fail the
// blob, or stop the run.
func TestErrorsMapToClasses(t *testing.T) {
	cases := []struct {
		status int
		code   string
		class  kms.Class
	}{
		{400, "ThrottlingException", kms.ClassRetry},
		{500, "KMSInternalException", kms.ClassRetry},
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
			p := provider(t, errorServer(t, tc.status, tc.code))
			_, err := p.ReEncrypt(context.Background(), &kms.ReEncryptInput{CiphertextBlob: []byte("x"), DestinationKeyID: "alias/k"})
			if got := kms.CodeOf(err); string(got) != tc.code {
				t.Fatalf("code %q, want %s (err %v)", got, tc.code, err)
			}
			if got := kms.ClassOfError(err); got != tc.class {
				t.Fatalf("class %v, want %v", got, tc.class)
			}
		})
	}
}

// TestTransportFailureIsRetried: a KMS that cannot be reached is a
// transient DependencyTimeoutException, not a failed blob.
func TestTransportFailureIsRetried(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there any more
	p := provider(t, url)
	_, err := p.ReEncrypt(context.Background(), &kms.ReEncryptInput{CiphertextBlob: []byte("x"), DestinationKeyID: "alias/k"})
	if kms.CodeOf(err) != kms.CodeDependencyTimeout || kms.ClassOfError(err) != kms.ClassRetry {
		t.Fatalf("got %v", err)
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
