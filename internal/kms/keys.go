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
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

const maxDescription = 8192

// CreateKey creates a symmetric encryption key with one backing-key version.
func (e *Engine) CreateKey(ctx context.Context, in *CreateKeyInput) (*CreateKeyOutput, error) {
	if in.KeyUsage != "" && in.KeyUsage != KeyUsageEncryptDecrypt {
		return nil, newError(CodeUnsupportedOp, "KeyUsage %q is not supported; only %s", in.KeyUsage, KeyUsageEncryptDecrypt)
	}
	for _, spec := range []string{in.KeySpec, in.CustomerMasterKeySpec} {
		if spec != "" && spec != KeySpecSymmetricDefault {
			return nil, newError(CodeUnsupportedOp, "KeySpec %q is not supported; only %s", spec, KeySpecSymmetricDefault)
		}
	}
	if in.Origin != "" && in.Origin != "AWS_KMS" {
		return nil, newError(CodeUnsupportedOp, "Origin %q is not supported; only AWS_KMS", in.Origin)
	}
	if in.MultiRegion {
		return nil, newError(CodeUnsupportedOp, "multi-Region keys are not supported")
	}
	if len(in.Description) > maxDescription {
		return nil, newError(CodeValidation, "Description is longer than %d characters", maxDescription)
	}
	if len(in.Tags) > maxTags {
		return nil, newError(CodeLimitExceeded, "a key may have at most %d tags", maxTags)
	}
	for _, t := range in.Tags {
		if err := checkTag(t); err != nil {
			return nil, err
		}
	}
	id, err := e.newUUID()
	if err != nil {
		return nil, err
	}
	err = e.mutate(ctx, func(d *stateDoc) error {
		vr, err := e.newVersion(1)
		if err != nil {
			return err
		}
		d.Keys = append(d.Keys, keyRecord{
			ID: id, Description: in.Description, State: KeyStateEnabled, Created: e.now().UTC(),
			Policy: in.Policy, Tags: in.Tags, Versions: []versionRecord{vr},
		})
		return nil
	})
	if err != nil {
		return nil, err
	}
	md, err := e.describe(id)
	if err != nil {
		return nil, err
	}
	return &CreateKeyOutput{KeyMetadata: md}, nil
}

func (e *Engine) describe(id string) (*KeyMetadata, error) {
	v := e.view.Load()
	k, err := e.resolve(v, id)
	if err != nil {
		return nil, err
	}
	r := k.rec
	md := &KeyMetadata{
		AWSAccountID: e.account, KeyID: r.ID, Arn: k.arn, CreationDate: NewTimestamp(r.Created),
		Enabled: r.State == KeyStateEnabled, Description: r.Description, KeyUsage: KeyUsageEncryptDecrypt,
		KeyState: r.State, Origin: "AWS_KMS", KeyManager: "CUSTOMER", KeySpec: KeySpecSymmetricDefault,
		CustomerMasterKeySpec: KeySpecSymmetricDefault, EncryptionAlgorithms: []string{AlgorithmSymmetric},
		CurrentKeyMaterialID: k.newest().materialID,
	}
	if r.DeletionDate != nil {
		md.DeletionDate = NewTimestamp(*r.DeletionDate)
		days := r.DeletionDays
		md.PendingDeletionWindowInDays = &days
	}
	return md, nil
}

// DescribeKey describes a key named in any form.
func (e *Engine) DescribeKey(_ context.Context, in *DescribeKeyInput) (*DescribeKeyOutput, error) {
	md, err := e.describe(in.KeyID)
	if err != nil {
		return nil, err
	}
	return &DescribeKeyOutput{KeyMetadata: md}, nil
}

// page returns the window [start, end) of n items that limit and marker select.
func page(n int, limit *int32, marker string) (start, end int, next string, err error) {
	l := 100
	if limit != nil {
		if *limit < 1 || *limit > 1000 {
			return 0, 0, "", newError(CodeValidation, "Limit must be 1 to 1000, got %d", *limit)
		}
		l = int(*limit)
	}
	if marker != "" {
		s, convErr := strconv.Atoi(marker)
		if convErr != nil || s < 0 || s > n {
			return 0, 0, "", newError(CodeInvalidMarker, "Marker is not one this service returned")
		}
		start = s
	}
	end = min(start+l, n)
	if end < n {
		next = strconv.Itoa(end)
	}
	return start, end, next, nil
}

// ListKeys lists keys in creation order.
func (e *Engine) ListKeys(_ context.Context, in *ListKeysInput) (*ListKeysOutput, error) {
	v := e.view.Load()
	var keys []*rkey
	for i := range v.doc.Keys {
		if k := v.keys[v.doc.Keys[i].ID]; !e.expired(k) {
			keys = append(keys, k)
		}
	}
	start, end, next, err := page(len(keys), in.Limit, in.Marker)
	if err != nil {
		return nil, err
	}
	out := &ListKeysOutput{Keys: []KeyListEntry{}, NextMarker: next, Truncated: next != ""}
	for _, k := range keys[start:end] {
		out.Keys = append(out.Keys, KeyListEntry{KeyID: k.rec.ID, KeyArn: k.arn})
	}
	return out, nil
}

var aliasNameRE = regexp.MustCompile(`^alias/[a-zA-Z0-9/_-]{1,250}$`)

// CheckAliasName refuses (InvalidAliasNameException) an alias name that
// CreateAlias and UpdateAlias would refuse: callers that create a key and
// then its alias check the name first.
func CheckAliasName(name string) error {
	if !aliasNameRE.MatchString(name) {
		return newError(CodeInvalidAliasName, "alias name %q must be alias/ followed by 1 to 250 of a-z A-Z 0-9 / _ -", name)
	}
	if strings.HasPrefix(name, "alias/aws/") {
		return newError(CodeInvalidAliasName, "alias names beginning with alias/aws/ are reserved")
	}
	return nil
}

// aliasTarget resolves the key an alias may point at: a key id or ARN (not
// another alias), not pending deletion.
func (e *Engine) aliasTarget(d *stateDoc, target string) (*keyRecord, error) {
	if target == "" {
		return nil, newError(CodeValidation, "TargetKeyId is required")
	}
	if strings.HasPrefix(target, "alias/") || strings.Contains(target, ":alias/") {
		return nil, newError(CodeValidation, "TargetKeyId must be a key id or key ARN, not an alias")
	}
	id := strings.TrimPrefix(target, e.arnKeyPrefix)
	rec := d.key(id)
	if rec == nil {
		return nil, newError(CodeNotFound, "key %s does not exist", e.KeyARN(id))
	}
	if rec.State == KeyStatePendingDeletion {
		return nil, newError(CodeInvalidState, "key %s is pending deletion", e.KeyARN(id))
	}
	return rec, nil
}

// CreateAlias points a new alias at a key.
func (e *Engine) CreateAlias(ctx context.Context, in *CreateAliasInput) (*Empty, error) {
	if err := CheckAliasName(in.AliasName); err != nil {
		return nil, err
	}
	return &Empty{}, e.mutate(ctx, func(d *stateDoc) error {
		if d.alias(in.AliasName) != nil {
			return newError(CodeAlreadyExists, "alias %s already exists", e.aliasARN(in.AliasName))
		}
		rec, err := e.aliasTarget(d, in.TargetKeyID)
		if err != nil {
			return err
		}
		now := e.now().UTC()
		d.Aliases = append(d.Aliases, aliasRecord{Name: in.AliasName, KeyID: rec.ID, Created: now, Updated: now})
		return nil
	})
}

// UpdateAlias points an existing alias at another key.
func (e *Engine) UpdateAlias(ctx context.Context, in *UpdateAliasInput) (*Empty, error) {
	if err := CheckAliasName(in.AliasName); err != nil {
		return nil, err
	}
	return &Empty{}, e.mutate(ctx, func(d *stateDoc) error {
		a := d.alias(in.AliasName)
		if a == nil {
			return newError(CodeNotFound, "alias %s is not found", e.aliasARN(in.AliasName))
		}
		rec, err := e.aliasTarget(d, in.TargetKeyID)
		if err != nil {
			return err
		}
		a.KeyID, a.Updated = rec.ID, e.now().UTC()
		return nil
	})
}

// DeleteAlias deletes an alias; the key is untouched.
func (e *Engine) DeleteAlias(ctx context.Context, in *DeleteAliasInput) (*Empty, error) {
	if err := CheckAliasName(in.AliasName); err != nil {
		return nil, err
	}
	return &Empty{}, e.mutate(ctx, func(d *stateDoc) error {
		i := slices.IndexFunc(d.Aliases, func(a aliasRecord) bool { return a.Name == in.AliasName })
		if i < 0 {
			return newError(CodeNotFound, "alias %s is not found", e.aliasARN(in.AliasName))
		}
		d.Aliases = slices.Delete(d.Aliases, i, i+1)
		return nil
	})
}

// ListAliases lists aliases by name, optionally only those of one key.
func (e *Engine) ListAliases(_ context.Context, in *ListAliasesInput) (*ListAliasesOutput, error) {
	v := e.view.Load()
	var keyID string
	if in.KeyID != "" {
		k, err := e.resolve(v, in.KeyID)
		if err != nil {
			return nil, err
		}
		keyID = k.rec.ID
	}
	var all []*aliasRecord
	for i := range v.doc.Aliases {
		a := &v.doc.Aliases[i]
		if keyID == "" || a.KeyID == keyID {
			all = append(all, a)
		}
	}
	slices.SortFunc(all, func(a, b *aliasRecord) int { return strings.Compare(a.Name, b.Name) })
	start, end, next, err := page(len(all), in.Limit, in.Marker)
	if err != nil {
		return nil, err
	}
	out := &ListAliasesOutput{Aliases: []AliasListEntry{}, NextMarker: next, Truncated: next != ""}
	for _, a := range all[start:end] {
		out.Aliases = append(out.Aliases, AliasListEntry{
			AliasName: a.Name, AliasArn: e.aliasARN(a.Name), TargetKeyID: a.KeyID,
			CreationDate: NewTimestamp(a.Created), LastUpdatedDate: NewTimestamp(a.Updated),
		})
	}
	return out, nil
}

// mutateKey resolves a key by any form and applies fn to its record.
func (e *Engine) mutateKey(ctx context.Context, id string, fn func(d *stateDoc, r *keyRecord) error) error {
	k, err := e.resolve(e.view.Load(), id)
	if err != nil {
		return err
	}
	return e.mutate(ctx, func(d *stateDoc) error {
		r := d.key(k.rec.ID)
		if r == nil {
			return newError(CodeNotFound, "key %s does not exist", k.arn)
		}
		return fn(d, r)
	})
}

// EnableKey enables a disabled key.
func (e *Engine) EnableKey(ctx context.Context, in *KeyIDInput) (*Empty, error) {
	return &Empty{}, e.mutateKey(ctx, in.KeyID, func(_ *stateDoc, r *keyRecord) error {
		if r.State == KeyStatePendingDeletion {
			return newError(CodeInvalidState, "key %s is pending deletion; cancel the deletion first", e.KeyARN(r.ID))
		}
		r.State = KeyStateEnabled
		return nil
	})
}

// DisableKey disables a key: it can no longer encrypt or decrypt.
func (e *Engine) DisableKey(ctx context.Context, in *KeyIDInput) (*Empty, error) {
	return &Empty{}, e.mutateKey(ctx, in.KeyID, func(_ *stateDoc, r *keyRecord) error {
		if r.State == KeyStatePendingDeletion {
			return newError(CodeInvalidState, "key %s is pending deletion", e.KeyARN(r.ID))
		}
		r.State = KeyStateDisabled
		return nil
	})
}

// ScheduleKeyDeletion deletes a key after 7 to 30 days (default 30). Until
// then CancelKeyDeletion brings it back, disabled.
func (e *Engine) ScheduleKeyDeletion(ctx context.Context, in *ScheduleKeyDeletionInput) (*ScheduleKeyDeletionOutput, error) {
	days := int32(30)
	if in.PendingWindowInDays != nil {
		days = *in.PendingWindowInDays
	}
	if days < 7 || days > 30 {
		return nil, newError(CodeValidation, "PendingWindowInDays must be 7 to 30, got %d", days)
	}
	var out ScheduleKeyDeletionOutput
	err := e.mutateKey(ctx, in.KeyID, func(_ *stateDoc, r *keyRecord) error {
		if r.State == KeyStatePendingDeletion {
			return newError(CodeInvalidState, "key %s is already pending deletion", e.KeyARN(r.ID))
		}
		when := e.now().UTC().Add(time.Duration(days) * 24 * time.Hour)
		r.State, r.DeletionDate, r.DeletionDays = KeyStatePendingDeletion, &when, days
		out = ScheduleKeyDeletionOutput{KeyID: e.KeyARN(r.ID), DeletionDate: NewTimestamp(when), KeyState: r.State, PendingWindowInDays: days}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// CancelKeyDeletion cancels a scheduled deletion; the key comes back disabled.
func (e *Engine) CancelKeyDeletion(ctx context.Context, in *KeyIDInput) (*CancelKeyDeletionOutput, error) {
	var arn string
	err := e.mutateKey(ctx, in.KeyID, func(_ *stateDoc, r *keyRecord) error {
		if r.State != KeyStatePendingDeletion {
			return newError(CodeInvalidState, "key %s is not pending deletion", e.KeyARN(r.ID))
		}
		r.State, r.DeletionDate, r.DeletionDays = KeyStateDisabled, nil, 0
		arn = e.KeyARN(r.ID)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &CancelKeyDeletionOutput{KeyID: arn}, nil
}

// RotateKeyOnDemand adds a backing-key version; new encryptions use it, and
// every older version still decrypts.
func (e *Engine) RotateKeyOnDemand(ctx context.Context, in *KeyIDInput) (*RotateKeyOnDemandOutput, error) {
	var arn string
	err := e.mutateKey(ctx, in.KeyID, func(_ *stateDoc, r *keyRecord) error {
		arn = e.KeyARN(r.ID)
		switch r.State {
		case KeyStateDisabled:
			return newError(CodeDisabled, "key %s is disabled", arn)
		case KeyStatePendingDeletion:
			return newError(CodeInvalidState, "key %s is pending deletion", arn)
		}
		n := 0
		for _, rot := range r.Rotations {
			if rot.Type == RotationTypeOnDemand {
				n++
			}
		}
		if n >= e.maxOnDemand {
			return newError(CodeLimitExceeded, "key %s has had its %d on-demand rotations", arn, e.maxOnDemand)
		}
		vr, err := e.newVersion(uint32(len(r.Versions) + 1))
		if err != nil {
			return err
		}
		r.Versions = append(r.Versions, vr)
		r.Rotations = append(r.Rotations, rotationRecord{Date: vr.Created, Type: RotationTypeOnDemand, MaterialID: vr.MaterialID})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &RotateKeyOnDemandOutput{KeyID: arn}, nil
}

// ListKeyRotations lists a key's rotations, oldest first.
func (e *Engine) ListKeyRotations(_ context.Context, in *ListKeyRotationsInput) (*ListKeyRotationsOutput, error) {
	k, err := e.resolve(e.view.Load(), in.KeyID)
	if err != nil {
		return nil, err
	}
	rots := k.rec.Rotations
	start, end, next, err := page(len(rots), in.Limit, in.Marker)
	if err != nil {
		return nil, err
	}
	out := &ListKeyRotationsOutput{Rotations: []RotationsListEntry{}, NextMarker: next, Truncated: next != ""}
	for _, r := range rots[start:end] {
		out.Rotations = append(out.Rotations, RotationsListEntry{
			KeyID: k.arn, KeyMaterialID: r.MaterialID, RotationDate: NewTimestamp(r.Date), RotationType: r.Type,
		})
	}
	return out, nil
}
