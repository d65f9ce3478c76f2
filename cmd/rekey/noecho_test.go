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
}
