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
	"encoding/json"
	"fmt"
	"time"
)

// stateDoc is everything the engine persists: keys with their backing-key
// versions, aliases and grants. The keystore encrypts it under the root key;
// it is never written anywhere in the clear.
type stateDoc struct {
	FormatVersion int           `json:"formatVersion"`
	Keys          []keyRecord   `json:"keys"`
	Aliases       []aliasRecord `json:"aliases"`
	Grants        []grantRecord `json:"grants"`
}

const stateFormatVersion = 1

type keyRecord struct {
	ID           string           `json:"id"`
	Description  string           `json:"description,omitempty"`
	State        string           `json:"state"`
	Created      time.Time        `json:"created"`
	DeletionDate *time.Time       `json:"deletionDate,omitempty"`
	DeletionDays int32            `json:"deletionDays,omitempty"`
	Policy       string           `json:"policy,omitempty"`
	Tags         []Tag            `json:"tags,omitempty"`
	Versions     []versionRecord  `json:"versions"`
	Rotations    []rotationRecord `json:"rotations,omitempty"`
}

// versionRecord is one backing-key version. Reserved counts the encryptions
// handed out in blocks: after a crash the whole reservation counts as used,
// so numbers can be skipped but never reused.
type versionRecord struct {
	Version    uint32    `json:"version"`
	MaterialID string    `json:"materialId"`
	Created    time.Time `json:"created"`
	Material   []byte    `json:"material"`
	Reserved   uint64    `json:"reserved"`
}

type rotationRecord struct {
	Date       time.Time `json:"date"`
	Type       string    `json:"type"`
	MaterialID string    `json:"materialId"`
}

type aliasRecord struct {
	Name    string    `json:"name"`
	KeyID   string    `json:"keyId"`
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
}

type grantRecord struct {
	ID          string            `json:"id"`
	Token       string            `json:"token"`
	KeyID       string            `json:"keyId"`
	Name        string            `json:"name,omitempty"`
	Grantee     string            `json:"grantee"`
	Retiring    string            `json:"retiring,omitempty"`
	Operations  []string          `json:"operations"`
	Constraints *GrantConstraints `json:"constraints,omitempty"`
	Created     time.Time         `json:"created"`
}

func decodeState(b []byte) (*stateDoc, error) {
	doc := &stateDoc{FormatVersion: stateFormatVersion}
	if len(b) == 0 {
		return doc, nil
	}
	if err := json.Unmarshal(b, doc); err != nil {
		return nil, fmt.Errorf("%w: the contents are not a rekey key state: %w", ErrBadState, err)
	}
	if doc.FormatVersion != stateFormatVersion {
		return nil, fmt.Errorf("%w: state format %d is not supported (want %d)", ErrBadState, doc.FormatVersion, stateFormatVersion)
	}
	return doc, nil
}

func (d *stateDoc) encode() ([]byte, error) { return json.Marshal(d) }

// clone deep-copies the document, so a failed mutation leaves no trace.
func (d *stateDoc) clone() (*stateDoc, error) {
	b, err := d.encode()
	if err != nil {
		return nil, err
	}
	return decodeState(b)
}

func (d *stateDoc) key(id string) *keyRecord {
	for i := range d.Keys {
		if d.Keys[i].ID == id {
			return &d.Keys[i]
		}
	}
	return nil
}

func (d *stateDoc) alias(name string) *aliasRecord {
	for i := range d.Aliases {
		if d.Aliases[i].Name == name {
			return &d.Aliases[i]
		}
	}
	return nil
}

// purgeExpired deletes keys whose deletion date has passed, with their
// aliases and grants. A key version is deleted only here, and only for a key
// pending deletion, whose state allows no Decrypt.
func (d *stateDoc) purgeExpired(now time.Time) {
	gone := map[string]bool{}
	keys := d.Keys[:0]
	for _, k := range d.Keys {
		if k.State == KeyStatePendingDeletion && k.DeletionDate != nil && !now.Before(*k.DeletionDate) {
			gone[k.ID] = true
			continue
		}
		keys = append(keys, k)
	}
	d.Keys = keys
	if len(gone) == 0 {
		return
	}
	aliases := d.Aliases[:0]
	for _, a := range d.Aliases {
		if !gone[a.KeyID] {
			aliases = append(aliases, a)
		}
	}
	d.Aliases = aliases
	grants := d.Grants[:0]
	for _, g := range d.Grants {
		if !gone[g.KeyID] {
			grants = append(grants, g)
		}
	}
	d.Grants = grants
}
