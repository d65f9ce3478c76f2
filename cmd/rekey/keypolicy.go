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

// policyChange is what rekey key grant or revoke does: add or remove
// entries from the policy tags of some operations.
type policyChange struct {
	grant   bool
	tags    []string
	entries []keypolicy.Entry
}

// parsePolicyChange validates --operations and every NAMESPACE[/SA]
// before anything is opened.
func parsePolicyChange(grant bool, operations string, names []string) (*policyChange, error) {
	c := &policyChange{grant: grant}
	if operations == "" {
		if c.grant {
			return nil, usageErrorf("key grant needs --operations (%s)", strings.Join(keypolicy.OperationNames, ","))
		}
		c.tags = keypolicy.Tags
	}
	for op := range strings.SplitSeq(operations, ",") {
		if operations == "" {
			break
		}
		tag, ok := keypolicy.Operations[op]
		if !ok {
			return nil, usageErrorf("--operations: %q is not one of %s", op, strings.Join(keypolicy.OperationNames, ", "))
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

// policyBeforeWrite, when set (by tests), runs between reading a key's
// policy tags and reading them again before writing: where another
// process's change would land.
var policyBeforeWrite func()

// changePolicy applies a grant or revoke to the key's policy tags: one
// TagResource for the tags that keep entries, one UntagResource for those
// left empty. A tag holding entries that do not parse is refused, not
// rewritten.
//
// Revoking NAMESPACE takes out NAMESPACE and every NAMESPACE/SA entry;
// revoking NAMESPACE/SA while NAMESPACE itself is listed is refused, since
// the ServiceAccount would keep its access through it; revoking an entry
// that is not listed is said, and is not an error.
//
// The change is a read-modify-write of whole tag values, so a change
// another admin (or process) makes in between would be lost: the engine
// has no exported mutation with a precondition (TagResource and
// UntagResource run Engine.mutateKey, whose retry on a keystore conflict
// writes the value given again), so the tags are read again, from the
// keystore, right before writing and compared with what the change was
// computed from. If they changed, the change is computed again once from
// the new values; if they changed again, the command fails and writes
// nothing. What is left is the time between that last read and the write
// (one keystore save), not the whole command.
func changePolicy(ctx context.Context, e *kms.Engine, key string, c *policyChange, stdout io.Writer) error {
	tags, err := keyTags(ctx, e, key)
	if err != nil {
		return err
	}
	var p *policyPlan
	for attempt := 0; ; attempt++ {
		if p, err = c.plan(key, tags); err != nil {
			return err
		}
		if len(p.set) == 0 && len(p.unset) == 0 {
			break // nothing to write, nothing to lose
		}
		if policyBeforeWrite != nil {
			policyBeforeWrite()
		}
		if err := e.Refresh(ctx); err != nil {
			return err
		}
		now, err := keyTags(ctx, e, key)
		if err != nil {
			return err
		}
		if samePolicy(tags, now, c.tags) {
			if err := p.write(ctx, e, key); err != nil {
				return err
			}
			break
		}
		if attempt > 0 {
			return fmt.Errorf("key %s: its policy tags changed while this command ran (another grant or revoke?), twice; nothing was changed: run it again", key)
		}
		tags = now
	}
	for _, n := range p.notes {
		fmt.Fprintln(stdout, n)
	}
	if tags, err = keyTags(ctx, e, key); err != nil {
		return err
	}
	for _, tag := range keypolicy.Tags {
		fmt.Fprintf(stdout, "%s %s=%s\n", key, tag, tags[tag])
	}
	return nil
}

// policyPlan is what a grant or revoke writes, and what it says.
type policyPlan struct {
	set   []kms.Tag
	unset []string
	notes []string
}

// plan computes the change from the key's current tags.
func (c *policyChange) plan(key string, tags map[string]string) (*policyPlan, error) {
	p := &policyPlan{}
	revoked := make([]bool, len(c.entries)) // whether the entry was in any tag
	for _, tag := range c.tags {
		have, err := keypolicy.Parse(tags[tag])
		if err != nil {
			return nil, fmt.Errorf("key %s: tag %s: %w; an admin must set or remove the tag (TagResource or UntagResource)", key, tag, err)
		}
		next := slices.Clone(have)
		if c.grant {
			for _, en := range c.entries {
				if !slices.Contains(next, en) {
					next = append(next, en)
				}
			}
		} else {
			// Namespaces first: NS takes its NS/SA entries with it, so that
			// "revoke NS/SA NS" is not refused below.
			var gone []keypolicy.Entry
			for i, en := range c.entries {
				if en.ServiceAccount != "" {
					continue
				}
				next = slices.DeleteFunc(next, func(x keypolicy.Entry) bool {
					if x.Namespace == en.Namespace {
						gone = append(gone, x)
						revoked[i] = true
						return true
					}
					return false
				})
			}
			for i, en := range c.entries {
				if en.ServiceAccount == "" {
					continue
				}
				if slices.Contains(next, keypolicy.Entry{Namespace: en.Namespace}) {
					return nil, fmt.Errorf("key %s, tag %s: %s is still allowed through the entry %s: revoke %s, then grant the other ServiceAccounts; nothing was changed",
						key, tag, en, en.Namespace, en.Namespace)
				}
				if j := slices.Index(next, en); j >= 0 {
					next = slices.Delete(next, j, j+1)
					gone = append(gone, en)
					revoked[i] = true
				} else if slices.Contains(have, en) {
					revoked[i] = true // taken out with its namespace, above
				}
			}
			if len(gone) > 0 {
				// In the tag's order, as the admin sees it in key describe.
				slices.SortStableFunc(gone, func(a, b keypolicy.Entry) int {
					return slices.Index(have, a) - slices.Index(have, b)
				})
				p.notes = append(p.notes, fmt.Sprintf("%s %s: revoked %s", key, tag, joinEntries(gone)))
			}
		}
		if slices.Equal(next, have) {
			continue
		}
		if len(next) == 0 {
			p.unset = append(p.unset, tag)
			continue
		}
		value, err := keypolicy.Format(next)
		if err != nil {
			return nil, fmt.Errorf("key %s: tag %s: %w", key, tag, err)
		}
		p.set = append(p.set, kms.Tag{TagKey: tag, TagValue: value})
	}
	if !c.grant {
		for i, en := range c.entries {
			if !revoked[i] {
				p.notes = append(p.notes, fmt.Sprintf("%s: %s is not listed in %s: nothing to revoke", key, en, strings.Join(c.tags, ", ")))
			}
		}
	}
	return p, nil
}

// write applies the plan.
func (p *policyPlan) write(ctx context.Context, e *kms.Engine, key string) error {
	if len(p.set) > 0 {
		if _, err := e.TagResource(ctx, &kms.TagResourceInput{KeyID: key, Tags: p.set}); err != nil {
			return err
		}
	}
	if len(p.unset) > 0 {
		if _, err := e.UntagResource(ctx, &kms.UntagResourceInput{KeyID: key, TagKeys: p.unset}); err != nil {
			return err
		}
	}
	return nil
}

// samePolicy reports whether two readings of a key's tags agree on the
// given policy tags.
func samePolicy(a, b map[string]string, tags []string) bool {
	for _, t := range tags {
		va, oka := a[t]
		vb, okb := b[t]
		if oka != okb || va != vb {
			return false
		}
	}
	return true
}

func joinEntries(es []keypolicy.Entry) string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.String()
	}
	return strings.Join(s, ", ")
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
