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

// Tests for the endpoint's defences against a client that holds no secret,
// or one secret: each names the finding of issue 10 it covers.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	stdjson "encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/rekey-dev/rekey/internal/kms"
)

var testNow = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

// req is a request to sign: the headers in sign are set before signing (so
// the signature covers them), those in after are set once it is signed.
type req struct {
	target, contentType string
	body                string
	region              string
	at                  time.Time
	sign, after         map[string]string
	host                string
	akid, secret        string
}

func (q req) build(t testing.TB) *http.Request {
	t.Helper()
	host := q.host
	if host == "" {
		host = "127.0.0.1:9"
	}
	r, err := http.NewRequest(http.MethodPost, "http://"+host+"/", strings.NewReader(q.body))
	if err != nil {
		t.Fatal(err)
	}
	if q.target != "" {
		r.Header.Set("X-Amz-Target", "TrentService."+q.target)
	}
	if q.contentType != "" {
		r.Header.Set("Content-Type", q.contentType)
	}
	for k, v := range q.sign {
		r.Header.Set(k, v)
	}
	region, at, akid, secret := q.region, q.at, q.akid, q.secret
	if region == "" {
		region = "eu-west-1"
	}
	if at.IsZero() {
		at = testNow
	}
	if akid == "" {
		akid, secret = "AK", "SK"
	}
	sum := sha256.Sum256([]byte(q.body))
	if err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: akid, SecretAccessKey: secret},
		r, hex.EncodeToString(sum[:]), "kms", region, at); err != nil {
		t.Fatal(err)
	}
	for k, v := range q.after {
		r.Header.Add(k, v)
	}
	r.RemoteAddr = "127.0.0.1:40000"
	return r
}

// listKeys is a correctly signed ListKeys.
func listKeys() req {
	return req{target: "ListKeys", contentType: contentType, body: "{}"}
}

func newVerifier() *verifier {
	return &verifier{creds: Credentials{"AK": "SK"}, service: "kms", now: func() time.Time { return testNow }}
}

func verifyReq(t *testing.T, v *verifier, q req) error {
	t.Helper()
	r := q.build(t)
	_, err := v.verify(r, []byte(q.body))
	return err
}

// Finding 6: the signing-key cache was keyed by an unvalidated region and
// filled before the signature was compared.
func TestSigningKeyCacheOnlyAfterVerification(t *testing.T) {
	v := newVerifier()
	for i := range 200 {
		q := listKeys()
		q.region = fmt.Sprintf("r-%d", i)
		r := q.build(t)
		// A garbage signature of the right shape.
		h := r.Header.Get("Authorization")
		r.Header.Set("Authorization", h[:len(h)-64]+strings.Repeat("0", 64))
		if _, err := v.verify(r, []byte(q.body)); kms.CodeOf(err) != kms.CodeInvalidSignature {
			t.Fatalf("garbage signature: %v", err)
		}
	}
	if n := v.cacheLen(); n != 0 {
		t.Fatalf("%d signing keys cached for requests whose signature did not verify", n)
	}
	if err := verifyReq(t, v, listKeys()); err != nil {
		t.Fatal(err)
	}
	if n := v.cacheLen(); n != 1 {
		t.Fatalf("a verified request cached %d signing keys, want 1", n)
	}
}

// Finding 6: the cache is bounded even for a holder of a secret.
func TestSigningKeyCacheBounded(t *testing.T) {
	v := newVerifier()
	for i := range 3 * maxSigningKeys {
		q := listKeys()
		q.region = fmt.Sprintf("region-%d", i)
		if err := verifyReq(t, v, q); err != nil {
			t.Fatal(err)
		}
	}
	if n := v.cacheLen(); n > maxSigningKeys {
		t.Fatalf("%d signing keys cached, bound %d", n, maxSigningKeys)
	}
}

// Finding 6: the region is checked before it is used.
func TestRegionValidated(t *testing.T) {
	v := newVerifier()
	for _, region := range []string{strings.Repeat("a", 60<<10), strings.Repeat("a", maxRegionLen+1), "EU-WEST-1", "eu_west_1", "eu west"} {
		q := listKeys()
		q.region = region
		if err := verifyReq(t, v, q); kms.CodeOf(err) != kms.CodeIncompleteSignature {
			t.Fatalf("region %.20q: want IncompleteSignatureException, got %v", region, err)
		}
	}
	if v.cacheLen() != 0 {
		t.Fatal("an invalid region reached the cache")
	}
}

// Finding 8: the target, the content type and every x-amz-* header must be
// signed; the clock window is 5 minutes; single-valued headers appear once.
func TestSignatureCoversTargetAndHeaders(t *testing.T) {
	v := newVerifier()
	cases := []struct {
		name string
		q    req
		code kms.ErrorCode
	}{
		{"a captured signature over host;x-amz-date replayed as DisableKey",
			req{body: "{}", after: map[string]string{"X-Amz-Target": "TrentService.DisableKey", "Content-Type": contentType}},
			kms.CodeIncompleteSignature},
		{"target not signed", req{contentType: contentType, body: "{}", after: map[string]string{"X-Amz-Target": "TrentService.ListKeys"}},
			kms.CodeIncompleteSignature},
		{"content type not signed", req{target: "ListKeys", body: "{}", after: map[string]string{"Content-Type": contentType}},
			kms.CodeIncompleteSignature},
		{"an x-amz header added after signing",
			req{target: "ListKeys", contentType: contentType, body: "{}", after: map[string]string{"X-Amz-Security-Token": "stolen"}},
			kms.CodeIncompleteSignature},
		{"a second X-Amz-Target", req{target: "ListKeys", contentType: contentType, body: "{}",
			after: map[string]string{"X-Amz-Target": "TrentService.DisableKey"}}, kms.CodeIncompleteSignature},
		{"6 minutes old", req{target: "ListKeys", contentType: contentType, body: "{}", at: testNow.Add(-6 * time.Minute)},
			kms.CodeInvalidSignature},
		{"6 minutes ahead", req{target: "ListKeys", contentType: contentType, body: "{}", at: testNow.Add(6 * time.Minute)},
			kms.CodeInvalidSignature},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := verifyReq(t, v, tc.q); kms.CodeOf(err) != tc.code {
				t.Fatalf("want %s, got %v", tc.code, err)
			}
		})
	}
	// What the SDK sends, with an x-amz header of its own, 4 minutes off.
	ok := req{target: "ListKeys", contentType: contentType, body: "{}", at: testNow.Add(-4 * time.Minute),
		sign: map[string]string{"X-Amz-User-Agent": "test"}}
	if err := verifyReq(t, v, ok); err != nil {
		t.Fatalf("a fully signed request 4 minutes old: %v", err)
	}
}

// testServer is a Server over a fresh engine with two keys and aliases.
func testServer(t *testing.T, o Options) (*Server, *kms.Engine) {
	t.Helper()
	e, err := kms.New(context.Background(), kms.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if o.Credentials == nil {
		o.Credentials = Credentials{"AK": "SK"}
	}
	o.Now = func() time.Time { return testNow }
	return New(e, o), e
}

// serveReq runs a request through the handler as if it arrived on a
// connection to local.
func serveReq(s http.Handler, r *http.Request, local string) *httptest.ResponseRecorder {
	if local != "" {
		addr, _ := net.ResolveTCPAddr("tcp", local)
		r = r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, addr))
	}
	w := httptest.NewRecorder()
	s.ServeHTTP(w, r)
	return w
}

func errorType(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	var e wireError
	if w.Code == http.StatusOK {
		return ""
	}
	if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
		t.Fatalf("status %d, body %q", w.Code, w.Body)
	}
	return e.Type
}

// Finding 8: the Host header must name this endpoint, so a request signed
// for another server is not accepted here.
func TestHostChecked(t *testing.T) {
	s, _ := testServer(t, Options{Hosts: []string{"kms.rekey.svc"}})
	cases := []struct {
		host, local string
		ok          bool
	}{
		{"127.0.0.1:8300", "127.0.0.1:8300", true},
		{"localhost:8300", "127.0.0.1:8300", true},
		{"kms.rekey.svc", "10.0.0.5:443", true},
		{"KMS.rekey.svc:443", "10.0.0.5:443", true},
		{"10.0.0.5", "10.0.0.5:443", true},
		{"kms.amazonaws.example", "127.0.0.1:8300", false},
		{"localhost", "10.0.0.5:443", false},
		{"10.0.0.6", "10.0.0.5:443", false},
		{"127.0.0.1:8300", "", false},
	}
	for _, tc := range cases {
		q := listKeys()
		q.host = tc.host
		w := serveReq(s, q.build(t), tc.local)
		if got := w.Code == http.StatusOK; got != tc.ok {
			t.Errorf("Host %s on a connection to %q: ok=%v, want %v (%s)", tc.host, tc.local, got, tc.ok, w.Body)
		}
	}
}

// Finding 7: the body is capped at MaxBody, whatever Content-Length says.
func TestBodyLimit(t *testing.T) {
	s, _ := testServer(t, Options{})
	big := strings.Repeat(" ", MaxBody+1)
	for _, announced := range []int64{-1, int64(len(big)), 1 << 20} {
		r := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:9/", strings.NewReader(big))
		r.ContentLength = announced
		w := serveReq(s, r, "127.0.0.1:9")
		if got := errorType(t, w); got != string(kms.CodeValidation) {
			t.Fatalf("Content-Length %d: want ValidationException, got %s %s", announced, got, w.Body)
		}
	}
}

// stalledBody is a request body that says when it is first read and then
// sends nothing until release is closed.
type stalledBody struct {
	reading chan struct{}
	release chan struct{}
	once    sync.Once
}

func (b *stalledBody) Read([]byte) (int, error) {
	b.once.Do(func() { close(b.reading) })
	<-b.release
	return 0, io.ErrUnexpectedEOF
}

func (b *stalledBody) Close() error { return nil }

// Finding 7: what a request announces in Content-Length is not allocated
// before it arrives: 100 requests that announce 64 KiB and send nothing
// hold about 4 KiB each while they wait, not 64.
func TestBodyNotAllocatedFromContentLength(t *testing.T) {
	s, _ := testServer(t, Options{})
	const n = 100
	release := make(chan struct{})
	var wg sync.WaitGroup
	var before, during runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range n {
		b := &stalledBody{reading: make(chan struct{}), release: release}
		r := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:9/", nil)
		r.Body, r.ContentLength = b, MaxBody
		wg.Add(1)
		go func() { defer wg.Done(); serveReq(s, r, "127.0.0.1:9") }()
		<-b.reading
	}
	runtime.GC()
	runtime.ReadMemStats(&during)
	close(release)
	wg.Wait()
	if per := (int64(during.HeapAlloc) - int64(before.HeapAlloc)) / n; per > MaxBody/4 {
		t.Fatalf("%d bytes held per request that announced %d bytes and sent none", per, MaxBody)
	}
}

// Finding 12: the JSON decoder refuses duplicate and case-insensitive
// field names.
func TestStrictJSON(t *testing.T) {
	s, e := testServer(t, Options{})
	ctx := context.Background()
	k, err := e.CreateKey(ctx, &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	other, _ := e.CreateKey(ctx, &kms.CreateKeyInput{})
	id, oid := k.KeyMetadata.KeyID, other.KeyMetadata.KeyID
	pt := `"cGxhaW50ZXh0"`
	cases := []struct {
		name, target, body string
		ok                 bool
	}{
		{"plain", "Encrypt", `{"KeyId":"` + id + `","Plaintext":` + pt + `}`, true},
		{"escaped names", "Encrypt", `{"\u004beyId":"` + id + `","Plaintext":` + pt + `}`, true},
		{"context keys that differ in case", "Encrypt", `{"KeyId":"` + id + `","Plaintext":` + pt + `,"EncryptionContext":{"a":"1","A":"2"}}`, true},
		{"a duplicate field", "Encrypt", `{"KeyId":"` + oid + `","Plaintext":` + pt + `,"KeyId":"` + id + `"}`, false},
		{"a duplicate spelled with an escape", "Encrypt", `{"KeyId":"` + oid + `","Plaintext":` + pt + `,"K\u0065yId":"` + id + `"}`, false},
		{"a case-insensitive field", "Encrypt", `{"keyid":"` + id + `","Plaintext":` + pt + `}`, false},
		{"a case-insensitive duplicate", "Encrypt", `{"KeyId":"` + oid + `","Plaintext":` + pt + `,"KEYID":"` + id + `"}`, false},
		{"a duplicate context key", "Encrypt", `{"KeyId":"` + id + `","Plaintext":` + pt + `,"EncryptionContext":{"a":"1","a":"2"}}`, false},
		{"an unknown field", "Encrypt", `{"KeyId":"` + id + `","Plaintext":` + pt + `,"Recipient":{}}`, false},
		{"trailing data", "Encrypt", `{"KeyId":"` + id + `","Plaintext":` + pt + `}{}`, false},
		{"deep nesting", "Encrypt", `{"KeyId":"` + id + `","Plaintext":` + pt + `,"x":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			q := req{target: tc.target, contentType: contentType, body: tc.body}
			w := serveReq(s, q.build(t), "127.0.0.1:9")
			got := errorType(t, w)
			if tc.ok && got != "" {
				t.Fatalf("refused: %s", w.Body)
			}
			if !tc.ok && got != string(kms.CodeSerialization) {
				t.Fatalf("want SerializationException, got %q %s", got, w.Body)
			}
		})
	}
}

func TestCheckJSON(t *testing.T) {
	good := []string{`{}`, `[]`, ` {"a":[1,-2.5e+3,true,false,null,"x\"\\\/\b\f\n\r\t\u00e9"],"b":{"a":{}}} `, `"s"`, `0`}
	bad := []string{``, `{`, `{"a"}`, `{"a":1,}`, `[1,]`, `01`, `1.`, `-`, `"\x"`, `"\u12"`, "\"\x01\"", `{"a":1 "b":2}`, `tru`, `{"a":1}x`,
		`{"a":1,"b":2,"a":3}`, `{"a":{"b":1,"b":1}}`, `[{"x":1,"x":2}]`}
	for _, s := range good {
		if err := checkJSON([]byte(s)); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
	for _, s := range bad {
		if err := checkJSON([]byte(s)); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
	deep := strings.Repeat("[", maxJSONDepth+1) + strings.Repeat("]", maxJSONDepth+1)
	if err := checkJSON([]byte(deep)); !errors.Is(err, errDepth) {
		t.Errorf("%d levels of nesting: %v", maxJSONDepth+1, err)
	}
	if err := checkJSON([]byte(deep[1 : len(deep)-1])); err != nil {
		t.Errorf("%d levels of nesting: %v", maxJSONDepth, err)
	}
	// Many names: the map path.
	var b strings.Builder
	b.WriteString("{")
	for i := range 40 {
		fmt.Fprintf(&b, `"k%d":1,`, i)
	}
	if err := checkJSON([]byte(b.String() + `"k7":2}`)); !errors.Is(err, errDuplicate) {
		t.Errorf("a duplicate among 41 names: %v", err)
	}
	if err := checkJSON([]byte(b.String() + `"k40":2}`)); err != nil {
		t.Errorf("41 distinct names: %v", err)
	}
}

// FuzzCheckJSON: checkJSON never panics, accepts only what encoding/json
// accepts, and refuses valid JSON only for a duplicate name or deep
// nesting.
func FuzzCheckJSON(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `{"a":{"b":[1,2,{"c":"\u0041"}]}}`, `[1e5,-0.5]`, `{"a":1,"a":2}`, `{"\u0061":1,"a":2}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		err := checkJSON(b)
		valid := stdjson.Valid(b)
		if err == nil && !valid {
			t.Fatalf("accepted invalid JSON %q", b)
		}
		if err != nil && valid && !errors.Is(err, errDuplicate) && !errors.Is(err, errDepth) {
			t.Fatalf("refused valid JSON %q: %v", b, err)
		}
	})
}

// Every request is audited: who, what, which key, the result, the request
// id; never the data.
func TestAuditRecords(t *testing.T) {
	var audit bytes.Buffer
	s, e := testServer(t, Options{Audit: &audit})
	k, err := e.CreateKey(context.Background(), &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	q := req{target: "Encrypt", contentType: contentType,
		body: `{"KeyId":"` + k.KeyMetadata.Arn + `","Plaintext":"c2VjcmV0LXBsYWludGV4dA==","EncryptionContext":{"app":"billing-context"}}`}
	w := serveReq(s, q.build(t), "127.0.0.1:9")
	if w.Code != http.StatusOK {
		t.Fatal(w.Body)
	}
	bad := listKeys()
	bad.after = map[string]string{"X-Amz-Security-Token": "x"}
	serveReq(s, bad.build(t), "127.0.0.1:9")
	s.FlushAudit()

	lines := strings.Split(strings.TrimSpace(audit.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 audit lines, got %q", audit.String())
	}
	var ok, refused AuditRecord
	if err := json.Unmarshal([]byte(lines[0]), &ok); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(lines[1]), &refused); err != nil {
		t.Fatal(err)
	}
	if ok.Principal != "AK" || ok.Operation != "Encrypt" || len(ok.Keys) != 1 || ok.Keys[0] != k.KeyMetadata.Arn ||
		ok.Code != "" || ok.Status != 200 || ok.RequestID != w.Header().Get("X-Amzn-Requestid") || ok.Time == "" || ok.Remote == "" {
		t.Fatalf("audit of a successful Encrypt: %s", lines[0])
	}
	if refused.Principal != "" || refused.Code != string(kms.CodeIncompleteSignature) || refused.Status != 400 {
		t.Fatalf("audit of a refused request: %s", lines[1])
	}
	var resp kms.EncryptOutput
	_ = json.Unmarshal(w.Body.Bytes(), &resp)
	for _, secret := range []string{"c2VjcmV0LXBsYWludGV4dA", "billing-context", hex.EncodeToString(resp.CiphertextBlob[:8])} {
		if strings.Contains(audit.String(), secret) {
			t.Fatalf("the audit log holds request data %q", secret)
		}
	}
}

func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"plain", `q"b\`, "ctl\x00\x1f\n", "<&>", "é\u2028\u2029", "bad\xff utf8"} {
		var got string
		if err := json.Unmarshal(appendJSONString(nil, s), &got); err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		if want := strings.ToValidUTF8(s, "\ufffd"); got != want {
			t.Fatalf("%q came back %q", s, got)
		}
	}
}

// gatedWriter holds its first Write until open is closed, and counts lines.
type gatedWriter struct {
	mu      sync.Mutex
	b       bytes.Buffer
	entered chan struct{}
	open    chan struct{}
	first   sync.Once
}

func (g *gatedWriter) Write(p []byte) (int, error) {
	g.first.Do(func() { close(g.entered); <-g.open })
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.b.Write(p)
}

// The audit log writes every line whole, loses none once flushed, and holds
// a bounded amount while its writer is stalled.
func TestAuditLogBatchesAndBounds(t *testing.T) {
	g := &gatedWriter{entered: make(chan struct{}), open: make(chan struct{})}
	a := newAuditLog(g, time.Now)
	rec := func(i int) *auditRecord {
		return &auditRecord{start: time.Now(), requestID: fmt.Sprintf("r-%d", i), principal: "AK", operation: "ReEncrypt",
			keys: []string{strings.Repeat("k", 200)}, status: 200, remote: "127.0.0.1:1"}
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); a.write(rec(0)) }() // the writer, stalled in Write
	<-g.entered
	const n = 5000 // about 1.5 MiB of lines, beyond maxAuditPending
	for i := 1; i <= n; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); a.write(rec(i)) }()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		a.mu.Lock()
		held := len(a.pending)
		a.mu.Unlock()
		if held > maxAuditPending+1024 {
			t.Fatalf("%d bytes pending behind a stalled writer, bound %d", held, maxAuditPending)
		}
		if held >= maxAuditPending || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond) // waiting for the writers to fill the buffer; bounded by the deadline
	}
	close(g.open)
	wg.Wait()
	a.Flush()
	lines := strings.Split(strings.TrimSuffix(g.b.String(), "\n"), "\n")
	if len(lines) != n+1 {
		t.Fatalf("%d lines written, want %d", len(lines), n+1)
	}
	seen := map[string]bool{}
	for _, l := range lines {
		var r AuditRecord
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("a line that is not JSON (interleaved?): %.80q", l)
		}
		seen[r.RequestID] = true
	}
	if len(seen) != n+1 {
		t.Fatalf("%d distinct request ids, want %d", len(seen), n+1)
	}
}

// When idle, a line is written at once; under load, lines written within
// the flush interval of each other are written together, soon after, with
// no Flush.
func TestAuditLogWritesSoon(t *testing.T) {
	var mu sync.Mutex
	var b bytes.Buffer
	writes := 0
	w := writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		writes++
		return b.Write(p)
	})
	lines := func() (int, int) {
		mu.Lock()
		defer mu.Unlock()
		return strings.Count(b.String(), "\n"), writes
	}
	a := newAuditLog(w, time.Now)
	rec := &auditRecord{start: time.Now(), requestID: "r", status: 200}
	a.write(rec)
	if n, _ := lines(); n != 1 {
		t.Fatalf("an idle log wrote %d lines at once, want 1", n)
	}
	for range 10 {
		a.write(rec)
	}
	deadline := time.Now().Add(10 * time.Second)
	for n, _ := lines(); n != 11; n, _ = lines() {
		if time.Now().After(deadline) {
			t.Fatalf("%d of 11 lines written without a Flush", n)
		}
		time.Sleep(5 * time.Millisecond) // the flush timer; bounded by the deadline
	}
	if _, writes := lines(); writes > 3 {
		t.Fatalf("11 lines in %d writes: not batched", writes)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
