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
	"path/filepath"
	"strings"
	"testing"
)

// squash folds runs of spaces, so tabular output compares by words.
func squash(s string) string { return strings.Join(strings.Fields(s), " ") }

// rekey key show reads as a person wants; disallow takes namespaces out
// (and the tag with the last one); namespace names are checked before
// anything is written; a flag after the positionals is a flag, never a
// namespace.
func TestKeyShowAllowDisallow(t *testing.T) {
	c := newCLI(t)
	arn := strings.TrimSpace(c.ok("", "key", "create", "--alias", "alias/app", "--description", "billing secrets",
		"--allow-namespace", "billing", "--allow-namespace", "payments"))
	c.ok("", "key", "rotate", "alias/app")
	c.ok("", "key", "grant", "alias/app", "--operations", "decrypt", "billing/api")
	show := squash(c.ok("", "key", "show", "alias/app"))
	for _, want := range []string{
		"Key: " + arn, "Aliases: alias/app", "State: Enabled", "Description: billing secrets",
		"KeyRotations from: billing, payments (tag rekey.dev/namespaces", "Pods may decrypt: billing/api (tag rekey.dev/decrypt",
		"Pods may encrypt: - (tag rekey.dev/encrypt", "Backing-key versions (2;", "on_demand", "(current)",
	} {
		if !strings.Contains(show, want) {
			t.Fatalf("key show: no %q in\n%s", want, show)
		}
	}

	out := c.ok("", "key", "disallow", "alias/app", "payments", "elsewhere")
	if !strings.Contains(out, "did not allow namespace elsewhere") || !strings.Contains(out, "rekey.dev/namespaces=billing\n") {
		t.Fatalf("disallow: %s", out)
	}
	c.ok("", "key", "disallow", "alias/app", "billing")
	if show := squash(c.ok("", "key", "show", "alias/app")); !strings.Contains(show, "KeyRotations from: - (tag") {
		t.Fatalf("the tag is not gone:\n%s", show)
	}
	if d := c.ok("", "key", "describe", "alias/app"); strings.Contains(d, "rekey.dev/namespaces") {
		t.Fatalf("describe still shows the tag:\n%s", d)
	}

	c.ok("", "key", "allow", "alias/app", "billing")
	before := c.ok("", "key", "describe", "alias/app")
	for name, args := range map[string][]string{
		"a name with capitals":       {"key", "allow", "alias/app", "Billing"},
		"a name with an underscore":  {"key", "allow", "alias/app", "bill_ing"},
		"a list in one argument":     {"key", "allow", "alias/app", "billing,other"},
		"disallow an invalid name":   {"key", "disallow", "alias/app", "billing/x"},
		"create with an invalid one": {"key", "create", "--alias", "alias/other", "--allow-namespace", "Nope"},
		"show without a key":         {"key", "show"},
		"show with two keys":         {"key", "show", "alias/app", "alias/app"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, errOut, code := c.run("", args...); code != 2 || errOut == "" {
				t.Fatalf("exit %d: %s", code, errOut)
			}
		})
	}
	// Issue 13's finding: a flag after the positionals was taken as
	// namespaces and the command wrote to another keystore. Now the flag
	// is a flag: the keystore it names does not exist, and nothing else
	// is written.
	// (c.args[2:]: the root key without c's --keystore, which with another
	// --keystore would be refused as given twice.)
	if _, errOut, code := rekeyCmd("", append([]string{"key", "allow", "alias/app", "payments", "--keystore", filepath.Join(t.TempDir(), "other.rks")},
		c.args[2:]...)...); code != 1 ||
		!strings.Contains(errOut, "does not exist") {
		t.Fatalf("allow ... --keystore other: exit %d: %s", code, errOut)
	}
	if after := c.ok("", "key", "describe", "alias/app"); after != before {
		t.Fatalf("a refused command changed the key:\n%s\n%s", before, after)
	}
	if list := c.ok("", "key", "list"); strings.Contains(list, "alias/other") {
		t.Fatalf("a refused create made a key:\n%s", list)
	}
}

// TestKeyCreateAlias is review 13's finding 11: key create --alias with a
// malformed alias, or one that exists, created the key and then failed on
// the alias, leaving a key without it. Now both are refused before the key
// is created, a malformed alias as a usage error.
func TestKeyCreateAlias(t *testing.T) {
	c := newCLI(t)
	c.ok("", "key", "create", "--alias", "alias/billing")
	before := c.ok("", "key", "list")
	c.fails(2, `--alias: alias name "billing" must be alias/ followed by 1 to 250 of a-z A-Z 0-9 / _ -`, "", "key", "create", "--alias", "billing")
	c.fails(2, "--alias: alias names beginning with alias/aws/ are reserved", "", "key", "create", "--alias", "alias/aws/x")
	c.fails(1, "alias alias/billing exists already (it names key arn:aws:kms:local:000000000000:key/", "", "key", "create", "--alias", "alias/billing")
	if after := c.ok("", "key", "list"); after != before {
		t.Fatalf("a refused key create made a key:\n%s\n%s", before, after)
	}
}
