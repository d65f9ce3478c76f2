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
	"slices"
	"strings"
	"text/tabwriter"

	rekeyv1alpha1 "github.com/rekey-dev/rekey/api/v1alpha1"
	"github.com/rekey-dev/rekey/internal/keypolicy"
	"github.com/rekey-dev/rekey/internal/kms"
)

const keyUsage = `usage: rekey key <subcommand> [flags]

  create   [--description D] [--alias alias/NAME] [--allow-namespace NS]...
                                                    create a key; prints its ARN
  allow    KEY NAMESPACE...                         let KeyRotations in these namespaces use the key ("*": all)
  disallow KEY NAMESPACE...                         take those namespaces out of the key's rekey.dev/namespaces
  grant    KEY --operations OPS NS[/SA]...          let Pods of these namespaces (or only these ServiceAccounts)
                                                    call OPS with the key through kms serve --pod-identity;
                                                    OPS: decrypt, encrypt, generate-data-key (comma-separated)
  revoke   KEY [--operations OPS] NS[/SA]...        take those entries out again (default: every operation);
                                                    NS takes its NS/SA entries too, NS/SA is refused while
                                                    NS is listed
  show     KEY                                      the key as a person reads it: aliases, state, namespaces,
                                                    grants, tags, backing-key versions
  describe KEY                                      print the key's metadata and tags as JSON
  list                                              list keys with state, aliases and workload policy
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
	var namespaces listFlag
	var operations string
	if isPolicySub(sub) {
		fs.StringVar(&operations, "operations", "", "comma-separated: "+strings.Join(keypolicy.OperationNames, ", ")+
			" (revoke: default all)")
	}
	if sub == subCreate {
		description = fs.String("description", "", "key description")
		alias = fs.String("alias", "", "alias to create for the key, alias/NAME")
		fs.Var(&namespaces, "allow-namespace", "namespace whose KeyRotations may use the key (repeatable; \"*\" for all)")
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	want := map[string]int{subCreate: 0, "describe": 1, "list": 0, "rotate": 1, "rotations": 1, "alias": 2, "disable": 1, "enable": 1, "allow": -2, "disallow": -2, "show": 1,
		subGrant: -2, subRevoke: -2}
	n, known := want[sub]
	if !known {
		fmt.Fprintln(stderr, keyUsage)
		return fmt.Errorf("%w: unknown subcommand %q", errUsage, sub)
	}
	if n < 0 && len(pos) < -n {
		return fmt.Errorf("%w: key %s takes at least %d arguments, got %d (see rekey key --help)", errUsage, sub, -n, len(pos))
	}
	if n >= 0 && len(pos) != n {
		return fmt.Errorf("%w: key %s takes %d argument(s), got %d (see rekey key --help)", errUsage, sub, n, len(pos))
	}
	if err := checkKeyNamespaces(sub, pos, namespaces); err != nil {
		return err
	}
	var change *policyChange
	if isPolicySub(sub) {
		if change, err = parsePolicyChange(sub, operations, pos[1:]); err != nil {
			return err
		}
	}
	e, err := ef.open(ctx)
	if err != nil {
		return err
	}
	switch sub {
	case subCreate:
		return createKey(ctx, e, *description, *alias, namespaces, stdout)
	case "describe":
		return describeKey(ctx, e, pos[0], stdout)
	case "list":
		return listKeys(ctx, e, stdout)
	case "rotate":
		return rotateKey(ctx, e, pos[0], stdout)
	case "rotations":
		return listRotations(ctx, e, pos[0], stdout)
	case "alias":
		return setAlias(ctx, e, pos[0], pos[1], stdout)
	case "allow":
		return allowNamespaces(ctx, e, pos[0], pos[1:], stdout)
	case "disallow":
		return disallowNamespaces(ctx, e, pos[0], pos[1:], stdout)
	case "show":
		return showKey(ctx, e, pos[0], stdout)
	case subGrant, subRevoke:
		return changePolicy(ctx, e, pos[0], change, stdout)
	case "disable":
		_, err := e.DisableKey(ctx, &kms.KeyIDInput{KeyID: pos[0]})
		return err
	default: // enable
		_, err := e.EnableKey(ctx, &kms.KeyIDInput{KeyID: pos[0]})
		return err
	}
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

// subCreate is rekey key create.
const subCreate = "create"

// checkKeyNamespaces refuses invalid namespace names given to allow,
// disallow and create --allow-namespace, before anything is opened.
func checkKeyNamespaces(sub string, pos, allowNamespaces []string) error {
	switch sub {
	case "allow", "disallow":
		return checkNamespaces(pos[1:])
	case subCreate:
		return checkNamespaces(allowNamespaces)
	}
	return nil
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

// createKey creates a key, its alias and its namespaces tag.
func createKey(ctx context.Context, e *kms.Engine, description, alias string, namespaces []string, stdout io.Writer) error {
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

// listFlag collects a repeated flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(s string) error {
	if s == "" || strings.Contains(s, ",") {
		return fmt.Errorf("want one namespace name")
	}
	*l = append(*l, s)
	return nil
}
