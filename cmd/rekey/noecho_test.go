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
	"strings"
	"testing"

	"github.com/rekey-dev/rekey/internal/kms/keystore"
)

// The secret every case below hides in its command line.
const hidden = "S3CRETVAL"

// TestParseErrorsDoNotEcho is review 13's finding 1: pflag's "bad flag
// syntax" printed the whole argument and "unknown flag" everything up to
// an '=', values included; controller-runtime's logging flags echoed an
// invalid value. Each is a usage error that names at most the flag.
func TestParseErrorsDoNotEcho(t *testing.T) {
	for _, tc := range []struct {
		argv []string
		msg  string
	}{
		{[]string{"secret", "create", "db", "--key", "alias/x", "---from-literal=pw=" + hidden},
			"rekey secret create: bad flag syntax: an argument starts with three dashes (---from-literal); flags take two: --from-literal"},
		{[]string{"secret", "create", "db", "--key", "alias/x", "--from-literal " + hidden},
			"rekey secret create: unknown flag: --from-literal (a flag and its value in one argument?"},
		{[]string{"kms", "serve", "--credentials-file /" + hidden}, "rekey kms serve: unknown flag: --credentials-file ("},
		{[]string{"---from-literal=pw=" + hidden}, "rekey: bad flag syntax: an argument starts with three dashes (---from-literal)"},
		{[]string{"key", "---keystore=" + hidden}, "rekey key: bad flag syntax"},
		{[]string{"controller", "--zap-log-level=" + hidden}, "rekey controller: invalid value for --zap-log-level: want debug, info, error, panic or an integer above 0"},
		{[]string{"controller", "--zap-encoder", hidden}, "invalid value for --zap-encoder: want json or console"},
		{[]string{"controller", "--zap-time-encoding", hidden}, "invalid value for --zap-time-encoding: want epoch,"},
		{[]string{"controller", "--zap-stacktrace-level", hidden}, "invalid value for --zap-stacktrace-level: want info, error or panic"},
	} {
		out, errOut, code := rekeyOut(tc.argv...)
		if code != 2 || out != "" || !strings.Contains(errOut, tc.msg) {
			t.Errorf("rekey %q: exit %d (want 2), stdout %q, stderr %q (want %q)", tc.argv, code, out, errOut, tc.msg)
		}
		if strings.Contains(errOut, hidden) {
			t.Errorf("rekey %q: stderr echoes the value:\n%s", tc.argv, errOut)
		}
	}
}

// TestEndpointNotEchoed is review 13's finding 2: --kms-endpoint with user
// info or a query was refused with the URL, credentials and all, in the
// message. Now the message says what is wrong and never shows the URL; the
// same for a --keystore that is a URL.
func TestEndpointNotEchoed(t *testing.T) {
	t.Setenv("REKEY_KEYSTORE", "")
	t.Setenv("REKEY_ROOT_KEY_FILE", "")
	for _, tc := range []struct {
		endpoint, msg string
	}{
		{"https://admin:" + hidden + "@kms.example.com", "the endpoint URL must not carry user info"},
		{"https://" + hidden + "@kms.example.com", "the endpoint URL must not carry user info"},
		{"https://kms.example.com/?X-Amz-Security-Token=" + hidden, "the endpoint URL must not carry a query"},
		{"https://kms.example.com/#" + hidden, "the endpoint URL must not carry a fragment"},
		{"http://kms.example.com/" + hidden, "--kms-endpoint http://kms.example.com: http only to a loopback address"},
		{"ftp://kms.example.com/" + hidden, "the endpoint URL's scheme is not https"},
		{"kms.example.com/" + hidden, "has no host"},
		{"https://kms.example.com/%zz" + hidden, "not a URL"},
	} {
		for _, argv := range [][]string{
			{"encrypt", "--key", "alias/x"},
			{"decrypt"},
			{"secret", "create", "db", "--key", "alias/x", "--from-literal", "a=b"},
			{"manifests", "reencrypt", ".", "--source-key", "a", "--destination-key", "b"},
		} {
			argv = append(argv, "--kms-endpoint", tc.endpoint)
			out, errOut, code := rekeyOut(argv...)
			if code != 2 || out != "" || !strings.Contains(errOut, tc.msg) || strings.Contains(errOut, hidden) {
				t.Errorf("rekey %q: exit %d (want 2), stdout %q, stderr %q (want %q, without the URL)", argv, code, out, errOut, tc.msg)
			}
		}
	}
	dir := newCLI(t).dir
	_, errOut, code := rekeyOut("key", "list", "--keystore", "https://admin:"+hidden+"@example.com/k", "--root-key-file", dir+"/root.key")
	if code != 2 || !strings.Contains(errOut, "the keystore is a URL other than k8s://NAMESPACE/NAME") || strings.Contains(errOut, hidden) {
		t.Errorf("--keystore URL: exit %d, stderr %q", code, errOut)
	}
	for _, ref := range []string{"k8s://admin:" + hidden + "@ns/name", "k8s://ns/" + hidden + "/x", "k8s://" + hidden, "k8s://ns/" + hidden + "?x"} {
		_, errOut, code := rekeyOut("key", "list", "--keystore", ref, "--root-key-file", dir+"/root.key")
		if code != 2 || !strings.Contains(errOut, "the keystore is not k8s://NAMESPACE/NAME (a namespace and a Secret's name)") || strings.Contains(errOut, hidden) {
			t.Errorf("--keystore %s: exit %d, stderr %q", ref, code, errOut)
		}
	}
}

// TestNoEchoOfValues is review 13's findings 9 and 10: a root key given
// where its file's name belongs was echoed by the error and by -h (as the
// default of --root-key-file, from REKEY_ROOT_KEY_FILE); a stray word by
// completion's "unknown command" and by secret create's check of NAME; a
// --label or --from-file argument by their errors.
func TestNoEchoOfValues(t *testing.T) {
	c := newCLI(t)
	c.ok("", "key", "create", "--alias", "alias/x")
	rootKey, err := keystore.GenerateRootKey()
	if err != nil {
		t.Fatal(err)
	}
	keystoreFile := c.args[1]
	for _, tc := range []struct {
		name   string
		argv   []string
		code   int
		msg    string
		hidden string
	}{
		{"root key as --root-key-file", []string{"key", "list", "--keystore", keystoreFile, "--root-key-file", rootKey}, 1,
			"rekey key list: the root key file (given by --root-key-file or REKEY_ROOT_KEY_FILE) cannot be read: no such file or directory", rootKey},
		{"root key as keystore verify's FILE", []string{"keystore", "verify", rootKey, "--root-key-file", c.args[3]}, 1,
			"reading (a file name that looks like a root key, not shown): no such file or directory", rootKey},
		{"root key as restore --from", []string{"keystore", "restore", "--from", rootKey, "--keystore", keystoreFile, "--root-key-file", c.args[3]}, 1,
			"reading (a file name that looks like a root key, not shown)", rootKey},
		{"completion bash extra", []string{"completion", "bash", hidden}, 2,
			"rekey completion bash: takes no arguments besides flags, got 1", hidden},
		{"a value's second half as NAME", []string{"secret", "create", "--key", "alias/x", "--from-literal", "password=Hunter", "2" + hidden + "!",
			"--keystore", keystoreFile, "--root-key-file", c.args[3]}, 2, "the Secret's NAME is not a Secret name", hidden},
		{"--label without =", []string{"secret", "create", "db", "--key", "alias/x", "--from-literal", "a=b", "--label", hidden}, 2,
			"--label: want KEY=VALUE", hidden},
		{"--label bad value", []string{"secret", "create", "db", "--key", "alias/x", "--from-literal", "a=b", "--label", "team=" + hidden + " !"}, 2,
			"--label team: the value is not a label value", hidden},
		{"--from-file with a value", []string{"secret", "create", "db", "--key", "alias/x", "--from-file", "pw=" + hidden,
			"--keystore", keystoreFile, "--root-key-file", c.args[3]}, 1,
			"--from-file pw=PATH: the file cannot be read: no such file or directory", hidden},
	} {
		out, errOut, code := rekeyOut(tc.argv...)
		if code != tc.code || out != "" || !strings.Contains(errOut, tc.msg) || strings.Contains(errOut, tc.hidden) {
			t.Errorf("%s: exit %d (want %d), stdout %q, stderr %q (want %q, without %q)", tc.name, code, tc.code, out, errOut, tc.msg, tc.hidden)
		}
	}

	// -h shows no environment value as the default of --keystore and
	// --root-key-file.
	t.Setenv("REKEY_ROOT_KEY_FILE", rootKey)
	t.Setenv("REKEY_KEYSTORE", "/"+hidden)
	for _, argv := range [][]string{{"key", "list", "-h"}, {"encrypt", "-h"}, {"keystore", "init", "-h"}, {"secret", "create", "-h"}} {
		out, _, code := rekeyOut(argv...)
		if code != 0 || strings.Contains(out, rootKey) || strings.Contains(out, hidden) || !strings.Contains(out, "env REKEY_ROOT_KEY_FILE") {
			t.Errorf("rekey %q: exit %d, the environment's values shown:\n%s", argv, code, out)
		}
	}
	// The environment still gives the values.
	t.Setenv("REKEY_KEYSTORE", keystoreFile)
	t.Setenv("REKEY_ROOT_KEY_FILE", c.args[3])
	if out, errOut, code := rekeyOut("key", "list"); code != 0 || !strings.Contains(out, "alias/x") {
		t.Errorf("key list from the environment: exit %d, %s%s", code, out, errOut)
	}
}
