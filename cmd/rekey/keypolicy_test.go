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
	"encoding/json"
	"maps"
	"strings"
	"testing"
)

// policyTags is the policy tags of alias/app, as key describe prints them.
func (c *cli) policyTags() map[string]string {
	c.t.Helper()
	var d struct{ Tags map[string]string }
	if err := json.Unmarshal([]byte(c.ok("", "key", "describe", "alias/app")), &d); err != nil {
		c.t.Fatal(err)
	}
	out := map[string]string{}
	for k, v := range d.Tags {
		if strings.HasPrefix(k, "rekey.dev/") && k != "rekey.dev/namespaces" {
			out[k] = v
		}
	}
	return out
}

// Review 12, finding 4: `rekey key revoke KEY NS` left the NS/SA entries,
// so NS's ServiceAccount named there kept its access; now it takes out NS
// and every NS/SA entry, in every operation asked, and says which.
func TestKeyRevokeNamespaceRemovesItsServiceAccounts(t *testing.T) {
	c := newCLI(t)
	c.ok("", "key", "create", "--alias", "alias/app")
	c.ok("", "key", "grant", "alias/app", "--operations", "decrypt", "team-b/app", "team-a", "team-b/web", "team-b")
	c.ok("", "key", "grant", "alias/app", "--operations", "encrypt", "team-b/app", "team-bb/app")
	out, errOut, code := c.run("", "key", "revoke", "alias/app", "team-b")
	if code != 0 {
		t.Fatalf("revoke team-b: exit %d: %s", code, errOut)
	}
	if got := c.policyTags(); len(got) != 2 || got["rekey.dev/decrypt"] != "team-a" || got["rekey.dev/encrypt"] != "team-bb/app" {
		t.Fatalf("after revoke team-b: %v, want only decrypt=team-a and encrypt=team-bb/app", got)
	}
	for _, want := range []string{
		"alias/app rekey.dev/decrypt: revoked team-b/app, team-b/web, team-b\n",
		"alias/app rekey.dev/encrypt: revoked team-b/app\n",
		"alias/app rekey.dev/decrypt=team-a\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("revoke team-b printed\n%s\nwithout %q", out, want)
		}
	}
	if strings.Contains(out, "generate-data-key:") {
		t.Errorf("revoke team-b reported a tag it did not change:\n%s", out)
	}
}

// Review 12, finding 4: `rekey key revoke KEY NS/SA` while the entry NS is
// listed changed nothing and exited 0; now it fails, says why and what to
// do, and changes nothing, not even the operations where it was listed.
func TestKeyRevokeServiceAccountUnderNamespaceRefused(t *testing.T) {
	c := newCLI(t)
	c.ok("", "key", "create", "--alias", "alias/app")
	c.ok("", "key", "grant", "alias/app", "--operations", "decrypt", "team-a")
	c.ok("", "key", "grant", "alias/app", "--operations", "encrypt", "team-a/app", "team-c")
	before := c.policyTags()
	errOut := c.fails(1, "team-a/app is still allowed through the entry team-a: revoke team-a, then grant the other ServiceAccounts",
		"", "key", "revoke", "alias/app", "team-a/app")
	if !strings.Contains(errOut, "rekey.dev/decrypt") || !strings.Contains(errOut, "nothing was changed") {
		t.Errorf("the refusal does not name the tag or say nothing changed: %s", errOut)
	}
	if got := c.policyTags(); !maps.Equal(got, before) {
		t.Fatalf("a refused revoke changed the key: %v, was %v", got, before)
	}
	// Only the operations asked for count: encrypt has team-a/app itself.
	out := c.ok("", "key", "revoke", "alias/app", "--operations", "encrypt", "team-a/app")
	if !strings.Contains(out, "alias/app rekey.dev/encrypt: revoked team-a/app\n") {
		t.Errorf("revoke --operations encrypt team-a/app printed:\n%s", out)
	}
	// Revoking the namespace too, in the same command, is what the message says to do.
	c.ok("", "key", "grant", "alias/app", "--operations", "decrypt", "team-a/app")
	out = c.ok("", "key", "revoke", "alias/app", "team-a/app", "team-a")
	if !strings.Contains(out, "alias/app rekey.dev/decrypt: revoked team-a, team-a/app\n") || strings.Contains(out, "nothing to revoke") {
		t.Errorf("revoke team-a/app team-a printed:\n%s", out)
	}
	if got := c.policyTags(); len(got) != 1 || got["rekey.dev/encrypt"] != "team-c" {
		t.Fatalf("after revoke team-a/app team-a: %v, want only encrypt=team-c", got)
	}
}

// Revoking an entry that is not there says so and is not an error.
func TestKeyRevokeAbsentEntrySaid(t *testing.T) {
	c := newCLI(t)
	c.ok("", "key", "create", "--alias", "alias/app")
	c.ok("", "key", "grant", "alias/app", "--operations", "decrypt", "team-a/app")
	out := c.ok("", "key", "revoke", "alias/app", "team-z", "team-a/web")
	for _, want := range []string{
		"alias/app: team-z is not listed in rekey.dev/decrypt, rekey.dev/encrypt, rekey.dev/generate-data-key: nothing to revoke\n",
		"alias/app: team-a/web is not listed in rekey.dev/decrypt, rekey.dev/encrypt, rekey.dev/generate-data-key: nothing to revoke\n",
		"alias/app rekey.dev/decrypt=team-a/app\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("revoke of absent entries printed\n%s\nwithout %q", out, want)
		}
	}
	out = c.ok("", "key", "revoke", "alias/app", "--operations", "encrypt", "team-a/app")
	if !strings.Contains(out, "alias/app: team-a/app is not listed in rekey.dev/encrypt: nothing to revoke\n") {
		t.Errorf("revoke --operations encrypt team-a/app printed:\n%s", out)
	}
	if got := c.policyTags(); len(got) != 1 || got["rekey.dev/decrypt"] != "team-a/app" {
		t.Fatalf("after revoking absent entries: %v", got)
	}
}

// Review 12, finding 4: grant and revoke read the tag, then wrote the
// value they computed from it, so a change another admin made in between
// was lost (the engine's conflict retry wrote the stale value again). Now
// the tag is read again right before writing: a change since is taken into
// account once, and a second one makes the command fail without writing.
func TestKeyPolicyChangeKeepsConcurrentChange(t *testing.T) {
	for _, tc := range []struct {
		name       string
		mine, them []string
		want       string
	}{
		// A revoke must not bring back what the other admin revoked...
		{"grant under a revoke", []string{"grant", "alias/app", "--operations", "decrypt", "team-c"}, []string{"revoke", "alias/app", "team-a"}, "team-b,team-c"},
		// ...nor drop what it granted.
		{"revoke under a grant", []string{"revoke", "alias/app", "team-a"}, []string{"grant", "alias/app", "--operations", "decrypt", "team-d"}, "team-b,team-d"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCLI(t)
			c.ok("", "key", "create", "--alias", "alias/app")
			c.ok("", "key", "grant", "alias/app", "--operations", "decrypt", "team-a", "team-b")
			raceWith(t, c, tc.them)
			c.ok("", append([]string{"key"}, tc.mine...)...)
			if got := c.policyTags()["rekey.dev/decrypt"]; got != tc.want {
				t.Fatalf("rekey.dev/decrypt=%q after %v raced with %v, want %q", got, tc.mine, tc.them, tc.want)
			}
		})
	}
	t.Run("changed twice", func(t *testing.T) {
		c := newCLI(t)
		c.ok("", "key", "create", "--alias", "alias/app")
		c.ok("", "key", "grant", "alias/app", "--operations", "decrypt", "team-a")
		raceWith(t, c, []string{"grant", "alias/app", "--operations", "decrypt", "team-x"},
			[]string{"grant", "alias/app", "--operations", "decrypt", "team-y"})
		c.fails(1, "changed while this command ran", "", "key", "revoke", "alias/app", "team-a")
		if got := c.policyTags()["rekey.dev/decrypt"]; got != "team-a,team-x,team-y" {
			t.Fatalf("rekey.dev/decrypt=%q, want the two other changes and nothing of the failed revoke", got)
		}
	})
}

// raceWith makes the next grant or revoke of c run each of others (one
// per attempt) between reading the key's tags and writing them, as another
// process on the same keystore would.
func raceWith(t *testing.T, c *cli, others ...[]string) {
	t.Helper()
	var hook func()
	n := 0
	hook = func() {
		if n >= len(others) {
			return
		}
		n++
		policyBeforeWrite = nil // the other command is a grant or revoke too
		c.ok("", append([]string{"key"}, others[n-1]...)...)
		policyBeforeWrite = hook
	}
	policyBeforeWrite = hook
	t.Cleanup(func() { policyBeforeWrite = nil })
}
