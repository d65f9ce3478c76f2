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
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
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
	// MaxAttempts for one call, throttling included (default 1: the SDK
	// does not retry. The controller is rekey's one retry layer; SDK
	// retries under it would multiply its attempts).
	MaxAttempts int
	// MaxBackoff caps the SDK's wait between attempts when MaxAttempts > 1
	// (default 5s).
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
	// endpoint names the endpoint in error messages.
	endpoint string
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
		o.MaxAttempts = 1
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
	if cfg.Credentials != nil {
		// Mark credential failures, which the SDK reports as plain
		// wrapped errors, so that mapError can tell them apart.
		cfg.Credentials = aws.NewCredentialsCache(credentialSource{cfg.Credentials})
	}
	client := awskms.NewFromConfig(cfg, func(k *awskms.Options) {
		if o.Endpoint != "" {
			k.BaseEndpoint = aws.String(o.Endpoint)
		}
		if o.HTTPClient != nil {
			k.HTTPClient = o.HTTPClient
		}
		// One attempt by default (see Options.MaxAttempts). With more:
		// throttling-aware retries with jittered backoff and no
		// client-side retry quota.
		k.Retryer = retry.NewStandard(func(s *retry.StandardOptions) {
			s.MaxAttempts = o.MaxAttempts
			s.MaxBackoff = o.MaxBackoff
			s.RateLimiter = ratelimit.None
		})
	})
	burst := max(1, int(o.RequestsPerSecond))
	return &Provider{client: client, limiter: rate.NewLimiter(rate.Limit(o.RequestsPerSecond), burst),
		endpoint: endpointName(o.Endpoint, o.Region)}, nil
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
		return "", "", p.mapError(ctx, err)
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
			return nil, p.mapError(ctx, err)
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
		return nil, p.mapError(ctx, err)
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

// endpointName is how error messages name the endpoint: scheme and host of
// an override (never its user info, path or query), or AWS KMS's Region.
func endpointName(endpoint, region string) string {
	if endpoint == "" {
		return "AWS KMS in " + region
	}
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" {
		return "the configured KMS endpoint"
	}
	return u.Scheme + "://" + u.Host
}

// credentialSource wraps the credentials chain so its failures are
// recognisable in the SDK's error chain.
type credentialSource struct{ p aws.CredentialsProvider }

func (c credentialSource) Retrieve(ctx context.Context) (aws.Credentials, error) {
	v, err := c.p.Retrieve(ctx)
	if err != nil && ctx.Err() == nil {
		return v, &credentialsError{err: err}
	}
	return v, err
}

type credentialsError struct{ err error }

func (e *credentialsError) Error() string { return "resolving AWS credentials: " + e.err.Error() }
func (e *credentialsError) Unwrap() error { return e.err }

// apiCodes are the AWS errors the SDK does not model as KMS types but that
// KMS (and rekey's endpoint) answer with; any other unmodelled code means
// the answer did not come from KMS.
var apiCodes = map[kms.ErrorCode]bool{
	kms.CodeThrottling: true, kms.CodeAccessDenied: true, kms.CodeValidation: true,
	kms.CodeUnrecognizedClient: true, kms.CodeInvalidSignature: true, kms.CodeIncompleteSignature: true,
	kms.CodeMissingAuthToken: true, kms.CodeSerialization: true, kms.CodeUnknownOperation: true,
	"ExpiredTokenException": true, "InvalidClientTokenId": true, "RequestExpired": true,
	"NotAuthorized": true, "OptInRequired": true,
}

// maxMessage bounds the message of a mapped error.
const maxMessage = 200

// mapError turns an SDK error into a *kms.Error, so the controller — rekey's
// one retry layer — classifies it like any other key service's:
//
//   - a KMS error keeps its AWS name, with the service's message made one
//     line of at most maxMessage bytes;
//   - a transport failure (connection refused or reset, timeout, DNS) is
//     DependencyTimeoutException: retried;
//   - an answer that is not a KMS response is InvalidResponseException,
//     failed credentials CredentialsException, anything else
//     RequestFailedException: the run stops.
//
// Messages name the endpoint and the HTTP status, never bytes of a response
// body. The caller's cancellation or deadline is returned as it is.
func (p *Provider) mapError(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return err
	}
	var ce *credentialsError
	if errors.As(err, &ce) {
		return &kms.Error{Code: kms.CodeCredentials, Message: sanitize(ce.Error())}
	}
	status := 0
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		code := kms.ErrorCode(ae.ErrorCode())
		var generic *smithy.GenericAPIError
		if errors.As(err, &generic) && !apiCodes[code] {
			return &kms.Error{Code: kms.CodeInvalidResponse,
				Message: fmt.Sprintf("%s answered HTTP %d with an error that is not a KMS error", p.endpoint, status)}
		}
		return &kms.Error{Code: code, Message: sanitize(ae.ErrorMessage())}
	}
	if reason := transportFailure(err); reason != "" {
		return &kms.Error{Code: kms.CodeDependencyTimeout, Message: "calling " + p.endpoint + ": " + reason}
	}
	if status != 0 || errors.As(err, new(*smithy.DeserializationError)) {
		return &kms.Error{Code: kms.CodeInvalidResponse,
			Message: fmt.Sprintf("%s answered HTTP %d with something that is not a KMS response", p.endpoint, status)}
	}
	return &kms.Error{Code: kms.CodeRequestFailed, Message: sanitize("calling " + p.endpoint + ": " + cause(err))}
}

// cause is the message of the first error in err's chain that is not one of
// the SDK's or net/http's wrappers, which only repeat the operation, the
// attempt count and the URL before it.
func cause(err error) string {
	for e := err; e != nil; e = errors.Unwrap(e) {
		switch e.(type) { //nolint:errorlint // walks the chain itself, one link at a time
		case *smithy.OperationError, *retry.MaxAttemptsError, *awshttp.ResponseError, *smithyhttp.ResponseError,
			*smithyhttp.RequestSendError, *url.Error:
			continue
		}
		return e.Error()
	}
	return err.Error()
}

// transportFailure says what went wrong when err is a failure to reach the
// endpoint or to hear back from it — the kind worth retrying — and "" when
// it is not. A request that could not be sent counts, unless TLS refused the
// endpoint: that needs a person, not another try.
func transportFailure(err error) string {
	var dns *net.DNSError
	var ne net.Error
	switch {
	case tlsFailure(err):
		return ""
	case errors.As(err, &dns):
		return "DNS lookup of " + sanitize(dns.Name) + " failed"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNABORTED), errors.Is(err, syscall.EPIPE):
		return "connection reset"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "host unreachable"
	case errors.As(err, new(*awshttp.ResponseTimeoutError)):
		return "timed out reading the response"
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, context.DeadlineExceeded):
		return "timed out"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return "connection closed before a complete response"
	case errors.As(err, new(*smithyhttp.RequestSendError)):
		return "connection failed before a response"
	}
	return ""
}

// tlsFailure reports whether err is TLS refusing the endpoint: an
// untrusted or mismatched certificate, or a server that does not speak TLS.
func tlsFailure(err error) bool {
	return errors.As(err, new(*tls.CertificateVerificationError)) || errors.As(err, new(x509.UnknownAuthorityError)) ||
		errors.As(err, new(x509.HostnameError)) || errors.As(err, new(x509.CertificateInvalidError)) ||
		errors.As(err, new(tls.RecordHeaderError)) || errors.As(err, new(tls.AlertError)) ||
		// net/http reports a plain-HTTP answer to an https URL as an
		// untyped error with this text.
		strings.Contains(err.Error(), "server gave HTTP response to HTTPS client")
}

// sanitize makes s one line of printable characters, at most maxMessage bytes.
func sanitize(s string) string {
	s = strings.Join(strings.FieldsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) || unicode.IsSpace(r) }), " ")
	if len(s) <= maxMessage {
		return s
	}
	cut := maxMessage - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
