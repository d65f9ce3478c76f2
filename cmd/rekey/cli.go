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
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/rekey-dev/rekey/internal/keypolicy"
)

// streams are the standard input and outputs of one run.
type streams struct {
	in       io.Reader
	out, err io.Writer
}

// run runs the command line args and returns the exit status: 0 done (or
// help shown), 2 a usage error, 1 any other failure. An error is written
// once to stderr, as "rekey <command>: <message>"; a usage error is
// followed by the command's usage line (a group of commands: its list of
// commands).
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmd, err := execute(ctx, args, streams{in: stdin, out: stdout, err: stderr})
	return report(cmd, err, stderr)
}

// execute builds the command tree, afresh for every run (nothing is shared
// between runs), and runs args through it. It returns the command that ran
// or failed.
func execute(ctx context.Context, args []string, s streams) (*cobra.Command, error) {
	root := newRootCmd(s)
	completion := completing(args)
	if completion {
		if len(args) == 1 {
			return root, usageErrorf("%s takes the command line to complete", args[0])
		}
		lenient(root)
		args = completionArgs(root, args)
	}
	root.SetArgs(args)
	if !completion {
		// What pflag cannot refuse: look at the arguments as given.
		if cmd, rest, err := root.Find(args); err == nil {
			cmd.InitDefaultHelpFlag()
			if err := checkRawArgs(cmd.Flags(), rest); err != nil {
				return cmd, err
			}
			if cmd.HasSubCommands() { // rekey, or a group of commands
				if err := checkGroupArgs(cmd, rest); err != nil {
					return cmd, err
				}
			}
		}
	}
	return root.ExecuteContextC(ctx)
}

// checkGroupArgs looks at the arguments of rekey itself or of a group of
// commands (rekey key) as given: the group runs nothing, and its flags
// accept unknown flags so that "rekey frob --keystore x" says that frob is
// unknown. cobra takes an unknown flag for one that takes the next word as
// its value, so a subcommand's name after it goes unseen ("unknown
// subcommand db" for rekey secret --apply create db); and the group would
// run with an unknown flag alone (rekey --version --frob). Here:
//
//   - a subcommand's name after "--" is a usage error that says so;
//   - a subcommand's name after a flag is a usage error that names the
//     flag: unknown, or one of the subcommand's that goes after its name;
//   - with no word but flags, an unknown flag is the usage error.
//
// A first word that is not a subcommand is left to the group, which says
// that it is unknown.
func checkGroupArgs(cmd *cobra.Command, args []string) error {
	var flags []string
	for i, a := range args {
		switch {
		case a == "--":
			if i+1 < len(args) {
				if sub := subcommand(cmd, args[i+1]); sub != nil {
					return usageErrorf("%s is a command: it goes before \"--\" (everything after -- is an argument)", sub.Name())
				}
			}
			return nil
		case len(a) > 1 && a[0] == '-':
			flags = append(flags, a)
		default:
			sub := subcommand(cmd, a)
			if sub == nil {
				return checkGroupFlags(cmd, args)
			}
			if len(flags) == 0 {
				return nil // cobra found it
			}
			f := flags[len(flags)-1] // cobra's search took this name for its value
			if isFlagOf(cmd.Flags(), f) {
				return nil // the group's own (rekey --help key: rekey's help)
			}
			sub.InitDefaultHelpFlag()
			if isFlagOf(sub.Flags(), f) {
				shown := flagPart(sub.Flags(), f)
				return usageErrorf("flag %s goes after the command's name: %s %s ... %s", shown, cmd.CommandPath(), sub.Name(), shown)
			}
			return unknownFlag(f)
		}
	}
	return checkGroupFlags(cmd, args)
}

// checkGroupFlags refuses an unknown flag given to rekey or to a group of
// commands when the group would otherwise run with no word left (pflag
// skips unknown flags there, and their values): rekey --version --frob,
// rekey --version --keystore x. With a word left, the group says that it
// is not a command.
func checkGroupFlags(cmd *cobra.Command, args []string) error {
	fs := shadowFlags(cmd.Flags())
	fs.ParseErrorsAllowlist.UnknownFlags = true
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return nil // pflag's error, or the group's
	}
	for _, a := range args {
		if a == "--" {
			break
		}
		if len(a) > 1 && a[0] == '-' && !isFlagOf(cmd.Flags(), a) {
			return unknownFlag(a)
		}
	}
	return nil
}

// subcommand returns the subcommand of cmd named name, or nil.
func subcommand(cmd *cobra.Command, name string) *cobra.Command {
	for _, sub := range cmd.Commands() {
		if sub.Name() == name || sub.HasAlias(name) {
			return sub
		}
	}
	return nil
}

// unknownFlag is the usage error for the flag argument a, named without
// a value.
func unknownFlag(a string) error {
	if strings.HasPrefix(a, "--") {
		name, _ := flagName(a[2:])
		return usageErrorf("unknown flag: --%s", name)
	}
	return usageErrorf("unknown shorthand flag %s", a[:2])
}

// completing reports whether args ask for shell completion (what the
// scripts of rekey completion run): rekey __complete WORD... TOCOMPLETE.
func completing(args []string) bool {
	return len(args) > 0 && (args[0] == cobra.ShellCompRequestCmd || args[0] == cobra.ShellCompNoDescRequestCmd)
}

// lenient makes the flags of c and its subcommands parse whatever they
// are given, for shell completion: cobra parses a command line twice
// there (so a --context key would be "given twice"), and prints a parse
// error with every argument in it, values included, to stderr and to
// $BASH_COMP_DEBUG_FILE. Unknown flags are skipped and values that do not
// parse ignored; a real run refuses both.
func lenient(c *cobra.Command) {
	c.FParseErrWhitelist.UnknownFlags = true
	c.Flags().VisitAll(func(f *pflag.Flag) {
		if _, ok := f.Value.(cobra.SliceValue); ok {
			f.Value = lenientSlice{lenientValue{f.Value}}
		} else {
			f.Value = lenientValue{f.Value}
		}
	})
	for _, sub := range c.Commands() {
		lenient(sub)
	}
}

// lenientValue is a flag value whose Set never fails.
type lenientValue struct{ pflag.Value }

func (v lenientValue) Set(s string) error {
	_ = v.Value.Set(s)
	return nil
}

// lenientSlice is a lenientValue of a repeatable flag, which completion
// offers again after its first use.
type lenientSlice struct{ lenientValue }

func (v lenientSlice) GetSlice() []string { return v.Value.(cobra.SliceValue).GetSlice() }

// completionArgs is a completion request (__complete WORD... TOCOMPLETE)
// without what would still make cobra's parse of the WORDs fail, and
// print them, once the flags are lenient: an argument with bad flag syntax
// (---x, --=x), and a flag that takes a value when it is the last WORD
// and a flag name is being completed (rekey encrypt --key --<TAB>).
func completionArgs(root *cobra.Command, args []string) []string {
	words, toComplete := args[1:len(args)-1], args[len(args)-1]
	kept := []string{args[0]}
	dashdash := false
	for i, w := range words {
		if w == "--" {
			kept = append(kept, words[i:]...)
			dashdash = true
			break
		}
		if strings.HasPrefix(w, "---") || strings.HasPrefix(w, "--=") {
			continue
		}
		kept = append(kept, w)
	}
	if n := len(kept); n > 1 && !dashdash && strings.HasPrefix(toComplete, "-") {
		if cmd, _, err := root.Find(kept[1:]); err == nil && flagTakingNext(cmd.Flags(), kept[n-1]) != nil {
			kept = kept[:n-1]
		}
	}
	return append(kept, toComplete)
}

// report writes err, if any, and returns the exit status.
func report(cmd *cobra.Command, err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	path := "rekey"
	if cmd != nil {
		path = cmd.CommandPath()
	}
	if !errors.Is(err, errUsage) {
		fmt.Fprintf(stderr, "%s: %v\n", path, err)
		return 1
	}
	fmt.Fprintf(stderr, "%s: %s\n", path, strings.TrimPrefix(err.Error(), errUsage.Error()+": "))
	switch {
	case cmd == nil:
	case cmd.HasAvailableSubCommands():
		fmt.Fprintf(stderr, "\n%s", cmd.UsageString())
	default:
		fmt.Fprintf(stderr, "Usage: %s\nRun '%s -h' for help.\n", cmd.UseLine(), path)
	}
	return 2
}

const rootLong = `rekey re-encrypts the KMS ciphertext stored in Kubernetes Secrets when the
key behind it changes. This one binary is the operator (rekey controller),
the command line of its embedded KMS-like engine (key, keystore, encrypt,
decrypt, reencrypt, secret, manifests), of its KeyRotations (status, rerun),
and the engine's AWS KMS-compatible endpoint (kms serve).

Flags go anywhere among a command's arguments; everything after -- is an
argument. Commands that open the engine take --keystore and --root-key-file
(or REKEY_KEYSTORE and REKEY_ROOT_KEY_FILE). Exit status: 0 done, 1 failed,
2 a usage error.`

func newRootCmd(s streams) *cobra.Command {
	var showVersion bool
	root := &cobra.Command{
		Use:   "rekey",
		Short: "re-encrypt the KMS ciphertext of Kubernetes Secrets under new keys",
		Long:  rootLong,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageErrorf("unknown command %q%s", args[0], suggest(cmd, args[0]))
			}
			return nil
		},
		RunE: func(*cobra.Command, []string) error {
			if showVersion {
				return printVersion(s.out)
			}
			return usageErrorf("a command is required")
		},
		// run writes errors and usage itself, once.
		SilenceErrors: true,
		SilenceUsage:  true,
		// So that "rekey frob --keystore x" says that frob is unknown.
		FParseErrWhitelist: cobra.FParseErrWhitelist{UnknownFlags: true},
	}
	root.Flags().BoolVar(&showVersion, "version", false, "print rekey's version (as rekey version)")
	root.AddCommand(
		newControllerCmd(s),
		newKeyCmd(s),
		newKeystoreCmd(s),
		newEncryptCmd(s),
		newDecryptCmd(s),
		newReEncryptCmd(s),
		newSecretCmd(s),
		newManifestsCmd(s),
		newStatusCmd(s),
		newRerunCmd(s),
		newKMSCmd(s),
		newVersionCmd(s),
	)
	root.SetIn(s.in)
	root.SetOut(s.out)
	root.SetErr(s.err)
	root.SetHelpCommand(newHelpCmd())
	root.SetUsageFunc(writeUsage)
	root.SetFlagErrorFunc(flagError)
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	if completion, _, err := root.Find([]string{"completion"}); err == nil && completion != root {
		completion.Short = "print a shell completion script: bash, zsh, fish or powershell"
		for _, shell := range completion.Commands() {
			shell.Args = noArgs // cobra.NoArgs echoes the argument
		}
	}
	finishTree(root)
	completeFlagValues(root)
	return root
}

// fileFlags are the flags whose values are file (or directory) names: the
// shells complete those; the values of the other flags are not files.
var fileFlags = nameSet(`keystore root-key-file to from from-file credentials-file policy-file audit-log
	tls-cert-file tls-key-file metrics-cert-dir`)

// completeFlagValues says, for shell completion, what the value of each
// flag of c and its subcommands is: -o yaml or json, --operations the
// operation names, a file name for fileFlags, and nothing to complete for
// the others.
func completeFlagValues(c *cobra.Command) {
	c.LocalNonPersistentFlags().VisitAll(func(f *pflag.Flag) {
		var complete cobra.CompletionFunc
		switch {
		case f.NoOptDefVal != "" || fileFlags[f.Name]:
			return
		case f.Name == "output":
			complete = cobra.FixedCompletions([]cobra.Completion{"yaml", "json"}, cobra.ShellCompDirectiveNoFileComp)
		case f.Name == "operations":
			complete = cobra.FixedCompletions(keypolicy.OperationNames, cobra.ShellCompDirectiveNoFileComp)
		default:
			complete = cobra.NoFileCompletions
		}
		_ = c.RegisterFlagCompletionFunc(f.Name, complete) // fails only for a flag registered twice
	})
	for _, sub := range c.Commands() {
		completeFlagValues(sub)
	}
}

// finishTree makes every group of commands (one without a run of its own,
// cobra's completion among them) refuse a missing or unknown subcommand as
// a usage error, and every check of positional arguments report usage
// errors.
func finishTree(c *cobra.Command) {
	if c.HasSubCommands() && !c.Runnable() {
		c.Args = cobra.ArbitraryArgs
		// "rekey key frob --keystore x" says that frob is unknown.
		c.FParseErrWhitelist.UnknownFlags = true
		c.RunE = func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageErrorf("a subcommand is required")
			}
			return usageErrorf("unknown subcommand %q%s", args[0], suggest(cmd, args[0]))
		}
	}
	if check := c.Args; check != nil {
		c.Args = func(cmd *cobra.Command, args []string) error { return asUsage(check(cmd, args)) }
	}
	for _, sub := range c.Commands() {
		finishTree(sub)
	}
}

// suggest names the subcommands of cmd close to a mistyped name.
func suggest(cmd *cobra.Command, name string) string {
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2
	}
	if s := cmd.SuggestionsFor(name); len(s) > 0 {
		return " (did you mean " + strings.Join(s, " or ") + "?)"
	}
	return ""
}

func newVersionCmd(s streams) *cobra.Command {
	return &cobra.Command{
		Use:               "version",
		Short:             "print rekey's version (also rekey --version)",
		Args:              noArgs,
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE:              func(*cobra.Command, []string) error { return printVersion(s.out) },
	}
}

func printVersion(w io.Writer) error {
	_, err := fmt.Fprintf(w, "rekey %s\n", version)
	return err
}

// newHelpCmd is "rekey help COMMAND...": cobra's help command, except that
// an unknown command is a usage error.
func newHelpCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "help [COMMAND]...",
		Short: "show a command's help (as rekey COMMAND -h)",
		Args:  cobra.ArbitraryArgs,
		ValidArgsFunction: func(c *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
			cmd, rest, err := c.Root().Find(args)
			if err != nil || len(rest) > 0 {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			var names []cobra.Completion
			for _, sub := range cmd.Commands() {
				if sub.IsAvailableCommand() && strings.HasPrefix(sub.Name(), toComplete) {
					names = append(names, cobra.CompletionWithDesc(sub.Name(), sub.Short))
				}
			}
			return names, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(c *cobra.Command, args []string) error {
			cmd, rest, err := c.Root().Find(args)
			if err != nil || len(rest) > 0 {
				return usageErrorf("no command %q", strings.Join(args, " "))
			}
			cmd.InitDefaultHelpFlag()
			return cmd.Help()
		},
	}
}

// writeUsage is every command's usage: its usage line (with its
// positional arguments), examples, subcommands and flags. cobra writes it
// in the help (-h), and run after a usage error.
func writeUsage(c *cobra.Command) error {
	var b strings.Builder
	if c.HasAvailableSubCommands() {
		fmt.Fprintf(&b, "Usage:\n  %s COMMAND [flags]\n", c.CommandPath())
	} else {
		fmt.Fprintf(&b, "Usage:\n  %s\n", c.UseLine())
	}
	if c.HasExample() {
		fmt.Fprintf(&b, "\nExamples:\n%s\n", strings.TrimRight(c.Example, "\n"))
	}
	if c.HasAvailableSubCommands() {
		b.WriteString("\nCommands:\n")
		writeCommandList(&b, c)
	}
	if c.HasAvailableLocalFlags() {
		fmt.Fprintf(&b, "\nFlags:\n%s", c.LocalFlags().FlagUsagesWrapped(flagColumns))
	}
	if c.HasAvailableInheritedFlags() {
		fmt.Fprintf(&b, "\nInherited flags:\n%s", c.InheritedFlags().FlagUsagesWrapped(flagColumns))
	}
	if c.HasAvailableSubCommands() {
		fmt.Fprintf(&b, "\nRun '%s COMMAND -h' for a command's arguments and flags.\n", c.CommandPath())
	}
	_, _ = io.WriteString(c.OutOrStderr(), b.String())
	return nil
}

// flagColumns is the width flag descriptions are wrapped to.
const flagColumns = 100

// writeCommandList lists the subcommands of c with their summaries; in a
// group of commands (rekey key), each with its arguments (its use line).
func writeCommandList(b *strings.Builder, c *cobra.Command) {
	const widest = 34
	type entry struct{ use, short string }
	var entries []entry
	width := 0
	for _, sub := range c.Commands() {
		if !sub.IsAvailableCommand() && sub.Name() != "help" {
			continue
		}
		use := sub.Name()
		if c.HasParent() && !sub.HasAvailableSubCommands() { // in a group: with its arguments
			use = strings.TrimSpace(strings.TrimSuffix(sub.Use, "[flags]"))
		}
		entries = append(entries, entry{use, sub.Short})
		if len(use) <= widest {
			width = max(width, len(use))
		}
	}
	for _, e := range entries {
		if len(e.use) > widest {
			fmt.Fprintf(b, "  %s\n  %-*s  %s\n", e.use, width, "", e.short)
			continue
		}
		fmt.Fprintf(b, "  %-*s  %s\n", width, e.use, e.short)
	}
}
