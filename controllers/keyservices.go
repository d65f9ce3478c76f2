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
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rekeyv1alpha1 "github.com/rekey-dev/rekey/api/v1alpha1"
)

// AWSConfig is what a rotation's spec.provider.aws resolves to.
type AWSConfig struct {
	Region   string
	Endpoint string
	// Static credentials from spec.provider.aws.credentialsSecretRef; nil
	// means the operator's default credential chain.
	AccessKeyID, SecretAccessKey, SessionToken string
	Static                                     bool
}

// String never shows the secret key or the session token.
func (c AWSConfig) String() string {
	return fmt.Sprintf("AWSConfig(region=%s endpoint=%s static=%t accessKeyId=%s)", c.Region, c.Endpoint, c.Static, c.AccessKeyID)
}

// GoString never shows them either (%#v).
func (c AWSConfig) GoString() string { return c.String() }

// Keys of the credentials Secret a KeyRotation may reference.
const (
	CredentialsAccessKeyID     = "AWS_ACCESS_KEY_ID"
	CredentialsSecretAccessKey = "AWS_SECRET_ACCESS_KEY"
	CredentialsSessionToken    = "AWS_SESSION_TOKEN"
)

// Stall reasons of provider selection.
const (
	ReasonCredentialsInvalid = "CredentialsSecretInvalid"
	ReasonEndpointNeedsCreds = "EndpointNeedsCredentials"
	ReasonEndpointNotAllowed = "EndpointNotAllowed"
)

// KeyServiceFactory is the one place that knows which key service a
// rotation names: the operator's embedded engine, or an AWS KMS client built
// from the rotation's spec (and kept across reconciles, so its rate limit
// holds for the whole run).
type KeyServiceFactory struct {
	Embedded KeyService
	// NewAWS builds an AWS KMS key service; nil means none is available.
	NewAWS func(ctx context.Context, c AWSConfig) (KeyService, error)
	// Reader reads credentials Secrets (uncached).
	Reader client.Reader
	// AllowedEndpoints are the endpoint overrides a rotation may name
	// (scheme://host[:port]); none by default.
	AllowedEndpoints []string

	mu  sync.Mutex
	aws map[types.NamespacedName]cachedKeyService
}

// cachedKeyService is one rotation's AWS client, kept while the rotation's
// UID, generation and credentials Secret version stay the same.
type cachedKeyService struct {
	version string
	ks      KeyService
}

var _ KeyServiceSource = (*KeyServiceFactory)(nil)

// Forget drops a deleted rotation's client.
func (f *KeyServiceFactory) Forget(key types.NamespacedName) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.aws, key)
}

// endpointAllowed checks an endpoint override against the allowlist the
// operator's admin gave: scheme, host and port must equal an entry's, and
// the scheme must be https, or http to a loopback address (tests). A
// rotation never chooses where the operator connects beyond that list.
func (f *KeyServiceFactory) endpointAllowed(endpoint string) error {
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("spec.provider.aws.endpoint must be a URL of the form https://host[:port]")
	}
	switch u.Scheme {
	case "https":
	case "http":
		if ip := net.ParseIP(u.Hostname()); ip == nil || !ip.IsLoopback() {
			return fmt.Errorf("spec.provider.aws.endpoint must use https (plain http only to a loopback address)")
		}
	default:
		return fmt.Errorf("spec.provider.aws.endpoint must use https")
	}
	for _, a := range f.AllowedEndpoints {
		if au, err := url.Parse(a); err == nil && au.Scheme == u.Scheme && strings.EqualFold(au.Host, u.Host) {
			return nil
		}
	}
	return fmt.Errorf("spec.provider.aws.endpoint %s://%s is not one the operator allows (its --aws-allowed-endpoints)", u.Scheme, u.Host)
}

// cached returns how many AWS clients are kept (for tests).
func (f *KeyServiceFactory) cached() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.aws)
}

// For returns the key service of kr.
func (f *KeyServiceFactory) For(ctx context.Context, kr *rekeyv1alpha1.KeyRotation) (KeyService, error) {
	p := kr.Spec.Provider
	if p == nil || p.AWS == nil {
		return f.Embedded, nil
	}
	if f.NewAWS == nil {
		return nil, &stallError{Reason: ReasonProviderMissing, Terminal: true,
			Err: errors.New("this operator was started without the AWS provider")}
	}
	cfg := AWSConfig{Region: p.AWS.Region, Endpoint: p.AWS.Endpoint}
	if cfg.Endpoint != "" {
		if err := f.endpointAllowed(cfg.Endpoint); err != nil {
			return nil, &stallError{Reason: ReasonEndpointNotAllowed, Terminal: true, Err: err}
		}
	}
	version := ""
	if ref := p.AWS.CredentialsSecretRef; ref != nil {
		var s corev1.Secret
		err := f.Reader.Get(ctx, client.ObjectKey{Namespace: kr.Namespace, Name: ref.Name}, &s)
		switch {
		case apierrors.IsNotFound(err):
			return nil, stall(ReasonCredentialsInvalid, "credentials Secret %s not found", ref.Name)
		case err != nil:
			return nil, fmt.Errorf("reading credentials Secret %s: %w", ref.Name, err)
		case s.Type != rekeyv1alpha1.AWSCredentialsSecretType:
			// Only a Secret made for rekey lends its credentials: an app's
			// own AWS credentials Secret in the namespace cannot be borrowed.
			return nil, stall(ReasonCredentialsInvalid, "credentials Secret %s must be of type %s",
				ref.Name, rekeyv1alpha1.AWSCredentialsSecretType)
		}
		cfg.Static = true
		cfg.AccessKeyID = string(s.Data[CredentialsAccessKeyID])
		cfg.SecretAccessKey = string(s.Data[CredentialsSecretAccessKey])
		cfg.SessionToken = string(s.Data[CredentialsSessionToken])
		if cfg.AccessKeyID == "" || cfg.SecretAccessKey == "" {
			return nil, stall(ReasonCredentialsInvalid, "credentials Secret %s must hold %s and %s",
				ref.Name, CredentialsAccessKeyID, CredentialsSecretAccessKey)
		}
		version = s.ResourceVersion
	} else if cfg.Endpoint != "" {
		// The operator's own AWS identity never signs requests for an
		// endpoint a namespace chose: those signed requests could be replayed
		// against AWS KMS.
		return nil, &stallError{Reason: ReasonEndpointNeedsCreds, Terminal: true,
			Err: errors.New("spec.provider.aws.endpoint requires spec.provider.aws.credentialsSecretRef")}
	}
	key := types.NamespacedName{Namespace: kr.Namespace, Name: kr.Name}
	version = fmt.Sprintf("%s/%d/%s", kr.UID, kr.Generation, version)
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.aws[key]; ok && c.version == version {
		return c.ks, nil
	}
	ks, err := f.NewAWS(ctx, cfg)
	if err != nil {
		return nil, stall(ReasonProviderMissing, "%v", err)
	}
	if f.aws == nil {
		f.aws = map[types.NamespacedName]cachedKeyService{}
	}
	f.aws[key] = cachedKeyService{version: version, ks: ks} // one client per rotation
	return ks, nil
}
