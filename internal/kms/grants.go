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

package kms

import (
	"context"
	"slices"
)

// grantOperations are the operations a grant may allow.
var grantOperations = []string{
	"Decrypt", "Encrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext",
	"ReEncryptFrom", "ReEncryptTo", "CreateGrant", "RetireGrant", "DescribeKey",
}

// CreateGrant records a grant on a key and returns its id and token. The
// engine has no principals of its own: a grant token is honoured as proof
// that the grant exists (GrantTokens on any operation must name live grants
// on the keys the operation uses; see docs/kms.md).
func (e *Engine) CreateGrant(ctx context.Context, in *CreateGrantInput) (*CreateGrantOutput, error) {
	if in.GranteePrincipal == "" {
		return nil, newError(CodeValidation, "GranteePrincipal is required")
	}
	if len(in.Operations) == 0 {
		return nil, newError(CodeValidation, "Operations must name at least one operation")
	}
	for _, op := range in.Operations {
		if !slices.Contains(grantOperations, op) {
			return nil, newError(CodeValidation, "operation %q cannot be granted on a symmetric key", op)
		}
	}
	v := e.view.Load()
	k, err := e.resolve(v, in.KeyID)
	if err != nil {
		return nil, err
	}
	if k.rec.State == KeyStatePendingDeletion {
		return nil, newError(CodeInvalidState, "key %s is pending deletion", k.arn)
	}
	if err := checkGrantTokens(v, in.GrantTokens, k); err != nil {
		return nil, err
	}
	if in.DryRun {
		return nil, newError(CodeDryRunOperation, "the request would have succeeded")
	}
	id, err := e.randomHex(32)
	if err != nil {
		return nil, err
	}
	tok, err := e.randomHex(48)
	if err != nil {
		return nil, err
	}
	tok = "rekey-grant-" + tok
	err = e.mutate(ctx, func(d *stateDoc) error {
		if d.key(k.rec.ID) == nil {
			return newError(CodeNotFound, "key %s does not exist", k.arn)
		}
		d.Grants = append(d.Grants, grantRecord{
			ID: id, Token: tok, KeyID: k.rec.ID, Name: in.Name, Grantee: in.GranteePrincipal,
			Retiring: in.RetiringPrincipal, Operations: slices.Clone(in.Operations),
			Constraints: in.Constraints, Created: e.now().UTC(),
		})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &CreateGrantOutput{GrantID: id, GrantToken: tok}, nil
}

// RetireGrant deletes a grant named by its token, or by key and grant id.
func (e *Engine) RetireGrant(ctx context.Context, in *RetireGrantInput) (*Empty, error) {
	var keyID string
	switch {
	case in.GrantToken != "":
	case in.KeyID != "" && in.GrantID != "":
		k, err := e.resolve(e.view.Load(), in.KeyID)
		if err != nil {
			return nil, err
		}
		keyID = k.rec.ID
	default:
		return nil, newError(CodeValidation, "give GrantToken, or KeyId and GrantId")
	}
	if in.DryRun {
		return nil, newError(CodeDryRunOperation, "the request would have succeeded")
	}
	return &Empty{}, e.mutate(ctx, func(d *stateDoc) error {
		i := slices.IndexFunc(d.Grants, func(g grantRecord) bool {
			if in.GrantToken != "" {
				return g.Token == in.GrantToken
			}
			return g.KeyID == keyID && g.ID == in.GrantID
		})
		if i < 0 {
			if in.GrantToken != "" {
				return newError(CodeInvalidGrantToken, "the grant token is not valid")
			}
			return newError(CodeNotFound, "grant %s is not found on key %s", in.GrantID, e.KeyARN(keyID))
		}
		d.Grants = slices.Delete(d.Grants, i, i+1)
		return nil
	})
}

// ListGrants lists a key's grants (never their tokens).
func (e *Engine) ListGrants(_ context.Context, in *ListGrantsInput) (*ListGrantsOutput, error) {
	v := e.view.Load()
	k, err := e.resolve(v, in.KeyID)
	if err != nil {
		return nil, err
	}
	var gs []*grantRecord
	for i := range v.doc.Grants {
		g := &v.doc.Grants[i]
		if g.KeyID == k.rec.ID && (in.GrantID == "" || g.ID == in.GrantID) {
			gs = append(gs, g)
		}
	}
	start, end, next, err := page(len(gs), in.Limit, in.Marker)
	if err != nil {
		return nil, err
	}
	out := &ListGrantsOutput{Grants: []GrantListEntry{}, NextMarker: next, Truncated: next != ""}
	for _, g := range gs[start:end] {
		out.Grants = append(out.Grants, GrantListEntry{
			KeyID: k.arn, GrantID: g.ID, Name: g.Name, CreationDate: NewTimestamp(g.Created),
			GranteePrincipal: g.Grantee, RetiringPrincipal: g.Retiring, IssuingAccount: "arn:aws:iam::" + e.account + ":root",
			Operations: g.Operations, Constraints: g.Constraints,
		})
	}
	return out, nil
}
