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
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A stray word no longer stops flag parsing silently: commands that take
// only flags refuse it (the flags after it were ignored before), and
// keystore verify reads flags after its FILE.
func TestFlagsAnywhereAndNoStrayArguments(t *testing.T) {
	c := newCLI(t)
	c.ok("", "key", "create", "--alias", "alias/app")
	for name, args := range map[string][]string{
		"encrypt with a stray word before --context": {"encrypt", "--key", "alias/app", "stray", "--context", "app=x"},
		"decrypt with a stray word":                  {"decrypt", "stray"},
		"reencrypt with a stray word":                {"reencrypt", "--destination-key", "alias/app", "stray"},
		"controller with a stray word":               {"controller", "stray"},
		"kms serve with a stray word":                {"kms", "serve", "stray", "--listen", "127.0.0.1:0"},
	} {
		t.Run(name, func(t *testing.T) {
			out, errOut, code := c.run("PLAINTEXT", args...)
			if code != 2 || !strings.Contains(errOut, "takes no arguments besides flags") || out != "" {
				t.Fatalf("exit %d, stdout %q: %s", code, out, errOut)
			}
		})
	}
	backup := filepath.Join(t.TempDir(), "backup.rks")
	c.ok("", "keystore", "backup", "--to", backup)
	// c.args[2:] is --root-key-file FILE: here after the FILE.
	out, errOut, code := rekeyCmd("", append([]string{"keystore", "verify", backup}, c.args[2:]...)...)
	if code != 0 || !strings.Contains(out+errOut, "alias/app") {
		t.Fatalf("keystore verify FILE --root-key-file ...: exit %d\n%s%s", code, out, errOut)
	}
}

// TestFlagGivenTwice is review 13's finding 8: a flag that takes one value
// given twice was last-wins (key list --keystore A --keystore B listed B's
// keys), and keystore verify FILE ignored --keystore and --region.
func TestFlagGivenTwice(t *testing.T) {
	c := newCLI(t)
	c.ok("", "key", "create", "--alias", "alias/x", "--allow-namespace", "a", "--allow-namespace", "b")
	before := c.keystoreBytes()
	other := filepath.Join(c.dir, "other.rks")
	backup := filepath.Join(c.dir, "backup.rks")
	c.ok("", "keystore", "backup", "--to", backup)
	for _, tc := range []struct {
		argv []string
		msg  string
	}{
		{[]string{"key", "list", "--keystore", other}, "--keystore given twice, with different values"},
		{[]string{"key", "create", "--root-key-file=" + other}, "--root-key-file given twice"},
		{[]string{"secret", "create", "db", "--key", "alias/x", "--key", "alias/billing", "--from-literal", "a=b"}, "--key given twice"},
		{[]string{"secret", "create", "db", "--key", "alias/x", "--from-literal", "a=b", "-o", "json", "-o", "yaml"}, "--output given twice"},
		{[]string{"secret", "create", "db", "--key", "alias/x", "--from-literal", "a=b", "-n", "a", "--namespace=b"}, "--namespace given twice"},
		{[]string{"secret", "create", "db", "--key", "alias/x", "--from-literal", "a=b", "--apply", "--apply=false"}, "--apply given twice"},
		{[]string{"keystore", "verify", backup, "--keystore", "/nonexistent"}, "--keystore does not apply to keystore verify FILE"},
		{[]string{"keystore", "verify", backup, "--region", "nowhere"}, "unknown flag: --region"},
		{[]string{"keystore", "init", "--account-id", "1"}, "unknown flag: --account-id"},
	} {
		argv := tc.argv
		if argv[0] != "keystore" || argv[1] != "verify" {
			argv = append(argv, c.args...)
		}
		out, errOut, code := rekeyCmd("", argv...)
		if code != 2 || out != "" || !strings.Contains(errOut, tc.msg) {
			t.Errorf("rekey %q: exit %d (want 2), stdout %q, stderr %q (want %q)", argv, code, out, errOut, tc.msg)
		}
	}
	if string(before) != string(c.keystoreBytes()) {
		t.Error("a refused command changed the keystore")
	}
	// The same value twice is no ambiguity; repeatable flags repeat.
	c.ok("", "key", "list", "--keystore", c.args[1])
	c.ok("", "secret", "create", "db", "--key", "alias/x", "--key", "alias/x", "--from-literal", "a=b", "--from-literal", "c=d",
		"--context", "a=b", "--context", "c=d", "--label", "a=b", "--label", "c=d")
	// Completion offers a repeatable flag again.
	out, _, _ := rekeyCmd("", "__completeNoDesc", "secret", "create", "db", "--from-literal", "a=b", "--context", "a=b", "--label", "a=b", "--")
	for _, want := range []string{"--from-literal\n", "--context\n", "--label\n", "--from-file\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("completion after --from-literal, --context, --label: no %q in\n%s", want, out)
		}
	}
}

// TestValueFlagBeforeDashDashWord is review 13's finding 3: a value flag
// took a following --word that was not one of the command's flags as its
// value, and the command ran (a backup written to a file named --force, a
// lock file --dry-run.lock). Now it is a usage error and nothing is done;
// --flag=--value still gives such a value.
func TestValueFlagBeforeDashDashWord(t *testing.T) {
	c := newCLI(t)
	c.ok("", "key", "create", "--alias", "alias/x")
	cwd := t.TempDir()
	t.Chdir(cwd)
	before := c.keystoreBytes()
	for _, tc := range []struct {
		stdin string
		argv  []string
		msg   string
	}{
		{"", []string{"keystore", "backup", "--to", "--force"}, "flag --to needs a value (it is followed by --force; a value that begins with -- is written --to=VALUE)"},
		{"", []string{"key", "create", "--alias", "alias/z", "--description", "--verbose"}, "flag --description needs a value (it is followed by --verbose;"},
		{"", []string{"key", "allow", "alias/x", "billing", "--keystore", "--dry-run"}, "flag --keystore needs a value (it is followed by --dry-run;"},
		{"v", []string{"encrypt", "--key", "alias/x", "--context", "--foo=bar"}, "flag --context needs a value (it is followed by --foo;"},
		{"", []string{"keystore", "backup", "--to", "--"}, "flag --to needs a value (it is followed by --)"},
	} {
		out, errOut, code := c.run(tc.stdin, tc.argv...)
		if code != 2 || out != "" || !strings.Contains(errOut, tc.msg) {
			t.Errorf("rekey %q: exit %d (want 2), stdout %q, stderr %q (want %q)", tc.argv, code, out, errOut, tc.msg)
		}
	}
	if entries, _ := os.ReadDir(cwd); len(entries) > 0 {
		t.Errorf("a refused command left %s in the working directory", entries[0].Name())
	}
	if string(before) != string(c.keystoreBytes()) {
		t.Error("a refused command changed the keystore")
	}
	// --to=--force is a file named --force.
	if out := c.ok("", "keystore", "backup", "--to=--force"); !strings.Contains(out, "to --force") {
		t.Fatalf("backup --to=--force: %q", out)
	}
	if _, err := os.Stat(filepath.Join(cwd, "--force")); err != nil {
		t.Fatal(err)
	}
}

// TestEmptyFlagValue is review 13's finding 13: an explicitly empty value
// overrode the environment or the default, with a misleading error
// (key list --keystore= said "--keystore is required (or set
// REKEY_KEYSTORE)" with REKEY_KEYSTORE set) or none (status --namespace=
// used the kubeconfig's namespace).
func TestEmptyFlagValue(t *testing.T) {
	c := newCLI(t)
	t.Setenv("REKEY_KEYSTORE", c.args[1])
	t.Setenv("REKEY_ROOT_KEY_FILE", c.args[3])
	for _, argv := range [][]string{
		{"key", "list", "--keystore="},
		{"key", "list", "--root-key-file", ""},
		{"key", "list", "--region="},
		{"status", "--namespace="},
		{"rerun", "x", "-n", ""},
		{"secret", "create", "db", "--key", "alias/x", "--from-literal", "a=b", "-n", ""},
		{"secret", "create", "db", "--key=", "--from-literal", "a=b"},
		{"secret", "create", "db", "--key", "alias/x", "--from-literal", "a=b", "-o", ""},
		{"encrypt", "--key", "alias/x", "--kms-endpoint="},
		{"key", "create", "--alias="},
		{"keystore", "backup", "--to="},
		{"controller", "--keystore="},
	} {
		out, errOut, code := rekeyCmd("v", argv...)
		if code != 2 || out != "" || !strings.Contains(errOut, ": the value is empty") {
			t.Errorf("rekey %q: exit %d (want 2), stdout %q, stderr %q", argv, code, out, errOut)
		}
	}
	// --description may be empty.
	c.ok("", "key", "create", "--description=")
}
