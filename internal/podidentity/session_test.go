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
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newTestSessions(t *testing.T, key byte, c *clock) *Sessions {
	t.Helper()
	s, err := NewSessions(bytes.Repeat([]byte{key}, 32), c.now, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var alice = Identity{Namespace: "team-a", Name: "app", UID: "4f1c2b9e-0000-4000-8000-000000000001"}

func TestSessionRoundTrip(t *testing.T) {
	c := &clock{time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
	s := newTestSessions(t, 1, c)
	creds, err := s.Issue(alice, c.t.Add(15*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if !IsSessionKeyID(creds.AccessKeyID) || len(creds.SecretAccessKey) != 30 || len(creds.SessionToken) > MaxTokenLen {
		t.Fatalf("credentials of the wrong shape: %q, secret %d, token %d", creds.AccessKeyID, len(creds.SecretAccessKey), len(creds.SessionToken))
	}
	sess, secret, err := s.Verify(creds.AccessKeyID, creds.SessionToken)
	if err != nil || secret != creds.SecretAccessKey || sess.Identity != alice || !sess.Expires.Equal(creds.Expires) {
		t.Fatalf("Verify: %+v %v", sess, err)
	}
	// Another instance under the same key verifies it; one under another
	// key (another root key) does not.
	if _, _, err := newTestSessions(t, 1, c).Verify(creds.AccessKeyID, creds.SessionToken); err != nil {
		t.Fatalf("a second instance under the same key: %v", err)
	}
	if _, _, err := newTestSessions(t, 2, c).Verify(creds.AccessKeyID, creds.SessionToken); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("an instance under another key: %v", err)
	}
	// Two sessions of one identity differ.
	again, _ := s.Issue(alice, c.t.Add(15*time.Minute))
	if again.AccessKeyID == creds.AccessKeyID || again.SecretAccessKey == creds.SecretAccessKey {
		t.Fatal("two sessions share credentials")
	}
	if _, _, err := s.Verify(again.AccessKeyID, creds.SessionToken); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("a token with another session's access key id: %v", err)
	}
	// Expiry, by the clock.
	c.t = creds.Expires.Add(-time.Second)
	if _, _, err := s.Verify(creds.AccessKeyID, creds.SessionToken); err != nil {
		t.Fatalf("a second before expiry: %v", err)
	}
	c.t = creds.Expires
	if _, _, err := s.Verify(creds.AccessKeyID, creds.SessionToken); !errors.Is(err, ErrExpired) {
		t.Fatalf("at expiry: %v", err)
	}
}

// Every bit of the token matters, and no truncation verifies.
func TestSessionTokenTampering(t *testing.T) {
	c := &clock{time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
	s := newTestSessions(t, 1, c)
	creds, err := s.Issue(alice, c.t.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.RawURLEncoding.DecodeString(creds.SessionToken)
	if err != nil {
		t.Fatal(err)
	}
	for i := range len(raw) * 8 {
		b := bytes.Clone(raw)
		b[i/8] ^= 1 << (i % 8)
		if _, _, err := s.Verify(creds.AccessKeyID, base64.RawURLEncoding.EncodeToString(b)); !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("bit %d flipped: %v", i, err)
		}
	}
	// No other string is the same token: the last character's unused
	// bits count too (strict base64url).
	// Tokens of every length modulo 3, so that the last character has 0, 2
	// and 4 unused bits.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for _, name := range []string{"app", "app1", "app12"} {
		c, err := s.Issue(Identity{Namespace: "team-a", Name: name, UID: alice.UID}, c.t.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		for i := range len(c.SessionToken) {
			for _, ch := range alphabet {
				other := c.SessionToken[:i] + string(ch) + c.SessionToken[i+1:]
				if other == c.SessionToken {
					continue
				}
				if _, _, err := s.Verify(c.AccessKeyID, other); !errors.Is(err, ErrInvalidToken) {
					t.Fatalf("%s: character %d changed to %c: %v", name, i, ch, err)
				}
			}
		}
	}
	for n := range len(raw) {
		if _, _, err := s.Verify(creds.AccessKeyID, base64.RawURLEncoding.EncodeToString(raw[:n])); !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("cut at %d: %v", n, err)
		}
	}
	for _, bad := range []string{"", "!!!", strings.Repeat("A", MaxTokenLen+1), creds.SessionToken + "A", creds.SessionToken + "=="} {
		if _, _, err := s.Verify(creds.AccessKeyID, bad); !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("token %.20q: %v", bad, err)
		}
	}
	for _, akid := range []string{"", "AKIAIOSFODNN7EXAMPLE", strings.ToLower(creds.AccessKeyID), creds.AccessKeyID + "A"} {
		if _, _, err := s.Verify(akid, creds.SessionToken); !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("access key id %q: %v", akid, err)
		}
	}
}

func TestSessionIssueBounds(t *testing.T) {
	c := &clock{time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
	s := newTestSessions(t, 1, c)
	for what, tc := range map[string]struct {
		id  Identity
		exp time.Time
	}{
		"past":              {alice, c.t.Add(-time.Second)},
		"now":               {alice, c.t},
		"over an hour":      {alice, c.t.Add(time.Hour + time.Second)},
		"no namespace":      {Identity{Name: "app"}, c.t.Add(time.Minute)},
		"no name":           {Identity{Namespace: "a"}, c.t.Add(time.Minute)},
		"too long a name":   {Identity{Namespace: "a", Name: strings.Repeat("n", 254)}, c.t.Add(time.Minute)},
		"too long a UID":    {Identity{Namespace: "a", Name: "b", UID: strings.Repeat("u", 65)}, c.t.Add(time.Minute)},
		"too long a namesp": {Identity{Namespace: strings.Repeat("n", 64), Name: "b"}, c.t.Add(time.Minute)},
	} {
		if _, err := s.Issue(tc.id, tc.exp); err == nil {
			t.Errorf("Issue %s: no error", what)
		}
	}
	longest := Identity{Namespace: strings.Repeat("n", 63), Name: strings.Repeat("m", 253), UID: strings.Repeat("u", 64)}
	creds, err := s.Issue(longest, c.t.Add(time.Hour))
	if err != nil || len(creds.SessionToken) > MaxTokenLen {
		t.Fatalf("the longest identity: %d > %d, %v", len(creds.SessionToken), MaxTokenLen, err)
	}
	if sess, _, err := s.Verify(creds.AccessKeyID, creds.SessionToken); err != nil || sess.Identity != longest {
		t.Fatalf("the longest identity: %v", err)
	}
}

// fakeReviews answers TokenReviews with a fixed status: the
// kube-apiserver's own answers are in cmd/rekey's envtest test; this
// checks what Review does with answers it should not trust.
type fakeReviews struct {
	status authnv1.TokenReviewStatus
	got    *authnv1.TokenReview
}

func (f *fakeReviews) Create(_ context.Context, tr *authnv1.TokenReview, _ metav1.CreateOptions) (*authnv1.TokenReview, error) {
	f.got = tr
	out := tr.DeepCopy()
	out.Status = f.status
	return out, nil
}

func jwt(claims string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256"}`)) + "." + enc([]byte(claims)) + "." + enc([]byte("sig"))
}

func TestReview(t *testing.T) {
	now := time.Unix(1796036400, 0)
	bound := map[string]authnv1.ExtraValue{extraPodName: {"app-7d9f"}, extraPodUID: {"0b7e6a55-0000-4000-8000-000000000002"}}
	ok := authnv1.TokenReviewStatus{Authenticated: true, Audiences: []string{"rekey"},
		User: authnv1.UserInfo{Username: "system:serviceaccount:team-a:app", UID: alice.UID, Extra: bound}}
	token := jwt(`{"exp":1796040000,"iat":1796036400,"aud":["rekey"],"sub":"system:serviceaccount:team-a:app"}`)
	f := &fakeReviews{status: ok}
	r := &Reviewer{Reviews: f, Audience: "rekey", MaxLifetime: 24 * time.Hour, Now: func() time.Time { return now }}
	got, err := r.Review(context.Background(), token)
	if err != nil || got.Identity != alice || got.Expires.Unix() != 1796040000 || got.Pod != "app-7d9f" {
		t.Fatalf("Review: %+v %v", got, err)
	}
	if f.got.Spec.Token != token || len(f.got.Spec.Audiences) != 1 || f.got.Spec.Audiences[0] != "rekey" {
		t.Fatalf("the TokenReview asked: %+v", f.got.Spec)
	}
	user := func(name string) authnv1.UserInfo { return authnv1.UserInfo{Username: name, Extra: bound} }
	for what, st := range map[string]authnv1.TokenReviewStatus{
		"not authenticated":      {Authenticated: false, Audiences: []string{"rekey"}, User: ok.User},
		"for another audience":   {Authenticated: true, Audiences: []string{"https://kubernetes.default.svc"}, User: ok.User},
		"no audiences":           {Authenticated: true, User: ok.User},
		"a user's":               {Authenticated: true, Audiences: []string{"rekey"}, User: user("alice")},
		"a node's":               {Authenticated: true, Audiences: []string{"rekey"}, User: user("system:node:n1")},
		"a malformed SA name":    {Authenticated: true, Audiences: []string{"rekey"}, User: user("system:serviceaccount:team-a")},
		"an invalid namespace":   {Authenticated: true, Audiences: []string{"rekey"}, User: user("system:serviceaccount:Team_A:app")},
		"a name with a colon":    {Authenticated: true, Audiences: []string{"rekey"}, User: user("system:serviceaccount:team-a:app:x")},
		"an empty name":          {Authenticated: true, Audiences: []string{"rekey"}, User: user("system:serviceaccount:team-a:")},
		"a look-alike of the SA": {Authenticated: true, Audiences: []string{"rekey"}, User: user("system:serviceaccounts:team-a:app")},
		"bound to no Pod":        {Authenticated: true, Audiences: []string{"rekey"}, User: authnv1.UserInfo{Username: "system:serviceaccount:team-a:app"}},
	} {
		f.status = st
		if _, err := r.Review(context.Background(), token); !errors.Is(err, ErrRefused) {
			t.Errorf("%s: want ErrRefused, got %v", what, err)
		}
	}
	// An unbound token, when allowed.
	f.status = authnv1.TokenReviewStatus{Authenticated: true, Audiences: []string{"rekey"}, User: authnv1.UserInfo{Username: "system:serviceaccount:team-a:app"}}
	unbound := *r
	unbound.AllowUnbound = true
	if got, err := unbound.Review(context.Background(), token); err != nil || got.Pod != "" {
		t.Errorf("an unbound token with AllowUnbound: %+v %v", got, err)
	}
	// What is plainly not a token for this audience never reaches the
	// kube-apiserver.
	f.status, f.got = ok, nil
	sa := `"sub":"system:serviceaccount:team-a:app"`
	for what, tok := range map[string]string{
		"empty": "", "not a JWT": "hello", "a.b.c": "a.b.c", "too long": jwt(strings.Repeat("x", MaxServiceAccountToken)),
		"with a newline": token + "\n", "with a space": "Bearer " + token,
		"alg none":                jwtAlg("none", `{"exp":1796040000,"iat":1796036400,"aud":["rekey"],`+sa+`}`),
		"no alg":                  jwtAlg("", `{"exp":1796040000,"iat":1796036400,"aud":["rekey"],`+sa+`}`),
		"another audience":        jwt(`{"exp":1796040000,"iat":1796036400,"aud":["https://kubernetes.default.svc"],` + sa + `}`),
		"no audience":             jwt(`{"exp":1796040000,"iat":1796036400,` + sa + `}`),
		"not a ServiceAccount's":  jwt(`{"exp":1796040000,"iat":1796036400,"aud":["rekey"],"sub":"alice"}`),
		"no exp":                  jwt(`{"iat":1796036400,"aud":["rekey"],` + sa + `}`),
		"expired":                 jwt(`{"exp":1796036399,"iat":1796032800,"aud":["rekey"],` + sa + `}`),
		"a year long":             jwt(`{"exp":1827572400,"iat":1796036400,"aud":["rekey"],` + sa + `}`),
		"no iat with MaxLifetime": jwt(`{"exp":1796040000,"aud":["rekey"],` + sa + `}`),
		"issued in the future":    jwt(`{"exp":1796043600,"iat":1796040000,"aud":["rekey"],` + sa + `}`),
		"not valid yet":           jwt(`{"exp":1796040000,"iat":1796036400,"nbf":1796039000,"aud":["rekey"],` + sa + `}`),
		"exp not a number":        jwt(`{"exp":"soon","iat":1796036400,"aud":["rekey"],` + sa + `}`),
		"claims not JSON":         jwt(`not json`),
	} {
		if _, err := r.Review(context.Background(), tok); !errors.Is(err, ErrRefused) || f.got != nil {
			t.Errorf("%s: want ErrRefused without asking the kube-apiserver, got %v (asked: %v)", what, err, f.got != nil)
		}
	}
	// aud may be a single string.
	if _, err := r.Review(context.Background(), jwt(`{"exp":1796040000,"iat":1796036400,"aud":"rekey",`+sa+`}`)); err != nil {
		t.Errorf("aud as a string: %v", err)
	}
}

func jwtAlg(alg, claims string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"`+alg+`"}`)) + "." + enc([]byte(claims)) + "." + enc([]byte("sig"))
}

// BenchmarkVerify is what a session costs every request before SigV4.
func BenchmarkVerify(b *testing.B) {
	s, err := NewSessions(bytes.Repeat([]byte{1}, 32), nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	creds, err := s.Issue(alice, time.Now().Add(time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := s.Verify(creds.AccessKeyID, creds.SessionToken); err != nil {
			b.Fatal(err)
		}
	}
}
