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
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/smithy-go"
	"github.com/spf13/pflag"

	"github.com/rekey-dev/rekey/internal/kms"
)

// keyService is what encrypt, decrypt and secret create need of a key
// service: the embedded engine over a keystore (*kms.Engine), or a KMS
// endpoint through the AWS SDK (sdkKeyService).
type keyService interface {
	Encrypt(ctx context.Context, in *kms.EncryptInput) (*kms.EncryptOutput, error)
	Decrypt(ctx context.Context, in *kms.DecryptInput) (*kms.DecryptOutput, error)
}

var (
	_ keyService = (*kms.Engine)(nil)
	_ keyService = (*sdkKeyService)(nil)
)

// keyServiceFlags choose the key service: the engine flags (--keystore,
// --root-key-file, ...) for the embedded engine, or --aws / --kms-endpoint
// for a KMS endpoint reached through the AWS SDK for Go v2's default
// configuration (AWS_REGION, AWS_PROFILE, the shared config and credentials
// files, AWS_ENDPOINT_URL_KMS, AWS_CA_BUNDLE, container and web-identity
// credentials, ...).
type keyServiceFlags struct {
	engine   engineFlags
	aws      bool
	endpoint string
	fs       *pflag.FlagSet
}

// bind adds the flags to fs; warnings go to stderr.
func (f *keyServiceFlags) bind(fs *pflag.FlagSet, stderr io.Writer) {
	f.fs = fs
	f.engine.bind(fs, stderr)
	fs.Lookup("region").Usage = "region used in the embedded engine's key ARNs; env REKEY_REGION. With --aws or --kms-endpoint, " +
		"when given, the AWS region (otherwise the SDK's: AWS_REGION, the profile's)"
	fs.BoolVar(&f.aws, "aws", false, "use AWS KMS, or the endpoint of AWS_ENDPOINT_URL_KMS, through the AWS SDK's default configuration "+
		"(AWS_REGION, AWS_PROFILE, shared config, credentials chain, AWS_CA_BUNDLE) instead of a keystore")
	fs.StringVar(&f.endpoint, "kms-endpoint", "", "KMS endpoint `URL` (the in-cluster rekey key service, a VPC endpoint); implies --aws. "+
		"https, or http to a loopback address only")
}

// remote reports whether the flags name a KMS endpoint rather than a keystore.
func (f *keyServiceFlags) remote() bool { return f.aws || f.endpoint != "" }

// check refuses flags that name two key services, and an endpoint that
// would carry plaintext over the network unencrypted. It opens nothing.
func (f *keyServiceFlags) check() error {
	if !f.remote() {
		if f.engine.keystore == "" {
			return usageErrorf("no key service: give --keystore (or set REKEY_KEYSTORE) for the embedded engine, or --aws / --kms-endpoint URL")
		}
		return nil
	}
	var both []string
	for _, name := range []string{"keystore", "root-key-file", "account-id"} {
		if f.fs.Changed(name) {
			both = append(both, "--"+name)
		}
	}
	if len(both) > 0 {
		return usageErrorf("%s are the embedded engine's flags, --aws and --kms-endpoint name a KMS endpoint: give one key service", strings.Join(both, ", "))
	}
	if f.endpoint != "" {
		return checkEndpoint(f.endpoint)
	}
	return nil
}

// checkEndpoint accepts https://HOST[:PORT][/PATH], and http only to a
// loopback address: Encrypt sends the plaintext in the request. Its errors
// never echo the URL: user info, a query or a path may hold credentials.
func checkEndpoint(endpoint string) error {
	u, err := url.Parse(endpoint)
	switch {
	case err != nil:
		return usageErrorf("--kms-endpoint: not a URL; want https://HOST[:PORT]")
	case u.User != nil:
		return usageErrorf("--kms-endpoint: the endpoint URL must not carry user info (USER:PASSWORD@): " +
			"the AWS SDK's credentials sign the requests; want https://HOST[:PORT]")
	case u.RawQuery != "" || u.ForceQuery:
		return usageErrorf("--kms-endpoint: the endpoint URL must not carry a query (?...); want https://HOST[:PORT]")
	case u.Fragment != "" || strings.Contains(endpoint, "#"):
		return usageErrorf("--kms-endpoint: the endpoint URL must not carry a fragment (#...); want https://HOST[:PORT]")
	case u.Host == "":
		return usageErrorf("--kms-endpoint: the endpoint URL has no host; want https://HOST[:PORT]")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if ip := net.ParseIP(u.Hostname()); (ip != nil && ip.IsLoopback()) || u.Hostname() == "localhost" {
			return nil
		}
		return usageErrorf("--kms-endpoint http://%s: http only to a loopback address (plaintext values would cross the network unencrypted); use https", u.Host)
	default:
		return usageErrorf("--kms-endpoint: the endpoint URL's scheme is not https; want https://HOST[:PORT]")
	}
}

// open returns the key service the flags name. Call check first.
func (f *keyServiceFlags) open(ctx context.Context) (keyService, error) {
	if !f.remote() {
		return f.engine.open(ctx)
	}
	var opts []func(*config.LoadOptions) error
	// --region, when given on the command line, is the SDK's region too;
	// its default ("local", REKEY_REGION) names the embedded engine's ARNs
	// and is not used here.
	if f.fs.Changed("region") {
		opts = append(opts, config.WithRegion(f.engine.region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("loading the AWS SDK configuration: %w", err)
	}
	if cfg.Region == "" {
		return nil, usageErrorf("no AWS region: set AWS_REGION (or a profile's region), or give --region")
	}
	client := awskms.NewFromConfig(cfg, func(o *awskms.Options) {
		if f.endpoint != "" {
			o.BaseEndpoint = aws.String(f.endpoint)
		}
	})
	return &sdkKeyService{client: client}, nil
}

// sdkKeyService calls a KMS endpoint through the AWS SDK.
type sdkKeyService struct{ client *awskms.Client }

func (s *sdkKeyService) Encrypt(ctx context.Context, in *kms.EncryptInput) (*kms.EncryptOutput, error) {
	out, err := s.client.Encrypt(ctx, &awskms.EncryptInput{
		KeyId: aws.String(in.KeyID), Plaintext: in.Plaintext, EncryptionContext: in.EncryptionContext, GrantTokens: in.GrantTokens,
	})
	if err != nil {
		return nil, sdkError("Encrypt", err)
	}
	return &kms.EncryptOutput{CiphertextBlob: out.CiphertextBlob, KeyID: aws.ToString(out.KeyId), EncryptionAlgorithm: string(out.EncryptionAlgorithm)}, nil
}

func (s *sdkKeyService) Decrypt(ctx context.Context, in *kms.DecryptInput) (*kms.DecryptOutput, error) {
	req := &awskms.DecryptInput{CiphertextBlob: in.CiphertextBlob, EncryptionContext: in.EncryptionContext, GrantTokens: in.GrantTokens}
	if in.KeyID != "" {
		req.KeyId = aws.String(in.KeyID)
	}
	out, err := s.client.Decrypt(ctx, req)
	if err != nil {
		return nil, sdkError("Decrypt", err)
	}
	return &kms.DecryptOutput{Plaintext: out.Plaintext, KeyID: aws.ToString(out.KeyId), EncryptionAlgorithm: string(out.EncryptionAlgorithm)}, nil
}

// sdkError is "CODE: message" for an error the endpoint answered, as the
// embedded engine's errors read; anything else (no credentials, no route)
// keeps the SDK's words. Neither holds the request's plaintext.
func sdkError(op string, err error) error {
	var api smithy.APIError
	if errors.As(err, &api) {
		return fmt.Errorf("%s: %s: %s", op, api.ErrorCode(), api.ErrorMessage())
	}
	return err
}
