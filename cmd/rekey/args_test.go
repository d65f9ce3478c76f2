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
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// testCmd is a command with a value flag (--key, -k), a switch (--on, -o),
// a shorthand value flag (--namespace, -n) and a switch -A, that records
// what it was given.
func testCmd() (*cobra.Command, *struct {
	key, namespace string
	on, all        bool
	pos            []string
}) {
	got := &struct {
		key, namespace string
		on, all        bool
		pos            []string
	}{}
	cmd := &cobra.Command{Use: "t", RunE: func(_ *cobra.Command, args []string) error {
		got.pos = args
		return nil
	}, SilenceErrors: true, SilenceUsage: true}
	cmd.Flags().StringVarP(&got.key, "key", "k", "", "")
	cmd.Flags().BoolVarP(&got.on, "on", "o", false, "")
	cmd.Flags().StringVarP(&got.namespace, "namespace", "n", "", "")
	cmd.Flags().BoolVarP(&got.all, "all", "A", false, "")
	cmd.SetFlagErrorFunc(flagError)
	return cmd, got
}

// Flags anywhere among the positionals (pflag), with checkRawArgs before
// the parse: a flag whose value is missing, and a long flag with one dash,
// are usage errors that never echo a value.
func TestFlagsAndCheckRawArgs(t *testing.T) {
	cases := []struct {
		args    []string
		pos     []string
		key, ns string
		on, all bool
		err     string
		noEcho  string
	}{
		{args: []string{"a", "--key", "k", "b"}, pos: []string{"a", "b"}, key: "k"},
		{args: []string{"--key=k", "a", "--on"}, pos: []string{"a"}, key: "k", on: true},
		{args: []string{"--on", "a"}, pos: []string{"a"}, on: true},
		{args: []string{"--on=false", "a"}, pos: []string{"a"}},
		{args: []string{"a", "--", "--key", "-x"}, pos: []string{"a", "--key", "-x"}},
		{args: []string{"--key", "-", "a"}, pos: []string{"a"}, key: "-"},
		{args: []string{"-n", "ns", "a", "-A"}, pos: []string{"a"}, ns: "ns", all: true},
		{args: []string{"-nother", "-An", "other"}, ns: "other", all: true},
		{args: []string{"-n=ns", "-oA"}, ns: "ns", on: true, all: true},
		// A missing value: the command's own flags and shorthands, and any
		// argument that begins with "--"; --key=--x gives such a value.
		{args: []string{"--key", "-x", "a"}, pos: []string{"a"}, key: "-x"},
		{args: []string{"--key", "-1"}, key: "-1"},
		{args: []string{"--key=--x", "a"}, pos: []string{"a"}, key: "--x"},
		{args: []string{"-n=--x"}, ns: "--x"},
		{args: []string{"a", "--key", "--x"}, err: "flag --key needs a value (it is followed by --x; a value that begins with -- is written --key=VALUE)"},
		{args: []string{"a", "--key", "--x=secret"}, err: "flag --key needs a value (it is followed by --x;", noEcho: "secret"},
		{args: []string{"a", "--key", "--x secret"}, err: "flag --key needs a value (it is followed by --x;", noEcho: "secret"},
		{args: []string{"a", "-n", "---"}, err: "flag -n needs a value (it is followed by ---;"},
		{args: []string{"a", "--key", "--on"}, err: "flag --key needs a value (it is followed by --on)"},
		{args: []string{"a", "--key", "--on=true"}, err: "flag --key needs a value (it is followed by --on)"},
		{args: []string{"a", "--key", "-h"}, err: "flag --key needs a value (it is followed by -h)"},
		{args: []string{"a", "--key", "--help"}, err: "flag --key needs a value (it is followed by --help)"},
		{args: []string{"a", "--key", "-Asecret"}, err: "flag --key needs a value (it is followed by -A)", noEcho: "secret"},
		{args: []string{"a", "--key", "--"}, err: "flag --key needs a value (it is followed by --)"},
		{args: []string{"a", "--key", "-namespace=secret"}, err: "flag --key needs a value (it is followed by -namespace)", noEcho: "secret"},
		{args: []string{"rerun", "-n", "-A"}, err: "flag -n needs a value (it is followed by -A)"},
		{args: []string{"-An", "--key"}, err: "flag -n needs a value (it is followed by --key)"},
		{args: []string{"a", "--key"}, err: "flag --key needs a value"},
		{args: []string{"a", "-An"}, err: "flag -n needs a value"},
		{args: []string{"--frob", "a"}, err: "unknown flag: --frob"},
		// pflag's own messages echo the argument: all of it (bad flag
		// syntax), or up to an '=' (unknown flag).
		{args: []string{"---key=secret"}, err: "bad flag syntax: an argument starts with three dashes (---key); flags take two: --key", noEcho: "secret"},
		{args: []string{"---key secret"}, err: "three dashes (---key)", noEcho: "secret"},
		{args: []string{"--=secret"}, err: `bad flag syntax: an argument starts with "--="`, noEcho: "secret"},
		{args: []string{"--frob secret"}, err: "unknown flag: --frob (a flag and its value in one argument?", noEcho: "secret"},
		{args: []string{"--frob\tsecret=x"}, err: "unknown flag: --frob (", noEcho: "secret"},
		{args: []string{"--frob=secret"}, err: "unknown flag: --frob", noEcho: "secret"},
		{args: []string{"-x", "a"}, err: "unknown shorthand flag -x"},
		{args: []string{"-xsecret"}, err: "unknown shorthand flag -x", noEcho: "secret"},
		// A long flag with one dash would be read as shorthands: -n amespace.
		{args: []string{"-namespace", "ns"}, err: "-namespace: long flags take two dashes: --namespace"},
		{args: []string{"-key=secret"}, err: "-key: long flags take two dashes: --key", noEcho: "secret"},
		{args: []string{"-help"}, err: "-help: long flags take two dashes: --help"},
		{args: []string{"--on=maybe"}, err: "invalid value for --on: want true or false", noEcho: "maybe"},
		// An empty value where it makes no sense (--key, --namespace).
		{args: []string{"a", "--key="}, err: "--key: the value is empty"},
		{args: []string{"a", "--key", ""}, err: "--key: the value is empty"},
		{args: []string{"-n", "", "a"}, err: "--namespace: the value is empty"},
		// A flag given twice with different values (pflag keeps the last).
		{args: []string{"--key", "a", "--key=b"}, err: "--key given twice, with different values", noEcho: "b"},
		{args: []string{"-n", "a", "x", "--namespace", "b"}, err: "--namespace given twice"},
		{args: []string{"-nA", "-An", "B"}, err: "--namespace given twice"},
		{args: []string{"--on", "--on=false"}, err: "--on given twice"},
		{args: []string{"--key", "a", "--key=a", "-oo"}, key: "a", on: true},
		{args: []string{"--key", "a", "--", "--key", "b"}, pos: []string{"--key", "b"}, key: "a"},
	}
	for _, tc := range cases {
		cmd, got := testCmd()
		cmd.InitDefaultHelpFlag()
		err := checkRawArgs(cmd.Flags(), tc.args)
		if err == nil {
			cmd.SetArgs(tc.args)
			err = cmd.Execute()
		}
		if tc.err != "" {
			if err == nil || !errors.Is(err, errUsage) || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want a usage error with %q", tc.args, err, tc.err)
			}
			if tc.noEcho != "" && err != nil && strings.Contains(err.Error(), tc.noEcho) {
				t.Errorf("%q: the error echoes a value: %v", tc.args, err)
			}
			continue
		}
		if err != nil || !slices.Equal(got.pos, tc.pos) || got.key != tc.key || got.namespace != tc.ns || got.on != tc.on || got.all != tc.all {
			t.Errorf("%q: positionals %q key %q namespace %q on %v all %v, error %v; want %q %q %q %v %v",
				tc.args, got.pos, got.key, got.namespace, got.on, got.all, err, tc.pos, tc.key, tc.ns, tc.on, tc.all)
		}
	}
}

// TestRepeatedFlags: the repeatable flags collect every use, each value
// checked by its rule, and a refused value is a usage error that does not
// echo it.
func TestRepeatedFlags(t *testing.T) {
	var hosts, namespaces, tokens []string
	for _, v := range []string{" a.example , ,b", "c"} {
		if err := (repeated{&hosts, "HOST", commaSeparated}).Set(v); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(hosts, []string{"a.example", "b", "c"}) {
		t.Errorf("--host a.example , ,b --host c: %q", hosts)
	}
	if err := (repeated{&namespaces, "NAMESPACE", oneNamespace}).Set("a,b"); err == nil || len(namespaces) != 0 {
		t.Errorf("--allow-namespace a,b: %v, %q", err, namespaces)
	}
	if err := (repeated{&tokens, "string", oneValue}).Set(""); err == nil || len(tokens) != 0 {
		t.Errorf("--grant-token '': %v, %q", err, tokens)
	}

	c := newCLI(t)
	c.fails(2, "invalid value for --allow-namespace: want one namespace name", "", "key", "create", "--allow-namespace", "billing,shop")
	if list := c.ok("", "key", "list"); strings.Contains(list, "arn:") {
		t.Fatalf("a refused key create made a key:\n%s", list)
	}
	_, errOut, code := rekeyCmd("", "manifests", "reencrypt", t.TempDir(), "--source-key", "alias/a", "--destination-key", "alias/b",
		"--grant-token=", "--keystore", c.args[1], "--root-key-file", c.args[3])
	if code != 2 || !strings.Contains(errOut, "invalid value for --grant-token: empty value") {
		t.Fatalf("--grant-token=: exit %d\n%s", code, errOut)
	}
}
