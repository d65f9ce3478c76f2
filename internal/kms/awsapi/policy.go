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
	"cmp"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/rekey-dev/rekey/internal/keypolicy"
	"github.com/rekey-dev/rekey/internal/kms"
	"github.com/rekey-dev/rekey/internal/podidentity"
)

// Policy says what each principal (an access key id of the credentials)
// may do. It is read from a JSON file:
//
//	{
//	  "principals": {
//	    "AKIDADMIN": {"admin": true},
//	    "AKIDREKEY": {
//	      "operations": ["DescribeKey", "ListResourceTags", "ReEncrypt"],
//	      "keys": ["alias/billing-2025", "alias/billing-2026"]
//	    }
//	  }
//	}
//
// An admin principal may call every operation on every key. Any other
// principal may call only the operations it lists ("*": every operation
// that is not an admin operation) and only on the keys it lists: key ids,
// key ARNs, alias names or alias ARNs (an alias stands for the key it
// points to when the request arrives), or "*" for every key. An operation
// that names no key (ListKeys, ListAliases without KeyId) needs "*".
// ReEncrypt needs the operation on the blob's key and on the destination.
// Admin operations (AdminOperations) are for admin principals only. An
// access key with no entry may authenticate but do nothing.
type Policy struct {
	Principals map[string]*Principal `json:"principals"`
}

// Principal is one access key id's rights.
type Principal struct {
	Admin      bool     `json:"admin,omitempty"`
	Operations []string `json:"operations,omitempty"`
	Keys       []string `json:"keys,omitempty"`
}

// AdminOperations create keys, change their state, tags, aliases, grants
// and material: only admin principals may call them.
var AdminOperations = []string{
	"CancelKeyDeletion", "CreateAlias", "CreateGrant", "CreateKey", "DeleteAlias", "DisableKey",
	"EnableKey", "RetireGrant", "RotateKeyOnDemand", "ScheduleKeyDeletion", "TagResource",
	"UntagResource", "UpdateAlias",
}

// KeyOperations are the operations a non-admin principal may be given.
var KeyOperations = []string{
	"Decrypt", "DescribeKey", "Encrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext",
	"ListAliases", "ListGrants", "ListKeyRotations", "ListKeys", "ListResourceTags", "ReEncrypt",
}

// ParsePolicy reads a policy document strictly: unknown fields, a principal
// or field named twice, an unknown operation or a malformed key reference
// is an error.
func ParsePolicy(b []byte) (*Policy, error) {
	var p Policy
	if err := decodeStrict(b, &p); err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	if len(p.Principals) == 0 {
		return nil, fmt.Errorf("policy: no principals")
	}
	for _, id := range sortedKeys(p.Principals) {
		pr := p.Principals[id]
		if pr == nil {
			return nil, fmt.Errorf("policy: principal %s is null", id)
		}
		if pr.Admin && (len(pr.Operations) > 0 || len(pr.Keys) > 0) {
			return nil, fmt.Errorf("policy: principal %s is an admin: it may do everything, so it lists no operations or keys", id)
		}
		for _, op := range pr.Operations {
			switch {
			case op == "*" || slices.Contains(KeyOperations, op):
			case slices.Contains(AdminOperations, op):
				return nil, fmt.Errorf("policy: principal %s: %s is an admin operation; give the principal \"admin\": true instead", id, op)
			default:
				return nil, fmt.Errorf("policy: principal %s: unknown operation %q", id, op)
			}
		}
		for _, k := range pr.Keys {
			if k != "*" && !validKeyRef(k) {
				return nil, fmt.Errorf("policy: principal %s: %q is not a key id, key ARN, alias name or alias ARN", id, k)
			}
		}
		if !pr.Admin && (len(pr.Operations) == 0 || len(pr.Keys) == 0) {
			return nil, fmt.Errorf("policy: principal %s may do nothing: give it operations and keys, or \"admin\": true", id)
		}
	}
	return &p, nil
}

// ReadPolicyFile reads a policy file.
func ReadPolicyFile(path string) (*Policy, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the policy: %w", err)
	}
	p, err := ParsePolicy(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// Check reports what does not fit between the policy, the credentials and
// the engine: a principal with no credentials, or a key ARN of another
// region or account (it would never match). Credentials without a policy
// entry are returned as a list: they authenticate and may do nothing.
func (p *Policy) Check(e *kms.Engine, creds Credentials) (unlisted []string, err error) {
	keyPrefix := e.KeyARN("")
	aliasPrefix := strings.TrimSuffix(keyPrefix, "key/") + "alias/"
	for _, id := range sortedKeys(p.Principals) {
		if _, ok := creds[id]; !ok {
			return nil, fmt.Errorf("policy: principal %s has no credentials", id)
		}
		for _, k := range p.Principals[id].Keys {
			if strings.HasPrefix(k, "arn:") && !strings.HasPrefix(k, keyPrefix) && !strings.HasPrefix(k, aliasPrefix) {
				return nil, fmt.Errorf("policy: principal %s: %s is not in this key service's region and account (%s)", id, k, strings.TrimSuffix(keyPrefix, "key/"))
			}
		}
	}
	for _, id := range sortedKeys(creds) {
		if _, ok := p.Principals[id]; !ok {
			unlisted = append(unlisted, id)
		}
	}
	return unlisted, nil
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// validKeyRef reports whether s is a key id, key ARN, alias name or alias
// ARN in form.
func validKeyRef(s string) bool {
	if strings.HasPrefix(s, "arn:") {
		a, ok := kms.SplitARN(s)
		if !ok || a.Partition != "aws" || a.Service != "kms" || a.Region == "" || a.Account == "" {
			return false
		}
		s = a.Resource
		if id, ok := strings.CutPrefix(s, "key/"); ok {
			return isKeyID(id)
		}
	}
	if name, ok := strings.CutPrefix(s, "alias/"); ok {
		return name != "" && len(name) <= 250 && !strings.ContainsFunc(name, func(r rune) bool { return !aliasChar(r) })
	}
	return isKeyID(s)
}

// isKeyID reports whether s is a key id: a lower-case UUID, as the engine
// makes them.
func isKeyID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !lowerHex(c) {
				return false
			}
		}
	}
	return true
}

func aliasChar(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '/' || r == '_' || r == '-'
}

func lowerHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' }

// grant is a principal's compiled rights.
type grant struct {
	id      string
	admin   bool
	allOps  bool
	ops     map[string]bool
	allKeys bool
	arns    map[string]bool // key ARNs
	aliases []string        // alias names, resolved per request
	// session is set for a session principal (pod identity): what it may
	// do is in the keys' policy tags, not in the grant.
	session *podidentity.Session
}

// compile turns the policy into grants, key ids made ARNs, alias ARNs made
// alias names. nil gives every credential admin rights (one-credential
// mode).
func compilePolicy(p *Policy, e *kms.Engine, creds Credentials) map[string]*grant {
	out := map[string]*grant{}
	if p == nil {
		for id := range creds {
			out[id] = &grant{id: id, admin: true}
		}
		return out
	}
	keyPrefix := e.KeyARN("")
	aliasPrefix := strings.TrimSuffix(keyPrefix, "key/") + "alias/"
	for id, pr := range p.Principals {
		g := &grant{id: id, admin: pr.Admin, ops: map[string]bool{}, arns: map[string]bool{}}
		for _, op := range pr.Operations {
			if op == "*" {
				g.allOps = true
			} else if slices.Contains(KeyOperations, op) {
				g.ops[op] = true
			}
		}
		for _, k := range pr.Keys {
			switch {
			case k == "*":
				g.allKeys = true
			case strings.HasPrefix(k, keyPrefix):
				g.arns[k] = true
			case strings.HasPrefix(k, aliasPrefix):
				g.aliases = append(g.aliases, "alias/"+strings.TrimPrefix(k, aliasPrefix))
			case strings.HasPrefix(k, "alias/"):
				g.aliases = append(g.aliases, k)
			case isKeyID(k):
				g.arns[e.KeyARN(k)] = true
			}
			// An ARN of another region or account never matches (Check
			// reports it).
		}
		out[id] = g
	}
	return out
}

// keyRefs are the keys a request names, as it names them. blob is a
// ciphertext whose header names a key (Decrypt, ReEncrypt).
type keyRefs struct {
	refs []string
	blob []byte
	// hasBlob is set for operations that read a blob (it must parse).
	hasBlob bool
}

// denied is the AccessDeniedException for a principal, an operation and,
// when there is one, a key.
func denied(id, op, key string) error {
	if key == "" {
		return &kms.Error{Code: kms.CodeAccessDenied, Message: fmt.Sprintf("access key %s is not allowed to call %s", id, op)}
	}
	return &kms.Error{Code: kms.CodeAccessDenied, Message: fmt.Sprintf("access key %s is not allowed to call %s on key %s", id, op, key)}
}

// authorize decides whether g may call op on the keys in r, and returns
// the keys for the audit record: key ARNs where the request or the blob
// named one, the names as given otherwise.
func (s *Server) authorize(g *grant, op string, r keyRefs, keys []string) ([]string, error) {
	if g.session != nil {
		return s.authorizeSession(g, op, r, keys)
	}
	if !g.admin && (slices.Contains(AdminOperations, op) || !g.allOps && !g.ops[op]) {
		return keys, denied(g.id, op, "")
	}
	var blobKey string
	if r.hasBlob && len(r.blob) > 0 {
		b, err := kms.ParseBlob(r.blob)
		if err != nil && !g.admin {
			return keys, err
		}
		if err == nil {
			blobKey = s.engine.KeyARN(b.KeyID)
			keys = append(keys, blobKey)
		}
	}
	if g.admin {
		for _, ref := range r.refs {
			if ref != "" {
				keys = append(keys, auditKey(s.arnOr(ref)))
			}
		}
		return keys, nil
	}
	c := checker{s: s, g: g}
	named := blobKey != ""
	if named && !c.allows(blobKey) {
		return keys, denied(g.id, op, blobKey)
	}
	for _, ref := range r.refs {
		if ref == "" {
			continue
		}
		named = true
		arn := s.arnOf(ref)
		if arn == "" && !g.allKeys {
			// An alias: resolve it to the key it names now.
			// (KeyTag resolves as DescribeKey does, without building
			// its response: this is on every request's path.)
			resolved, _, err := s.engine.KeyTag(ref, "")
			if err != nil {
				// Not NotFoundException: that would tell a principal
				// which aliases exist outside its keys.
				return append(keys, auditKey(ref)), denied(g.id, op, auditKey(ref))
			}
			arn = resolved
		}
		keys = append(keys, auditKey(cmp.Or(arn, ref)))
		if !c.allows(arn) {
			return keys, denied(g.id, op, auditKey(ref))
		}
	}
	if !named && !g.allKeys {
		// ListKeys, ListAliases without a key: every key's name.
		return keys, denied(g.id, op, "")
	}
	return keys, nil
}

// authorizeSession decides for a session principal (a ServiceAccount):
// only Decrypt, Encrypt, GenerateDataKey and
// GenerateDataKeyWithoutPlaintext, and only on keys whose policy tag for
// the operation (keypolicy.TagFor) lists the ServiceAccount or its
// namespace — every key the request uses: the blob's for Decrypt, and the
// KeyId it names (an alias stands for the key it points to now). A key or
// alias that does not exist is a denial too, so nothing can be learned
// about keys outside the principal's policy.
func (s *Server) authorizeSession(g *grant, op string, r keyRefs, keys []string) ([]string, error) {
	tag := keypolicy.TagFor(op)
	if tag == "" {
		return keys, sessionDenied(g.id, op, "")
	}
	if s.pod != nil && s.pod.PolicyFresh != nil {
		if err := s.pod.PolicyFresh(); err != nil {
			return keys, &kms.Error{Code: kms.CodeDependencyTimeout, Message: "the key policy could not be read from the keystore lately; retry"}
		}
	}
	ns, name := g.session.Namespace, g.session.Name
	named := false
	if r.hasBlob && len(r.blob) > 0 {
		b, err := kms.ParseBlob(r.blob)
		if err != nil {
			return keys, err
		}
		named = true
		arn, value, err := s.engine.KeyTag(b.KeyID, tag)
		if err != nil {
			arn = s.engine.KeyARN(b.KeyID)
		}
		keys = append(keys, arn)
		if err != nil || !keypolicy.Allows(value, ns, name) {
			return keys, sessionDenied(g.id, op, arn)
		}
	}
	for _, ref := range r.refs {
		if ref == "" {
			continue
		}
		named = true
		arn, value, err := s.engine.KeyTag(ref, tag)
		if err != nil {
			return append(keys, auditKey(ref)), sessionDenied(g.id, op, auditKey(ref))
		}
		keys = append(keys, arn)
		if !keypolicy.Allows(value, ns, name) {
			return keys, sessionDenied(g.id, op, auditKey(ref))
		}
	}
	if !named {
		return keys, sessionDenied(g.id, op, "")
	}
	return keys, nil
}

// sessionDenied is the AccessDeniedException for a session principal.
func sessionDenied(principal, op, key string) error {
	if key == "" {
		return &kms.Error{Code: kms.CodeAccessDenied, Message: fmt.Sprintf("%s is not allowed to call %s", principal, op)}
	}
	return &kms.Error{Code: kms.CodeAccessDenied, Message: fmt.Sprintf("%s is not allowed to call %s on key %s", principal, op, key)}
}

// checker decides key by key for one request: the aliases of the grant
// are resolved once, when a key is not among its ARNs.
type checker struct {
	s        *Server
	g        *grant
	resolved bool
	// The keys the grant's aliases name now: the first len(arns) in arns
	// (no allocation on a request's path), any more in more.
	n    int
	arns [4]string
	more []string
}

// allows reports whether the grant may use the key with this ARN.
func (c *checker) allows(arn string) bool {
	if c.g.allKeys || c.g.arns[arn] {
		return true
	}
	if arn == "" {
		return false
	}
	if !c.resolved {
		c.resolved = true
		for _, alias := range c.g.aliases {
			if a, _, err := c.s.engine.KeyTag(alias, ""); err == nil {
				if c.n < len(c.arns) {
					c.arns[c.n] = a
					c.n++
				} else {
					c.more = append(c.more, a)
				}
			}
		}
	}
	return slices.Contains(c.arns[:c.n], arn) || slices.Contains(c.more, arn)
}

// arnOr is the key ARN a reference names when the reference alone says so,
// the reference otherwise.
func (s *Server) arnOr(ref string) string { return cmp.Or(s.arnOf(ref), ref) }

// arnOf returns the key ARN a reference names when the reference alone
// says so (a key id or a key ARN of this engine), "" for an alias or
// anything else.
func (s *Server) arnOf(ref string) string {
	if strings.HasPrefix(ref, s.keyPrefix) {
		return ref
	}
	if isKeyID(ref) {
		return s.engine.KeyARN(ref)
	}
	return ""
}

// auditKey bounds a key reference the client chose before it is logged or
// echoed.
func auditKey(ref string) string {
	const max = 300
	if len(ref) > max {
		return ref[:max] + "..."
	}
	return ref
}
