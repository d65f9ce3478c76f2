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
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	rekeyv1alpha1 "github.com/rekey-dev/rekey/api/v1alpha1"
	"github.com/rekey-dev/rekey/internal/keypolicy"
	"github.com/rekey-dev/rekey/internal/kms"
)

// checkNamespaces refuses a namespace name that is not one ("*" stands for
// every namespace), before anything is written: a name in the
// rekey.dev/namespaces tag is a grant.
func checkNamespaces(names []string) error {
	for _, n := range names {
		if n == "*" {
			continue
		}
		if errs := validation.IsDNS1123Label(n); len(errs) > 0 {
			return usageErrorf("%q is not a namespace name: %s", n, strings.Join(errs, "; "))
		}
	}
	return nil
}

// disallowNamespaces takes namespaces out of a key's rekey.dev/namespaces
// tag (removing the tag when none is left). A namespace that was not there
// is said, not an error: the key does not allow it either way.
func disallowNamespaces(ctx context.Context, e *kms.Engine, key string, remove []string, stdout io.Writer) error {
	_, value, err := e.KeyTag(key, rekeyv1alpha1.KeyNamespacesTag)
	if err != nil {
		return err
	}
	have := rekeyv1alpha1.KeyNamespaces(value)
	for _, n := range remove {
		if !slices.Contains(have, n) {
			fmt.Fprintf(stdout, "%s did not allow namespace %s\n", key, n)
		}
	}
	left := slices.DeleteFunc(slices.Clone(have), func(n string) bool { return slices.Contains(remove, n) })
	switch {
	case len(left) == len(have):
		// Nothing to change.
	case len(left) == 0:
		if _, err := e.UntagResource(ctx, &kms.UntagResourceInput{KeyID: key, TagKeys: []string{rekeyv1alpha1.KeyNamespacesTag}}); err != nil {
			return err
		}
	default:
		if _, err := e.TagResource(ctx, &kms.TagResourceInput{KeyID: key,
			Tags: []kms.Tag{{TagKey: rekeyv1alpha1.KeyNamespacesTag, TagValue: strings.Join(left, ",")}}}); err != nil {
			return err
		}
	}
	if slices.Contains(left, "*") {
		fmt.Fprintf(stdout, "%s still allows every namespace (\"*\"): disallow \"*\" to narrow it\n", key)
	}
	_, err = fmt.Fprintf(stdout, "%s %s=%s\n", key, rekeyv1alpha1.KeyNamespacesTag, strings.Join(left, ","))
	return err
}

// showKey prints a key as a person reads it: identity, state, aliases,
// the namespaces whose KeyRotations may use it, the workload grants, the
// other tags, and its backing-key versions.
func showKey(ctx context.Context, e *kms.Engine, key string, stdout io.Writer) error {
	d, err := e.DescribeKey(ctx, &kms.DescribeKeyInput{KeyID: key})
	if err != nil {
		return err
	}
	m := d.KeyMetadata
	aliases, err := e.ListAliases(ctx, &kms.ListAliasesInput{KeyID: m.KeyID, Limit: ptrInt32(100)})
	if err != nil {
		return err
	}
	tags, err := e.ListResourceTags(ctx, &kms.ListResourceTagsInput{KeyID: m.KeyID, Limit: ptrInt32(1000)})
	if err != nil {
		return err
	}
	rotations, err := e.ListKeyRotations(ctx, &kms.ListKeyRotationsInput{KeyID: m.KeyID})
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	line := func(k, f string, a ...any) { fmt.Fprintf(tw, "%s:\t%s\n", k, fmt.Sprintf(f, a...)) }
	line("Key", "%s", m.Arn)
	var names []string
	for _, a := range aliases.Aliases {
		names = append(names, a.AliasName)
	}
	line("Aliases", "%s", orDash(strings.Join(names, ", ")))
	state := m.KeyState
	if m.DeletionDate != nil {
		state += " (deleted on " + m.DeletionDate.UTC().Format(time.DateOnly) + ")"
	}
	line("State", "%s", state)
	line("Description", "%s", orDash(m.Description))
	if m.CreationDate != nil {
		line("Created", "%s", m.CreationDate.UTC().Format(time.RFC3339))
	}
	rotating := "-"
	other := map[string]string{}
	grants := map[string]string{}
	for _, t := range tags.Tags {
		switch {
		case t.TagKey == rekeyv1alpha1.KeyNamespacesTag:
			rotating = strings.Join(rekeyv1alpha1.KeyNamespaces(t.TagValue), ", ")
		case keypolicy.IsPolicyTag(t.TagKey):
			grants[t.TagKey] = t.TagValue
		default:
			other[t.TagKey] = t.TagValue
		}
	}
	line("KeyRotations from", "%s  (tag %s; rekey key allow / disallow)", rotating, rekeyv1alpha1.KeyNamespacesTag)
	for _, op := range keypolicy.OperationNames {
		line("Pods may "+op, "%s  (tag %s; rekey key grant / revoke)", orDash(strings.ReplaceAll(grants[keypolicy.Operations[op]], ",", ", ")), keypolicy.Operations[op])
	}
	for _, k := range slices.Sorted(mapKeys(other)) {
		line("Tag "+k, "%s", other[k])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nBacking-key versions (%d; Encrypt uses the newest, Decrypt the one a blob names):\n", len(rotations.Rotations)+1)
	tw = tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  SINCE\tHOW\tKEY MATERIAL\t")
	if m.CreationDate != nil {
		fmt.Fprintf(tw, "  %s\tcreated\t%s\t%s\n", m.CreationDate.UTC().Format(time.RFC3339), firstMaterial(rotations, m), current(len(rotations.Rotations) == 0))
	}
	for i, r := range rotations.Rotations {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", r.RotationDate.UTC().Format(time.RFC3339), strings.ToLower(r.RotationType), r.KeyMaterialID,
			current(i == len(rotations.Rotations)-1))
	}
	return tw.Flush()
}

func current(yes bool) string {
	if yes {
		return "(current)"
	}
	return ""
}

// firstMaterial is the key material the key was created with: the current
// one when it was never rotated; otherwise rotations list only the later
// versions, and the first is not named.
func firstMaterial(r *kms.ListKeyRotationsOutput, m *kms.KeyMetadata) string {
	if len(r.Rotations) == 0 {
		return m.CurrentKeyMaterialID
	}
	return "-"
}

func mapKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}
