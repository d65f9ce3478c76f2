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

package controllers

import (
	"context"

	"github.com/rekey-dev/rekey/internal/kms"
)

// KeyService is what a rotation needs from a key service. Errors are
// *kms.Error values carrying AWS's error names, so one classification
// (kms.ClassOf) decides retry, fail-this-blob or stop-the-run for every
// provider.
type KeyService interface {
	// Name identifies the provider in status and events ("embedded", "aws").
	Name() string
	// Refresh picks up key changes made elsewhere; called once per reconcile.
	Refresh(ctx context.Context) error
	// DescribeKey resolves a key named in any form to its ARN and its current
	// key material id ("" when the service does not say).
	DescribeKey(ctx context.Context, keyID string) (arn, currentMaterial string, err error)
	// ReEncrypt is the AWS KMS ReEncrypt call.
	ReEncrypt(ctx context.Context, in *kms.ReEncryptInput) (*kms.ReEncryptOutput, error)
	// KeyTags returns a key's tags (ListResourceTags).
	KeyTags(ctx context.Context, keyARN string) (map[string]string, error)
}

// BlobInspector is implemented by key services whose blob format rekey
// knows (the embedded engine's): the controller reads each blob's header
// before calling ReEncrypt, so blobs under undeclared keys are reported, not
// sent, and blobs already under the destination's current version are skipped.
type BlobInspector interface {
	// InspectBlob reads the header alone: not authenticated.
	InspectBlob(blob []byte) (kms.BlobKey, error)
	// VerifyBlob authenticates the blob under an encryption context
	// without returning its plaintext.
	VerifyBlob(blob []byte, encryptionContext map[string]string) (kms.BlobKey, error)
}
