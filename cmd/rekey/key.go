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
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	rekeyv1alpha1 "github.com/rekey-dev/rekey/api/v1alpha1"
	"github.com/rekey-dev/rekey/internal/keypolicy"
	"github.com/rekey-dev/rekey/internal/kms"
)

const keyLong = `Manage the keys of the embedded engine's keystore. KEY is a key id, key ARN,
alias name or alias ARN. Every subcommand takes --keystore and
--root-key-file (or REKEY_KEYSTORE and REKEY_ROOT_KEY_FILE).

A key's rekey.dev/namespaces tag names the namespaces whose KeyRotations
may use it (allow, disallow; "*": all); its rekey.dev/decrypt, -encrypt and
-generate-data-key tags name the namespaces (or ServiceAccounts) whose Pods
may call those operations through kms serve --pod-identity (grant, revoke).`

const keyExample = `  rekey key create --alias alias/billing --allow-namespace billing
  rekey key rotate alias/billing
  rekey key grant alias/billing --operations decrypt billing/app`

func newKeyCmd(s streams) *cobra.Command {
	var create struct {
		description, alias string
		namespaces         []string
	}
	createCmd := keyCommand(s, "create", "create a key; prints its ARN", noArgs,
		func(ctx context.Context, _ []string, open openEngine) error {
			if err := checkNamespaces(create.namespaces); err != nil {
				return err
			}
			if create.alias != "" {
				if err := checkAliasName(create.alias); err != nil {
					return err
				}
			}
			e, err := open()
			if err != nil {
				return err
			}
			return createKey(ctx, e, create.description, create.alias, create.namespaces, s.out)
		})
	createCmd.Flags().StringVar(&create.description, "description", "", "key description")
	createCmd.Flags().StringVar(&create.alias, "alias", "", "alias to create for the key, `alias/NAME`")
	createCmd.Flags().Var(repeated{&create.namespaces, "NAMESPACE", oneNamespace}, "allow-namespace", "namespace whose KeyRotations may use the key (repeatable; \"*\" for all)")

	namespaces := func(use, short string, change func(ctx context.Context, e *kms.Engine, key string, namespaces []string, stdout io.Writer) error) *cobra.Command {
		return keyCommand(s, use, short, minArgs(2), func(ctx context.Context, args []string, open openEngine) error {
			if err := checkNamespaces(args[1:]); err != nil {
				return err
			}
			e, err := open()
			if err != nil {
				return err
			}
			return change(ctx, e, args[0], args[1:], s.out)
		})
	}
	policy := func(grant bool, use, short, long string) *cobra.Command {
		var operations string
		cmd := keyCommand(s, use, short, minArgs(2), func(ctx context.Context, args []string, open openEngine) error {
			change, err := parsePolicyChange(grant, operations, args[1:])
			if err != nil {
				return err
			}
			e, err := open()
			if err != nil {
				return err
			}
			return changePolicy(ctx, e, args[0], change, s.out)
		})
		usage := "the operations, comma-separated: " + strings.Join(keypolicy.OperationNames, ", ")
		if !grant {
			usage += " (default: every operation)"
		}
		cmd.Flags().StringVar(&operations, "operations", "", usage)
		cmd.Long = long
		return cmd
	}
	// oneKey is a subcommand that takes one KEY.
	oneKey := func(use, short string, do func(ctx context.Context, e *kms.Engine, key string) error) *cobra.Command {
		return keyCommand(s, use, short, exactArgs(1), func(ctx context.Context, args []string, open openEngine) error {
			e, err := open()
			if err != nil {
				return err
			}
			return do(ctx, e, args[0])
		})
	}

	c := &cobra.Command{
		Use:     "key",
		Short:   "create, show, list, rotate, alias, disable and enable keys; who may use them",
		Long:    keyLong,
		Example: keyExample,
	}
	c.AddCommand(
		createCmd,
		namespaces("allow KEY NAMESPACE...", "let KeyRotations in these namespaces use the key (\"*\": all)", allowNamespaces),
		namespaces("disallow KEY NAMESPACE...", "take those namespaces out of the key's rekey.dev/namespaces", disallowNamespaces),
		policy(true, "grant KEY NAMESPACE[/SERVICEACCOUNT]... --operations OPS",
			"let Pods of these namespaces (or ServiceAccounts) call OPS with the key through kms serve",
			`Lets the Pods of these namespaces (or only these ServiceAccounts) call OPS
with the key through kms serve --pod-identity: adds them to the key's
rekey.dev/decrypt, -encrypt or -generate-data-key tags. OPS is decrypt,
encrypt and generate-data-key, comma-separated.`),
		policy(false, "revoke KEY NAMESPACE[/SERVICEACCOUNT]...",
			"take namespaces (or ServiceAccounts) out of the key's workload policy",
			`Takes these entries out of the key's rekey.dev/decrypt, -encrypt and
-generate-data-key tags (--operations: out of those operations' tags only).
NAMESPACE takes its NAMESPACE/SERVICEACCOUNT entries too;
NAMESPACE/SERVICEACCOUNT is refused while NAMESPACE itself is listed, since
the ServiceAccount would keep its access through it.`),
		oneKey("show KEY", "the key as a person reads it: aliases, state, namespaces, grants, tags, backing-key versions",
			func(ctx context.Context, e *kms.Engine, key string) error { return showKey(ctx, e, key, s.out) }),
		oneKey("describe KEY", "print the key's metadata and tags as JSON",
			func(ctx context.Context, e *kms.Engine, key string) error { return describeKey(ctx, e, key, s.out) }),
		keyCommand(s, "list", "list keys with state, aliases and workload policy", noArgs,
			func(ctx context.Context, _ []string, open openEngine) error {
				e, err := open()
				if err != nil {
					return err
				}
				return listKeys(ctx, e, s.out)
			}),
		oneKey("rotate KEY", "add a backing-key version (RotateKeyOnDemand)",
			func(ctx context.Context, e *kms.Engine, key string) error { return rotateKey(ctx, e, key, s.out) }),
		oneKey("rotations KEY", "list the key's rotations",
			func(ctx context.Context, e *kms.Engine, key string) error { return listRotations(ctx, e, key, s.out) }),
		keyCommand(s, "alias alias/NAME KEY", "point an alias at a key (create or update)", exactArgs(2),
			func(ctx context.Context, args []string, open openEngine) error {
				e, err := open()
				if err != nil {
					return err
				}
				return setAlias(ctx, e, args[0], args[1], s.out)
			}),
		oneKey("disable KEY", "disable a key", func(ctx context.Context, e *kms.Engine, key string) error {
			_, err := e.DisableKey(ctx, &kms.KeyIDInput{KeyID: key})
			return err
		}),
		oneKey("enable KEY", "enable a key", func(ctx context.Context, e *kms.Engine, key string) error {
			_, err := e.EnableKey(ctx, &kms.KeyIDInput{KeyID: key})
			return err
		}),
	)
	return c
}

// openEngine opens the engine over the keystore the flags name.
type openEngine func() (*kms.Engine, error)

// keyCommand is a rekey key subcommand: the engine's flags, the check of
// its positional arguments, and run, which checks what it was given
// before it opens the engine.
func keyCommand(s streams, use, short string, args cobra.PositionalArgs,
	run func(ctx context.Context, args []string, open openEngine) error) *cobra.Command {
	var ef engineFlags
	cmd := &cobra.Command{
		Use:               use,
		Short:             short,
		Args:              args,
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, args []string) error {
			return run(cmd.Context(), args, func() (*kms.Engine, error) { return ef.open(cmd.Context()) })
		},
	}
	ef.bind(cmd.Flags(), s.err)
	return cmd
}

// listRotations prints a key's rotations.
func listRotations(ctx context.Context, e *kms.Engine, key string, stdout io.Writer) error {
	out, err := e.ListKeyRotations(ctx, &kms.ListKeyRotationsInput{KeyID: key})
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DATE\tTYPE\tKEY MATERIAL")
	for _, r := range out.Rotations {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.RotationDate.UTC().Format("2006-01-02T15:04:05Z"), r.RotationType, r.KeyMaterialID)
	}
	return tw.Flush()
}

// setAlias points alias at key, creating it when it does not exist.
func setAlias(ctx context.Context, e *kms.Engine, alias, key string, stdout io.Writer) error {
	target, err := e.DescribeKey(ctx, &kms.DescribeKeyInput{KeyID: key})
	if err != nil {
		return err
	}
	_, err = e.UpdateAlias(ctx, &kms.UpdateAliasInput{AliasName: alias, TargetKeyID: target.KeyMetadata.KeyID})
	if kms.CodeOf(err) == kms.CodeNotFound {
		_, err = e.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: alias, TargetKeyID: target.KeyMetadata.KeyID})
	}
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s -> %s\n", alias, target.KeyMetadata.Arn)
	return err
}

// rotateKey adds a backing-key version and says which one encrypts now.
func rotateKey(ctx context.Context, e *kms.Engine, key string, stdout io.Writer) error {
	if _, err := e.RotateKeyOnDemand(ctx, &kms.KeyIDInput{KeyID: key}); err != nil {
		return err
	}
	d, err := e.DescribeKey(ctx, &kms.DescribeKeyInput{KeyID: key})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s now encrypts with key material %s\n", d.KeyMetadata.Arn, d.KeyMetadata.CurrentKeyMaterialID)
	return err
}

// describeKey prints a key's metadata and its tags as one JSON object.
func describeKey(ctx context.Context, e *kms.Engine, key string, stdout io.Writer) error {
	out, err := e.DescribeKey(ctx, &kms.DescribeKeyInput{KeyID: key})
	if err != nil {
		return err
	}
	tags, err := keyTags(ctx, e, key)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		*kms.KeyMetadata
		Tags map[string]string `json:"Tags"`
	}{out.KeyMetadata, tags})
}

func listKeys(ctx context.Context, e *kms.Engine, stdout io.Writer) error {
	aliases := map[string][]string{}
	for marker := ""; ; {
		out, err := e.ListAliases(ctx, &kms.ListAliasesInput{Marker: marker})
		if err != nil {
			return err
		}
		for _, a := range out.Aliases {
			aliases[a.TargetKeyID] = append(aliases[a.TargetKeyID], a.AliasName)
		}
		if !out.Truncated {
			break
		}
		marker = out.NextMarker
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY ID\tSTATE\tALIASES\tWORKLOADS\tDESCRIPTION")
	for marker := ""; ; {
		out, err := e.ListKeys(ctx, &kms.ListKeysInput{Marker: marker})
		if err != nil {
			return err
		}
		for _, k := range out.Keys {
			d, err := e.DescribeKey(ctx, &kms.DescribeKeyInput{KeyID: k.KeyID})
			if err != nil {
				return err
			}
			tags, err := keyTags(ctx, e, k.KeyID)
			if err != nil {
				return err
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", k.KeyID, d.KeyMetadata.KeyState, strings.Join(aliases[k.KeyID], ","),
				workloadsColumn(tags), d.KeyMetadata.Description)
		}
		if !out.Truncated {
			break
		}
		marker = out.NextMarker
	}
	return tw.Flush()
}

// checkAliasName refuses, as a usage error, an alias name the engine
// would refuse: key create checks it before it creates the key.
func checkAliasName(name string) error {
	var ke *kms.Error
	if err := kms.CheckAliasName(name); errors.As(err, &ke) {
		return usageErrorf("--alias: %s", ke.Message)
	}
	return nil
}

// createKey creates a key, its alias and its namespaces tag. An alias that
// exists already is refused before the key is created.
func createKey(ctx context.Context, e *kms.Engine, description, alias string, namespaces []string, stdout io.Writer) error {
	if alias != "" {
		d, err := e.DescribeKey(ctx, &kms.DescribeKeyInput{KeyID: alias})
		switch {
		case err == nil:
			return fmt.Errorf("alias %s exists already (it names key %s): no key created", alias, d.KeyMetadata.Arn)
		case kms.CodeOf(err) != kms.CodeNotFound:
			return err
		}
	}
	in := &kms.CreateKeyInput{Description: description}
	if len(namespaces) > 0 {
		in.Tags = []kms.Tag{{TagKey: rekeyv1alpha1.KeyNamespacesTag, TagValue: strings.Join(namespaces, ",")}}
	}
	out, err := e.CreateKey(ctx, in)
	if err != nil {
		return err
	}
	if alias != "" {
		if _, err := e.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: alias, TargetKeyID: out.KeyMetadata.KeyID}); err != nil {
			return fmt.Errorf("key %s created, but its alias was not: %w", out.KeyMetadata.Arn, err)
		}
	}
	_, err = fmt.Fprintln(stdout, out.KeyMetadata.Arn)
	return err
}

// allowNamespaces adds namespaces to a key's rekey.dev/namespaces tag.
func allowNamespaces(ctx context.Context, e *kms.Engine, key string, add []string, stdout io.Writer) error {
	tags, err := e.ListResourceTags(ctx, &kms.ListResourceTagsInput{KeyID: key, Limit: ptrInt32(1000)})
	if err != nil {
		return err
	}
	var have []string
	for _, t := range tags.Tags {
		if t.TagKey == rekeyv1alpha1.KeyNamespacesTag {
			have = rekeyv1alpha1.KeyNamespaces(t.TagValue)
		}
	}
	for _, n := range add {
		if !slices.Contains(have, n) {
			have = append(have, n)
		}
	}
	value := strings.Join(have, ",")
	if _, err := e.TagResource(ctx, &kms.TagResourceInput{KeyID: key, Tags: []kms.Tag{{TagKey: rekeyv1alpha1.KeyNamespacesTag, TagValue: value}}}); err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s %s=%s\n", key, rekeyv1alpha1.KeyNamespacesTag, value)
	return err
}

func ptrInt32(v int32) *int32 { return &v }
