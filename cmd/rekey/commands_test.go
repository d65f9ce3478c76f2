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
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"
)

// rekeyOut runs rekey with argv and no stdin.
func rekeyOut(argv ...string) (string, string, int) {
	var out, errOut bytes.Buffer
	code := run(context.Background(), argv, strings.NewReader(""), &out, &errOut)
	return out.String(), errOut.String(), code
}

// walk calls fn on every command below root.
func walk(c *cobra.Command, fn func(*cobra.Command)) {
	for _, sub := range c.Commands() {
		fn(sub)
		walk(sub, fn)
	}
}

// Every command checks its positional arguments, and its -h shows, on
// stdout, its use line (with the positionals), its flags and its examples.
func TestEveryCommandsHelp(t *testing.T) {
	root := newRootCmd(streams{in: strings.NewReader(""), out: io.Discard, err: io.Discard})
	n := 0
	walk(root, func(c *cobra.Command) {
		n++
		path := strings.Fields(c.CommandPath())[1:]
		if c.Args == nil {
			t.Errorf("%s: no check of its positional arguments", c.CommandPath())
		}
		out, errOut, code := rekeyOut(append(path, "-h")...)
		if code != 0 || errOut != "" || !strings.Contains(out, "Usage:\n") {
			t.Errorf("%s -h: exit %d, stderr %q:\n%s", c.CommandPath(), code, errOut, out)
			return
		}
		if !c.HasAvailableSubCommands() && !strings.Contains(out, c.CommandPath()+strings.TrimPrefix(c.Use, c.Name())) {
			t.Errorf("%s -h does not show its use line %q:\n%s", c.CommandPath(), c.Use, out)
		}
		if c.Example != "" && !strings.Contains(out, "Examples:\n"+c.Example) {
			t.Errorf("%s -h does not show its examples:\n%s", c.CommandPath(), out)
		}
	})
	if n < 30 {
		t.Fatalf("only %d commands", n)
	}
	out, _, code := rekeyOut("key", "allow", "--help")
	for _, want := range []string{"rekey key allow KEY NAMESPACE... [flags]", "--keystore FILE", "--root-key-file FILE"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("key allow --help: exit %d, no %q:\n%s", code, want, out)
		}
	}
	// help COMMAND is COMMAND -h.
	if out, _, code := rekeyOut("help", "key", "allow"); code != 0 || !strings.Contains(out, "rekey key allow KEY NAMESPACE...") {
		t.Errorf("help key allow: exit %d:\n%s", code, out)
	}
}

// Usage errors exit 2 and say so once on stderr, with the usage line, or a
// group's list of commands; nothing is written to stdout.
func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		argv []string
		msg  []string
	}{
		{nil, []string{"rekey: a command is required", "Commands:\n", "  encrypt "}},
		{[]string{"encryp"}, []string{`rekey: unknown command "encryp" (did you mean encrypt?)`, "Commands:\n"}},
		{[]string{"frob", "--keystore", "x"}, []string{`rekey: unknown command "frob"`}},
		{[]string{"help", "frob"}, []string{`rekey help: no command "frob"`}},
		{[]string{"key"}, []string{"rekey key: a subcommand is required", "  allow KEY NAMESPACE...  "}},
		{[]string{"key", "alow", "--keystore", "x"}, []string{`rekey key: unknown subcommand "alow" (did you mean allow`}},
		{[]string{"keystore"}, []string{"restore --from FILE"}},
		{[]string{"completion", "frob"}, []string{`unknown subcommand "frob"`}},
		{[]string{"completion", "bash", "extra"}, []string{"rekey completion bash: "}},
		{[]string{"key", "describe"}, []string{"rekey key describe: takes 1 argument, got 0\nUsage: rekey key describe KEY [flags]\nRun 'rekey key describe -h' for help.\n"}},
		{[]string{"key", "list", "-keystore", "x"}, []string{"rekey key list: -keystore: long flags take two dashes: --keystore"}},
		{[]string{"status", "-n", "-A"}, []string{"rekey status: flag -n needs a value (it is followed by -A)"}},
		{[]string{"encrypt", "--key", "--context", "a=b"}, []string{"rekey encrypt: flag --key needs a value (it is followed by --context)"}},
		{[]string{"controller", "--page-size", "many"}, []string{"rekey controller: invalid value for --page-size: want an integer"}},
		{[]string{"controller", "--zap-log-level", "--leader-elect"}, []string{"flag --zap-log-level needs a value"}},
		// Review 13, findings 6 and 7: flags of rekey and of its groups.
		{[]string{"--version", "--frob"}, []string{"rekey: unknown flag: --frob\n"}},
		{[]string{"--version", "--keystore", "/x"}, []string{"rekey: unknown flag: --keystore\n"}},
		{[]string{"--frob"}, []string{"rekey: unknown flag: --frob\n"}},
		{[]string{"--frob=" + hidden}, []string{"rekey: unknown flag: --frob\n"}},
		{[]string{"-v"}, []string{"rekey: unknown shorthand flag -v\n"}},
		{[]string{"--frob", "key", "list"}, []string{"rekey: unknown flag: --frob\n"}},
		{[]string{"key", "--frob"}, []string{"rekey key: unknown flag: --frob\n"}},
		{[]string{"--", "key", "list"}, []string{`rekey: key is a command: it goes before "--" (everything after -- is an argument)`}},
		{[]string{"keystore", "--", "verify"}, []string{`rekey keystore: verify is a command: it goes before "--"`}},
		{[]string{"secret", "--apply", "create", "db", "--key", "alias/x", "--from-literal", "pw=x"},
			[]string{"rekey secret: flag --apply goes after the command's name: rekey secret create ... --apply\n"}},
		{[]string{"keystore", "--rebind", "restore", "--from", "x.rks"},
			[]string{"rekey keystore: flag --rebind goes after the command's name: rekey keystore restore ... --rebind\n"}},
		{[]string{"key", "--frob", "list"}, []string{"rekey key: unknown flag: --frob\n"}},
	} {
		out, errOut, code := rekeyOut(tc.argv...)
		if code != 2 || out != "" {
			t.Errorf("rekey %q: exit %d (want 2), stdout %q, stderr %q", tc.argv, code, out, errOut)
		}
		for _, m := range tc.msg {
			if !strings.Contains(errOut, m) {
				t.Errorf("rekey %q: stderr lacks %q:\n%s", tc.argv, m, errOut)
			}
		}
		if first, _, _ := strings.Cut(errOut, "\n"); strings.Count(errOut, first) != 1 || strings.Contains(errOut, "Error:") {
			t.Errorf("rekey %q: the error was printed twice:\n%s", tc.argv, errOut)
		}
	}
}

// rekey completion SHELL prints a completion script for the shell.
func TestShellCompletion(t *testing.T) {
	for shell, want := range map[string]string{
		"bash":       "__start_rekey",
		"zsh":        "#compdef rekey",
		"fish":       "complete -c rekey",
		"powershell": "Register-ArgumentCompleter",
	} {
		out, errOut, code := rekeyOut("completion", shell)
		if code != 0 || errOut != "" || !strings.Contains(out, want) {
			t.Errorf("completion %s: exit %d, stderr %q, no %q in:\n%.500s", shell, code, errOut, want, out)
		}
	}
	// What the scripts call: subcommands, and flags after positionals.
	out, _, code := rekeyOut("__complete", "key", "al")
	if code != 0 || !strings.Contains(out, "alias\t") || !strings.Contains(out, "allow\t") || strings.Contains(out, "create\t") {
		t.Errorf("__complete key al: exit %d:\n%s", code, out)
	}
	out, _, code = rekeyOut("__complete", "key", "allow", "alias/app", "--root")
	if code != 0 || !strings.Contains(out, "--root-key-file\t") {
		t.Errorf("__complete key allow alias/app --root: exit %d:\n%s", code, out)
	}
}

// TestCompletionAfterContext is review 13's finding 4: cobra parses the
// command line twice when completing, and the second parse refused the
// --context key of the first as given twice, so nothing was completed
// after any --context, --source-context or --destination-context.
func TestCompletionAfterContext(t *testing.T) {
	debug := filepath.Join(t.TempDir(), "debug")
	t.Setenv("BASH_COMP_DEBUG_FILE", debug) // where cobra writes its errors, besides stderr
	for _, tc := range []struct {
		line []string
		want string
	}{
		{[]string{"encrypt", "--context", "a=b", "--"}, "--key\t"},
		{[]string{"encrypt", "--context", "a=b", "--context", "c=d", "--k"}, "--key\t"},
		{[]string{"reencrypt", "--destination-context", "a=b", "--des"}, "--destination-key\t"},
		{[]string{"secret", "create", "db", "--context", "app=x", "--k"}, "--key\t"},
		{[]string{"manifests", "reencrypt", ".", "--source-context", "a=b", "--dest"}, "--destination-key\t"},
	} {
		out, _, code := rekeyOut(append([]string{"__complete"}, tc.line...)...)
		if code != 0 || !strings.Contains(out, tc.want) {
			t.Errorf("__complete %q: exit %d, no %q in:\n%s", tc.line, code, tc.want, out)
		}
	}
	if b, _ := os.ReadFile(debug); strings.Contains(string(b), "[Error]") {
		t.Errorf("completion errors:\n%s", b)
	}
	// A real run still refuses a key given twice.
	if _, errOut, code := rekeyOut("encrypt", "--key", "k", "--keystore", "x", "--context", "a=b", "--context", "a=c"); code != 2 ||
		!strings.Contains(errOut, `context key "a" given twice`) {
		t.Errorf("--context a=b --context a=c: exit %d, %s", code, errOut)
	}
}

// TestCompletionDoesNotEcho is review 13's finding 5: when the flags did
// not parse, cobra printed "Error while parsing flags from args [...]",
// every argument and value in it. Completion now parses any command line
// (an unknown flag, a value that does not parse, bad flag syntax, a value
// flag without its value) and completes it.
func TestCompletionDoesNotEcho(t *testing.T) {
	debug := filepath.Join(t.TempDir(), "debug")
	t.Setenv("BASH_COMP_DEBUG_FILE", debug)
	for _, tc := range []struct {
		line []string
		want string
	}{
		{[]string{"secret", "create", "db", "--from-literal", "pw=" + hidden, "--bogus", ""}, ""},
		{[]string{"secret", "create", "db", "--from-literal", "pw=" + hidden, "--bogus", "--k"}, "--key\t"},
		{[]string{"manifests", "reencrypt", "x", "--grant-token", hidden, "--check=maybe", "--dest"}, "--destination-key\t"},
		{[]string{"secret", "create", "db", "---from-literal=pw=" + hidden, "--k"}, "--key\t"},
		{[]string{"secret", "create", "db", "--from-literal", "pw=" + hidden, "--key", "--"}, "--namespace\t"},
		{[]string{"key", "create", "--allow-namespace", "a," + hidden, "--al"}, "--alias\t"},
		{[]string{"controller", "--zap-log-level=" + hidden, "--page-size", hidden, "--zap"}, "--zap-encoder\t"},
		{[]string{"encrypt", "--context", hidden, "--k"}, "--key\t"},
		{[]string{"--frob", hidden, "key", "-"}, ""},
	} {
		out, errOut, code := rekeyOut(append([]string{"__complete"}, tc.line...)...)
		if code != 0 || !strings.Contains(out, tc.want) || strings.Contains(out+errOut, hidden) {
			t.Errorf("__complete %q: exit %d, no %q in (or the value echoed):\n%s%s", tc.line, code, tc.want, out, errOut)
		}
	}
	// (Completing the value of an unknown flag is an error that names the flag.)
	if b, _ := os.ReadFile(debug); strings.Contains(string(b), "Error while parsing") || strings.Contains(string(b), hidden) {
		t.Errorf("completion errors:\n%s", b)
	}
	// A completion request without a command line is a usage error.
	if _, errOut, code := rekeyOut("__complete"); code != 2 || !strings.Contains(errOut, "__complete takes the command line to complete") {
		t.Errorf("__complete: exit %d, %s", code, errOut)
	}
}

// The arguments the Deployments in config/ and in the Helm chart give
// rekey parse: the command exists, every flag is one of its flags, and it
// takes no stray argument. The chart is rendered with its defaults, with
// every setting changed (test/chart/testdata/all-on.yaml) and with the
// branches that leaves out, so that an argument only a value adds is read
// too.
func TestDeploymentArgsParse(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{"manager/manager.yaml", "kms-service/deployment.yaml"} {
		b, err := os.ReadFile(filepath.Join(root, "config", file))
		if err != nil {
			t.Fatal(err)
		}
		if n := checkDeploymentArgs(t, "config/"+file, b); n != 1 {
			t.Errorf("config/%s: found %d rekey containers, want 1", file, n)
		}
	}
	helmBin := filepath.Join(root, "bin", "helm")
	if _, err := os.Stat(helmBin); err != nil {
		mk := exec.Command("make", "-s", "helm")
		mk.Dir = root
		if out, err := mk.CombinedOutput(); err != nil {
			t.Fatalf("make helm: %v\n%s", err, out)
		}
	}
	for _, c := range []struct {
		name string
		args []string
		want int // rekey containers: the controller, and kms serve when kms.enabled
	}{
		{"the chart's defaults", nil, 1},
		{"the chart with every setting changed", []string{"-f", filepath.Join(root, "test", "chart", "testdata", "all-on.yaml")}, 2},
		// The branches all-on leaves out: metrics off, a Lease namespace.
		{"the chart with metrics off and a Lease namespace", []string{"--set", "metrics.enabled=false", "--set", "leaderElection.namespace=rekey-leases"}, 1},
	} {
		cmd := exec.Command(helmBin, append([]string{"template", "rekey", filepath.Join(root, "charts", "rekey"), "-n", "rekey-system"}, c.args...)...)
		home := t.TempDir()
		cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+filepath.Join(home, "cache"),
			"HELM_CONFIG_HOME="+filepath.Join(home, "config"), "HELM_DATA_HOME="+filepath.Join(home, "data"))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("helm template, %s: %v\n%s", c.name, err, stderr.String())
		}
		if n := checkDeploymentArgs(t, c.name, out); n != c.want {
			t.Errorf("%s: found %d rekey containers, want %d", c.name, n, c.want)
		}
	}
}

// checkDeploymentArgs parses the arguments of every rekey container in the
// Deployments of docs (YAML documents) as rekey would, and returns how
// many there were.
func checkDeploymentArgs(t *testing.T, source string, docs []byte) int {
	t.Helper()
	n := 0
	for doc := range strings.SplitSeq(string(docs), "\n---\n") {
		var d struct {
			Kind string
			Spec struct {
				Template struct {
					Spec struct {
						Containers []struct {
							Name    string
							Command []string
							Args    []string
						}
					}
				}
			}
		}
		if err := yaml.Unmarshal([]byte(doc), &d); err != nil {
			t.Fatalf("%s: %v", source, err)
		}
		if d.Kind != "Deployment" {
			continue
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			if len(c.Command) != 1 || c.Command[0] != "/rekey" {
				continue
			}
			n++
			root := newRootCmd(streams{in: strings.NewReader(""), out: io.Discard, err: io.Discard})
			cmd, rest, err := root.Find(c.Args)
			if err == nil && cmd == root {
				err = root.Args(root, c.Args)
			}
			if err == nil {
				err = checkRawArgs(cmd.Flags(), rest)
			}
			if err == nil {
				err = cmd.ParseFlags(rest)
			}
			if err == nil {
				err = cmd.ValidateArgs(cmd.Flags().Args())
			}
			if err != nil {
				t.Errorf("%s, container %s: rekey %q: %v", source, c.Name, c.Args, err)
			}
		}
	}
	return n
}

// TestHelpAndDocs is review 13's finding 14: controller -h said that
// --zap-time-encoding defaults to epoch (it is rfc3339), docs/operations.md's
// table of the manager's flags lacked --pprof-bind-address, and secret
// create's usage error pointed to -h twice.
func TestHelpAndDocs(t *testing.T) {
	out, _, code := rekeyOut("controller", "-h")
	if code != 0 || !strings.Contains(out, "Defaults to 'rfc3339'") || strings.Contains(out, "Defaults to 'epoch'") {
		t.Errorf("controller -h: exit %d, --zap-time-encoding's default:\n%s", code, out)
	}
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, table, _ := strings.Cut(string(b), "## Manager flags (`rekey controller -h`)")
	table, _, _ = strings.Cut(table, "\n## ")
	root := newRootCmd(streams{in: strings.NewReader(""), out: io.Discard, err: io.Discard})
	controller, _, _ := root.Find([]string{"controller"})
	controller.Flags().VisitAll(func(f *pflag.Flag) {
		if !strings.Contains(table, "`--"+f.Name+"`") {
			t.Errorf("docs/operations.md, Manager flags: no --%s", f.Name)
		}
	})
	_, errOut, _ := rekeyOut("secret", "create", "--key", "alias/x", "--from-literal", "a=b")
	if n := strings.Count(errOut, "rekey secret create -h"); n != 1 {
		t.Errorf("secret create without NAME points to -h %d times:\n%s", n, errOut)
	}
}

// TestFlagValueCompletion is review 13's finding 12: completion offered
// file names for the value of every flag (-o, -n, --key, --operations);
// now only for flags whose values are files.
func TestFlagValueCompletion(t *testing.T) {
	for _, tc := range []struct {
		line []string
		want string
	}{
		{[]string{"secret", "create", "db", "-o", ""}, "yaml\njson\n:4\n"},
		{[]string{"key", "grant", "k", "ns", "--operations", ""}, "decrypt\nencrypt\ngenerate-data-key\n:4\n"},
		{[]string{"encrypt", "--key", ""}, ":4\n"},
		{[]string{"secret", "create", "db", "-n", ""}, ":4\n"},
		{[]string{"encrypt", "--context", ""}, ":4\n"},
		{[]string{"keystore", "backup", "--to", ""}, ":0\n"},
		{[]string{"key", "list", "--keystore", ""}, ":0\n"},
		{[]string{"kms", "serve", "--credentials-file", ""}, ":0\n"},
	} {
		if out, _, code := rekeyOut(append([]string{"__completeNoDesc"}, tc.line...)...); code != 0 || out != tc.want {
			t.Errorf("__complete %q: exit %d, %q, want %q", tc.line, code, out, tc.want)
		}
	}
}
