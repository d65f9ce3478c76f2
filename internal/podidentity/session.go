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

// Package podidentity gives Pods credentials for the key service from
// their ServiceAccount tokens: Reviewer checks a token with the
// kube-apiserver (TokenReview), Sessions mints short-lived AWS-style
// session credentials for the ServiceAccount and verifies them on every
// request.
//
// Session credentials are stateless: the session token carries the
// principal and the expiry under an HMAC, and the access key id and the
// secret access key are derived from that HMAC, all under a key derived
// from the keystore's root key (SessionKeyInfo). Every replica that holds
// the root key verifies every replica's credentials with nothing shared
// but the root key; a new root key invalidates every session.
//
// The session token, before base64url (no padding):
//
//	offset  size  field
//	0       1     version = 1
//	1       8     expiry, Unix seconds, uint64 big-endian
//	9       16    session id (random)
//	25      1     n1 = length of the namespace (1-63)
//	26      n1    namespace
//	26+n1   1     n2 = length of the ServiceAccount name (1-253)
//	27+n1   n2    ServiceAccount name
//	27+n1+n2 1    n3 = length of the ServiceAccount UID (0-64)
//	28+n1+n2 n3   ServiceAccount UID
//	…       32    HMAC-SHA256(token MAC key, every byte above)
//
// AccessKeyId is "ASIA" and the base32 of the first 10 bytes of
// HMAC-SHA256(credential key, the token's HMAC); SecretAccessKey is the
// base64 of its other 22 bytes. The two HMAC keys are the halves of
// HKDF-Expand(the derived key, "token mac | credentials", 64).
package podidentity

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
	"sync"
	"time"
)

// SessionKeyInfo starts the HKDF info string of the key session
// credentials are made under (keystore.RootKey.DeriveKey): see KeyInfo.
const SessionKeyInfo = "rekey session credentials v1"

// KeyInfo is the HKDF info string for the sessions of one key service: a
// keystore location (as --keystore names it) and a token audience. Two
// deployments that share a root key but not both of these do not accept
// each other's sessions.
func KeyInfo(keystore, audience string) string {
	return SessionKeyInfo + "\x00" + keystore + "\x00" + audience
}

const (
	tokenVersion = 1
	idLen        = 16
	macLen       = sha256.Size
	headerLen    = 1 + 8 + idLen
	maxNamespace = 63
	maxName      = 253
	maxUID       = 64
	maxRawToken  = headerLen + 3 + maxNamespace + maxName + maxUID + macLen
	// MaxTokenLen bounds a session token as sent (base64url of the
	// longest token): anything longer is refused before it is decoded.
	MaxTokenLen = (maxRawToken*8 + 5) / 6
	// KeyIDPrefix starts every session access key id, as AWS's temporary
	// credentials do.
	KeyIDPrefix = "ASIA"
	keyIDLen    = 20
	// MaxDuration is the longest a session may last.
	MaxDuration = time.Hour
)

var (
	b32 = base32.StdEncoding.WithPadding(base32.NoPadding)
	// b64 decodes strictly: a token has one encoding (the unused low bits
	// of its last character must be zero), so no two strings are the same
	// session.
	b64 = base64.RawURLEncoding.Strict()
)

// Identity is a ServiceAccount a token was issued to.
type Identity struct {
	Namespace string
	Name      string
	// UID is the ServiceAccount's UID when the TokenReview gave it.
	UID string
}

// Username is the identity as Kubernetes names it,
// system:serviceaccount:NAMESPACE:NAME; the key service's audit log and
// denials name session principals so.
func (i Identity) Username() string { return "system:serviceaccount:" + i.Namespace + ":" + i.Name }

// Session is a verified session: who, until when, and its random id.
type Session struct {
	Identity
	Expires time.Time
	ID      [idLen]byte
}

// Credentials are what the credentials endpoint returns.
type Credentials struct {
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
	Expires         time.Time
}

// Errors of Verify. Both mean the request is refused; ErrExpired is told
// apart so that clients see ExpiredTokenException, as from AWS.
var (
	ErrInvalidToken = errors.New("the security token included in the request is invalid")
	ErrExpired      = errors.New("the security token included in the request is expired")
)

// Sessions mints and verifies session credentials under one key. It is
// safe for concurrent use.
type Sessions struct {
	now  func() time.Time
	rand io.Reader
	// tokenMACs and credMACs are HMAC-SHA256 keyed by the two derived keys.
	tokenMACs, credMACs sync.Pool
}

// NewSessions returns Sessions under key (32 bytes from
// keystore.RootKey.DeriveKey(SessionKeyInfo)). now and rand default to
// time.Now and crypto/rand.
func NewSessions(key []byte, now func() time.Time, random io.Reader) (*Sessions, error) {
	if len(key) < 32 {
		return nil, fmt.Errorf("the session key must be at least 32 bytes, got %d", len(key))
	}
	sub, err := hkdf.Expand(sha256.New, key, "token mac | credentials", 64)
	if err != nil {
		return nil, err
	}
	macKey, credKey := sub[:32], sub[32:]
	if now == nil {
		now = time.Now
	}
	if random == nil {
		random = rand.Reader
	}
	return &Sessions{
		now:       now,
		rand:      random,
		tokenMACs: sync.Pool{New: func() any { return hmac.New(sha256.New, macKey) }},
		credMACs:  sync.Pool{New: func() any { return hmac.New(sha256.New, credKey) }},
	}, nil
}

// Issue mints credentials for id that expire at expires (truncated to the
// second), which must be in the future and at most MaxDuration away.
func (s *Sessions) Issue(id Identity, expires time.Time) (Credentials, error) {
	now := s.now()
	expires = expires.Truncate(time.Second)
	switch {
	case !expires.After(now):
		return Credentials{}, errors.New("a session must end in the future")
	case expires.Sub(now) > MaxDuration:
		return Credentials{}, fmt.Errorf("a session lasts at most %v", MaxDuration)
	case id.Namespace == "" || len(id.Namespace) > maxNamespace || id.Name == "" || len(id.Name) > maxName || len(id.UID) > maxUID:
		return Credentials{}, errors.New("the identity's namespace, name or UID is empty or too long")
	}
	raw := make([]byte, headerLen, maxRawToken)
	raw[0] = tokenVersion
	binary.BigEndian.PutUint64(raw[1:9], uint64(expires.Unix()))
	if _, err := io.ReadFull(s.rand, raw[9:headerLen]); err != nil {
		return Credentials{}, fmt.Errorf("reading randomness: %w", err)
	}
	for _, f := range []string{id.Namespace, id.Name, id.UID} {
		raw = append(append(raw, byte(len(f))), f...)
	}
	raw = s.tokenMAC(raw, raw)
	akid, secret := s.derive(raw[len(raw)-macLen:])
	return Credentials{AccessKeyID: akid, SecretAccessKey: secret, SessionToken: b64.EncodeToString(raw), Expires: expires}, nil
}

// IsSessionKeyID reports whether an access key id has the form of a
// session's.
func IsSessionKeyID(akid string) bool {
	return len(akid) == keyIDLen && strings.HasPrefix(akid, KeyIDPrefix)
}

// Verify checks a session token and that akid is the access key id made
// with it, and returns the session and its secret access key. The token's
// HMAC is checked (in constant time) before anything in it is believed,
// then the expiry against the clock.
func (s *Sessions) Verify(akid, token string) (Session, string, error) {
	var sess Session
	if len(token) > MaxTokenLen || !IsSessionKeyID(akid) {
		return sess, "", ErrInvalidToken
	}
	var buf [maxRawToken]byte
	n, err := b64.Decode(buf[:], []byte(token))
	if err != nil || n < headerLen+3+macLen {
		return sess, "", ErrInvalidToken
	}
	raw := buf[:n]
	body, tag := raw[:n-macLen], raw[n-macLen:]
	var want [macLen]byte
	if !hmac.Equal(s.tokenMAC(want[:0], body), tag) {
		return sess, "", ErrInvalidToken
	}
	gotID, secret := s.derive(tag)
	if subtle.ConstantTimeCompare([]byte(gotID), []byte(akid)) != 1 {
		return sess, "", ErrInvalidToken
	}
	// The token is ours from here on; parse it anyway as if it were not.
	if body[0] != tokenVersion {
		return sess, "", ErrInvalidToken
	}
	exp := binary.BigEndian.Uint64(body[1:9])
	copy(sess.ID[:], body[9:headerLen])
	rest := body[headerLen:]
	var fields [3]string
	for i := range fields {
		if len(rest) < 1 || len(rest) < 1+int(rest[0]) {
			return sess, "", ErrInvalidToken
		}
		fields[i], rest = string(rest[1:1+int(rest[0])]), rest[1+int(rest[0]):]
	}
	if len(rest) != 0 || fields[0] == "" || fields[1] == "" || exp > 1<<62 {
		return sess, "", ErrInvalidToken
	}
	sess.Namespace, sess.Name, sess.UID = fields[0], fields[1], fields[2]
	sess.Expires = time.Unix(int64(exp), 0)
	if !s.now().Before(sess.Expires) {
		return sess, "", ErrExpired
	}
	return sess, secret, nil
}

// tokenMAC appends HMAC(token MAC key, data) to dst.
func (s *Sessions) tokenMAC(dst, data []byte) []byte {
	m := s.tokenMACs.Get().(hash.Hash)
	m.Reset()
	_, _ = m.Write(data)
	dst = m.Sum(dst)
	s.tokenMACs.Put(m)
	return dst
}

// derive returns the access key id and secret access key made with a
// token's HMAC.
func (s *Sessions) derive(tag []byte) (akid, secret string) {
	m := s.credMACs.Get().(hash.Hash)
	m.Reset()
	_, _ = m.Write(tag)
	var sum [sha256.Size]byte
	out := m.Sum(sum[:0])
	s.credMACs.Put(m)
	return KeyIDPrefix + b32.EncodeToString(out[:10]), base64.RawStdEncoding.EncodeToString(out[10:])
}
