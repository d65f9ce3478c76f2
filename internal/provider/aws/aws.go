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

// Package aws is the key service backed by AWS KMS (or any endpoint that
// speaks its API), through the AWS SDK for Go v2. Its blobs are opaque: the
// controller does not read their headers, and the SourceKeyId that ReEncrypt
// returns is the proof of where a blob came from.
package aws

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"
	"golang.org/x/time/rate"

	"github.com/rekey-dev/rekey/internal/kms"
)

// Options configure the provider.
type Options struct {
	// Region of the keys (required).
	Region string
	// Endpoint overrides the KMS endpoint URL (a VPC endpoint, or a
	// compatible service such as 'rekey kms serve').
	Endpoint string
	// StaticCredentials, when set, are used instead of the default chain
	// (environment, shared config, web identity, instance role).
	StaticCredentials *StaticCredentials
	// RequestsPerSecond bounds this provider's KMS calls (KMS quotas are
	// shared per account and Region). Default 100; burst the same.
	RequestsPerSecond float64
	// MaxAttempts for one call, throttling included (default 8).
	MaxAttempts int
	// MaxBackoff caps the wait between attempts (default 5s).
	MaxBackoff time.Duration
	// HTTPClient, for tests; default the SDK's.
	HTTPClient awskms.HTTPClient
}

// StaticCredentials is an access key pair (and optional session token).
type StaticCredentials struct {
	AccessKeyID, SecretAccessKey, SessionToken string
}

// String never shows the secret.
func (c StaticCredentials) String() string {
	return "StaticCredentials(" + c.AccessKeyID + ", redacted)"
}

// GoString never shows the secret either (%#v).
func (c StaticCredentials) GoString() string { return c.String() }

// Provider calls AWS KMS.
type Provider struct {
	client  *awskms.Client
	limiter *rate.Limiter
}

// New returns a provider for o.
func New(ctx context.Context, o Options) (*Provider, error) {
	if o.Region == "" {
		return nil, errors.New("aws provider: region is required")
	}
	if o.RequestsPerSecond <= 0 {
		o.RequestsPerSecond = 100
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 8
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 5 * time.Second
	}
	// Explicit defaults mode: "auto" would probe the instance metadata
	// service to guess the environment.
	loadOpts := []func(*config.LoadOptions) error{config.WithRegion(o.Region), config.WithDefaultsMode(aws.DefaultsModeStandard)}
	if c := o.StaticCredentials; c != nil {
		// Static credentials and an explicit region: nothing to ask the
		// instance metadata service, so never call it.
		loadOpts = append(loadOpts,
			config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(c.AccessKeyID, c.SecretAccessKey, c.SessionToken)),
			config.WithEC2IMDSClientEnableState(imds.ClientDisabled))
	}
	cfg, err := config.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return nil, fmt.Errorf("aws provider: loading configuration: %w", err)
	}
	client := awskms.NewFromConfig(cfg, func(k *awskms.Options) {
		if o.Endpoint != "" {
			k.BaseEndpoint = aws.String(o.Endpoint)
		}
		if o.HTTPClient != nil {
			k.HTTPClient = o.HTTPClient
		}
		// Throttling-aware retries with jittered backoff; no client-side
		// retry quota, so a burst of throttling slows the rotation down
		// rather than failing it.
		k.Retryer = retry.NewStandard(func(s *retry.StandardOptions) {
			s.MaxAttempts = o.MaxAttempts
			s.MaxBackoff = o.MaxBackoff
			s.RateLimiter = ratelimit.None
		})
	})
	burst := max(1, int(o.RequestsPerSecond))
	return &Provider{client: client, limiter: rate.NewLimiter(rate.Limit(o.RequestsPerSecond), burst)}, nil
}

// Name implements the controller's KeyService.
func (*Provider) Name() string { return "aws" }

// Refresh has nothing to refresh: AWS is always current.
func (*Provider) Refresh(context.Context) error { return nil }

// DescribeKey resolves an alias or key id to its ARN and current key material.
func (p *Provider) DescribeKey(ctx context.Context, keyID string) (string, string, error) {
	if err := p.limiter.Wait(ctx); err != nil {
		return "", "", err
	}
	out, err := p.client.DescribeKey(ctx, &awskms.DescribeKeyInput{KeyId: aws.String(keyID)})
	if err != nil {
		return "", "", mapError(err)
	}
	return aws.ToString(out.KeyMetadata.Arn), aws.ToString(out.KeyMetadata.CurrentKeyMaterialId), nil
}

// KeyTags lists a key's tags (kms:ListResourceTags).
func (p *Provider) KeyTags(ctx context.Context, keyARN string) (map[string]string, error) {
	tags := map[string]string{}
	pages := awskms.NewListResourceTagsPaginator(p.client, &awskms.ListResourceTagsInput{KeyId: aws.String(keyARN)})
	for pages.HasMorePages() {
		if err := p.limiter.Wait(ctx); err != nil {
			return nil, err
		}
		out, err := pages.NextPage(ctx)
		if err != nil {
			return nil, mapError(err)
		}
		for _, t := range out.Tags {
			tags[aws.ToString(t.TagKey)] = aws.ToString(t.TagValue)
		}
	}
	return tags, nil
}

// ReEncrypt calls KMS ReEncrypt.
func (p *Provider) ReEncrypt(ctx context.Context, in *kms.ReEncryptInput) (*kms.ReEncryptOutput, error) {
	if err := p.limiter.Wait(ctx); err != nil {
		return nil, err
	}
	req := &awskms.ReEncryptInput{
		CiphertextBlob:               in.CiphertextBlob,
		DestinationKeyId:             aws.String(in.DestinationKeyID),
		SourceEncryptionContext:      in.SourceEncryptionContext,
		DestinationEncryptionContext: in.DestinationEncryptionContext,
		GrantTokens:                  in.GrantTokens,
	}
	if in.SourceKeyID != "" {
		req.SourceKeyId = aws.String(in.SourceKeyID)
	}
	if in.DryRun {
		req.DryRun = aws.Bool(true)
	}
	out, err := p.client.ReEncrypt(ctx, req)
	if err != nil {
		return nil, mapError(err)
	}
	return &kms.ReEncryptOutput{
		CiphertextBlob:                 out.CiphertextBlob,
		KeyID:                          aws.ToString(out.KeyId),
		SourceKeyID:                    aws.ToString(out.SourceKeyId),
		SourceEncryptionAlgorithm:      string(out.SourceEncryptionAlgorithm),
		DestinationEncryptionAlgorithm: string(out.DestinationEncryptionAlgorithm),
		SourceKeyMaterialID:            aws.ToString(out.SourceKeyMaterialId),
		DestinationKeyMaterialID:       aws.ToString(out.DestinationKeyMaterialId),
	}, nil
}

// mapError turns an SDK error into a *kms.Error with AWS's error name, so
// the controller classifies it like any other key service's. Transport
// failures (timeouts, refused connections) are DependencyTimeoutException:
// retried. AWS error messages carry no key material or data.
func mapError(err error) error {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		code := kms.ErrorCode(ae.ErrorCode())
		var dry *types.DryRunOperationException
		if errors.As(err, &dry) {
			code = kms.CodeDryRunOperation
		}
		return &kms.Error{Code: code, Message: ae.ErrorMessage()}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var ne net.Error
	var oe *net.OpError
	if errors.As(err, &ne) || errors.As(err, &oe) || errors.As(err, new(*smithy.OperationError)) {
		return &kms.Error{Code: kms.CodeDependencyTimeout, Message: "calling AWS KMS failed: " + err.Error()}
	}
	return &kms.Error{Code: kms.CodeInternal, Message: "calling AWS KMS failed: " + err.Error()}
}
