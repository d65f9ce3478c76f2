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

// Package embedded is the key service backed by rekey's own engine, running
// in the operator's process over the keystore Secret.
package embedded

import (
	"context"

	"github.com/rekey-dev/rekey/internal/kms"
)

// Provider adapts *kms.Engine to the controller's KeyService contract.
type Provider struct {
	engine *kms.Engine
}

// New returns a provider over engine.
func New(engine *kms.Engine) *Provider { return &Provider{engine: engine} }

// Name identifies the provider in status and events.
func (*Provider) Name() string { return "embedded" }

// Refresh picks up keys created or rotated since the last call (by the CLI,
// another replica, or an operator).
func (p *Provider) Refresh(ctx context.Context) error { return p.engine.Refresh(ctx) }

// DescribeKey resolves a key in any form to its ARN and current key material.
func (p *Provider) DescribeKey(ctx context.Context, keyID string) (arn, currentMaterial string, err error) {
	out, err := p.engine.DescribeKey(ctx, &kms.DescribeKeyInput{KeyID: keyID})
	if err != nil {
		return "", "", err
	}
	return out.KeyMetadata.Arn, out.KeyMetadata.CurrentKeyMaterialID, nil
}

// ReEncrypt re-encrypts one blob inside the engine.
func (p *Provider) ReEncrypt(ctx context.Context, in *kms.ReEncryptInput) (*kms.ReEncryptOutput, error) {
	return p.engine.ReEncrypt(ctx, in)
}

// InspectBlob reads the blob's header: the engine's format is known.
func (p *Provider) InspectBlob(blob []byte) (kms.BlobKey, error) { return p.engine.InspectBlob(blob) }

// VerifyBlob authenticates a blob inside the engine; the plaintext never
// leaves it.
func (p *Provider) VerifyBlob(blob []byte, encryptionContext map[string]string) (kms.BlobKey, error) {
	return p.engine.VerifyBlob(blob, encryptionContext)
}

// KeyTags lists a key's tags.
func (p *Provider) KeyTags(ctx context.Context, keyARN string) (map[string]string, error) {
	tags := map[string]string{}
	for marker := ""; ; {
		out, err := p.engine.ListResourceTags(ctx, &kms.ListResourceTagsInput{KeyID: keyARN, Marker: marker})
		if err != nil {
			return nil, err
		}
		for _, t := range out.Tags {
			tags[t.TagKey] = t.TagValue
		}
		if !out.Truncated {
			return tags, nil
		}
		marker = out.NextMarker
	}
}
