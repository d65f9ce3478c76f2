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

// The endpoint as a network server: limits, timeouts, TLS and per-principal
// authorisation, driven over 127.0.0.1 with raw connections and the AWS SDK.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/go-logr/logr"

	"github.com/rekey-dev/rekey/internal/kms"
	"github.com/rekey-dev/rekey/internal/kms/awsapi"
	"github.com/rekey-dev/rekey/internal/testcert"
	"github.com/rekey-dev/rekey/internal/testkms"
)

// endpoint is a running awsapi.HTTPServer on 127.0.0.1.
type endpoint struct {
	url     string
	addr    string
	engine  *kms.Engine
	handler *awsapi.Server
	srv     *awsapi.HTTPServer
	audit   *syncBuffer
}

// syncBuffer is an audit sink the test reads while the server writes.
type syncBuffer struct {
	mu chan struct{}
	b  bytes.Buffer
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{mu: make(chan struct{}, 1)} }

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu <- struct{}{}
	defer func() { <-s.mu }()
	return s.b.Write(p)
}

func (s *syncBuffer) records(t *testing.T) []awsapi.AuditRecord {
	s.mu <- struct{}{}
	defer func() { <-s.mu }()
	var out []awsapi.AuditRecord
	for line := range strings.SplitSeq(strings.TrimSpace(s.b.String()), "\n") {
		if line == "" {
			continue
		}
		var r awsapi.AuditRecord
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		out = append(out, r)
	}
	return out
}

func startEndpoint(t *testing.T, o awsapi.Options, l awsapi.Limits, tlsConfig *tls.Config) *endpoint {
	t.Helper()
	e, err := kms.New(context.Background(), kms.Options{Region: testkms.Region, AccountID: testkms.Account})
	if err != nil {
		t.Fatal(err)
	}
	if o.Credentials == nil {
		o.Credentials = awsapi.Credentials{testkms.AccessKeyID: testkms.SecretAccessKey}
	}
	audit := newSyncBuffer()
	o.Audit = audit
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := awsapi.New(e, o)
	srv := awsapi.NewHTTPServer(h, l, tlsConfig, logr.Discard())
	done := make(chan struct{})
	go func() { _ = srv.Serve(ln); close(done) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })
	scheme := "http"
	if tlsConfig != nil {
		scheme = "https"
	}
	return &endpoint{url: scheme + "://" + ln.Addr().String(), addr: ln.Addr().String(), engine: e, handler: h, srv: srv, audit: audit}
}

func (ep *endpoint) client(akid, secret string, hc *http.Client) *awskms.Client {
	o := awskms.Options{Region: testkms.Region, BaseEndpoint: aws.String(ep.url), RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider(akid, secret, "")}
	if hc != nil {
		o.HTTPClient = hc
	}
	return awskms.New(o)
}

// longLimits has a small connection limit and timeouts long enough not to
// matter to a test.
func longLimits(maxConns int) awsapi.Limits {
	return awsapi.Limits{MaxConnections: maxConns, ReadHeaderTimeout: time.Minute, ReadTimeout: time.Minute,
		WriteTimeout: time.Minute, IdleTimeout: time.Minute, MaxHeaderBytes: 16 << 10}
}

// closedByServer waits until the server closes c (a read returns an error
// or EOF), at most guard; it reports whether it did.
func closedByServer(c net.Conn, guard time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(guard))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return !errors.As(err, &ne) || !ne.Timeout()
}

// Finding 7: under slow connections that hold every slot, a signed client
// is still served, and the server never holds more than its limit.
func TestConnectionLimitServesSignedClient(t *testing.T) {
	const limit = 4
	ep := startEndpoint(t, awsapi.Options{}, longLimits(limit), nil)
	slow := make([]net.Conn, 0, 3*limit)
	for range 3 * limit {
		c, err := net.Dial("tcp", ep.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = c.Close() }()
		// Headers that never end, and a body that never comes.
		if _, err := io.WriteString(c, "POST / HTTP/1.1\r\nHost: "+ep.addr+"\r\nContent-Length: 100\r\n"); err != nil {
			t.Fatal(err)
		}
		slow = append(slow, c)
	}
	// The server has seen every connection once this returns: each was
	// accepted before the signed one, whose answer proves it was served.
	ctx := context.Background()
	if _, err := ep.client(testkms.AccessKeyID, testkms.SecretAccessKey, nil).ListKeys(ctx, &awskms.ListKeysInput{}); err != nil {
		t.Fatalf("a signed client behind %d slow connections: %v", len(slow), err)
	}
	if open, _ := ep.srv.Conns(); open > limit {
		t.Fatalf("%d connections open, limit %d", open, limit)
	}
	closed := 0
	for _, c := range slow {
		if closedByServer(c, 200*time.Millisecond) {
			closed++
		}
	}
	if closed < len(slow)-limit+1 {
		t.Fatalf("the server closed %d of %d slow connections, want at least %d", closed, len(slow), len(slow)-limit+1)
	}
}

// trickle writes one line every 50 ms until stop is closed or a write
// fails.
func trickle(c net.Conn, stop chan struct{}, line func(i int) string) {
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		case <-time.After(50 * time.Millisecond):
			if _, err := io.WriteString(c, line(i)); err != nil {
				return
			}
		}
	}
}

// Finding 7: a body trickled a byte at a time, headers that never end and
// an idle connection are each cut off by their own timeout (the others are
// a minute, the test's guard 10 s).
func TestSlowClientsCutOff(t *testing.T) {
	const short, guard = 300 * time.Millisecond, 10 * time.Second
	dial := func(t *testing.T, l awsapi.Limits) net.Conn {
		ep := startEndpoint(t, awsapi.Options{}, l, nil)
		c, err := net.Dial("tcp", ep.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	t.Run("body trickled: ReadTimeout", func(t *testing.T) {
		l := longLimits(8)
		l.ReadTimeout = short
		c := dial(t, l)
		_, _ = io.WriteString(c, "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n")
		stop := make(chan struct{})
		defer close(stop)
		go trickle(c, stop, func(int) string { return " " })
		if !closedByServer(c, guard) {
			t.Fatal("a trickled body kept its connection open")
		}
	})
	t.Run("headers trickled: ReadHeaderTimeout", func(t *testing.T) {
		l := longLimits(8)
		l.ReadHeaderTimeout = short
		c := dial(t, l)
		_, _ = io.WriteString(c, "POST / HTTP/1.1\r\n")
		stop := make(chan struct{})
		defer close(stop)
		go trickle(c, stop, func(i int) string { return fmt.Sprintf("X-%d: y\r\n", i) })
		if !closedByServer(c, guard) {
			t.Fatal("trickled headers kept their connection open")
		}
	})
	t.Run("idle after a request: IdleTimeout", func(t *testing.T) {
		l := longLimits(8)
		l.IdleTimeout = short
		c := dial(t, l)
		_, _ = io.WriteString(c, "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\n{}")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		if !closedByServer(c, guard) {
			t.Fatal("an idle connection stayed open")
		}
	})
}

// Finding 7: headers are bounded.
func TestHeaderLimit(t *testing.T) {
	ep := startEndpoint(t, awsapi.Options{}, longLimits(8), nil)
	req, _ := http.NewRequest(http.MethodPost, ep.url+"/", strings.NewReader("{}"))
	req.Header.Set("X-Big", strings.Repeat("a", 64<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("64 KiB of headers: status %d", resp.StatusCode)
	}
}

// HTTP/2 is off: one connection cannot carry many requests at once past the
// connection limit.
func TestNoHTTP2(t *testing.T) {
	ep := startEndpoint(t, awsapi.Options{}, longLimits(8), nil)
	c, err := net.Dial("tcp", ep.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	_, _ = io.WriteString(c, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
	line, _ := bufio.NewReader(c).ReadString('\n')
	if strings.Contains(line, "HTTP/2") || strings.HasPrefix(line, "\x00") {
		t.Fatalf("the server spoke HTTP/2: %q", line)
	}
}

// selfSigned writes a certificate for 127.0.0.1 and kms.test and returns
// its files and a pool that trusts it.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	certFile, keyFile, pool, err := testcert.Write(t.TempDir(), "kms.test")
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, pool
}

// Finding 9: the endpoint serves TLS, and the slow-connection limit holds
// on TLS connections too.
func TestTLS(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	certs, err := awsapi.NewCertificateLoader(certFile, keyFile, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	ep := startEndpoint(t, awsapi.Options{}, longLimits(2), &tls.Config{GetCertificate: certs.GetCertificate})
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	ctx := context.Background()
	// Three connections that never start a handshake.
	for range 3 {
		c, err := net.Dial("tcp", ep.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = c.Close() }()
	}
	c := ep.client(testkms.AccessKeyID, testkms.SecretAccessKey, hc)
	if _, err := c.CreateKey(ctx, &awskms.CreateKeyInput{}); err != nil {
		t.Fatalf("CreateKey over TLS: %v", err)
	}
	// Plain HTTP to the TLS port is not served.
	resp, err := http.Post("http://"+ep.addr+"/", "application/x-amz-json-1.1", strings.NewReader("{}"))
	if err == nil {
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("plain HTTP answered on the TLS port")
		}
	}
	// A client offering HTTP/2 gets HTTP/1.1.
	conn, err := tls.Dial("tcp", ep.addr, &tls.Config{RootCAs: pool, NextProtos: []string{"h2", "http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	if p := conn.ConnectionState().NegotiatedProtocol; p != "http/1.1" {
		t.Fatalf("ALPN negotiated %q", p)
	}
	_ = conn.Close()
	// TLS 1.1 is refused, even where GODEBUG would let Go's default allow it.
	t.Setenv("GODEBUG", "tls10server=1")
	old := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}
	if conn, err := tls.Dial("tcp", ep.addr, old); err == nil {
		_ = conn.Close()
		t.Fatal("a TLS 1.1 handshake succeeded")
	}
}

// policyEndpoint serves a policy with an admin, an application that may use
// one key, and an access key with no entry.
func policyEndpoint(t *testing.T) (ep *endpoint, admin, app, ops, lister, nobody *awskms.Client) {
	t.Helper()
	policy, err := awsapi.ParsePolicy([]byte(`{"principals": {
		"AKADMIN": {"admin": true},
		"AKAPP": {"operations": ["Encrypt", "Decrypt", "ReEncrypt", "DescribeKey", "ListResourceTags"], "keys": ["alias/app"]},
		"AKOPS": {"operations": ["*"], "keys": ["*"]},
		"AKLIST": {"operations": ["ListKeys", "ListAliases", "DescribeKey"], "keys": ["alias/app"]}
	}}`))
	if err != nil {
		t.Fatal(err)
	}
	creds := awsapi.Credentials{"AKADMIN": "admin-secret", "AKAPP": "app-secret", "AKOPS": "ops-secret", "AKLIST": "list-secret",
		"AKNOBODY": "nobody-secret"}
	ep = startEndpoint(t, awsapi.Options{Credentials: creds, Policy: policy}, awsapi.DefaultLimits(), nil)
	return ep, ep.client("AKADMIN", "admin-secret", nil), ep.client("AKAPP", "app-secret", nil), ep.client("AKOPS", "ops-secret", nil),
		ep.client("AKLIST", "list-secret", nil), ep.client("AKNOBODY", "nobody-secret", nil)
}

func errorCode(err error) string {
	var ae interface{ ErrorCode() string }
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	if err == nil {
		return ""
	}
	return "not an API error: " + err.Error()
}

// Finding 9: authorisation. Any credential could tag a key
// rekey.dev/namespaces=*, decrypt anything and create keys; now only what
// the policy grants.
func TestAuthorisation(t *testing.T) {
	ctx := context.Background()
	ep, admin, app, ops, lister, nobody := policyEndpoint(t)
	appKey, err := admin.CreateKey(ctx, &awskms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := admin.CreateKey(ctx, &awskms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CreateAlias(ctx, &awskms.CreateAliasInput{AliasName: aws.String("alias/app"), TargetKeyId: appKey.KeyMetadata.KeyId}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CreateAlias(ctx, &awskms.CreateAliasInput{AliasName: aws.String("alias/other"), TargetKeyId: otherKey.KeyMetadata.KeyId}); err != nil {
		t.Fatal(err)
	}
	otherBlob, err := admin.Encrypt(ctx, &awskms.EncryptInput{KeyId: otherKey.KeyMetadata.KeyId, Plaintext: []byte("another team's secret")})
	if err != nil {
		t.Fatal(err)
	}

	// What the application may do, by key id, ARN or alias.
	enc, err := app.Encrypt(ctx, &awskms.EncryptInput{KeyId: aws.String("alias/app"), Plaintext: []byte("mine")})
	if err != nil {
		t.Fatalf("app Encrypt under its alias: %v", err)
	}
	if _, err := app.Decrypt(ctx, &awskms.DecryptInput{CiphertextBlob: enc.CiphertextBlob}); err != nil {
		t.Fatalf("app Decrypt of its blob: %v", err)
	}
	if _, err := app.DescribeKey(ctx, &awskms.DescribeKeyInput{KeyId: appKey.KeyMetadata.Arn}); err != nil {
		t.Fatalf("app DescribeKey by ARN: %v", err)
	}
	if _, err := app.ReEncrypt(ctx, &awskms.ReEncryptInput{CiphertextBlob: enc.CiphertextBlob, DestinationKeyId: appKey.KeyMetadata.KeyId}); err != nil {
		t.Fatalf("app ReEncrypt within its key: %v", err)
	}

	// Every ordinary operation on every key, for "operations": ["*"].
	if _, err := ops.ListKeys(ctx, &awskms.ListKeysInput{}); err != nil {
		t.Fatalf("ListKeys with operations and keys \"*\": %v", err)
	}
	if _, err := ops.Decrypt(ctx, &awskms.DecryptInput{CiphertextBlob: otherBlob.CiphertextBlob}); err != nil {
		t.Fatalf("Decrypt with operations and keys \"*\": %v", err)
	}
	if _, err := lister.ListAliases(ctx, &awskms.ListAliasesInput{KeyId: aws.String("alias/app")}); err != nil {
		t.Fatalf("ListAliases of its own key: %v", err)
	}

	denied := []struct {
		name string
		call func() error
	}{
		{"tag a key rekey.dev/namespaces=*", func() error {
			_, err := app.TagResource(ctx, &awskms.TagResourceInput{KeyId: appKey.KeyMetadata.KeyId,
				Tags: []types.Tag{{TagKey: aws.String("rekey.dev/namespaces"), TagValue: aws.String("*")}}})
			return err
		}},
		{"create a key", func() error { _, err := app.CreateKey(ctx, &awskms.CreateKeyInput{}); return err }},
		{"disable its own key", func() error {
			_, err := app.DisableKey(ctx, &awskms.DisableKeyInput{KeyId: appKey.KeyMetadata.KeyId})
			return err
		}},
		{"schedule deletion", func() error {
			_, err := app.ScheduleKeyDeletion(ctx, &awskms.ScheduleKeyDeletionInput{KeyId: appKey.KeyMetadata.KeyId})
			return err
		}},
		{"repoint an alias", func() error {
			_, err := app.UpdateAlias(ctx, &awskms.UpdateAliasInput{AliasName: aws.String("alias/app"), TargetKeyId: otherKey.KeyMetadata.KeyId})
			return err
		}},
		{"create a grant", func() error {
			_, err := app.CreateGrant(ctx, &awskms.CreateGrantInput{KeyId: appKey.KeyMetadata.KeyId, GranteePrincipal: aws.String("x"),
				Operations: []types.GrantOperation{types.GrantOperationDecrypt}})
			return err
		}},
		{"decrypt another key's blob", func() error {
			_, err := app.Decrypt(ctx, &awskms.DecryptInput{CiphertextBlob: otherBlob.CiphertextBlob})
			return err
		}},
		{"re-encrypt another key's blob to its own key", func() error {
			_, err := app.ReEncrypt(ctx, &awskms.ReEncryptInput{CiphertextBlob: otherBlob.CiphertextBlob, DestinationKeyId: aws.String("alias/app")})
			return err
		}},
		{"re-encrypt its blob to another key", func() error {
			_, err := app.ReEncrypt(ctx, &awskms.ReEncryptInput{CiphertextBlob: enc.CiphertextBlob, DestinationKeyId: aws.String("alias/other")})
			return err
		}},
		{"encrypt under another key", func() error {
			_, err := app.Encrypt(ctx, &awskms.EncryptInput{KeyId: otherKey.KeyMetadata.Arn, Plaintext: []byte("x")})
			return err
		}},
		{"describe another key", func() error {
			_, err := app.DescribeKey(ctx, &awskms.DescribeKeyInput{KeyId: otherKey.KeyMetadata.KeyId})
			return err
		}},
		{"probe an alias that does not exist", func() error {
			_, err := app.DescribeKey(ctx, &awskms.DescribeKeyInput{KeyId: aws.String("alias/does-not-exist")})
			return err
		}},
		{"an operation it was not given", func() error {
			_, err := app.GenerateDataKey(ctx, &awskms.GenerateDataKeyInput{KeyId: aws.String("alias/app"), KeySpec: types.DataKeySpecAes256})
			return err
		}},
		{"list every key", func() error { _, err := app.ListKeys(ctx, &awskms.ListKeysInput{}); return err }},
		{"list every key, given ListKeys but not every key", func() error { _, err := lister.ListKeys(ctx, &awskms.ListKeysInput{}); return err }},
		{"list every alias, given ListAliases but not every key", func() error {
			_, err := lister.ListAliases(ctx, &awskms.ListAliasesInput{})
			return err
		}},
		{"operations \"*\" is no admin: tag", func() error {
			_, err := ops.TagResource(ctx, &awskms.TagResourceInput{KeyId: appKey.KeyMetadata.KeyId,
				Tags: []types.Tag{{TagKey: aws.String("rekey.dev/namespaces"), TagValue: aws.String("*")}}})
			return err
		}},
		{"operations \"*\" is no admin: create a key", func() error { _, err := ops.CreateKey(ctx, &awskms.CreateKeyInput{}); return err }},
		{"operations \"*\" is no admin: disable", func() error {
			_, err := ops.DisableKey(ctx, &awskms.DisableKeyInput{KeyId: appKey.KeyMetadata.KeyId})
			return err
		}},
		{"a credential with no policy entry", func() error {
			_, err := nobody.DescribeKey(ctx, &awskms.DescribeKeyInput{KeyId: aws.String("alias/app")})
			return err
		}},
	}
	for _, d := range denied {
		if got := errorCode(d.call()); got != "AccessDeniedException" {
			t.Errorf("%s: want AccessDeniedException, got %s", d.name, got)
		}
	}
	tags, err := admin.ListResourceTags(ctx, &awskms.ListResourceTagsInput{KeyId: appKey.KeyMetadata.KeyId})
	if err != nil || len(tags.Tags) != 0 {
		t.Fatalf("the key's tags after the denied TagResource: %v %v", tags, err)
	}
	md, err := admin.DescribeKey(ctx, &awskms.DescribeKeyInput{KeyId: aws.String("alias/app")})
	if err != nil || md.KeyMetadata.KeyState != types.KeyStateEnabled || aws.ToString(md.KeyMetadata.KeyId) != aws.ToString(appKey.KeyMetadata.KeyId) {
		t.Fatalf("the app key after the denied calls: %v %v", md, err)
	}

	// Every denial is audited with the principal and the operation.
	ep.handler.FlushAudit()
	deniedAudit := 0
	for _, r := range ep.audit.records(t) {
		if r.Code == "AccessDeniedException" {
			deniedAudit++
			if r.Principal == "" || r.Operation == "" || r.Status != http.StatusBadRequest {
				t.Errorf("audit of a denial: %+v", r)
			}
		}
	}
	if deniedAudit != len(denied) {
		t.Fatalf("%d denials audited, want %d", deniedAudit, len(denied))
	}
}

func TestParsePolicy(t *testing.T) {
	bad := map[string]string{
		"unknown operation":  `{"principals":{"A":{"operations":["Decrypt","Dance"],"keys":["*"]}}}`,
		"admin op":           `{"principals":{"A":{"operations":["CreateKey"],"keys":["*"]}}}`,
		"bad key":            `{"principals":{"A":{"operations":["Decrypt"],"keys":["key/../x"]}}}`,
		"no keys":            `{"principals":{"A":{"operations":["Decrypt"]}}}`,
		"admin with ops":     `{"principals":{"A":{"admin":true,"operations":["Decrypt"]}}}`,
		"duplicate":          `{"principals":{"A":{"admin":true},"A":{"operations":["Decrypt"],"keys":["*"]}}}`,
		"case":               `{"Principals":{"A":{"admin":true}}}`,
		"unknown field":      `{"principals":{"A":{"admin":true,"allow":"*"}}}`,
		"empty":              `{}`,
		"duplicate in a key": `{"principals":{"A":{"admin":true,"admin":false}}}`,
	}
	for name, doc := range bad {
		if _, err := awsapi.ParsePolicy([]byte(doc)); err == nil {
			t.Errorf("%s: accepted %s", name, doc)
		}
	}
	good := `{"principals":{"A":{"admin":true},"B":{"operations":["*"],"keys":["*"]},
		"C":{"operations":["ReEncrypt"],"keys":["alias/x","arn:aws:kms:eu-west-2:111122223333:alias/y",
		"0b8f2a4e-1d3c-4e5f-8a9b-0c1d2e3f4a5b","arn:aws:kms:eu-west-2:111122223333:key/0b8f2a4e-1d3c-4e5f-8a9b-0c1d2e3f4a5b"]}}}`
	p, err := awsapi.ParsePolicy([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	e, _ := kms.New(context.Background(), kms.Options{Region: testkms.Region, AccountID: testkms.Account})
	unlisted, err := p.Check(e, awsapi.Credentials{"A": "a", "B": "b", "C": "c", "D": "d"})
	if err != nil || len(unlisted) != 1 || unlisted[0] != "D" {
		t.Fatalf("Check: %v %v", unlisted, err)
	}
	if _, err := p.Check(e, awsapi.Credentials{"A": "a", "B": "b"}); err == nil {
		t.Fatal("Check accepted a principal without credentials")
	}
	other, _ := kms.New(context.Background(), kms.Options{Region: "us-east-1", AccountID: testkms.Account})
	if _, err := p.Check(other, awsapi.Credentials{"A": "a", "B": "b", "C": "c"}); err == nil {
		t.Fatal("Check accepted ARNs of another region")
	}
}
