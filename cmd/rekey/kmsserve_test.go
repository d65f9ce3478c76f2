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
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"

	"github.com/rekey-dev/rekey/internal/kms/awsapi"
	"github.com/rekey-dev/rekey/internal/testcert"
)

// Finding 9: plain HTTP is refused on a non-loopback address; nothing is
// bound.
func TestKMSServeRefusesPlainHTTPOffLoopback(t *testing.T) {
	c := newCLI(t)
	creds := filepath.Join(c.dir, "creds")
	if err := os.WriteFile(creds, []byte("AKID secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, listen := range []string{"0.0.0.0:0", ":0", "[::]:0", "192.0.2.1:0"} {
		_, errOut, code := c.run("", "kms", "serve", "--listen", listen, "--credentials-file", creds)
		if code != 2 || !strings.Contains(errOut, "not a loopback address") {
			t.Fatalf("--listen %s without TLS: exit %d, %s", listen, code, errOut)
		}
	}
	// TLS flags go together.
	_, errOut, code := c.run("", "kms", "serve", "--listen", "0.0.0.0:0", "--credentials-file", creds, "--tls-cert-file", creds)
	if code != 2 || !strings.Contains(errOut, "go together") {
		t.Fatalf("--tls-cert-file alone: exit %d, %s", code, errOut)
	}
}

func TestRequireLoopback(t *testing.T) {
	ctx := context.Background()
	for _, ok := range []string{"127.0.0.1:8300", "[::1]:0", "127.0.0.2:1", "localhost:0"} {
		if err := requireLoopback(ctx, ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"0.0.0.0:8300", ":8300", "[::]:0", "10.0.0.1:0", "192.0.2.1:0"} {
		if err := requireLoopback(ctx, bad); err == nil || !strings.Contains(err.Error(), "not a loopback address") {
			t.Errorf("%s for plain HTTP: %v", bad, err)
		}
	}
}

// The credentials file and the TLS key are refused when other users may
// read them, as the root key is.
func TestKMSServeRefusesOpenSecretFiles(t *testing.T) {
	c := newCLI(t)
	creds := filepath.Join(c.dir, "creds")
	if err := os.WriteFile(creds, []byte("AKID secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(creds, 0o644); err != nil { // whatever the umask
		t.Fatal(err)
	}
	_, errOut, code := c.run("", "kms", "serve", "--listen", "127.0.0.1:0", "--credentials-file", creds)
	if code != 1 || !strings.Contains(errOut, "--credentials-file") || !strings.Contains(errOut, "chmod 600") {
		t.Fatalf("a 0644 credentials file: exit %d, %s", code, errOut)
	}
	if err := os.Chmod(creds, 0o600); err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, _ := writeCert(t, c.dir)
	if err := os.Chmod(keyFile, 0o604); err != nil {
		t.Fatal(err)
	}
	_, errOut, code = c.run("", "kms", "serve", "--listen", "127.0.0.1:0", "--credentials-file", creds,
		"--tls-cert-file", certFile, "--tls-key-file", keyFile)
	if code != 1 || !strings.Contains(errOut, "--tls-key-file") {
		t.Fatalf("a world-readable TLS key: exit %d, %s", code, errOut)
	}
}

// Without a policy file the credentials must be one pair (it is an admin);
// with several, a policy must say what each may do.
func TestKMSServeNeedsPolicyForSeveralCredentials(t *testing.T) {
	c := newCLI(t)
	creds := filepath.Join(c.dir, "creds")
	if err := os.WriteFile(creds, []byte("AK1 s1\nAK2 s2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := c.run("", "kms", "serve", "--listen", "127.0.0.1:0", "--credentials-file", creds)
	if code != 2 || !strings.Contains(errOut, "--policy-file") {
		t.Fatalf("two credentials, no policy: exit %d, %s", code, errOut)
	}
	policy := filepath.Join(c.dir, "policy.json")
	if err := os.WriteFile(policy, []byte(`{"principals":{"AK1":{"admin":true},"AK3":{"admin":true}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, code = c.run("", "kms", "serve", "--listen", "127.0.0.1:0", "--credentials-file", creds, "--policy-file", policy)
	if code != 1 || !strings.Contains(errOut, "AK3 has no credentials") {
		t.Fatalf("a policy principal without credentials: exit %d, %s", code, errOut)
	}
}

// writeCert writes a self-signed certificate for 127.0.0.1 and kms.test.
func writeCert(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	certFile, keyFile, pool, err := testcert.Write(dir, "kms.test")
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, pool
}

// startKMS runs 'rekey kms serve' with args and returns the URL it
// reports and a function that stops it (as SIGTERM does) and waits; it
// stops when the test ends too.
func startKMS(t *testing.T, c *cli, args ...string) (string, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	var errOut bytes.Buffer
	go func() {
		argv := append(append([]string{"kms", "serve"}, c.args...), args...)
		done <- run(ctx, argv, strings.NewReader(""), pw, &errOut)
		_ = pw.Close()
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if code := <-done; code != 0 {
				t.Errorf("serve exited %d: %s", code, errOut.String())
			}
		})
	}
	t.Cleanup(stop)
	br := bufio.NewReader(pr)
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("no listening line: %v (%s)", err, errOut.String())
	}
	go func() { _, _ = io.Copy(io.Discard, br) }()
	url := strings.TrimSpace(strings.TrimPrefix(line, "rekey kms: listening on "))
	if !strings.HasPrefix(url, "https://127.0.0.1:") && !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Fatalf("server reported %q", line)
	}
	return url, stop
}

// Finding 9 through the command: TLS, a policy file, the audit log, and
// the certificate's name accepted as the Host.
func TestKMSServeTLSPolicyAudit(t *testing.T) {
	c := newCLI(t)
	certFile, keyFile, pool := writeCert(t, c.dir)
	creds := filepath.Join(c.dir, "creds")
	if err := os.WriteFile(creds, []byte("AKADMIN admin-secret\nAKAPP app-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	policy := filepath.Join(c.dir, "policy.json")
	if err := os.WriteFile(policy, []byte(`{"principals": {"AKADMIN": {"admin": true},
		"AKAPP": {"operations": ["DescribeKey", "ReEncrypt", "ListResourceTags"], "keys": ["alias/app"]}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	audit := filepath.Join(c.dir, "audit.log")
	url, stop := startKMS(t, c, "--listen", "127.0.0.1:0", "--credentials-file", creds, "--policy-file", policy,
		"--audit-log", audit, "--tls-cert-file", certFile, "--tls-key-file", keyFile)
	if !strings.HasPrefix(url, "https://") {
		t.Fatalf("TLS server reported %s", url)
	}
	port := url[strings.LastIndexByte(url, ':')+1:]
	// A client that reaches 127.0.0.1 by the certificate's name.
	dialer := &net.Dialer{}
	hc := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool},
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, "127.0.0.1:"+port)
		},
	}}
	client := func(akid, secret, endpoint string) *awskms.Client {
		return awskms.New(awskms.Options{Region: "local", BaseEndpoint: aws.String(endpoint), RetryMaxAttempts: 1, HTTPClient: hc,
			Credentials: credentials.NewStaticCredentialsProvider(akid, secret, "")})
	}
	ctx := context.Background()
	admin := client("AKADMIN", "admin-secret", url)
	k, err := admin.CreateKey(ctx, &awskms.CreateKeyInput{})
	if err != nil {
		t.Fatalf("admin CreateKey over TLS: %v", err)
	}
	if _, err := admin.CreateAlias(ctx, &awskms.CreateAliasInput{AliasName: aws.String("alias/app"), TargetKeyId: k.KeyMetadata.KeyId}); err != nil {
		t.Fatal(err)
	}
	app := client("AKAPP", "app-secret", "https://kms.test:"+port)
	if _, err := app.DescribeKey(ctx, &awskms.DescribeKeyInput{KeyId: aws.String("alias/app")}); err != nil {
		t.Fatalf("app DescribeKey through the certificate's name: %v", err)
	}
	_, err = app.TagResource(ctx, &awskms.TagResourceInput{KeyId: k.KeyMetadata.KeyId,
		Tags: []types.Tag{{TagKey: aws.String("rekey.dev/namespaces"), TagValue: aws.String("*")}}})
	var denied smithy.APIError
	if !errors.As(err, &denied) || denied.ErrorCode() != "AccessDeniedException" {
		t.Fatalf("app TagResource: want AccessDeniedException, got %v", err)
	}

	stop() // shutting down writes the lines still pending
	b, err := os.ReadFile(audit)
	if err != nil {
		t.Fatal(err)
	}
	var ops []string
	for line := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
		var r awsapi.AuditRecord
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		ops = append(ops, r.Principal+" "+r.Operation+" "+r.Code)
	}
	want := []string{"AKADMIN CreateKey ", "AKADMIN CreateAlias ", "AKAPP DescribeKey ", "AKAPP TagResource AccessDeniedException"}
	if strings.Join(ops, "|") != strings.Join(want, "|") {
		t.Fatalf("audit log:\n%s\nwant %q", b, want)
	}
	if fi, err := os.Stat(audit); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("audit log mode: %v %v", fi.Mode(), err)
	}
}
