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
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/rekey-dev/rekey/internal/kms"
)

const keyUsage = `usage: rekey key <subcommand> [flags]

  create   [--description D] [--alias alias/NAME]   create a key; prints its ARN
  describe KEY                                      print the key's metadata as JSON
  list                                              list keys with state and aliases
  rotate   KEY                                      add a backing-key version (RotateKeyOnDemand)
  rotations KEY                                     list the key's rotations
  alias    alias/NAME KEY                           point an alias at a key (create or update)
  disable  KEY                                      disable a key
  enable   KEY                                      enable a key

KEY is a key id, key ARN, alias name or alias ARN. Every subcommand takes
--keystore and --root-key-file (or REKEY_KEYSTORE and REKEY_ROOT_KEY_FILE).`

func runKey(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || isHelp(args[0]) {
		fmt.Fprintln(stderr, keyUsage)
		if len(args) == 0 {
			return fmt.Errorf("%w: a subcommand is required", errUsage)
		}
		return nil
	}
	sub, args := args[0], args[1:]
	var ef engineFlags
	fs := newFlagSet("key "+sub, stderr)
	ef.bind(fs)
	var description, alias *string
	if sub == "create" {
		description = fs.String("description", "", "key description")
		alias = fs.String("alias", "", "alias to create for the key, alias/NAME")
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	pos := fs.Args()
	want := map[string]int{"create": 0, "describe": 1, "list": 0, "rotate": 1, "rotations": 1, "alias": 2, "disable": 1, "enable": 1}
	n, known := want[sub]
	if !known {
		fmt.Fprintln(stderr, keyUsage)
		return fmt.Errorf("%w: unknown subcommand %q", errUsage, sub)
	}
	if len(pos) != n {
		return fmt.Errorf("%w: key %s takes %d argument(s), got %d (see rekey key --help)", errUsage, sub, n, len(pos))
	}
	e, err := ef.open(ctx)
	if err != nil {
		return err
	}
	switch sub {
	case "create":
		out, err := e.CreateKey(ctx, &kms.CreateKeyInput{Description: *description})
		if err != nil {
			return err
		}
		if *alias != "" {
			if _, err := e.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: *alias, TargetKeyID: out.KeyMetadata.KeyID}); err != nil {
				return fmt.Errorf("key %s created, but its alias was not: %w", out.KeyMetadata.Arn, err)
			}
		}
		_, err = fmt.Fprintln(stdout, out.KeyMetadata.Arn)
		return err
	case "describe":
		out, err := e.DescribeKey(ctx, &kms.DescribeKeyInput{KeyID: pos[0]})
		if err != nil {
			return err
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out.KeyMetadata)
	case "list":
		return listKeys(ctx, e, stdout)
	case "rotate":
		if _, err := e.RotateKeyOnDemand(ctx, &kms.KeyIDInput{KeyID: pos[0]}); err != nil {
			return err
		}
		d, err := e.DescribeKey(ctx, &kms.DescribeKeyInput{KeyID: pos[0]})
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "%s now encrypts with key material %s\n", d.KeyMetadata.Arn, d.KeyMetadata.CurrentKeyMaterialID)
		return err
	case "rotations":
		out, err := e.ListKeyRotations(ctx, &kms.ListKeyRotationsInput{KeyID: pos[0]})
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "DATE\tTYPE\tKEY MATERIAL")
		for _, r := range out.Rotations {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", r.RotationDate.UTC().Format("2006-01-02T15:04:05Z"), r.RotationType, r.KeyMaterialID)
		}
		return tw.Flush()
	case "alias":
		target, err := e.DescribeKey(ctx, &kms.DescribeKeyInput{KeyID: pos[1]})
		if err != nil {
			return err
		}
		_, err = e.UpdateAlias(ctx, &kms.UpdateAliasInput{AliasName: pos[0], TargetKeyID: target.KeyMetadata.KeyID})
		if kms.CodeOf(err) == kms.CodeNotFound {
			_, err = e.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: pos[0], TargetKeyID: target.KeyMetadata.KeyID})
		}
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "%s -> %s\n", pos[0], target.KeyMetadata.Arn)
		return err
	case "disable":
		_, err := e.DisableKey(ctx, &kms.KeyIDInput{KeyID: pos[0]})
		return err
	default: // enable
		_, err := e.EnableKey(ctx, &kms.KeyIDInput{KeyID: pos[0]})
		return err
	}
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
	fmt.Fprintln(tw, "KEY ID\tSTATE\tALIASES\tDESCRIPTION")
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
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", k.KeyID, d.KeyMetadata.KeyState, strings.Join(aliases[k.KeyID], ","), d.KeyMetadata.Description)
		}
		if !out.Truncated {
			break
		}
		marker = out.NextMarker
	}
	return tw.Flush()
}
