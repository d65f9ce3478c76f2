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
	"strings"
)

// TagResourceInput adds or replaces tags on a key.
type TagResourceInput struct {
	KeyID string `json:"KeyId"`
	Tags  []Tag  `json:"Tags"`
}

// UntagResourceInput removes tags from a key.
type UntagResourceInput struct {
	KeyID   string   `json:"KeyId"`
	TagKeys []string `json:"TagKeys"`
}

// ListResourceTagsInput pages through a key's tags.
type ListResourceTagsInput struct {
	KeyID  string `json:"KeyId"`
	Limit  *int32 `json:"Limit,omitempty"`
	Marker string `json:"Marker,omitempty"`
}

// ListResourceTagsOutput is one page of tags, sorted by key.
type ListResourceTagsOutput struct {
	Tags       []Tag  `json:"Tags"`
	NextMarker string `json:"NextMarker,omitempty"`
	Truncated  bool   `json:"Truncated"`
}

const maxTags = 50

func checkTag(t Tag) error {
	switch {
	case t.TagKey == "" || len(t.TagKey) > 128:
		return newError(CodeValidation, "tag keys must be 1 to 128 characters")
	case len(t.TagValue) > 256:
		return newError(CodeValidation, "tag values must be at most 256 characters")
	case strings.HasPrefix(t.TagKey, "aws:"):
		return newError(CodeValidation, "tag keys beginning with aws: are reserved")
	}
	return nil
}

// TagResource adds or replaces tags on a key.
func (e *Engine) TagResource(ctx context.Context, in *TagResourceInput) (*Empty, error) {
	if len(in.Tags) == 0 {
		return nil, newError(CodeValidation, "Tags must hold at least one tag")
	}
	for _, t := range in.Tags {
		if err := checkTag(t); err != nil {
			return nil, err
		}
	}
	return &Empty{}, e.mutateKey(ctx, in.KeyID, func(_ *stateDoc, r *keyRecord) error {
		if r.State == KeyStatePendingDeletion {
			return newError(CodeInvalidState, "key %s is pending deletion", e.KeyARN(r.ID))
		}
		for _, t := range in.Tags {
			if i := slices.IndexFunc(r.Tags, func(x Tag) bool { return x.TagKey == t.TagKey }); i >= 0 {
				r.Tags[i].TagValue = t.TagValue
			} else {
				r.Tags = append(r.Tags, t)
			}
		}
		if len(r.Tags) > maxTags {
			return newError(CodeLimitExceeded, "a key may have at most %d tags", maxTags)
		}
		return nil
	})
}

// UntagResource removes tags from a key.
func (e *Engine) UntagResource(ctx context.Context, in *UntagResourceInput) (*Empty, error) {
	return &Empty{}, e.mutateKey(ctx, in.KeyID, func(_ *stateDoc, r *keyRecord) error {
		r.Tags = slices.DeleteFunc(r.Tags, func(t Tag) bool { return slices.Contains(in.TagKeys, t.TagKey) })
		return nil
	})
}

// ListResourceTags lists a key's tags, sorted by key.
func (e *Engine) ListResourceTags(_ context.Context, in *ListResourceTagsInput) (*ListResourceTagsOutput, error) {
	k, err := e.resolve(e.view.Load(), in.KeyID)
	if err != nil {
		return nil, err
	}
	tags := slices.Clone(k.rec.Tags)
	slices.SortFunc(tags, func(a, b Tag) int { return strings.Compare(a.TagKey, b.TagKey) })
	start, end, next, err := page(len(tags), in.Limit, in.Marker)
	if err != nil {
		return nil, err
	}
	return &ListResourceTagsOutput{Tags: append([]Tag{}, tags[start:end]...), NextMarker: next, Truncated: next != ""}, nil
}
