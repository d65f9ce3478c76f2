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

package keystore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/rekey-dev/rekey/internal/kms"
)

// KeySummary describes one key of a keystore, without key material.
type KeySummary struct {
	ID      string
	State   string
	Aliases []string
	// Versions is the number of backing-key versions.
	Versions int
	// Materials are the key material ids of versions 2 and up, in order
	// (version 1's is the key's own, fixed when it was created).
	Materials []string
}

// Summary describes a keystore's contents: what rekey keystore verify prints
// and what Compare compares. It holds no key material.
type Summary struct {
	Header
	Keys []KeySummary
}

// readOnly is a Store that holds one document.
type readOnly []byte

func (r readOnly) Load(context.Context) ([]byte, string, error) { return r, "snapshot", nil }
func (readOnly) Save(context.Context, []byte, string) (string, error) {
	return "", errors.New("a keystore snapshot is read-only")
}

// Summarize opens the snapshot's document in an engine, which checks that it
// is a consistent key state (every version present, every material valid),
// and describes it.
func Summarize(ctx context.Context, s *Snapshot) (*Summary, error) {
	e, err := kms.New(ctx, kms.Options{Store: readOnly(s.Doc)})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.Header, err)
	}
	aliases := map[string][]string{}
	for marker := ""; ; {
		out, err := e.ListAliases(ctx, &kms.ListAliasesInput{Marker: marker})
		if err != nil {
			return nil, err
		}
		for _, a := range out.Aliases {
			aliases[a.TargetKeyID] = append(aliases[a.TargetKeyID], a.AliasName)
		}
		if !out.Truncated {
			break
		}
		marker = out.NextMarker
	}
	sum := &Summary{Header: s.Header}
	for marker := ""; ; {
		out, err := e.ListKeys(ctx, &kms.ListKeysInput{Marker: marker})
		if err != nil {
			return nil, err
		}
		for _, k := range out.Keys {
			d, err := e.DescribeKey(ctx, &kms.DescribeKeyInput{KeyID: k.KeyID})
			if err != nil {
				return nil, err
			}
			ks := KeySummary{ID: k.KeyID, State: d.KeyMetadata.KeyState, Aliases: aliases[k.KeyID]}
			for rm := ""; ; {
				rots, err := e.ListKeyRotations(ctx, &kms.ListKeyRotationsInput{KeyID: k.KeyID, Marker: rm})
				if err != nil {
					return nil, err
				}
				for _, r := range rots.Rotations {
					ks.Materials = append(ks.Materials, r.KeyMaterialID)
				}
				if !rots.Truncated {
					break
				}
				rm = rots.NextMarker
			}
			ks.Versions = 1 + len(ks.Materials)
			slices.Sort(ks.Aliases)
			sum.Keys = append(sum.Keys, ks)
		}
		if !out.Truncated {
			break
		}
		marker = out.NextMarker
	}
	slices.SortFunc(sum.Keys, func(a, b KeySummary) int { return strings.Compare(a.ID, b.ID) })
	return sum, nil
}

// Compare lists what replacing the keystore described by from with the one
// described by to loses or changes, one line each: keys gone, key versions
// gone or different, state changes (a disabled key enabled again) and
// aliases moved or gone.
func Compare(from, to *Summary) []string {
	next := map[string]KeySummary{}
	for _, k := range to.Keys {
		next[k.ID] = k
	}
	var out []string
	for _, k := range from.Keys {
		n, ok := next[k.ID]
		name := k.ID
		if len(k.Aliases) > 0 {
			name += " (" + strings.Join(k.Aliases, ", ") + ")"
		}
		if !ok {
			out = append(out, fmt.Sprintf("key %s is gone, with its %d version(s): no blob under it can be decrypted", name, k.Versions))
			continue
		}
		common := min(len(k.Materials), len(n.Materials))
		for i := range common {
			if k.Materials[i] != n.Materials[i] {
				out = append(out, fmt.Sprintf("key %s: version %d is different key material: blobs under the replaced version %d cannot be decrypted", name, i+2, i+2))
				break
			}
		}
		if k.Versions > n.Versions {
			out = append(out, fmt.Sprintf("key %s: versions %d to %d are gone: blobs under them cannot be decrypted, "+
				"and the next rotation makes a different version %d", name, n.Versions+1, k.Versions, n.Versions+1))
		}
		if k.State != n.State {
			out = append(out, fmt.Sprintf("key %s goes from %s to %s", name, k.State, n.State))
		}
		for _, a := range k.Aliases {
			if !slices.Contains(n.Aliases, a) {
				out = append(out, fmt.Sprintf("alias %s no longer names key %s", a, k.ID))
			}
		}
	}
	return out
}
