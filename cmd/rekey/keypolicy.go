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

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/rekey-dev/rekey/internal/keypolicy"
	"github.com/rekey-dev/rekey/internal/kms"
)

// The key subcommands that change the workload policy.
const (
	subGrant  = "grant"
	subRevoke = "revoke"
)

func isPolicySub(sub string) bool { return sub == subGrant || sub == subRevoke }

// policyChange is what rekey key grant or revoke does: add or remove
// entries from the policy tags of some operations.
type policyChange struct {
	grant   bool
	tags    []string
	entries []keypolicy.Entry
}

// parsePolicyChange validates --operations and every NAMESPACE[/SA]
// before anything is opened.
func parsePolicyChange(sub, operations string, names []string) (*policyChange, error) {
	c := &policyChange{grant: sub == subGrant}
	if operations == "" {
		if c.grant {
			return nil, fmt.Errorf("%w: key grant needs --operations (%s)", errUsage, strings.Join(keypolicy.OperationNames, ","))
		}
		c.tags = keypolicy.Tags
	}
	for op := range strings.SplitSeq(operations, ",") {
		if operations == "" {
			break
		}
		tag, ok := keypolicy.Operations[op]
		if !ok {
			return nil, fmt.Errorf("%w: --operations: %q is not one of %s", errUsage, op, strings.Join(keypolicy.OperationNames, ", "))
		}
		if !slices.Contains(c.tags, tag) {
			c.tags = append(c.tags, tag)
		}
	}
	for _, n := range names {
		e, err := keypolicy.ParseEntry(n)
		if err != nil {
			return nil, fmt.Errorf("%w: %w (want NAMESPACE or NAMESPACE/SERVICEACCOUNT; flags go before --)", errUsage, err)
		}
		if !slices.Contains(c.entries, e) {
			c.entries = append(c.entries, e)
		}
	}
	return c, nil
}

// changePolicy applies a grant or revoke to the key's policy tags: one
// TagResource for the tags that keep entries, one UntagResource for those
// left empty. A tag holding entries that do not parse is refused, not
// rewritten.
func changePolicy(ctx context.Context, e *kms.Engine, key string, c *policyChange, stdout io.Writer) error {
	tags, err := keyTags(ctx, e, key)
	if err != nil {
		return err
	}
	var set []kms.Tag
	var unset []string
	for _, tag := range c.tags {
		have, err := keypolicy.Parse(tags[tag])
		if err != nil {
			return fmt.Errorf("key %s: tag %s: %w; an admin must set or remove the tag (TagResource or UntagResource)", key, tag, err)
		}
		next := slices.Clone(have)
		for _, en := range c.entries {
			if c.grant && !slices.Contains(next, en) {
				next = append(next, en)
			}
			if !c.grant {
				next = slices.DeleteFunc(next, func(x keypolicy.Entry) bool { return x == en })
			}
		}
		if slices.Equal(next, have) {
			continue
		}
		if len(next) == 0 {
			unset = append(unset, tag)
			continue
		}
		value, err := keypolicy.Format(next)
		if err != nil {
			return fmt.Errorf("key %s: tag %s: %w", key, tag, err)
		}
		set = append(set, kms.Tag{TagKey: tag, TagValue: value})
	}
	if len(set) > 0 {
		if _, err := e.TagResource(ctx, &kms.TagResourceInput{KeyID: key, Tags: set}); err != nil {
			return err
		}
	}
	if len(unset) > 0 {
		if _, err := e.UntagResource(ctx, &kms.UntagResourceInput{KeyID: key, TagKeys: unset}); err != nil {
			return err
		}
	}
	if tags, err = keyTags(ctx, e, key); err != nil {
		return err
	}
	for _, tag := range keypolicy.Tags {
		fmt.Fprintf(stdout, "%s %s=%s\n", key, tag, tags[tag])
	}
	return nil
}

// keyTags reads every tag of a key.
func keyTags(ctx context.Context, e *kms.Engine, key string) (map[string]string, error) {
	out := map[string]string{}
	for marker := ""; ; {
		page, err := e.ListResourceTags(ctx, &kms.ListResourceTagsInput{KeyID: key, Limit: ptrInt32(1000), Marker: marker})
		if err != nil {
			return nil, err
		}
		for _, t := range page.Tags {
			out[t.TagKey] = t.TagValue
		}
		if !page.Truncated {
			return out, nil
		}
		if page.NextMarker == "" {
			return nil, errors.New("ListResourceTags: truncated without a marker")
		}
		marker = page.NextMarker
	}
}

// workloadsColumn is the key list's WORKLOADS column: each operation's
// entries, "-" for none.
func workloadsColumn(tags map[string]string) string {
	var parts []string
	for _, op := range keypolicy.OperationNames {
		if v := tags[keypolicy.Operations[op]]; v != "" {
			parts = append(parts, op+"="+v)
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}
