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
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rekey-dev/rekey/internal/kms"
	"github.com/rekey-dev/rekey/internal/testkms"
)

// rekeyCmd runs rekey in-process with argv and stdin.
func rekeyCmd(stdin string, argv ...string) (string, string, int) {
	var out, errOut bytes.Buffer
	code := run(context.Background(), argv, strings.NewReader(stdin), &out, &errOut)
	return out.String(), errOut.String(), code
}

// gitTree writes a working tree like a GitOps repository's: a kustomize
// overlay with an annotated multi-document file carrying comments, a file
// with no Secret, and a hidden directory (as .git is) whose YAML must never
// be read.
func gitTree(t *testing.T, blob func(key, pt string, ec map[string]string) string) (dir string, files map[string]string) {
	t.Helper()
	dir = t.TempDir()
	ec := map[string]string{"app": "billing"}
	files = map[string]string{
		"apps/billing/kustomization.yaml": "# kustomize\nresources:\n  - secrets.yaml\n  - deploy.yaml\n",
		"apps/billing/secrets.yaml": fmt.Sprintf(`# Billing's credentials; values are KMS ciphertext.
apiVersion: v1
kind: Secret
metadata:
  name: billing-db
  namespace: billing
  annotations:
    rekey.dev/encrypted-keys: password,apiToken   # the encrypted ones
    rekey.dev/encryption-context: '{"app":"billing"}'
data:
  password: %s
  apiToken: "%s"
  username: YmlsbGluZw==   # not encrypted
---
# A second Secret, no context.
apiVersion: v1
kind: Secret
metadata: {name: billing-api, namespace: billing, annotations: {rekey.dev/encrypted-keys: "*"}}
data: {key: %s}
`, blob("alias/old", "PLAINTEXT-1", ec), blob("alias/old", "PLAINTEXT-2", ec), blob("alias/old", "PLAINTEXT-3", nil)),
		"apps/billing/deploy.yml": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: billing}\n",
		".hidden/stray.yaml":      "apiVersion: v1\nkind: Secret\nmetadata:\n  name: x\n  annotations: {rekey.dev/encrypted-keys: a}\ndata: {a: bm90IGEgYmxvYg==}\n",
	}
	writeFiles(t, dir, files, 0o640)
	return dir, files
}

// changedLines returns the lines of b that differ from a (same count
// required).
func changedLines(t *testing.T, a, b string) []string {
	t.Helper()
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	if len(al) != len(bl) {
		t.Fatalf("%d lines became %d:\n%s", len(al), len(bl), b)
	}
	var out []string
	for i := range al {
		if al[i] != bl[i] {
			out = append(out, bl[i])
		}
	}
	return out
}

// The done-when, on the embedded keystore: --check fails before
// and passes after; one command re-encrypts the tree; only the blob lines
// change, each still a line of the same shape (git diff says so); files
// without Secrets and hidden directories are untouched; the values decrypt under the new key.
func TestManifestsReencryptAWorkingTree(t *testing.T) {
	c := newCLI(t)
	c.ok("", "key", "create", "--alias", "alias/old")
	c.ok("", "key", "create", "--alias", "alias/new")
	blob := func(key, pt string, ec map[string]string) string {
		args := make([]string, 0, 3+2*len(ec))
		args = append(args, "encrypt", "--key", key)
		for k, v := range ec {
			args = append(args, "--context", k+"="+v)
		}
		return strings.TrimSpace(c.ok(pt, args...))
	}
	dir, files := gitTree(t, blob)
	ks := c.args // --keystore FILE --root-key-file FILE
	reencrypt := func(extra ...string) (string, string, int) {
		argv := append([]string{"manifests", "reencrypt", dir, "--source-key", "alias/old", "--destination-key", "alias/new"}, ks...)
		return rekeyCmd("", append(argv, extra...)...)
	}

	git := gitRepo(t, dir)

	_, report, code := reencrypt("--check")
	if code != 1 || strings.Count(report, "UnderSourceKey") != 3 || !strings.Contains(report, "secrets.yaml:11: Secret billing/billing-db, data.password") {
		t.Fatalf("check before: exit %d\n%s", code, report)
	}
	_, report, code = reencrypt()
	if code != 0 || !strings.Contains(report, "3 blobs re-encrypted") {
		t.Fatalf("reencrypt: exit %d\n%s", code, report)
	}
	// What a reviewer sees: git diff names one file, three lines out and
	// three in.
	if stat := strings.TrimSpace(git("diff", "--numstat")); stat != "3\t3\tapps/billing/secrets.yaml" {
		t.Fatalf("git diff --numstat:\n%s", stat)
	}
	for name, before := range files {
		after, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if name != "apps/billing/secrets.yaml" {
			if string(after) != before {
				t.Fatalf("%s changed", name)
			}
			continue
		}
		changed := changedLines(t, before, string(after))
		if len(changed) != 3 || !strings.HasPrefix(changed[0], "  password: ") || !strings.HasPrefix(changed[1], `  apiToken: "`) ||
			!strings.HasPrefix(changed[2], "data: {key: ") {
			t.Fatalf("changed lines:\n%s", strings.Join(changed, "\n"))
		}
		pw := strings.TrimPrefix(changed[0], "  password: ")
		if pt := c.ok(pw, "decrypt", "--context", "app=billing"); pt != "PLAINTEXT-1" {
			t.Fatalf("password decrypts to %q", pt)
		}
		raw, _ := base64.StdEncoding.DecodeString(pw)
		if !bytes.Contains([]byte(c.ok("", "key", "describe", "alias/new")), []byte(keyIDOf(t, raw))) {
			t.Fatal("the new blob is not under alias/new")
		}
		if st, _ := os.Stat(filepath.Join(dir, name)); st.Mode().Perm() != 0o640 {
			t.Fatalf("mode %v", st.Mode().Perm())
		}
	}
	_, report, code = reencrypt("--check")
	if code != 0 || !strings.Contains(report, "0 blobs under a source key, 3 already under the destination") {
		t.Fatalf("check after: exit %d\n%s", code, report)
	}
}

// gitRepo makes dir a Git repository with everything committed, and
// returns a runner of git in it; the test skips without git.
func gitRepo(t *testing.T, dir string) func(args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@localhost", "GIT_COMMITTER_NAME=t",
			"GIT_COMMITTER_EMAIL=t@localhost", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	run("init", "-q")
	run("add", "-A")
	run("commit", "-q", "-m", "manifests")
	return run
}

// keyIDOf reads the key id from a rekey blob's header.
func keyIDOf(t *testing.T, blob []byte) string {
	t.Helper()
	b, err := kms.ParseBlob(blob)
	if err != nil {
		t.Fatal(err)
	}
	return b.KeyID
}

// Through a KMS endpoint (the in-cluster key service, or AWS): the AWS
// provider over the SDK, stdin to stdout.
func TestManifestsReencryptThroughAnEndpoint(t *testing.T) {
	srv := testkms.Rekey(t)
	ctx := context.Background()
	for _, a := range []string{"alias/old", "alias/new"} {
		k, err := srv.Engine.CreateKey(ctx, &kms.CreateKeyInput{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := srv.Engine.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: a, TargetKeyID: k.KeyMetadata.KeyID}); err != nil {
			t.Fatal(err)
		}
	}
	blob := func(key, pt string, ec map[string]string) string {
		out, err := srv.Engine.Encrypt(ctx, &kms.EncryptInput{KeyID: key, Plaintext: []byte(pt), EncryptionContext: ec})
		if err != nil {
			t.Fatal(err)
		}
		return base64.StdEncoding.EncodeToString(out.CiphertextBlob)
	}
	_, files := gitTree(t, blob)
	t.Setenv("AWS_ACCESS_KEY_ID", testkms.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", testkms.SecretAccessKey)
	t.Setenv("AWS_REGION", testkms.Region)
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	in := files["apps/billing/secrets.yaml"]
	before := srv.ReEncrypts.Load()
	out, report, code := rekeyCmd(in, "manifests", "reencrypt", "-", "--kms-endpoint", srv.URL,
		"--source-key", "alias/old", "--destination-key", "alias/new")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, report)
	}
	if n := srv.ReEncrypts.Load() - before; n != 3 {
		t.Fatalf("%d ReEncrypt calls reached the endpoint, want 3", n)
	}
	changed := changedLines(t, in, out)
	if len(changed) != 3 {
		t.Fatalf("changed:\n%s", strings.Join(changed, "\n"))
	}
	raw, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(changed[0], "  password: "))
	dec, err := srv.Engine.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: raw, EncryptionContext: map[string]string{"app": "billing"}})
	if err != nil || string(dec.Plaintext) != "PLAINTEXT-1" {
		t.Fatalf("decrypt: %v", err)
	}
	// Again: opaque blobs already under the destination are recognised.
	_, report, code = rekeyCmd(out, "manifests", "reencrypt", "-", "--check", "--kms-endpoint", srv.URL,
		"--source-key", "alias/old", "--destination-key", "alias/new")
	if code != 0 || !strings.Contains(report, "3 already under the destination") {
		t.Fatalf("check after: exit %d\n%s", code, report)
	}
}

// Usage errors: exit 2, a message, nothing read or written.
func TestManifestsUsageErrors(t *testing.T) {
	dir := t.TempDir()
	for name, argv := range map[string][]string{
		"no subcommand":         {"manifests"},
		"no PATH":               {"manifests", "reencrypt", "--source-key", "a", "--destination-key", "b", "--keystore", "k"},
		"no destination":        {"manifests", "reencrypt", dir, "--source-key", "a", "--keystore", "k"},
		"no key service":        {"manifests", "reencrypt", dir, "--source-key", "a", "--destination-key", "b"},
		"two key services":      {"manifests", "reencrypt", dir, "--source-key", "a", "--destination-key", "b", "--aws", "--keystore", "k"},
		"--stdout, two PATHs":   {"manifests", "reencrypt", dir, dir, "--stdout", "--source-key", "a", "--destination-key", "b", "--keystore", "k"},
		"a flag without value":  {"manifests", "reencrypt", dir, "--source-key", "--destination-key", "b", "--keystore", "k"},
		"stdin among PATHs":     {"manifests", "reencrypt", dir, "-", "--source-key", "a", "--destination-key", "b", "--keystore", "k"},
		"an http endpoint":      {"manifests", "reencrypt", dir, "--source-key", "a", "--destination-key", "b", "--kms-endpoint", "http://kms.example:80"},
		"an unknown flag":       {"manifests", "reencrypt", dir, "--source-key", "a", "--destination-key", "b", "--keystore", "k", "--bogus"},
		"a context without '='": {"manifests", "reencrypt", dir, "--source-key", "a", "--destination-key", "b", "--keystore", "k", "--source-context", "app"},
	} {
		t.Run(name, func(t *testing.T) {
			_, errOut, code := rekeyCmd("", argv...)
			if code != 2 || errOut == "" {
				t.Fatalf("exit %d: %s", code, errOut)
			}
		})
	}
}

// TestManifestsSecretGeneratorIsNotSilent: a kustomize secretGenerator's
// inputs are not read, so one holding blobs fails the run and --check
// instead of passing unseen: it carries rekey.dev/encrypted-keys (itself,
// through generatorOptions, or as a SecretGenerator configuration), or it
// merges into or replaces an annotated Secret (named as it is, or with a
// namePrefix). Field names are read as kustomize reads them: any case,
// through aliases and merge keys, in a file named Kustomization too.
// Generators that cannot hold its blobs are not mentioned.
func TestManifestsSecretGeneratorIsNotSilent(t *testing.T) {
	c := newCLI(t)
	c.ok("", "key", "create", "--alias", "alias/old")
	c.ok("", "key", "create", "--alias", "alias/new")
	blob := func(pt string) string { return strings.TrimSpace(c.ok(pt, "encrypt", "--key", "alias/old")) }
	dir := t.TempDir()
	prod := "resources: [../../base]\nsecretGenerator:\n" +
		"- name: billing-db\n  namespace: billing\n  behavior: replace\n  literals: [password=" + blob("PROD-PASSWORD") + "]\n" +
		"- name: api-token\n  options:\n    annotations:\n      rekey.dev/encrypted-keys: token\n  literals: [token=" + blob("TOKEN") + "]\n" +
		"- name: tls-extra\n  files: [tls.crt]\n" +
		"- name: no-inputs\n  options: {annotations: {rekey.dev/encrypted-keys: x}}\n  literals: ~\n" +
		"- name: billing-db\n  literals: [unrelated=plain]\n" + // behavior create: cannot change the annotated Secret
		"- name: prod-billing-db\n  behavior: merge\n  literals: [password=" + blob("PREFIXED") + "]\n" +
		"- name: billing-db\n  namespace: other\n  behavior: merge\n  literals: [plain=other-namespace]\n" + // not the annotated Secret's namespace
		"- name: \"evil\\nrekey manifests: 0 files\"\n  options: {annotations: {rekey.dev/encrypted-keys: k}}\n  literals: [k=v]\n"
	staging := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n" +
		"generatorOptions:\n  annotations:\n    rekey.dev/encrypted-keys: key\nsecretGenerator:\n- name: staging-key\n  envs: [key.env]\n"
	oddlyWritten := "x-options: &opts\n  Annotations: {rekey.dev/encrypted-keys: k}\nx-base: &base\n  Options: *opts\n" +
		"SecretGenerator:\n- <<: *base\n  Name: merged-key\n  Literals: [k=" + blob("MERGED") + "]\n" +
		"- Name: aliased-key\n  Options: *opts\n  Envs: [a.env]\n"
	plugin := "apiVersion: builtin\nkind: SecretGenerator\nmetadata: {name: config-name}\nname: plugin-key\n" +
		"options: {annotations: {rekey.dev/encrypted-keys: k}}\nliterals: [k=" + blob("PLUGIN") + "]\n"
	files := map[string]string{
		"base/kustomization.yaml": "resources: [secret.yaml]\n",
		"base/secret.yaml": "apiVersion: v1\nkind: Secret\nmetadata:\n  name: billing-db\n  namespace: billing\n" +
			"  annotations: {rekey.dev/encrypted-keys: password}\ndata:\n  password: " + blob("BASE-PASSWORD") + "\n",
		"overlays/prod/kustomization.yaml": prod,
		"overlays/staging/Kustomization":   staging,
		"overlays/odd/kustomization.yml":   oddlyWritten,
		"overlays/plugin/generator.yaml":   plugin,
		"overlays/other/configmap.yaml":    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\nsecretGenerator:\n- name: billing-db\n  behavior: merge\n  literals: [a=b]\n",
		"overlays/other/notes.txt":         "secretGenerator:\n- name: billing-db\n  behavior: merge\n  literals: [a=b]\n",
	}
	reencrypt := writeTree(t, c, dir, files)
	prodPath := filepath.Join(dir, "overlays/prod/kustomization.yaml")
	oddPath := filepath.Join(dir, "overlays/odd/kustomization.yml")
	const notRead = ": SecretGeneratorNotRead: kustomize secretGenerator inputs (literals, files, env files) are neither checked nor re-encrypted, and this one "
	want := []string{
		prodPath + ":3: Secret billing/billing-db" + notRead + "merges into or replaces an annotated Secret",
		prodPath + ":7: Secret api-token" + notRead + "carries rekey.dev/encrypted-keys",
		prodPath + ":19: Secret prod-billing-db" + notRead + "merges into or replaces an annotated Secret",
		prodPath + `:26: Secret "evil\nrekey manifests: 0 files"` + notRead + "carries",
		filepath.Join(dir, "overlays/staging/Kustomization") + ":7: Secret staging-key" + notRead + "carries",
		oddPath + ":6: Secret merged-key" + notRead + "carries",
		oddPath + ":9: Secret aliased-key" + notRead + "carries",
		filepath.Join(dir, "overlays/plugin/generator.yaml") + ":1: Secret plugin-key" + notRead + "carries",
		"8 unread secretGenerators",
	}
	// --check, then a run (which re-encrypts the base), then a run with
	// nothing left but the generators: each fails, naming them.
	for _, extra := range [][]string{{"--check"}, nil, nil} {
		report, code := reencrypt(extra...)
		missing := slices.DeleteFunc(slices.Clone(want), func(w string) bool { return strings.Contains(report, w) })
		// No value from a generator reaches the report.
		for _, v := range []string{"plain", "k=v", "other-namespace", "password=", "token="} {
			if strings.Contains(report, v) {
				t.Fatalf("%v: the report holds %q\n%s", extra, v, report)
			}
		}
		if code != 1 || len(missing) > 0 || strings.Contains(report, "tls-extra") || strings.Contains(report, "no-inputs") ||
			strings.Contains(report, "configmap") || strings.Contains(report, "notes.txt") || strings.Contains(report, ":17: ") ||
			strings.Contains(report, "\nrekey manifests: 0 files") {
			t.Fatalf("%v: exit %d, missing %q\n%s", extra, code, missing, report)
		}
	}
	if b, _ := os.ReadFile(prodPath); string(b) != prod {
		t.Fatal("the kustomization was changed")
	}
	if report, code := reencrypt("--check"); !strings.Contains(report, "0 blobs under a source key, 1 already under the destination") {
		t.Fatalf("check after the runs: exit %d\n%s", code, report)
	}
}

// A kustomize overlay's patch that replaces an annotated Secret's values
// but does not carry the annotations: its blobs would stay under the old
// key, unseen. Both --check and a re-encryption fail and name it; with the
// annotations copied into the patch, its blob is re-encrypted like any
// other.
func TestManifestsKustomizePatchWithoutAnnotations(t *testing.T) {
	c := newCLI(t)
	c.ok("", "key", "create", "--alias", "alias/old")
	c.ok("", "key", "create", "--alias", "alias/new")
	blob := func(pt string) string { return strings.TrimSpace(c.ok(pt, "encrypt", "--key", "alias/old")) }
	dir := t.TempDir()
	patch := "apiVersion: v1\nkind: Secret\nmetadata:\n  name: billing-db\ndata:\n  password: " + blob("PROD-PASSWORD") + "\n"
	files := map[string]string{
		"base/kustomization.yaml": "resources: [secret.yaml]\n",
		"base/secret.yaml": "apiVersion: v1\nkind: Secret\nmetadata:\n  name: billing-db\n  namespace: billing\n" +
			"  annotations: {rekey.dev/encrypted-keys: password}\ndata:\n  password: " + blob("BASE-PASSWORD") + "\n",
		"overlays/prod/kustomization.yaml": "resources: [../../base]\npatches:\n  - path: secret-patch.yaml\n",
		"overlays/prod/secret-patch.yaml":  patch,
		"overlays/prod/tls.yaml":           "apiVersion: v1\nkind: Secret\nmetadata: {name: tls}\ndata: {tls.crt: Y2VydA==}\n",
	}
	reencrypt := writeTree(t, c, dir, files)
	patchPath := filepath.Join(dir, "overlays/prod/secret-patch.yaml")
	for _, extra := range [][]string{{"--check"}, nil} {
		report, code := reencrypt(extra...)
		if code != 1 || !strings.Contains(report, patchPath+":1: Secret billing-db: NotAnnotated: has data but no rekey.dev/encrypted-keys") ||
			!strings.Contains(report, "1 unannotated patches") || strings.Contains(report, "tls") {
			t.Fatalf("%v: exit %d\n%s", extra, code, report)
		}
	}
	if b, _ := os.ReadFile(patchPath); string(b) != patch {
		t.Fatal("the unannotated patch was changed")
	}
	// The base was re-encrypted by the second run; the patch, annotated
	// now, is what is left under the old key.
	annotated := strings.Replace(patch, "  name: billing-db\n", "  name: billing-db\n  annotations: {rekey.dev/encrypted-keys: password}\n", 1)
	if err := os.WriteFile(patchPath, []byte(annotated), 0o644); err != nil {
		t.Fatal(err)
	}
	if report, code := reencrypt("--check"); code != 1 || !strings.Contains(report, "1 blobs under a source key, 1 already under the destination") ||
		!strings.Contains(report, "0 unannotated patches") {
		t.Fatalf("check with the annotated patch: exit %d\n%s", code, report)
	}
	if report, code := reencrypt(); code != 0 {
		t.Fatalf("reencrypt: exit %d\n%s", code, report)
	}
	if report, code := reencrypt("--check"); code != 0 || !strings.Contains(report, "0 blobs under a source key, 2 already under the destination") {
		t.Fatalf("check after: exit %d\n%s", code, report)
	}
}

// writeTree writes files (path below dir: content) and returns a function
// that runs manifests reencrypt over dir from alias/old to alias/new with
// more arguments, and returns its report (stderr) and exit status.
func writeTree(t *testing.T, c *cli, dir string, files map[string]string) func(extra ...string) (string, int) {
	t.Helper()
	writeFiles(t, dir, files, 0o644)
	return func(extra ...string) (string, int) {
		argv := append([]string{"manifests", "reencrypt", dir, "--source-key", "alias/old", "--destination-key", "alias/new"}, c.args...)
		_, report, code := rekeyCmd("", append(argv, extra...)...)
		return report, code
	}
}

// writeFiles writes files (path below dir: content) with mode perm,
// making their directories.
func writeFiles(t *testing.T, dir string, files map[string]string, perm os.FileMode) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), perm); err != nil {
			t.Fatal(err)
		}
	}
}
