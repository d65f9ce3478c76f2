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

package podidentity

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// MaxServiceAccountToken bounds a ServiceAccount token read from a
// request: projected tokens are about 1 KiB.
const MaxServiceAccountToken = 8 << 10

// TokenReviews creates TokenReviews: the typed client-go client
// (AuthenticationV1().TokenReviews()) is one.
type TokenReviews interface {
	Create(ctx context.Context, tr *authnv1.TokenReview, opts metav1.CreateOptions) (*authnv1.TokenReview, error)
}

// ErrRefused means the token does not identify a ServiceAccount for this
// audience: not authenticated by the kube-apiserver (malformed, expired,
// of a deleted ServiceAccount, Pod or Secret, or for another audience),
// or not a ServiceAccount's. Its message says which, for the server's
// log; clients are told only that the token was refused.
var ErrRefused = errors.New("token refused")

// Review is a token the kube-apiserver vouched for.
type Review struct {
	Identity
	// Expires is the token's own expiry (its exp claim), zero when it has
	// none.
	Expires time.Time
	// Pod is the name of the Pod the token is bound to ("" for an unbound
	// token, accepted only with AllowUnbound).
	Pod string
}

// Reviewer checks ServiceAccount tokens with TokenReview.
type Reviewer struct {
	Reviews  TokenReviews
	Audience string
	// MaxLifetime refuses a token whose exp is further than this from its
	// iat (0: no bound). A Pod's projected token lives an hour or so; one
	// made by hand with kubectl create token --duration 8760h lives a
	// year, past every Pod.
	MaxLifetime time.Duration
	// AllowUnbound accepts tokens bound to no Pod (the TokenReview names
	// no authentication.kubernetes.io/pod-name and pod-uid). Off, only a
	// Pod's token is accepted, and it stops working when the Pod is gone.
	AllowUnbound bool
	// Now is the clock for the local checks (default time.Now).
	Now func() time.Time
}

// Extra keys the kube-apiserver sets for a token bound to a Pod.
const (
	extraPodName = "authentication.kubernetes.io/pod-name"
	extraPodUID  = "authentication.kubernetes.io/pod-uid"
)

// clockSkew is how far in the future a token's iat or nbf may be.
const clockSkew = time.Minute

const saPrefix = "system:serviceaccount:"

// Review asks the kube-apiserver whether token is a valid token for the
// Reviewer's audience, and returns the ServiceAccount it identifies. A
// refusal wraps ErrRefused; any other error is the kube-apiserver's (the
// token is never in it).
func (r *Reviewer) Review(ctx context.Context, token string) (Review, error) {
	if err := r.Precheck(token); err != nil {
		return Review{}, err
	}
	tr, err := r.Reviews.Create(ctx, &authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{
		Token:     token,
		Audiences: []string{r.Audience},
	}}, metav1.CreateOptions{})
	if err != nil {
		return Review{}, fmt.Errorf("TokenReview: %w", err)
	}
	st := tr.Status
	switch {
	case !st.Authenticated:
		return Review{}, fmt.Errorf("%w: not authenticated by the kube-apiserver", ErrRefused)
	case !slices.Contains(st.Audiences, r.Audience):
		return Review{}, fmt.Errorf("%w: not for audience %q", ErrRefused, r.Audience)
	}
	id, ok := ParseUsername(st.User.Username)
	if !ok {
		return Review{}, fmt.Errorf("%w: not a ServiceAccount's token", ErrRefused)
	}
	if !r.AllowUnbound && (len(st.User.Extra[extraPodName]) == 0 || len(st.User.Extra[extraPodUID]) == 0) {
		return Review{}, fmt.Errorf("%w: the token is bound to no Pod (a Pod's projected token is needed)", ErrRefused)
	}
	if len(st.User.UID) <= maxUID {
		id.UID = st.User.UID
	}
	exp, err := tokenExpiry(token)
	if err != nil {
		return Review{}, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	var pod string
	if names := st.User.Extra[extraPodName]; len(names) == 1 && len(names[0]) <= maxName {
		pod = names[0]
	}
	return Review{Identity: id, Expires: exp, Pod: pod}, nil
}

// ParseUsername reads system:serviceaccount:NAMESPACE:NAME, with a
// namespace that is a DNS label and a name that is a DNS subdomain.
func ParseUsername(u string) (Identity, bool) {
	rest, ok := strings.CutPrefix(u, saPrefix)
	if !ok {
		return Identity{}, false
	}
	ns, name, ok := strings.Cut(rest, ":")
	if !ok || len(validation.IsDNS1123Label(ns)) > 0 || len(validation.IsDNS1123Subdomain(name)) > 0 {
		return Identity{}, false
	}
	return Identity{Namespace: ns, Name: name}, true
}

// Precheck refuses, without asking the kube-apiserver, a token that cannot
// be a ServiceAccount token for the audience: not a bounded JWT, alg none,
// another audience, no or a past exp, a lifetime over MaxLifetime, an iat
// or nbf in the future, a subject that is not a ServiceAccount. The
// signature is not checked here (the TokenReview does): this only keeps
// what is plainly not a token away from the kube-apiserver.
func (r *Reviewer) Precheck(token string) error {
	if token == "" || len(token) > MaxServiceAccountToken || !jwtShaped(token) {
		return fmt.Errorf("%w: not a JSON Web Token", ErrRefused)
	}
	parts := strings.Split(token, ".")
	var header struct {
		Alg string `json:"alg"`
	}
	if err := decodePart(parts[0], &header); err != nil {
		return fmt.Errorf("%w: the token's header: %w", ErrRefused, err)
	}
	if header.Alg == "" || strings.EqualFold(header.Alg, "none") {
		return fmt.Errorf("%w: the token is not signed", ErrRefused)
	}
	var claims struct {
		Aud audience     `json:"aud"`
		Exp *json.Number `json:"exp"`
		Iat *json.Number `json:"iat"`
		Nbf *json.Number `json:"nbf"`
		Sub string       `json:"sub"`
	}
	if err := decodePart(parts[1], &claims); err != nil {
		return fmt.Errorf("%w: the token's claims: %w", ErrRefused, err)
	}
	now := time.Now()
	if r.Now != nil {
		now = r.Now()
	}
	exp, okExp := unixClaim(claims.Exp)
	iat, okIat := unixClaim(claims.Iat)
	switch {
	case !slices.Contains(claims.Aud, r.Audience):
		return fmt.Errorf("%w: not for audience %q", ErrRefused, r.Audience)
	case !strings.HasPrefix(claims.Sub, saPrefix):
		return fmt.Errorf("%w: not a ServiceAccount's token", ErrRefused)
	case !okExp || !exp.After(now):
		return fmt.Errorf("%w: no exp claim, or expired", ErrRefused)
	case claims.Iat != nil && (!okIat || iat.After(now.Add(clockSkew))):
		return fmt.Errorf("%w: the iat claim is not a past time", ErrRefused)
	case claims.Nbf != nil && !before(claims.Nbf, now.Add(clockSkew)):
		return fmt.Errorf("%w: the token is not valid yet", ErrRefused)
	case r.MaxLifetime > 0 && (!okIat || exp.Sub(iat) > r.MaxLifetime):
		return fmt.Errorf("%w: the token lives longer than %v (or says not since when)", ErrRefused, r.MaxLifetime)
	}
	return nil
}

// audience reads the aud claim: a string or an array of strings.
type audience []string

func (a *audience) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*a = []string{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return errors.New("aud is neither a string nor a list of strings")
	}
	*a = many
	return nil
}

// decodePart decodes one base64url JSON part of a JWT.
func decodePart(part string, into any) error {
	b, err := base64.RawURLEncoding.DecodeString(part)
	if err != nil {
		return errors.New("not base64url")
	}
	if err := json.Unmarshal(b, into); err != nil {
		return errors.New("not a JSON object of the expected claims")
	}
	return nil
}

// unixClaim reads a NumericDate claim.
func unixClaim(n *json.Number) (time.Time, bool) {
	if n == nil {
		return time.Time{}, false
	}
	v, err := n.Int64()
	if err != nil || v <= 0 {
		return time.Time{}, false
	}
	return time.Unix(v, 0), true
}

func before(n *json.Number, t time.Time) bool {
	v, ok := unixClaim(n)
	return ok && !v.After(t)
}

// jwtShaped reports whether a token has a JWT's three base64url parts: a
// cheap filter before the kube-apiserver is asked.
func jwtShaped(t string) bool {
	if strings.Count(t, ".") != 2 {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') && c != '-' && c != '_' && c != '.' {
			return false
		}
	}
	return true
}

// tokenExpiry reads a JWT's exp claim. It is called only after the
// kube-apiserver authenticated the token, so the claims are the issuer's.
func tokenExpiry(t string) (time.Time, error) {
	parts := strings.Split(t, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}, errors.New("the token's claims are not base64url")
	}
	var claims struct {
		Exp *json.Number `json:"exp"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return time.Time{}, errors.New("the token's claims are not JSON")
	}
	if claims.Exp == nil {
		return time.Time{}, nil
	}
	exp, err := claims.Exp.Int64()
	if err != nil || exp <= 0 {
		return time.Time{}, errors.New("the token's exp claim is not a time")
	}
	return time.Unix(exp, 0), nil
}
