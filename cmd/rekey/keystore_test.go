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
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func (c *cli) fails(code int, msg, stdin string, cmd ...string) string {
	c.t.Helper()
	out, errOut, got := c.run(stdin, cmd...)
	if got != code || !strings.Contains(errOut, msg) {
		c.t.Fatalf("rekey %v: exit %d (want %d), stderr %q (want %q)", cmd, got, code, errOut, msg)
	}
	if out != "" {
		c.t.Fatalf("rekey %v failed and wrote to stdout: %q", cmd, out)
	}
	return errOut
}

func (c *cli) keystoreBytes() []byte {
	c.t.Helper()
	b, err := os.ReadFile(filepath.Join(c.dir, "keys.rks"))
	if err != nil {
		c.t.Fatal(err)
	}
	return b
}

// TestRollbackByCopyRefused, from the command line: an older keys.rks
// copied over the live one used to re-enable a disabled key, and the next
// rotation made a different "version 2", losing every blob under the
// first. Now every command refuses it and writes nothing, and the backups
// put the right state back.
func TestRollbackByCopyRefused(t *testing.T) {
	c := newCLI(t)
	c.ok("", "key", "create", "--alias", "alias/app")
	old := filepath.Join(c.dir, "old.rks")
	c.ok("", "keystore", "backup", "--to", old)
	c.ok("", "key", "rotate", "alias/app")
	blob := c.ok("v2 secret", "encrypt", "--key", "alias/app") // under version 2
	c.ok("", "key", "disable", "alias/app")
	newest := filepath.Join(c.dir, "newest.rks")
	c.ok("", "keystore", "backup", "--to", newest)

	// Someone restores the old file by copying it.
	b, _ := os.ReadFile(old)
	if err := os.WriteFile(filepath.Join(c.dir, "keys.rks"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	c.fails(1, "rolled back", "", "key", "list")
	c.fails(1, "rolled back", "", "key", "rotate", "alias/app")
	c.fails(1, "rolled back", "", "key", "enable", "alias/app")
	c.fails(1, "rolled back", blob, "decrypt")
	if !bytes.Equal(c.keystoreBytes(), b) {
		t.Fatal("a command wrote to the rolled-back keystore")
	}

	// The newest backup goes back without --allow-rollback: it is the state
	// the record remembers. The key is disabled, as it was.
	if out := c.ok("", "keystore", "restore", "--from", newest); !strings.Contains(out, "restored") {
		t.Fatalf("restore: %q", out)
	}
	c.fails(1, "DisabledException", blob, "decrypt")

	// Restoring the old backup on purpose needs --allow-rollback and says
	// what it loses.
	errOut := c.fails(1, "--allow-rollback", "", "keystore", "restore", "--from", old)
	for _, want := range []string{"from Disabled to Enabled", "versions 2 to 2 are gone", "different version 2"} {
		if !strings.Contains(errOut, want) {
			t.Fatalf("restore without --allow-rollback does not say %q:\n%s", want, errOut)
		}
	}
	before := c.keystoreBytes()
	out, errOut, code := c.run("", "keystore", "restore", "--from", old, "--allow-rollback")
	if code != 0 || !strings.Contains(errOut, "WARNING") || !strings.Contains(errOut, "from Disabled to Enabled") || !strings.Contains(out, "restored") {
		t.Fatalf("restore --allow-rollback: exit %d\n%s\n%s", code, out, errOut)
	}
	if bytes.Equal(before, c.keystoreBytes()) {
		t.Fatal("restore --allow-rollback wrote nothing")
	}
	if list := c.ok("", "key", "list"); !strings.Contains(list, "Enabled") {
		t.Fatalf("key list after the rollback:\n%s", list)
	}
}

// TestKeystoreBackupVerify: backup writes a new 0600 file that verify
// describes (no key material) and that a wrong root key cannot open.
func TestKeystoreBackupVerify(t *testing.T) {
	c := newCLI(t)
	c.ok("", "key", "create", "--alias", "alias/one")
	c.ok("", "key", "rotate", "alias/one")
	c.ok("", "key", "create", "--alias", "alias/two")
	c.ok("", "key", "disable", "alias/two")
	to := filepath.Join(c.dir, "backup.rks")
	if out := c.ok("", "keystore", "backup", "--to", to); !strings.Contains(out, "generation 7, 2 keys") {
		t.Fatalf("backup: %q", out)
	}
	fi, err := os.Stat(to)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v %v", fi.Mode(), err)
	}
	c.fails(1, "exists", "", "keystore", "backup", "--to", to)

	out := c.ok("", "keystore", "verify", to)
	for _, want := range []string{"generation  7", "location    file", "keys        2", "alias/one", "Enabled", "alias/two", "Disabled", "OK"} {
		if !strings.Contains(out, want) {
			t.Fatalf("verify does not print %q:\n%s", want, out)
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		for _, f := range strings.Fields(line) {
			if len(f) > 40 && !strings.HasPrefix(f, c.dir) { // key ids are 36, keystore id 32; key material would be longer
				t.Fatalf("verify printed a long token %q", f)
			}
		}
	}
	// verify with no file checks the live keystore.
	if live := c.ok("", "keystore", "verify"); !strings.Contains(live, "generation  7") {
		t.Fatalf("verify of the keystore:\n%s", live)
	}

	other := newCLI(t)
	other.fails(1, "wrong root key", "", "keystore", "verify", to)
	b, _ := os.ReadFile(to)
	b[len(b)-1] ^= 1
	tampered := filepath.Join(c.dir, "tampered.rks")
	_ = os.WriteFile(tampered, b, 0o600)
	c.fails(1, "corrupt", "", "keystore", "verify", tampered)

	// A backup of another keystore under the same root key is not restored
	// here by mistake.
	live := c.args[1]
	c.args[1] = filepath.Join(c.dir, "other.rks")
	c.ok("", "keystore", "init")
	c.ok("", "keystore", "backup", "--to", filepath.Join(c.dir, "other-backup.rks"))
	c.args[1] = live
	c.fails(1, "--rebind", "", "keystore", "restore", "--from", filepath.Join(c.dir, "other-backup.rks"))
}

// TestMissingKeystoreIsAnError: without rekey keystore init, no command
// makes a keystore, and each says how to make one.
func TestMissingKeystoreIsAnError(t *testing.T) {
	c := newCLI(t)
	c.args[1] = filepath.Join(c.dir, "none.rks")
	c.fails(1, "rekey keystore init", "", "key", "create", "--alias", "alias/x")
	c.fails(1, "does not exist", "", "key", "list")
	c.fails(1, "does not exist", "", "keystore", "backup", "--to", filepath.Join(c.dir, "b.rks"))
	if _, err := os.Stat(c.args[1]); !os.IsNotExist(err) {
		t.Fatalf("a command created the keystore: %v", err)
	}
	c.ok("", "keystore", "init")
	c.fails(1, "already exists", "", "keystore", "init")
	c.ok("", "key", "create", "--alias", "alias/x")

	// Deleted later: the record beside it remembers, and init refuses to
	// start a new keystore in its place.
	if err := os.Remove(c.args[1]); err != nil {
		t.Fatal(err)
	}
	c.fails(1, "is gone", "", "key", "list")
	c.fails(1, "is gone", "", "keystore", "init")
}

// TestRootKeyFileMode is finding 12's root key file: 0644 (what the README
// used to make) is refused with the fix; 0640 is used with a warning.
func TestRootKeyFileMode(t *testing.T) {
	c := newCLI(t)
	root := filepath.Join(c.dir, "root.key")
	if err := os.Chmod(root, 0o644); err != nil {
		t.Fatal(err)
	}
	c.fails(1, "chmod 600 "+root, "", "key", "list")
	if err := os.Chmod(root, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := c.run("", "key", "list"); code != 0 || !strings.Contains(errOut, "warning") || !strings.Contains(errOut, "group") {
		t.Fatalf("0640: exit %d, %q", code, errOut)
	}
	// The warning does not reach stdout, where a command's output goes.
	if out, _, _ := c.run("v", "encrypt", "--key", "alias/none"); strings.Contains(out, "warning") {
		t.Fatalf("warning on stdout: %q", out)
	}
}

// TestKeystoreUsage: bad subcommands and flags are usage errors.
func TestKeystoreUsage(t *testing.T) {
	c := newCLI(t)
	c.fails(2, "unknown subcommand", "", "keystore", "frob")
	c.fails(2, "--to is required", "", "keystore", "backup")
	c.fails(2, "--from is required", "", "keystore", "restore")
	c.fails(2, "takes no arguments besides flags, got 1", "", "keystore", "init", "extra")
	c.fails(2, "takes at most 1 argument, got 2", "", "keystore", "verify", "a", "b")
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"keystore"}, strings.NewReader(""), &out, &errOut); code != 2 ||
		!strings.Contains(errOut.String(), "restore --from FILE") {
		t.Fatalf("rekey keystore: exit %d, %s", code, errOut.String())
	}
}
