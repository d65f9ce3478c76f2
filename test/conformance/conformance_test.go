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

// Package conformance runs the same ReEncrypt scenarios through rekey's key
// services against three KMS implementations:
//
//	rekey-endpoint  the aws provider (AWS SDK for Go v2) -> 'rekey kms serve' (awsapi) over HTTP
//	local-kms       the aws provider -> local-kms's handler over HTTP
//	embedded        the embedded provider, in-process
//
// Every scenario's outcome is compared with AWS KMS's documented behaviour;
// where an implementation differs, the difference is listed in divergences
// (and docs/conformance.md) and asserted, never skipped: a change in either
// direction fails the suite. Run: make test-conformance.
package conformance

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/rekey-dev/rekey/internal/kms"
	awsprovider "github.com/rekey-dev/rekey/internal/provider/aws"
	"github.com/rekey-dev/rekey/internal/provider/embedded"
	"github.com/rekey-dev/rekey/internal/testkms"
)

// keyService is the controller's contract (controllers.KeyService).
type keyService interface {
	DescribeKey(ctx context.Context, keyID string) (string, string, error)
	ReEncrypt(ctx context.Context, in *kms.ReEncryptInput) (*kms.ReEncryptOutput, error)
}

// admin sets the scene: keys, blobs, rotations, grants.
type admin interface {
	createKey(t *testing.T) (id, arn string)
	encrypt(t *testing.T, key string, pt []byte, ec map[string]string) []byte
	decrypt(t *testing.T, blob []byte, ec map[string]string) []byte
	rotate(key string) error
	setEnabled(t *testing.T, key string, on bool)
	grant(key string) (string, error)
}

// errNotImplemented is an operation the implementation answers with 501.
var errNotImplemented = errors.New("not implemented")

func notImplemented(err error) error {
	var re *awshttp.ResponseError
	if errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotImplemented {
		return errNotImplemented
	}
	return err
}

// sdkAdmin administers a KMS over HTTP with the AWS SDK.
type sdkAdmin struct{ c *awskms.Client }

func (a sdkAdmin) createKey(t *testing.T) (string, string) {
	out, err := a.c.CreateKey(context.Background(), &awskms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.KeyMetadata.KeyId), aws.ToString(out.KeyMetadata.Arn)
}

func (a sdkAdmin) encrypt(t *testing.T, key string, pt []byte, ec map[string]string) []byte {
	out, err := a.c.Encrypt(context.Background(), &awskms.EncryptInput{KeyId: aws.String(key), Plaintext: pt, EncryptionContext: ec})
	if err != nil {
		t.Fatal(err)
	}
	return out.CiphertextBlob
}

func (a sdkAdmin) decrypt(t *testing.T, blob []byte, ec map[string]string) []byte {
	out, err := a.c.Decrypt(context.Background(), &awskms.DecryptInput{CiphertextBlob: blob, EncryptionContext: ec})
	if err != nil {
		t.Fatal(err)
	}
	return out.Plaintext
}

func (a sdkAdmin) rotate(key string) error {
	_, err := a.c.RotateKeyOnDemand(context.Background(), &awskms.RotateKeyOnDemandInput{KeyId: aws.String(key)})
	return notImplemented(err)
}

func (a sdkAdmin) setEnabled(t *testing.T, key string, on bool) {
	var err error
	if on {
		_, err = a.c.EnableKey(context.Background(), &awskms.EnableKeyInput{KeyId: aws.String(key)})
	} else {
		_, err = a.c.DisableKey(context.Background(), &awskms.DisableKeyInput{KeyId: aws.String(key)})
	}
	if err != nil {
		t.Fatal(err)
	}
}

func (a sdkAdmin) grant(key string) (string, error) {
	out, err := a.c.CreateGrant(context.Background(), &awskms.CreateGrantInput{KeyId: aws.String(key),
		GranteePrincipal: aws.String("arn:aws:iam::111122223333:role/rekey"),
		Operations:       []types.GrantOperation{types.GrantOperationReEncryptFrom, types.GrantOperationReEncryptTo}})
	if err != nil {
		return "", notImplemented(err)
	}
	return aws.ToString(out.GrantToken), nil
}

// engineAdmin administers the in-process engine.
type engineAdmin struct{ e *kms.Engine }

func (a engineAdmin) createKey(t *testing.T) (string, string) {
	out, err := a.e.CreateKey(context.Background(), &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	return out.KeyMetadata.KeyID, out.KeyMetadata.Arn
}

func (a engineAdmin) encrypt(t *testing.T, key string, pt []byte, ec map[string]string) []byte {
	out, err := a.e.Encrypt(context.Background(), &kms.EncryptInput{KeyID: key, Plaintext: pt, EncryptionContext: ec})
	if err != nil {
		t.Fatal(err)
	}
	return out.CiphertextBlob
}

func (a engineAdmin) decrypt(t *testing.T, blob []byte, ec map[string]string) []byte {
	out, err := a.e.Decrypt(context.Background(), &kms.DecryptInput{CiphertextBlob: blob, EncryptionContext: ec})
	if err != nil {
		t.Fatal(err)
	}
	return out.Plaintext
}

func (a engineAdmin) rotate(key string) error {
	_, err := a.e.RotateKeyOnDemand(context.Background(), &kms.KeyIDInput{KeyID: key})
	return err
}

func (a engineAdmin) setEnabled(t *testing.T, key string, on bool) {
	var err error
	if on {
		_, err = a.e.EnableKey(context.Background(), &kms.KeyIDInput{KeyID: key})
	} else {
		_, err = a.e.DisableKey(context.Background(), &kms.KeyIDInput{KeyID: key})
	}
	if err != nil {
		t.Fatal(err)
	}
}

func (a engineAdmin) grant(key string) (string, error) {
	out, err := a.e.CreateGrant(context.Background(), &kms.CreateGrantInput{KeyID: key, GranteePrincipal: "rekey",
		Operations: []string{"ReEncryptFrom", "ReEncryptTo"}})
	if err != nil {
		return "", err
	}
	return out.GrantToken, nil
}

// impl is one column of the table. Each column proves that its key
// service calls reach the implementation it names (see reached).
type impl struct {
	name  string
	ks    keyService
	admin admin
	// calls counts the calls made to ks.
	calls *atomic.Int64
	// server is the HTTP server of the column, nil for the in-process
	// engine; answers records the request ids the provider's HTTP client
	// read back from it.
	server  *testkms.Server
	answers *answers
}

// counted counts the calls the scenarios make to a key service.
type counted struct {
	keyService
	n *atomic.Int64
}

func (c counted) DescribeKey(ctx context.Context, keyID string) (string, string, error) {
	c.n.Add(1)
	return c.keyService.DescribeKey(ctx, keyID)
}

func (c counted) ReEncrypt(ctx context.Context, in *kms.ReEncryptInput) (*kms.ReEncryptOutput, error) {
	c.n.Add(1)
	return c.keyService.ReEncrypt(ctx, in)
}

// answers is the aws provider's HTTP client, recording the request id of
// every response it receives (testkms.RequestIDHeader; "" when the answer
// carried none).
type answers struct {
	base awskms.HTTPClient
	mu   sync.Mutex
	ids  []string
}

func (a *answers) Do(r *http.Request) (*http.Response, error) {
	resp, err := a.base.Do(r)
	if err == nil {
		a.mu.Lock()
		a.ids = append(a.ids, resp.Header.Get(testkms.RequestIDHeader))
		a.mu.Unlock()
	}
	return resp, err
}

func (a *answers) since(n int) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.ids[n:])
}

func (a *answers) len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.ids)
}

func implementations(t *testing.T) []impl {
	ctx := context.Background()
	overHTTP := func(name string, s *testkms.Server) impl {
		a := &answers{base: awshttp.NewBuildableClient()}
		p, err := awsprovider.New(ctx, awsprovider.Options{Region: testkms.Region, Endpoint: s.URL, HTTPClient: a,
			StaticCredentials: &awsprovider.StaticCredentials{AccessKeyID: testkms.AccessKeyID, SecretAccessKey: testkms.SecretAccessKey}})
		if err != nil {
			t.Fatal(err)
		}
		n := new(atomic.Int64)
		return impl{name: name, ks: counted{p, n}, admin: sdkAdmin{s.Client()}, calls: n, server: s, answers: a}
	}
	rk, lk := testkms.Rekey(t), testkms.LocalKMS(t)
	e, err := kms.New(ctx, kms.Options{})
	if err != nil {
		t.Fatal(err)
	}
	n := new(atomic.Int64)
	return []impl{
		overHTTP("rekey-endpoint", rk),
		overHTTP("local-kms", lk),
		{name: "embedded", ks: counted{embedded.New(e), n}, admin: engineAdmin{e}, calls: n},
	}
}

// snapshot is where each column's counters stood before a scenario.
type snapshot struct {
	calls    map[string]int64
	answers  map[string]int
	received map[string]int64
}

func snap(ims []impl) snapshot {
	s := snapshot{calls: map[string]int64{}, answers: map[string]int{}, received: map[string]int64{}}
	for _, im := range ims {
		s.calls[im.name] = im.calls.Load()
		if im.server != nil {
			s.answers[im.name] = im.answers.len()
			s.received[im.name] = im.server.Received()
		}
	}
	return s
}

// reached checks that the key service calls im's scenario made since
// before reached the implementation the column names, and returns how many
// there were:
//
//   - over HTTP: every call got exactly one answer, each carrying a request
//     id that this column's server gave to a ReEncrypt or DescribeKey request
//     arriving on its listener — so a provider that skipped HTTP, or went to
//     another server, or retried, fails;
//   - in-process (embedded): no HTTP server received anything.
func reached(t *testing.T, im impl, ims []impl, before snapshot) int64 {
	t.Helper()
	calls := im.calls.Load() - before.calls[im.name]
	if im.server == nil {
		for _, other := range ims {
			if other.server != nil && other.server.Received() != before.received[other.name] {
				t.Errorf("%s column: %s received %d requests; the embedded engine is in-process",
					im.name, other.name, other.server.Received()-before.received[other.name])
			}
		}
		return calls
	}
	ids := im.answers.since(before.answers[im.name])
	// The admin's SDK client talks to the server too, but not through the
	// provider's HTTP client: every id here is a key service call's.
	if int64(len(ids)) != calls {
		t.Errorf("%s column: %d key service calls, %d HTTP answers to the provider", im.name, calls, len(ids))
	}
	for _, id := range ids {
		op, ok := im.server.Operation(id)
		switch {
		case !ok:
			t.Errorf("%s column: an answer with request id %q did not come from %s's listener", im.name, id, im.server.Name)
		case op != "ReEncrypt" && op != "DescribeKey":
			t.Errorf("%s column: request %s was %s, not a key service call", im.name, id, op)
		}
	}
	return calls
}

// outcome is "OK", an AWS error name, or a short description of what differed.
func outcome(err error) string {
	if err == nil {
		return "OK"
	}
	if errors.Is(err, errNotImplemented) {
		return "not implemented"
	}
	if c := kms.CodeOf(err); c != "" {
		return string(c)
	}
	return "error: " + err.Error()
}

type scenario struct {
	name string
	// want is AWS KMS's behaviour.
	want string
	run  func(t *testing.T, im impl) string
}

var ec = map[string]string{"app": "conformance"}

func scenarios() []scenario {
	ctx := context.Background()
	return []scenario{
		{"cross-key ReEncrypt", "OK", func(t *testing.T, im impl) string {
			aID, aARN := im.admin.createKey(t)
			_, bARN := im.admin.createKey(t)
			pt := []byte("cross-key value")
			blob := im.admin.encrypt(t, aID, pt, ec)
			out, err := im.ks.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: blob, SourceKeyID: aARN, SourceEncryptionContext: ec,
				DestinationKeyID: bARN, DestinationEncryptionContext: ec})
			if err != nil {
				return outcome(err)
			}
			switch {
			case out.SourceKeyID != aARN:
				return "SourceKeyId " + out.SourceKeyID
			case out.KeyID != bARN:
				return "KeyId " + out.KeyID
			case !bytes.Equal(im.admin.decrypt(t, out.CiphertextBlob, ec), pt):
				return "decrypts to something else"
			}
			return "OK"
		}},
		{"same-key ReEncrypt after RotateKeyOnDemand", "OK", func(t *testing.T, im impl) string {
			kID, kARN := im.admin.createKey(t)
			blob := im.admin.encrypt(t, kID, []byte("v1"), ec)
			if err := im.admin.rotate(kID); err != nil {
				return "RotateKeyOnDemand: " + outcome(err)
			}
			out, err := im.ks.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: blob, SourceKeyID: kARN, SourceEncryptionContext: ec,
				DestinationKeyID: kARN, DestinationEncryptionContext: ec})
			if err != nil {
				return outcome(err)
			}
			switch {
			case out.SourceKeyMaterialID == "" || out.DestinationKeyMaterialID == "":
				return "OK, without KeyMaterialIds"
			case out.SourceKeyMaterialID == out.DestinationKeyMaterialID:
				return "stayed on the old key material"
			}
			return "OK"
		}},
		{"wrong SourceKeyId", string(kms.CodeIncorrectKey), func(t *testing.T, im impl) string {
			aID, _ := im.admin.createKey(t)
			_, bARN := im.admin.createKey(t)
			blob := im.admin.encrypt(t, aID, []byte("x"), ec)
			_, err := im.ks.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: blob, SourceKeyID: bARN, SourceEncryptionContext: ec, DestinationKeyID: bARN})
			return outcome(err)
		}},
		{"wrong encryption context", string(kms.CodeInvalidCiphertext), func(t *testing.T, im impl) string {
			aID, _ := im.admin.createKey(t)
			blob := im.admin.encrypt(t, aID, []byte("x"), ec)
			_, err := im.ks.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: blob,
				SourceEncryptionContext: map[string]string{"app": "other"}, DestinationKeyID: aID})
			return outcome(err)
		}},
		{"tampered blob", string(kms.CodeInvalidCiphertext), func(t *testing.T, im impl) string {
			aID, _ := im.admin.createKey(t)
			blob := im.admin.encrypt(t, aID, []byte("x"), ec)
			blob[len(blob)-2] ^= 0x40
			_, err := im.ks.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: blob, SourceEncryptionContext: ec, DestinationKeyID: aID})
			return outcome(err)
		}},
		{"disabled source key", string(kms.CodeDisabled), func(t *testing.T, im impl) string {
			aID, _ := im.admin.createKey(t)
			_, bARN := im.admin.createKey(t)
			blob := im.admin.encrypt(t, aID, []byte("x"), ec)
			im.admin.setEnabled(t, aID, false)
			_, err := im.ks.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: blob, SourceEncryptionContext: ec, DestinationKeyID: bARN})
			return outcome(err)
		}},
		{"grant token of a live grant", "OK", func(t *testing.T, im impl) string {
			aID, _ := im.admin.createKey(t)
			blob := im.admin.encrypt(t, aID, []byte("x"), ec)
			tok, err := im.admin.grant(aID)
			if err != nil {
				return "CreateGrant: " + outcome(err)
			}
			_, err = im.ks.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: blob, SourceEncryptionContext: ec,
				DestinationKeyID: aID, DestinationEncryptionContext: ec, GrantTokens: []string{tok}})
			return outcome(err)
		}},
		{"forged grant token", string(kms.CodeInvalidGrantToken), func(t *testing.T, im impl) string {
			aID, _ := im.admin.createKey(t)
			blob := im.admin.encrypt(t, aID, []byte("x"), ec)
			_, err := im.ks.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: blob, SourceEncryptionContext: ec,
				DestinationKeyID: aID, GrantTokens: []string{"forged-grant-token"}})
			return outcome(err)
		}},
		{"DryRun", string(kms.CodeDryRunOperation), func(t *testing.T, im impl) string {
			aID, _ := im.admin.createKey(t)
			blob := im.admin.encrypt(t, aID, []byte("x"), ec)
			_, err := im.ks.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: blob, SourceEncryptionContext: ec, DestinationKeyID: aID, DryRun: true})
			return outcome(err)
		}},
		{"DescribeKey resolves a key ARN", "OK", func(t *testing.T, im impl) string {
			_, arn := im.admin.createKey(t)
			got, _, err := im.ks.DescribeKey(ctx, arn)
			if err != nil {
				return outcome(err)
			}
			if got != arn {
				return "ARN " + got
			}
			return "OK"
		}},
	}
}

// divergences are the documented differences from AWS KMS, by
// implementation and scenario (docs/conformance.md explains each).
var divergences = map[string]map[string]string{
	"local-kms": {
		"same-key ReEncrypt after RotateKeyOnDemand": "RotateKeyOnDemand: not implemented",
		"wrong SourceKeyId":                          "OK",
		"grant token of a live grant":                "CreateGrant: not implemented",
		"forged grant token":                         "OK",
		"DryRun":                                     "OK",
	},
}

func TestConformance(t *testing.T) {
	ims := implementations(t)
	total := map[string]int64{}
	var table strings.Builder
	table.WriteString("| scenario | AWS KMS |")
	for _, im := range ims {
		table.WriteString(" " + im.name + " |")
	}
	table.WriteString("\n|---|---|" + strings.Repeat("---|", len(ims)) + "\n")
	for _, sc := range scenarios() {
		table.WriteString("| " + sc.name + " | " + sc.want + " |")
		for _, im := range ims {
			want := sc.want
			if d, ok := divergences[im.name][sc.name]; ok {
				want = d
			}
			var got string
			t.Run(im.name+"/"+sc.name, func(t *testing.T) {
				before := snap(ims)
				got = sc.run(t, im)
				total[im.name] += reached(t, im, ims, before)
				if got != want {
					t.Errorf("got %q, want %q", got, want)
				}
			})
			cell := got
			if want != sc.want {
				cell += " (documented divergence)"
			}
			table.WriteString(" " + cell + " |")
		}
		table.WriteString("\n")
	}
	t.Logf("results:\n%s", table.String())
	for _, im := range ims {
		// Every column must have made calls for its proof to mean anything.
		if total[im.name] == 0 {
			t.Errorf("%s column: no key service call was made", im.name)
		}
		where := "in-process, no HTTP request to any server"
		if im.server != nil {
			where = "each answered over HTTP by " + im.server.Name + "'s listener"
		}
		t.Logf("%s: %d key service calls, %s", im.name, total[im.name], where)
	}
}
