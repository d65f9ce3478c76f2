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

package awsapi

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/rekey-dev/rekey/internal/kms"
	"github.com/rekey-dev/rekey/internal/podidentity"
)

// CredentialsPath is where Pods get session credentials: the AWS
// container-credentials protocol (AWS_CONTAINER_CREDENTIALS_FULL_URI and
// AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE), as EKS Pod Identity serves it.
const CredentialsPath = "/v1/credentials"

// DefaultMaxConcurrentReviews bounds the TokenReviews in flight at once.
const DefaultMaxConcurrentReviews = 16

// reviewWait is how long a credentials request waits for a TokenReview
// slot before it is told to retry (429, which the SDKs retry).
const reviewWait = 2 * time.Second

// reviewTimeout bounds one TokenReview: a slow or hung kube-apiserver
// holds a slot at most that long (less than the SDKs' own timeouts).
const reviewTimeout = 5 * time.Second

// DefaultReviewsPerSecond is the default rate of TokenReviews (burst:
// twice as many).
const DefaultReviewsPerSecond = 50

// TokenReviewer checks a ServiceAccount token (podidentity.Reviewer).
type TokenReviewer interface {
	Review(ctx context.Context, token string) (podidentity.Review, error)
}

// PodIdentity configures the credentials endpoint and session credentials.
type PodIdentity struct {
	// Reviewer checks the token a Pod sends.
	Reviewer TokenReviewer
	// Sessions mints and verifies session credentials; its clock should
	// be the server's (Options.Now).
	Sessions *podidentity.Sessions
	// Duration is how long issued credentials last, at most
	// podidentity.MaxDuration, and never past the token's own expiry.
	Duration time.Duration
	// MaxConcurrentReviews bounds the TokenReviews in flight (default
	// DefaultMaxConcurrentReviews): a flood of tokens costs the
	// kube-apiserver at most that many requests at once.
	MaxConcurrentReviews int
	// ReviewsPerSecond bounds the rate of TokenReviews, with a burst of
	// twice as many (default DefaultReviewsPerSecond); beyond it a
	// request is told to retry (429). Tokens refused by the local checks
	// (podidentity.Reviewer.Precheck) cost none.
	ReviewsPerSecond float64
	// PolicyFresh, when set, reports whether the keys' policy tags this
	// server reads are current (its keystore refreshes succeed): while it
	// returns an error, session principals are refused
	// (DependencyTimeoutException, which the SDKs retry) instead of being
	// authorised by tags that may since have been revoked.
	PolicyFresh func() error
}

type podIdentity struct {
	*PodIdentity
	slots   chan struct{}
	limiter *rate.Limiter
}

func newPodIdentity(p *PodIdentity) *podIdentity {
	if p == nil {
		return nil
	}
	n := p.MaxConcurrentReviews
	if n <= 0 {
		n = DefaultMaxConcurrentReviews
	}
	perSecond := p.ReviewsPerSecond
	if perSecond <= 0 {
		perSecond = DefaultReviewsPerSecond
	}
	return &podIdentity{PodIdentity: p, slots: make(chan struct{}, n),
		limiter: rate.NewLimiter(rate.Limit(perSecond), max(1, int(2*perSecond)))}
}

// prechecker is a TokenReviewer that can refuse a token without asking
// the kube-apiserver (podidentity.Reviewer).
type prechecker interface {
	Precheck(token string) error
}

// credentialsResponse is the container-credentials response the AWS SDKs
// read (the Go SDK's endpointcreds provider, among others).
type credentialsResponse struct {
	AccessKeyID     string `json:"AccessKeyId"`
	SecretAccessKey string `json:"SecretAccessKey"`
	Token           string `json:"Token"`
	Expiration      string `json:"Expiration"`
}

// credentialsError is the error body the SDKs report (with Content-Type
// exactly application/json).
type credentialsError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// serveCredentials answers GET /v1/credentials: the Authorization header's
// ServiceAccount token is checked with a TokenReview (authenticated, for
// the audience, a ServiceAccount's, not expired by this server's clock)
// and traded for session credentials of that ServiceAccount, lasting
// Duration or until the token expires, whichever is sooner. Refusals say
// only that the token was refused (the reason is logged at V(1)); nothing
// is kept from a token that was not accepted.
func (s *Server) serveCredentials(w http.ResponseWriter, r *http.Request, rec *auditRecord) {
	rec.operation = "GetCredentials"
	fail := func(status int, code kms.ErrorCode, msg string) {
		rec.status, rec.code = status, string(code)
		b, _ := json.Marshal(credentialsError{Code: string(code), Message: msg})
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(status)
		_, _ = w.Write(b)
	}
	if r.Method != http.MethodGet {
		fail(http.StatusMethodNotAllowed, kms.CodeUnknownOperation, "credentials are fetched with GET")
		return
	}
	if !s.hostAllowed(r) {
		fail(http.StatusForbidden, kms.CodeAccessDenied, "the request's Host header does not name this endpoint")
		return
	}
	auth := r.Header.Values("Authorization")
	if len(auth) > 1 {
		fail(http.StatusBadRequest, kms.CodeValidation, "the request has more than one Authorization header")
		return
	}
	var token string
	if len(auth) == 1 {
		token = strings.TrimPrefix(auth[0], "Bearer ")
	}
	if token == "" {
		fail(http.StatusUnauthorized, kms.CodeMissingAuthToken, "a ServiceAccount token is required in the Authorization header")
		return
	}
	const refused = "the ServiceAccount token was refused"
	if len(token) > podidentity.MaxServiceAccountToken {
		fail(http.StatusForbidden, kms.CodeAccessDenied, refused)
		return
	}
	if pc, ok := s.pod.Reviewer.(prechecker); ok {
		if err := pc.Precheck(token); err != nil {
			s.log.V(1).Info("credentials refused", "requestId", rec.requestID, "reason", err.Error())
			fail(http.StatusForbidden, kms.CodeAccessDenied, refused)
			return
		}
	}
	if !s.pod.limiter.Allow() {
		fail(http.StatusTooManyRequests, kms.CodeThrottling, "too many credential requests; retry")
		return
	}
	wait := time.NewTimer(reviewWait)
	select {
	case s.pod.slots <- struct{}{}:
		wait.Stop()
	case <-wait.C:
		fail(http.StatusTooManyRequests, kms.CodeThrottling, "too many credential requests at once; retry")
		return
	case <-r.Context().Done():
		wait.Stop()
		fail(http.StatusServiceUnavailable, kms.CodeDependencyTimeout, "the request ended before its token was checked")
		return
	}
	// The whole request is read (a GET has no body) and holds one of the
	// few review slots: the connection limit must not close it while its
	// token is reviewed. (Requests still waiting for a slot are not
	// protected, so waiting requests cannot pin the limit.)
	markRead(r)
	ctx, cancel := context.WithTimeout(r.Context(), reviewTimeout)
	review, err := s.pod.Reviewer.Review(ctx, token)
	cancel()
	<-s.pod.slots
	switch {
	case errors.Is(err, podidentity.ErrRefused):
		s.log.V(1).Info("credentials refused", "requestId", rec.requestID, "reason", err.Error())
		fail(http.StatusForbidden, kms.CodeAccessDenied, refused)
		return
	case err != nil && r.Context().Err() != nil:
		// The client left: its own doing, not the kube-apiserver's.
		s.log.V(1).Info("credentials request ended during its TokenReview", "requestId", rec.requestID)
		fail(http.StatusServiceUnavailable, kms.CodeDependencyTimeout, "the request ended before its token was checked")
		return
	case err != nil:
		s.log.Error(err, "checking a ServiceAccount token", "requestId", rec.requestID)
		fail(http.StatusServiceUnavailable, kms.CodeDependencyTimeout, "the token could not be checked now; retry (request "+rec.requestID+")")
		return
	}
	now := s.now()
	expires := now.Add(s.pod.Duration)
	if !review.Expires.IsZero() && review.Expires.Before(expires) {
		expires = review.Expires
	}
	if expires.Sub(now) < time.Second {
		s.log.V(1).Info("credentials refused", "requestId", rec.requestID, "reason", "the token has expired by this server's clock")
		fail(http.StatusForbidden, kms.CodeAccessDenied, refused)
		return
	}
	creds, err := s.pod.Sessions.Issue(review.Identity, expires)
	if err != nil {
		s.log.Error(err, "issuing session credentials", "requestId", rec.requestID)
		fail(http.StatusInternalServerError, kms.CodeInternal, "internal error (request "+rec.requestID+")")
		return
	}
	rec.principal, rec.session, rec.pod = review.Username(), creds.AccessKeyID, review.Pod
	s.log.V(1).Info("issued session credentials", "requestId", rec.requestID, "principal", rec.principal,
		"pod", review.Pod, "accessKeyId", creds.AccessKeyID, "expiration", creds.Expires.UTC().Format(time.RFC3339))
	b, err := json.Marshal(credentialsResponse{
		AccessKeyID:     creds.AccessKeyID,
		SecretAccessKey: creds.SecretAccessKey,
		Token:           creds.SessionToken,
		Expiration:      creds.Expires.UTC().Format(time.RFC3339),
	})
	if err != nil {
		fail(http.StatusInternalServerError, kms.CodeInternal, "internal error (request "+rec.requestID+")")
		return
	}
	rec.status = http.StatusOK
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(b)
}
