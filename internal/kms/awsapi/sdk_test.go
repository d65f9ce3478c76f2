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

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"

	"github.com/rekey-dev/rekey/internal/testkms"
)

// serve starts rekey's endpoint on 127.0.0.1 (testkms) and returns an AWS
// SDK client for it and its URL.
func serve(t *testing.T) (*awskms.Client, string) {
	t.Helper()
	srv := testkms.Rekey(t)
	return srv.Client(), srv.URL
}

func newClient(url, akid, secret string) *awskms.Client {
	return awskms.New(awskms.Options{
		Region:           testkms.Region,
		BaseEndpoint:     aws.String(url),
		Credentials:      credentials.NewStaticCredentialsProvider(akid, secret, ""),
		RetryMaxAttempts: 1,
	})
}

// TestSDKEndToEnd drives every step through the real AWS SDK for Go v2 and
// asserts errors through its typed exceptions.
func TestSDKEndToEnd(t *testing.T) {
	ctx := context.Background()
	c, _ := serve(t)

	src, err := c.CreateKey(ctx, &awskms.CreateKeyInput{Description: aws.String("billing-2025")})
	if err != nil {
		t.Fatalf("CreateKey: %v", err)
	}
	if src.KeyMetadata.KeyState != types.KeyStateEnabled || src.KeyMetadata.CreationDate == nil ||
		time.Since(*src.KeyMetadata.CreationDate) > time.Hour {
		t.Fatalf("CreateKey metadata: %+v", src.KeyMetadata)
	}
	dst, err := c.CreateKey(ctx, &awskms.CreateKeyInput{Description: aws.String("billing-2026")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateAlias(ctx, &awskms.CreateAliasInput{AliasName: aws.String("alias/billing-2025"), TargetKeyId: src.KeyMetadata.KeyId}); err != nil {
		t.Fatalf("CreateAlias: %v", err)
	}
	if _, err := c.CreateAlias(ctx, &awskms.CreateAliasInput{AliasName: aws.String("alias/billing-2026"), TargetKeyId: dst.KeyMetadata.Arn}); err != nil {
		t.Fatalf("CreateAlias: %v", err)
	}
	ec := map[string]string{"app": "billing"}
	pt := []byte("the database password")
	enc, err := c.Encrypt(ctx, &awskms.EncryptInput{KeyId: aws.String("alias/billing-2025"), Plaintext: pt, EncryptionContext: ec})
	if err != nil {
		t.Fatalf("Encrypt: %v", err)
	}
	if aws.ToString(enc.KeyId) != aws.ToString(src.KeyMetadata.Arn) {
		t.Fatalf("Encrypt KeyId %s", aws.ToString(enc.KeyId))
	}

	// ReEncrypt to another key.
	re, err := c.ReEncrypt(ctx, &awskms.ReEncryptInput{
		CiphertextBlob: enc.CiphertextBlob, SourceKeyId: aws.String("alias/billing-2025"), SourceEncryptionContext: ec,
		DestinationKeyId: aws.String("alias/billing-2026"), DestinationEncryptionContext: ec,
	})
	if err != nil {
		t.Fatalf("ReEncrypt: %v", err)
	}
	if aws.ToString(re.SourceKeyId) != aws.ToString(src.KeyMetadata.Arn) || aws.ToString(re.KeyId) != aws.ToString(dst.KeyMetadata.Arn) {
		t.Fatalf("ReEncrypt SourceKeyId %s KeyId %s", aws.ToString(re.SourceKeyId), aws.ToString(re.KeyId))
	}
	if re.SourceEncryptionAlgorithm != types.EncryptionAlgorithmSpecSymmetricDefault ||
		aws.ToString(re.SourceKeyMaterialId) != aws.ToString(src.KeyMetadata.CurrentKeyMaterialId) {
		t.Fatalf("ReEncrypt algorithm %s material %s", re.SourceEncryptionAlgorithm, aws.ToString(re.SourceKeyMaterialId))
	}

	// RotateKeyOnDemand, then same-key ReEncrypt moves to the new material.
	if _, err := c.RotateKeyOnDemand(ctx, &awskms.RotateKeyOnDemandInput{KeyId: aws.String("alias/billing-2026")}); err != nil {
		t.Fatalf("RotateKeyOnDemand: %v", err)
	}
	rots, err := c.ListKeyRotations(ctx, &awskms.ListKeyRotationsInput{KeyId: dst.KeyMetadata.KeyId})
	if err != nil || len(rots.Rotations) != 1 || rots.Rotations[0].RotationType != types.RotationTypeOnDemand {
		t.Fatalf("ListKeyRotations: %v %+v", err, rots)
	}
	same, err := c.ReEncrypt(ctx, &awskms.ReEncryptInput{
		CiphertextBlob: re.CiphertextBlob, SourceKeyId: dst.KeyMetadata.Arn, SourceEncryptionContext: ec,
		DestinationKeyId: dst.KeyMetadata.Arn, DestinationEncryptionContext: ec,
	})
	if err != nil {
		t.Fatalf("same-key ReEncrypt: %v", err)
	}
	if aws.ToString(same.SourceKeyMaterialId) == aws.ToString(same.DestinationKeyMaterialId) ||
		aws.ToString(same.DestinationKeyMaterialId) != aws.ToString(rots.Rotations[0].KeyMaterialId) {
		t.Fatalf("same-key ReEncrypt materials %s -> %s", aws.ToString(same.SourceKeyMaterialId), aws.ToString(same.DestinationKeyMaterialId))
	}

	// Decrypt gives back the plaintext.
	dec, err := c.Decrypt(ctx, &awskms.DecryptInput{CiphertextBlob: same.CiphertextBlob, EncryptionContext: ec})
	if err != nil || !bytes.Equal(dec.Plaintext, pt) {
		t.Fatalf("Decrypt: %v", err)
	}

	// Typed errors.
	_, err = c.ReEncrypt(ctx, &awskms.ReEncryptInput{
		CiphertextBlob: enc.CiphertextBlob, SourceKeyId: dst.KeyMetadata.KeyId, SourceEncryptionContext: ec, DestinationKeyId: dst.KeyMetadata.KeyId,
	})
	var incorrect *types.IncorrectKeyException
	if !errors.As(err, &incorrect) {
		t.Fatalf("wrong SourceKeyId: want IncorrectKeyException, got %v", err)
	}
	_, err = c.Decrypt(ctx, &awskms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: map[string]string{"app": "other"}})
	var invalid *types.InvalidCiphertextException
	if !errors.As(err, &invalid) {
		t.Fatalf("wrong context: want InvalidCiphertextException, got %v", err)
	}
	tampered := bytes.Clone(enc.CiphertextBlob)
	tampered[len(tampered)-1] ^= 0x80
	_, err = c.Decrypt(ctx, &awskms.DecryptInput{CiphertextBlob: tampered, EncryptionContext: ec})
	if !errors.As(err, &invalid) {
		t.Fatalf("tampered: want InvalidCiphertextException, got %v", err)
	}
	_, err = c.ReEncrypt(ctx, &awskms.ReEncryptInput{
		CiphertextBlob: enc.CiphertextBlob, SourceEncryptionContext: ec, DestinationKeyId: dst.KeyMetadata.KeyId, DryRun: aws.Bool(true),
	})
	var dry *types.DryRunOperationException
	if !errors.As(err, &dry) {
		t.Fatalf("DryRun: want DryRunOperationException, got %v", err)
	}
	if _, err := c.DisableKey(ctx, &awskms.DisableKeyInput{KeyId: src.KeyMetadata.KeyId}); err != nil {
		t.Fatal(err)
	}
	_, err = c.ReEncrypt(ctx, &awskms.ReEncryptInput{CiphertextBlob: enc.CiphertextBlob, SourceEncryptionContext: ec, DestinationKeyId: dst.KeyMetadata.KeyId})
	var disabled *types.DisabledException
	if !errors.As(err, &disabled) {
		t.Fatalf("disabled key: want DisabledException, got %v", err)
	}
	_, err = c.DescribeKey(ctx, &awskms.DescribeKeyInput{KeyId: aws.String("alias/missing")})
	var notFound *types.NotFoundException
	if !errors.As(err, &notFound) {
		t.Fatalf("missing alias: want NotFoundException, got %v", err)
	}

	// Grants through the SDK.
	g, err := c.CreateGrant(ctx, &awskms.CreateGrantInput{
		KeyId: dst.KeyMetadata.KeyId, GranteePrincipal: aws.String("arn:aws:iam::111122223333:role/rekey"),
		Operations: []types.GrantOperation{types.GrantOperationReEncryptTo},
	})
	if err != nil {
		t.Fatalf("CreateGrant: %v", err)
	}
	_, err = c.GenerateDataKey(ctx, &awskms.GenerateDataKeyInput{KeyId: dst.KeyMetadata.KeyId, KeySpec: types.DataKeySpecAes256, GrantTokens: []string{aws.ToString(g.GrantToken)}})
	if err != nil {
		t.Fatalf("GenerateDataKey with grant token: %v", err)
	}
	_, err = c.GenerateDataKey(ctx, &awskms.GenerateDataKeyInput{KeyId: dst.KeyMetadata.KeyId, KeySpec: types.DataKeySpecAes256, GrantTokens: []string{"forged"}})
	var badToken *types.InvalidGrantTokenException
	if !errors.As(err, &badToken) {
		t.Fatalf("forged grant token: want InvalidGrantTokenException, got %v", err)
	}
	lk, err := c.ListKeys(ctx, &awskms.ListKeysInput{})
	if err != nil || len(lk.Keys) != 2 {
		t.Fatalf("ListKeys: %v", err)
	}
	la, err := c.ListAliases(ctx, &awskms.ListAliasesInput{})
	if err != nil || len(la.Aliases) != 2 {
		t.Fatalf("ListAliases: %v", err)
	}
}

// TestSDKRejectsBadSignatures: wrong secret, unknown access key, unsigned.
func TestSDKRejectsBadSignatures(t *testing.T) {
	ctx := context.Background()
	_, url := serve(t)
	code := func(err error) string {
		var ae smithy.APIError
		if !errors.As(err, &ae) {
			t.Fatalf("want an API error, got %v", err)
		}
		return ae.ErrorCode()
	}
	_, err := newClient(url, testkms.AccessKeyID, "wrong-secret").ListKeys(ctx, &awskms.ListKeysInput{})
	if got := code(err); got != "InvalidSignatureException" {
		t.Fatalf("bad signature: got %s", got)
	}
	_, err = newClient(url, "AKIDUNKNOWN", testkms.SecretAccessKey).ListKeys(ctx, &awskms.ListKeysInput{})
	if got := code(err); got != "UnrecognizedClientException" {
		t.Fatalf("unknown access key: got %s", got)
	}

	// Unsigned and tampered requests over plain HTTP.
	req, _ := http.NewRequest(http.MethodPost, url+"/", strings.NewReader("{}"))
	req.Header.Set("X-Amz-Target", "TrentService.ListKeys")
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("unsigned request: status %d", resp.StatusCode)
	}
}
