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
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	rekeyv1alpha1 "github.com/rekey-dev/rekey/api/v1alpha1"
	"github.com/rekey-dev/rekey/internal/kms"
	"github.com/rekey-dev/rekey/internal/kms/keystore"
	"github.com/rekey-dev/rekey/internal/testkms"
)

// secretCreate runs "rekey secret create <keystore flags> args...".
func (c *cli) secretCreate(stdin string, args ...string) (string, string, int) {
	c.t.Helper()
	argv := append(append([]string{"secret", "create"}, c.args...), args...)
	var out, errOut bytes.Buffer
	code := run(context.Background(), argv, strings.NewReader(stdin), &out, &errOut)
	return out.String(), errOut.String(), code
}

// engine opens the CLI's keystore in-process.
func (c *cli) engine() *kms.Engine {
	c.t.Helper()
	root, err := keystore.ReadRootKeyFile(filepath.Join(c.dir, "root.key"))
	if err != nil {
		c.t.Fatal(err)
	}
	e, err := kms.New(context.Background(), kms.Options{Store: keystore.OpenFile(c.args[1], root), Region: "local", AccountID: "000000000000"})
	if err != nil {
		c.t.Fatal(err)
	}
	return e
}

// parseSecretManifest reads a manifest as the apiserver would, strictly: a field
// rekey invented would fail here.
func parseSecretManifest(t *testing.T, out string) *corev1.Secret {
	t.Helper()
	s := &corev1.Secret{}
	if err := yaml.UnmarshalStrict([]byte(out), s); err != nil {
		t.Fatalf("not a Secret manifest: %v\n%s", err, out)
	}
	if s.APIVersion != "v1" || s.Kind != "Secret" || s.Type != corev1.SecretTypeOpaque {
		t.Fatalf("apiVersion %q kind %q type %q", s.APIVersion, s.Kind, s.Type)
	}
	return s
}

// checkBlobs reads the manifest's annotations with the controller's own
// parsing (api/v1alpha1, which controllers/ calls), and decrypts every
// value with the engine under the context the annotation holds.
func checkBlobs(t *testing.T, d interface {
	Decrypt(context.Context, *kms.DecryptInput) (*kms.DecryptOutput, error)
}, s *corev1.Secret, keyARN string, ec map[string]string, want map[string]string) {
	t.Helper()
	keys := rekeyv1alpha1.EncryptedKeys(s.Annotations[rekeyv1alpha1.EncryptedKeysAnnotation], s.Data)
	if !slices.Equal(keys, slices.Sorted(maps.Keys(want))) {
		t.Fatalf("the controller reads encrypted keys %q, want %q", keys, slices.Sorted(maps.Keys(want)))
	}
	ann, has := s.Annotations[rekeyv1alpha1.EncryptionContextAnnotation]
	if has != (len(ec) > 0) {
		t.Fatalf("encryption-context annotation present %v, context %v", has, ec)
	}
	var got map[string]string
	if has {
		var err error
		if got, err = rekeyv1alpha1.ParseEncryptionContext(ann); err != nil {
			t.Fatalf("the controller refuses the context annotation: %v", err)
		}
		if !maps.Equal(got, ec) {
			t.Fatalf("the controller reads context %v, want %v", got, ec)
		}
	}
	for _, k := range keys {
		out, err := d.Decrypt(context.Background(), &kms.DecryptInput{CiphertextBlob: s.Data[k], EncryptionContext: got})
		if err != nil {
			t.Fatalf("decrypting %s: %v", k, err)
		}
		if string(out.Plaintext) != want[k] || out.KeyID != keyARN {
			t.Fatalf("%s decrypts to %d bytes under %s; want %d bytes under %s", k, len(out.Plaintext), out.KeyID, len(want[k]), keyARN)
		}
		if len(ec) > 0 {
			if _, err := d.Decrypt(context.Background(), &kms.DecryptInput{CiphertextBlob: s.Data[k]}); kms.CodeOf(err) != kms.CodeInvalidCiphertext {
				t.Fatalf("%s decrypts without its context: %v", k, err)
			}
		}
	}
}

// TestSecretCreate writes a manifest with the embedded keystore and reads
// it back: annotations as the controller parses them, every value
// decrypting under the same context, no plaintext in the output.
func TestSecretCreate(t *testing.T) {
	c := newCLI(t)
	arn := strings.TrimSpace(c.ok("", "key", "create", "--alias", "alias/app"))
	file := filepath.Join(c.dir, "dsn")
	dsn := "postgres://billing:s3cr3t-dsn@db:5432/billing"
	if err := os.WriteFile(file, []byte(dsn), 0o600); err != nil {
		t.Fatal(err)
	}
	full := strings.Repeat("x", maxValue)
	want := map[string]string{"password": "hunter2-literal", "dsn": dsn, "api.token": "token-from-stdin", "big": full}
	ec := map[string]string{"app": "billing", "tier": "db <&>"}
	// Flags on both sides of NAME.
	args := []string{"--key", "alias/app", "db-credentials", "--namespace", "billing",
		"--context", "app=billing", "--context", "tier=db <&>",
		"--from-literal", "password=hunter2-literal", "--from-file", "dsn=" + file, "--from-file", "api.token=-",
		"--from-literal", "big=" + full, "--label", "team=billing"}
	out, errOut, code := c.secretCreate("token-from-stdin", args...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, v := range want {
		if strings.Contains(out+errOut, v) {
			t.Fatalf("a plaintext is in the output:\n%s%s", out, errOut)
		}
	}
	s := parseSecretManifest(t, out)
	if s.Name != "db-credentials" || s.Namespace != "billing" || !maps.Equal(s.Labels, map[string]string{"team": "billing"}) {
		t.Fatalf("metadata %+v", s.ObjectMeta)
	}
	if got := s.Annotations[rekeyv1alpha1.EncryptedKeysAnnotation]; got != "api.token,big,dsn,password" {
		t.Fatalf("encrypted-keys %q", got)
	}
	if got := s.Annotations[rekeyv1alpha1.EncryptionContextAnnotation]; got != `{"app":"billing","tier":"db <&>"}` {
		t.Fatalf("encryption-context %q", got)
	}
	e := c.engine()
	checkBlobs(t, e, s, arn, ec, want)

	// The same input gives the same manifest but for the blobs; -o json
	// is the same object.
	again, _, code := c.secretCreate("token-from-stdin", args...)
	if code != 0 {
		t.Fatal("second run failed")
	}
	s2 := parseSecretManifest(t, again)
	if slices.Equal(s.Data["password"], s2.Data["password"]) {
		t.Fatal("two encryptions gave the same blob")
	}
	blank := func(out string, s *corev1.Secret) string {
		for _, v := range s.Data {
			out = strings.Replace(out, b64(v), "BLOB", 1)
		}
		return out
	}
	if blank(out, s) != blank(again, s2) {
		t.Fatalf("the layout differs between runs:\n%s\n%s", out, again)
	}
	js, errOut, code := c.secretCreate("token-from-stdin", append(args, "-o", "json")...)
	if code != 0 {
		t.Fatalf("-o json: exit %d: %s", code, errOut)
	}
	sj := &corev1.Secret{}
	if err := json.Unmarshal([]byte(js), sj); err != nil || !strings.HasPrefix(js, "{\n  \"apiVersion\": \"v1\"") {
		t.Fatalf("-o json: %v\n%s", err, js)
	}
	checkBlobs(t, e, sj, arn, ec, want)

	// Without a context: no context annotation, blobs under none; "--"
	// ends the flags.
	out, errOut, code = c.secretCreate("", "--key", "alias/app", "--from-literal", "a=1", "--", "plain")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	s = parseSecretManifest(t, out)
	if s.Name != "plain" || s.Namespace != "" {
		t.Fatalf("metadata %+v", s.ObjectMeta)
	}
	checkBlobs(t, e, s, arn, nil, map[string]string{"a": "1"})
}

func b64(b []byte) string { return strings.TrimSpace(base64Line(b)) }

// TestSecretCreateBadInput: every mistake is a clear error with nothing on
// stdout, nothing written to the keystore, and no value in the message.
func TestSecretCreateBadInput(t *testing.T) {
	c := newCLI(t)
	c.ok("", "key", "create", "--alias", "alias/app")
	big := filepath.Join(c.dir, "big")
	if err := os.WriteFile(big, bytes.Repeat([]byte("s"), maxValue+1), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(c.dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(c.args[1])
	if err != nil {
		t.Fatal(err)
	}
	const secret = "hunter2"
	ok := []string{"--key", "alias/app", "--from-literal", "password=" + secret}
	cases := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"no name", ok, 2, "takes one argument, the Secret's NAME; got 0"},
		{"two names", append([]string{"a", "b"}, ok...), 2, "got 2"},
		{"value misplaced as an argument", []string{"db", "--key", "alias/app", "--from-literal", "password", secret}, 2, "--from-literal: want DATAKEY=VALUE"},
		{"no key", []string{"db", "--from-literal", "password=" + secret}, 2, "--key is required"},
		{"key takes the next flag", []string{"db", "--key", "--from-literal", "password=" + secret}, 2, "flag --key needs a value (it is followed by --from-literal)"},
		{"key takes --", []string{"db", "--key", "--", "--from-literal", "password=" + secret}, 2, "flag --key needs a value"},
		{"no data", []string{"db", "--key", "alias/app"}, 2, "at least one --from-literal"},
		{"data key twice", append([]string{"db", "--from-file", "password=" + empty}, ok...), 2, `data key "password" given twice`},
		{"bad data key", []string{"db", "--key", "alias/app", "--from-literal", "pass/word=" + secret}, 2, `data key "pass/word"`},
		{"empty data key", []string{"db", "--key", "alias/app", "--from-literal", "=" + secret}, 2, `data key ""`},
		{"empty value", []string{"db", "--key", "alias/app", "--from-literal", "password="}, 2, "the value is empty; KMS Encrypt takes 1 to 4096 bytes"},
		{"literal too large", []string{"db", "--key", "alias/app", "--from-literal", "password=" + strings.Repeat("s", maxValue+1)}, 2, "the value is 4097 bytes; KMS Encrypt takes at most 4096 bytes"},
		{"file too large", []string{"db", "--key", "alias/app", "--from-file", "password=" + big}, 1, "larger than 4096 bytes, the most plaintext KMS Encrypt takes"},
		{"empty file", []string{"db", "--key", "alias/app", "--from-file", "password=" + empty}, 1, "empty; KMS Encrypt takes 1 to 4096 bytes"},
		{"missing file", []string{"db", "--key", "alias/app", "--from-file", "password=" + filepath.Join(c.dir, "nope")}, 1, "no such file"},
		{"file without path", []string{"db", "--key", "alias/app", "--from-file", "password="}, 2, "no PATH"},
		{"stdin twice", []string{"db", "--key", "alias/app", "--from-file", "a=-", "--from-file", "b=-"}, 2, "stdin) given more than once"},
		{"bad name", append([]string{"Billing_DB"}, ok...), 2, "the Secret's NAME is not a Secret name"},
		{"bad namespace", append([]string{"db", "--namespace", "billing.prod"}, ok...), 2, `--namespace "billing.prod"`},
		{"context without =", append([]string{"db", "--context", "app"}, ok...), 2, "want KEY=VALUE"},
		{"context empty key", append([]string{"db", "--context", "=billing"}, ok...), 2, "want KEY=VALUE"},
		{"context empty value", append([]string{"db", "--context", "app="}, ok...), 2, "--context app=: the value is empty"},
		{"context key twice", append([]string{"db", "--context", "app=a", "--context", "app=b"}, ok...), 2, `context key "app" given twice`},
		{"bad label", append([]string{"db", "--label", "team=a b"}, ok...), 2, "--label team: the value is not a label value"},
		{"label without =", append([]string{"db", "--label", "team"}, ok...), 2, "--label: want KEY=VALUE"},
		{"label twice", append([]string{"db", "--label", "t=a", "--label", "t=b"}, ok...), 2, "--label t given twice"},
		{"bad output", append([]string{"db", "-o", "xml"}, ok...), 2, `-o "xml": want yaml or json`},
		{"output and apply", append([]string{"db", "-o", "json", "--apply"}, ok...), 2, "give one"},
		{"force without apply", append([]string{"db", "--force"}, ok...), 2, "--force is for --apply"},
		{"unknown flag", append([]string{"db", "--frob"}, ok...), 2, "frob"},
		{"keystore and endpoint", append([]string{"db", "--aws"}, ok...), 2, "--keystore, --root-key-file are the embedded engine's flags"},
		{"endpoint: plain http", append([]string{"db", "--kms-endpoint", "http://kms.example:8300"}, ok...), 2, "http only to a loopback address"},
		{"endpoint: not a URL", append([]string{"db", "--kms-endpoint", "kms.example"}, ok...), 2, "want https://HOST[:PORT]"},
		{"unknown key", []string{"db", "--key", "alias/nope", "--from-literal", "password=" + secret}, 1, "NotFoundException"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut string
			var code int
			if strings.HasPrefix(tc.name, "endpoint:") { // without c's --keystore and --root-key-file
				var o, e bytes.Buffer
				code = run(context.Background(), append([]string{"secret", "create"}, tc.args...), strings.NewReader(""), &o, &e)
				out, errOut = o.String(), e.String()
			} else {
				out, errOut, code = c.secretCreate("", tc.args...)
			}
			if code != tc.code || !strings.Contains(errOut, tc.msg) {
				t.Fatalf("exit %d (want %d), stderr %q (want %q)", code, tc.code, errOut, tc.msg)
			}
			if out != "" {
				t.Fatalf("a failed command wrote to stdout: %q", out)
			}
			if strings.Contains(errOut, secret) || strings.Contains(errOut, "sssss") {
				t.Fatalf("a value is in the error: %q", errOut)
			}
		})
	}
	after, _ := os.ReadFile(c.args[1])
	if !bytes.Equal(before, after) {
		t.Fatal("a failed command changed the keystore")
	}

	// The subcommand itself, and the help: asked for, on stdout; after a
	// usage error, on stderr.
	for _, tc := range []struct {
		argv []string
		code int
		msg  string
	}{
		{[]string{"secret"}, 2, "a subcommand is required"},
		{[]string{"secret", "frob"}, 2, `unknown subcommand "frob"`},
		{[]string{"secret", "-h"}, 0, "create NAME --key KEY"},
		{[]string{"secret", "create", "-h"}, 0, "rekey secret create NAME --key KEY"},
		{[]string{"secret", "create", "db", "--help"}, 0, "--from-literal DATAKEY=VALUE"},
	} {
		var out, errOut bytes.Buffer
		code := run(context.Background(), tc.argv, strings.NewReader(""), &out, &errOut)
		wanted, other := &errOut, &out
		if tc.code == 0 {
			wanted, other = &out, &errOut
		}
		if code != tc.code || !strings.Contains(wanted.String(), tc.msg) || other.Len() != 0 {
			t.Fatalf("%v: exit %d (want %d), stdout %q, stderr %q (want %q)", tc.argv, code, tc.code, out.String(), errOut.String(), tc.msg)
		}
	}
}

// awsEnv gives the AWS SDK's default configuration the test server's
// credentials and region, and nothing from this machine.
func awsEnv(t *testing.T) {
	dir := t.TempDir()
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID": testkms.AccessKeyID, "AWS_SECRET_ACCESS_KEY": testkms.SecretAccessKey, "AWS_SESSION_TOKEN": "",
		"AWS_REGION": testkms.Region, "AWS_DEFAULT_REGION": "", "AWS_PROFILE": "",
		"AWS_CONFIG_FILE": filepath.Join(dir, "config"), "AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "credentials"),
		"AWS_EC2_METADATA_DISABLED": "true", "AWS_ENDPOINT_URL": "", "AWS_ENDPOINT_URL_KMS": "", "AWS_CA_BUNDLE": "",
		"REKEY_KEYSTORE": "", "REKEY_ROOT_KEY_FILE": "",
	} {
		t.Setenv(k, v)
	}
}

// TestSecretCreateThroughKMSEndpoint: the same command through rekey's
// AWS-compatible endpoint (on 127.0.0.1), by --kms-endpoint and by --aws
// with the SDK's AWS_ENDPOINT_URL_KMS; encrypt and decrypt take the same
// flags. The values decrypt with the server's engine.
func TestSecretCreateThroughKMSEndpoint(t *testing.T) {
	awsEnv(t)
	srv := testkms.Rekey(t)
	ctx := context.Background()
	key, err := srv.Engine.CreateKey(ctx, &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Engine.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: "alias/remote", TargetKeyID: key.KeyMetadata.KeyID}); err != nil {
		t.Fatal(err)
	}
	do := func(stdin string, argv ...string) (string, string, int) {
		var out, errOut bytes.Buffer
		code := run(ctx, argv, strings.NewReader(stdin), &out, &errOut)
		return out.String(), errOut.String(), code
	}
	want := map[string]string{"password": "over-the-wire", "token": "from-stdin"}
	ec := map[string]string{"app": "billing"}
	for _, how := range [][]string{{"--kms-endpoint", srv.URL}, {"--aws"}} {
		if how[0] == "--aws" {
			t.Setenv("AWS_ENDPOINT_URL_KMS", srv.URL)
		}
		received := srv.Received()
		out, errOut, code := do("from-stdin", append([]string{"secret", "create", "db", "--key", "alias/remote", "--context", "app=billing",
			"--from-literal", "password=over-the-wire", "--from-file", "token=-"}, how...)...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", how, code, errOut)
		}
		if srv.Received()-received != 2 {
			t.Fatalf("%v: %d requests reached the server, want 2 Encrypts", how, srv.Received()-received)
		}
		checkBlobs(t, srv.Engine, parseSecretManifest(t, out), key.KeyMetadata.Arn, ec, want)

		blob, errOut, code := do("piped", append([]string{"encrypt", "--key", "alias/remote"}, how...)...)
		if code != 0 {
			t.Fatalf("encrypt %v: exit %d: %s", how, code, errOut)
		}
		if pt, errOut, code := do(blob, append([]string{"decrypt"}, how...)...); code != 0 || pt != "piped" {
			t.Fatalf("decrypt %v: exit %d, %d bytes: %s", how, code, len(pt), errOut)
		}
		if _, errOut, code := do("", append([]string{"secret", "create", "db", "--key", "alias/nope", "--from-literal", "a=b"}, how...)...); code != 1 ||
			!strings.Contains(errOut, "Encrypt: NotFoundException") {
			t.Fatalf("unknown key %v: exit %d: %s", how, code, errOut)
		}
	}

	// No region anywhere: a usage error before any call; --region gives one.
	t.Setenv("AWS_REGION", "")
	received := srv.Received()
	args := []string{"secret", "create", "db", "--key", "alias/remote", "--from-literal", "a=b", "--kms-endpoint", srv.URL}
	if _, errOut, code := do("", args...); code != 2 || !strings.Contains(errOut, "no AWS region") || srv.Received() != received {
		t.Fatalf("no region: exit %d: %s", code, errOut)
	}
	if _, errOut, code := do("", append(args, "--region", testkms.Region)...); code != 0 {
		t.Fatalf("--region: exit %d: %s", code, errOut)
	}
}
