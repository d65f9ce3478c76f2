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
}

// Reviewer checks ServiceAccount tokens with TokenReview.
type Reviewer struct {
	Reviews  TokenReviews
	Audience string
}

const saPrefix = "system:serviceaccount:"

// Review asks the kube-apiserver whether token is a valid token for the
// Reviewer's audience, and returns the ServiceAccount it identifies. A
// refusal wraps ErrRefused; any other error is the kube-apiserver's (the
// token is never in it).
func (r *Reviewer) Review(ctx context.Context, token string) (Review, error) {
	if token == "" || len(token) > MaxServiceAccountToken || !jwtShaped(token) {
		return Review{}, fmt.Errorf("%w: not a JSON Web Token", ErrRefused)
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
	if len(st.User.UID) <= maxUID {
		id.UID = st.User.UID
	}
	exp, err := tokenExpiry(token)
	if err != nil {
		return Review{}, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	return Review{Identity: id, Expires: exp}, nil
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
