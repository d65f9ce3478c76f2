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
	"strings"
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

type impl struct {
	name  string
	ks    keyService
	admin admin
}

func implementations(t *testing.T) []impl {
	ctx := context.Background()
	awsFor := func(s *testkms.Server) keyService {
		p, err := awsprovider.New(ctx, awsprovider.Options{Region: testkms.Region, Endpoint: s.URL,
			StaticCredentials: &awsprovider.StaticCredentials{AccessKeyID: testkms.AccessKeyID, SecretAccessKey: testkms.SecretAccessKey}})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	rk, lk := testkms.Rekey(t), testkms.LocalKMS(t)
	e, err := kms.New(ctx, kms.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return []impl{
		{"rekey-endpoint", awsFor(rk), sdkAdmin{rk.Client()}},
		{"local-kms", awsFor(lk), sdkAdmin{lk.Client()}},
		{"embedded", embedded.New(e), engineAdmin{e}},
	}
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
				got = sc.run(t, im)
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
}
