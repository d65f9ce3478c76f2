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
	"math"
	"strconv"
	"time"
)

// Request and response shapes of the AWS KMS JSON API, with its field names,
// for the operations the engine serves. []byte fields are base64 on the wire,
// as in AWS's protocol.

// Key states, key usage and algorithms, with AWS's names.
const (
	KeyStateEnabled         = "Enabled"
	KeyStateDisabled        = "Disabled"
	KeyStatePendingDeletion = "PendingDeletion"

	KeyUsageEncryptDecrypt  = "ENCRYPT_DECRYPT"
	KeySpecSymmetricDefault = "SYMMETRIC_DEFAULT"
	AlgorithmSymmetric      = "SYMMETRIC_DEFAULT"

	RotationTypeOnDemand  = "ON_DEMAND"
	RotationTypeAutomatic = "AUTOMATIC"
)

// Timestamp is a time that crosses the wire as epoch seconds (a JSON number),
// as the AWS JSON protocol has it.
type Timestamp struct{ time.Time }

// NewTimestamp wraps t.
func NewTimestamp(t time.Time) *Timestamp { return &Timestamp{t} }

// MarshalJSON writes epoch seconds with millisecond precision.
func (t Timestamp) MarshalJSON() ([]byte, error) {
	return strconv.AppendFloat(nil, float64(t.UnixMilli())/1000, 'f', -1, 64), nil
}

// UnmarshalJSON reads epoch seconds.
func (t *Timestamp) UnmarshalJSON(b []byte) error {
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return err
	}
	sec, frac := math.Modf(f)
	t.Time = time.Unix(int64(sec), int64(frac*1e9)).UTC()
	return nil
}

// KeyMetadata describes a key (DescribeKey, CreateKey).
type KeyMetadata struct {
	AWSAccountID                string     `json:"AWSAccountId"`
	KeyID                       string     `json:"KeyId"`
	Arn                         string     `json:"Arn"`
	CreationDate                *Timestamp `json:"CreationDate,omitempty"`
	Enabled                     bool       `json:"Enabled"`
	Description                 string     `json:"Description"`
	KeyUsage                    string     `json:"KeyUsage"`
	KeyState                    string     `json:"KeyState"`
	DeletionDate                *Timestamp `json:"DeletionDate,omitempty"`
	PendingDeletionWindowInDays *int32     `json:"PendingDeletionWindowInDays,omitempty"`
	Origin                      string     `json:"Origin"`
	KeyManager                  string     `json:"KeyManager"`
	KeySpec                     string     `json:"KeySpec"`
	CustomerMasterKeySpec       string     `json:"CustomerMasterKeySpec"`
	EncryptionAlgorithms        []string   `json:"EncryptionAlgorithms"`
	MultiRegion                 bool       `json:"MultiRegion"`
	CurrentKeyMaterialID        string     `json:"CurrentKeyMaterialId,omitempty"`
}

// Tag is a key tag.
type Tag struct {
	TagKey   string `json:"TagKey"`
	TagValue string `json:"TagValue"`
}

// CreateKeyInput creates a symmetric encryption key.
type CreateKeyInput struct {
	Description string `json:"Description,omitempty"`
	KeyUsage    string `json:"KeyUsage,omitempty"`
	KeySpec     string `json:"KeySpec,omitempty"`
	// CustomerMasterKeySpec is the deprecated name of KeySpec.
	CustomerMasterKeySpec string `json:"CustomerMasterKeySpec,omitempty"`
	Origin                string `json:"Origin,omitempty"`
	MultiRegion           bool   `json:"MultiRegion,omitempty"`
	Policy                string `json:"Policy,omitempty"`
	Tags                  []Tag  `json:"Tags,omitempty"`
}

// CreateKeyOutput returns the new key's metadata.
type CreateKeyOutput struct {
	KeyMetadata *KeyMetadata `json:"KeyMetadata"`
}

// DescribeKeyInput names a key in any form.
type DescribeKeyInput struct {
	KeyID       string   `json:"KeyId"`
	GrantTokens []string `json:"GrantTokens,omitempty"`
}

// DescribeKeyOutput describes a key.
type DescribeKeyOutput struct {
	KeyMetadata *KeyMetadata `json:"KeyMetadata"`
}

// ListKeysInput pages through keys.
type ListKeysInput struct {
	Limit  *int32 `json:"Limit,omitempty"`
	Marker string `json:"Marker,omitempty"`
}

// KeyListEntry is one key of ListKeys.
type KeyListEntry struct {
	KeyID  string `json:"KeyId"`
	KeyArn string `json:"KeyArn"`
}

// ListKeysOutput is one page of keys.
type ListKeysOutput struct {
	Keys       []KeyListEntry `json:"Keys"`
	NextMarker string         `json:"NextMarker,omitempty"`
	Truncated  bool           `json:"Truncated"`
}

// CreateAliasInput points a new alias at a key.
type CreateAliasInput struct {
	AliasName   string `json:"AliasName"`
	TargetKeyID string `json:"TargetKeyId"`
}

// UpdateAliasInput repoints an alias.
type UpdateAliasInput struct {
	AliasName   string `json:"AliasName"`
	TargetKeyID string `json:"TargetKeyId"`
}

// DeleteAliasInput deletes an alias.
type DeleteAliasInput struct {
	AliasName string `json:"AliasName"`
}

// ListAliasesInput pages through aliases, optionally of one key.
type ListAliasesInput struct {
	KeyID  string `json:"KeyId,omitempty"`
	Limit  *int32 `json:"Limit,omitempty"`
	Marker string `json:"Marker,omitempty"`
}

// AliasListEntry is one alias.
type AliasListEntry struct {
	AliasName       string     `json:"AliasName"`
	AliasArn        string     `json:"AliasArn"`
	TargetKeyID     string     `json:"TargetKeyId,omitempty"`
	CreationDate    *Timestamp `json:"CreationDate,omitempty"`
	LastUpdatedDate *Timestamp `json:"LastUpdatedDate,omitempty"`
}

// ListAliasesOutput is one page of aliases.
type ListAliasesOutput struct {
	Aliases    []AliasListEntry `json:"Aliases"`
	NextMarker string           `json:"NextMarker,omitempty"`
	Truncated  bool             `json:"Truncated"`
}

// KeyIDInput names a key (EnableKey, DisableKey, CancelKeyDeletion, RotateKeyOnDemand).
type KeyIDInput struct {
	KeyID string `json:"KeyId"`
}

// CancelKeyDeletionOutput names the key.
type CancelKeyDeletionOutput struct {
	KeyID string `json:"KeyId"`
}

// RotateKeyOnDemandOutput names the key.
type RotateKeyOnDemandOutput struct {
	KeyID string `json:"KeyId"`
}

// ScheduleKeyDeletionInput schedules a key's deletion after a waiting period.
type ScheduleKeyDeletionInput struct {
	KeyID               string `json:"KeyId"`
	PendingWindowInDays *int32 `json:"PendingWindowInDays,omitempty"`
}

// ScheduleKeyDeletionOutput says when the key will be deleted.
type ScheduleKeyDeletionOutput struct {
	KeyID               string     `json:"KeyId"`
	DeletionDate        *Timestamp `json:"DeletionDate"`
	KeyState            string     `json:"KeyState"`
	PendingWindowInDays int32      `json:"PendingWindowInDays"`
}

// ListKeyRotationsInput pages through a key's rotations.
type ListKeyRotationsInput struct {
	KeyID  string `json:"KeyId"`
	Limit  *int32 `json:"Limit,omitempty"`
	Marker string `json:"Marker,omitempty"`
}

// RotationsListEntry is one rotation of a key.
type RotationsListEntry struct {
	KeyID         string     `json:"KeyId"`
	KeyMaterialID string     `json:"KeyMaterialId,omitempty"`
	RotationDate  *Timestamp `json:"RotationDate"`
	RotationType  string     `json:"RotationType"`
}

// ListKeyRotationsOutput is one page of rotations, oldest first.
type ListKeyRotationsOutput struct {
	Rotations  []RotationsListEntry `json:"Rotations"`
	NextMarker string               `json:"NextMarker,omitempty"`
	Truncated  bool                 `json:"Truncated"`
}

// EncryptInput encrypts up to 4096 bytes under a key.
type EncryptInput struct {
	KeyID               string            `json:"KeyId"`
	Plaintext           []byte            `json:"Plaintext"`
	EncryptionContext   map[string]string `json:"EncryptionContext,omitempty"`
	GrantTokens         []string          `json:"GrantTokens,omitempty"`
	EncryptionAlgorithm string            `json:"EncryptionAlgorithm,omitempty"`
	DryRun              bool              `json:"DryRun,omitempty"`
}

// EncryptOutput is the blob and the key ARN.
type EncryptOutput struct {
	CiphertextBlob      []byte `json:"CiphertextBlob"`
	KeyID               string `json:"KeyId"`
	EncryptionAlgorithm string `json:"EncryptionAlgorithm"`
}

// DecryptInput decrypts a blob; KeyId is optional.
type DecryptInput struct {
	CiphertextBlob      []byte            `json:"CiphertextBlob"`
	KeyID               string            `json:"KeyId,omitempty"`
	EncryptionContext   map[string]string `json:"EncryptionContext,omitempty"`
	GrantTokens         []string          `json:"GrantTokens,omitempty"`
	EncryptionAlgorithm string            `json:"EncryptionAlgorithm,omitempty"`
	DryRun              bool              `json:"DryRun,omitempty"`
}

// DecryptOutput is the plaintext and the key that held it.
type DecryptOutput struct {
	KeyID               string `json:"KeyId"`
	Plaintext           []byte `json:"Plaintext"`
	EncryptionAlgorithm string `json:"EncryptionAlgorithm"`
	KeyMaterialID       string `json:"KeyMaterialId,omitempty"`
}

// ReEncryptInput moves a blob to another key (or to the newest version of
// its own) without the plaintext leaving the engine.
type ReEncryptInput struct {
	CiphertextBlob                 []byte            `json:"CiphertextBlob"`
	SourceKeyID                    string            `json:"SourceKeyId,omitempty"`
	SourceEncryptionContext        map[string]string `json:"SourceEncryptionContext,omitempty"`
	DestinationKeyID               string            `json:"DestinationKeyId"`
	DestinationEncryptionContext   map[string]string `json:"DestinationEncryptionContext,omitempty"`
	SourceEncryptionAlgorithm      string            `json:"SourceEncryptionAlgorithm,omitempty"`
	DestinationEncryptionAlgorithm string            `json:"DestinationEncryptionAlgorithm,omitempty"`
	GrantTokens                    []string          `json:"GrantTokens,omitempty"`
	DryRun                         bool              `json:"DryRun,omitempty"`
}

// ReEncryptOutput is the new blob, the destination key ARN (KeyId) and the
// source key ARN the blob was under (SourceKeyId).
type ReEncryptOutput struct {
	CiphertextBlob                 []byte `json:"CiphertextBlob"`
	KeyID                          string `json:"KeyId"`
	SourceKeyID                    string `json:"SourceKeyId"`
	SourceEncryptionAlgorithm      string `json:"SourceEncryptionAlgorithm"`
	DestinationEncryptionAlgorithm string `json:"DestinationEncryptionAlgorithm"`
	SourceKeyMaterialID            string `json:"SourceKeyMaterialId,omitempty"`
	DestinationKeyMaterialID       string `json:"DestinationKeyMaterialId,omitempty"`
}

// GenerateDataKeyInput asks for a fresh data key, returned in plaintext and
// encrypted (or only encrypted: GenerateDataKeyWithoutPlaintext).
type GenerateDataKeyInput struct {
	KeyID             string            `json:"KeyId"`
	KeySpec           string            `json:"KeySpec,omitempty"`
	NumberOfBytes     *int32            `json:"NumberOfBytes,omitempty"`
	EncryptionContext map[string]string `json:"EncryptionContext,omitempty"`
	GrantTokens       []string          `json:"GrantTokens,omitempty"`
	DryRun            bool              `json:"DryRun,omitempty"`
}

// GenerateDataKeyOutput holds the data key.
type GenerateDataKeyOutput struct {
	CiphertextBlob []byte `json:"CiphertextBlob"`
	Plaintext      []byte `json:"Plaintext,omitempty"`
	KeyID          string `json:"KeyId"`
	KeyMaterialID  string `json:"KeyMaterialId,omitempty"`
}

// GrantConstraints restrict a grant to encryption contexts.
type GrantConstraints struct {
	EncryptionContextEquals map[string]string `json:"EncryptionContextEquals,omitempty"`
	EncryptionContextSubset map[string]string `json:"EncryptionContextSubset,omitempty"`
}

// CreateGrantInput grants operations on a key to a principal.
type CreateGrantInput struct {
	KeyID             string            `json:"KeyId"`
	GranteePrincipal  string            `json:"GranteePrincipal"`
	RetiringPrincipal string            `json:"RetiringPrincipal,omitempty"`
	Operations        []string          `json:"Operations"`
	Constraints       *GrantConstraints `json:"Constraints,omitempty"`
	GrantTokens       []string          `json:"GrantTokens,omitempty"`
	Name              string            `json:"Name,omitempty"`
	DryRun            bool              `json:"DryRun,omitempty"`
}

// CreateGrantOutput returns the grant's id and token.
type CreateGrantOutput struct {
	GrantID    string `json:"GrantId"`
	GrantToken string `json:"GrantToken"`
}

// RetireGrantInput retires a grant by token, or by key and grant id.
type RetireGrantInput struct {
	GrantToken string `json:"GrantToken,omitempty"`
	KeyID      string `json:"KeyId,omitempty"`
	GrantID    string `json:"GrantId,omitempty"`
	DryRun     bool   `json:"DryRun,omitempty"`
}

// ListGrantsInput pages through a key's grants.
type ListGrantsInput struct {
	KeyID   string `json:"KeyId"`
	GrantID string `json:"GrantId,omitempty"`
	Limit   *int32 `json:"Limit,omitempty"`
	Marker  string `json:"Marker,omitempty"`
}

// GrantListEntry is one grant (never its token).
type GrantListEntry struct {
	KeyID             string            `json:"KeyId"`
	GrantID           string            `json:"GrantId"`
	Name              string            `json:"Name,omitempty"`
	CreationDate      *Timestamp        `json:"CreationDate"`
	GranteePrincipal  string            `json:"GranteePrincipal"`
	RetiringPrincipal string            `json:"RetiringPrincipal,omitempty"`
	IssuingAccount    string            `json:"IssuingAccount"`
	Operations        []string          `json:"Operations"`
	Constraints       *GrantConstraints `json:"Constraints,omitempty"`
}

// ListGrantsOutput is one page of grants.
type ListGrantsOutput struct {
	Grants     []GrantListEntry `json:"Grants"`
	NextMarker string           `json:"NextMarker,omitempty"`
	Truncated  bool             `json:"Truncated"`
}

// Empty is the response of operations that return nothing.
type Empty struct{}
