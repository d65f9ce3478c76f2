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
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/rekey-dev/rekey/internal/kms/keystore"
)

// cli runs rekey in-process against one keystore.
type cli struct {
	t    *testing.T
	dir  string
	args []string
}

func newCLI(t *testing.T) *cli {
	t.Helper()
	dir := t.TempDir()
	root, err := keystore.GenerateRootKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "root.key"), []byte(root+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := &cli{t: t, dir: dir, args: []string{"--keystore", filepath.Join(dir, "keys.rks"), "--root-key-file", filepath.Join(dir, "root.key")}}
	c.ok("", "keystore", "init")
	return c
}

// useKeystore points c at another keystore (a Secret: k8s://NAMESPACE/NAME)
// and creates it there.
func (c *cli) useKeystore(ref string) {
	c.t.Helper()
	c.args[1] = ref
	c.ok("", "keystore", "init")
}

// run runs "rekey cmd [sub] <keystore flags> args..." and returns stdout,
// stderr and the exit code; "keystore verify FILE" gets --root-key-file
// alone.
func (c *cli) run(stdin string, cmd ...string) (string, string, int) {
	c.t.Helper()
	var argv []string
	argv = append(argv, cmd[0])
	rest := cmd[1:]
	if cmd[0] == "key" || cmd[0] == "kms" || cmd[0] == "keystore" {
		argv = append(argv, cmd[1])
		rest = cmd[2:]
	}
	keystoreFlags := c.args
	if cmd[0] == "keystore" && cmd[1] == "verify" && len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		keystoreFlags = c.args[2:] // verify FILE takes the root key alone
	}
	argv = append(append(argv, keystoreFlags...), rest...)
	var out, errOut bytes.Buffer
	code := run(context.Background(), argv, strings.NewReader(stdin), &out, &errOut)
	return out.String(), errOut.String(), code
}

// runController runs "rekey controller args..." in-process, as run does,
// and returns its error instead of printing it; the manager logs to
// stderr.
func runController(ctx context.Context, args []string, stderr io.Writer) error {
	_, err := execute(ctx, append([]string{"controller"}, args...), streams{in: strings.NewReader(""), out: io.Discard, err: stderr})
	return err
}

func (c *cli) ok(stdin string, cmd ...string) string {
	c.t.Helper()
	out, errOut, code := c.run(stdin, cmd...)
	if code != 0 {
		c.t.Fatalf("rekey %v: exit %d: %s", cmd, code, errOut)
	}
	return out
}

// TestCLIWalkthrough is the README's walk-through: create a key, encrypt,
// rotate the key, re-encrypt, decrypt.
func TestCLIWalkthrough(t *testing.T) {
	c := newCLI(t)
	arn := strings.TrimSpace(c.ok("", "key", "create", "--alias", "alias/app", "--description", "app key", "--allow-namespace", "billing"))
	if !strings.HasPrefix(arn, "arn:aws:kms:local:000000000000:key/") {
		t.Fatalf("key create printed %q", arn)
	}
	if list := c.ok("", "key", "list"); !strings.Contains(list, "alias/app") || !strings.Contains(list, "Enabled") {
		t.Fatalf("key list:\n%s", list)
	}
	blob := c.ok("hunter2", "encrypt", "--key", "alias/app", "--context", "app=billing")
	if strings.Contains(blob, "hunter2") {
		t.Fatal("blob holds the plaintext")
	}
	rot := c.ok("", "key", "rotate", "alias/app")
	if !strings.Contains(rot, "now encrypts with key material") {
		t.Fatalf("key rotate printed %q", rot)
	}
	newBlob := c.ok(blob, "reencrypt", "--source-key", "alias/app", "--destination-key", "alias/app",
		"--context", "app=billing", "--destination-context", "app=billing")
	if newBlob == blob {
		t.Fatal("reencrypt returned the same blob")
	}
	if pt := c.ok(newBlob, "decrypt", "--context", "app=billing"); pt != "hunter2" {
		t.Fatalf("decrypt: got %q", pt)
	}
	// The old blob still decrypts: rotation keeps every version.
	if pt := c.ok(blob, "decrypt", "--context", "app=billing"); pt != "hunter2" {
		t.Fatalf("decrypt old blob: got %q", pt)
	}
	c.ok("", "key", "disable", "alias/app")
	if _, errOut, code := c.run(newBlob, "decrypt", "--context", "app=billing"); code != 1 || !strings.Contains(errOut, "DisabledException") {
		t.Fatalf("decrypt under a disabled key: exit %d, %s", code, errOut)
	}
	c.ok("", "key", "enable", arn)
	c.ok("", "key", "alias", "alias/other", arn)
	if out := c.ok("", "key", "allow", "alias/app", "payments", "billing"); !strings.Contains(out, "rekey.dev/namespaces=billing,payments") {
		t.Fatalf("key allow: %q", out)
	}
	if d := c.ok("", "key", "describe", "alias/other"); !strings.Contains(d, `"KeyState": "Enabled"`) {
		t.Fatalf("describe:\n%s", d)
	}
}

// TestCLIBadInput: every bad input is a clear error with a non-zero exit,
// and the keystore is untouched.
func TestCLIBadInput(t *testing.T) {
	c := newCLI(t)
	c.ok("", "key", "create", "--alias", "alias/app")
	blob := c.ok("v", "encrypt", "--key", "alias/app")
	before, err := os.ReadFile(filepath.Join(c.dir, "keys.rks"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		stdin string
		cmd   []string
		code  int
		msg   string
	}{
		{"encrypt without key", "x", []string{"encrypt"}, 2, "--key is required"},
		{"encrypt empty", "", []string{"encrypt", "--key", "alias/app"}, 1, "ValidationException"},
		{"encrypt unknown key", "x", []string{"encrypt", "--key", "alias/nope"}, 1, "NotFoundException"},
		{"bad context flag", "x", []string{"encrypt", "--key", "alias/app", "--context", "novalue"}, 2, "KEY=VALUE"},
		{"decrypt garbage", "!!!", []string{"decrypt"}, 1, "not a base64 ciphertext blob"},
		{"decrypt empty", "", []string{"decrypt"}, 1, "stdin is empty"},
		{"decrypt not a blob", "aGVsbG8=", []string{"decrypt"}, 1, "InvalidCiphertextException"},
		{"decrypt wrong context", blob, []string{"decrypt", "--context", "a=b"}, 1, "InvalidCiphertextException"},
		{"reencrypt without destination", blob, []string{"reencrypt"}, 2, "--destination-key is required"},
		{"reencrypt wrong source", blob, []string{"reencrypt", "--destination-key", "alias/app", "--source-key", "alias/nope"}, 1, "NotFoundException"},
		{"unknown key subcommand", "", []string{"key", "frob"}, 2, "unknown subcommand"},
		{"describe without key", "", []string{"key", "describe"}, 2, "takes 1 argument"},
		{"bad alias", "", []string{"key", "alias", "nope", "alias/app"}, 1, "InvalidAliasNameException"},
		{"unknown flag", "", []string{"key", "list", "--frob"}, 2, "frob"},
		{"allow without namespaces", "", []string{"key", "allow", "alias/app"}, 2, "at least 2 arguments"},
		{"namespace list in one flag", "", []string{"key", "create", "--allow-namespace", "a,b"}, 2, "one namespace"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := c.run(tc.stdin, tc.cmd...)
			if code != tc.code || !strings.Contains(errOut, tc.msg) {
				t.Fatalf("exit %d (want %d), stderr %q (want %q)", code, tc.code, errOut, tc.msg)
			}
			if out != "" {
				t.Fatalf("a failed command wrote to stdout: %q", out)
			}
		})
	}
	after, _ := os.ReadFile(filepath.Join(c.dir, "keys.rks"))
	if !bytes.Equal(before, after) {
		t.Fatal("a failed command changed the keystore")
	}

	// A missing or wrong root key never yields an empty keyring.
	wrong := filepath.Join(c.dir, "wrong.key")
	w, _ := keystore.GenerateRootKey()
	_ = os.WriteFile(wrong, []byte(w), 0o600)
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"key", "list", "--keystore", filepath.Join(c.dir, "keys.rks"), "--root-key-file", wrong},
		strings.NewReader(""), &out, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), "wrong root key") {
		t.Fatalf("wrong root key: exit %d, %s", code, errOut.String())
	}
	code = run(context.Background(), []string{"key", "list", "--keystore", filepath.Join(c.dir, "keys.rks")}, strings.NewReader(""), &out, &errOut)
	if code != 2 || !strings.Contains(errOut.String(), "--root-key-file is required") {
		t.Fatalf("missing root key: exit %d, %s", code, errOut.String())
	}
}

// TestKMSServe starts 'rekey kms serve' on 127.0.0.1:0, talks to it with the
// AWS SDK, and stops it by cancelling its context (as SIGTERM does).
func TestKMSServe(t *testing.T) {
	c := newCLI(t)
	c.ok("", "key", "create", "--alias", "alias/served")
	creds := filepath.Join(c.dir, "creds")
	if err := os.WriteFile(creds, []byte("AKIDSERVE secretserve\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw, _ := os.Pipe()
	done := make(chan int, 1)
	var errOut bytes.Buffer
	go func() {
		argv := append([]string{"kms", "serve"}, c.args...)
		argv = append(argv, "--listen", "127.0.0.1:0", "--credentials-file", creds)
		done <- run(ctx, argv, strings.NewReader(""), pw, &errOut)
		_ = pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("no listening line: %v (%s)", err, errOut.String())
	}
	url := strings.TrimSpace(strings.TrimPrefix(line, "rekey kms: listening on "))
	if !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Fatalf("server reported %q", line)
	}
	client := awskms.New(awskms.Options{Region: "local", BaseEndpoint: aws.String(url),
		Credentials: credentials.NewStaticCredentialsProvider("AKIDSERVE", "secretserve", "")})
	enc, err := client.Encrypt(ctx, &awskms.EncryptInput{KeyId: aws.String("alias/served"), Plaintext: []byte("over http")})
	if err != nil {
		t.Fatalf("Encrypt over HTTP: %v", err)
	}
	// The blob the server made decrypts with the CLI on the same keystore.
	if pt := c.ok(base64Line(enc.CiphertextBlob), "decrypt"); pt != "over http" {
		t.Fatalf("CLI decrypt of the served blob: %q", pt)
	}
	// A key the CLI creates while the server runs becomes visible to it.
	c.ok("", "key", "create", "--alias", "alias/later")
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := client.DescribeKey(ctx, &awskms.DescribeKeyInput{KeyId: aws.String("alias/later")})
		if err == nil {
			break
		}
		var nf *types.NotFoundException
		if !errors.As(err, &nf) || time.Now().After(deadline) {
			t.Fatalf("key created by the CLI never appeared: %v", err)
		}
		time.Sleep(100 * time.Millisecond) // polling the server's refresh; bounded by the deadline
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("serve exited %d: %s", code, errOut.String())
	}
}

func base64Line(b []byte) string { return base64.StdEncoding.EncodeToString(b) + "\n" }
