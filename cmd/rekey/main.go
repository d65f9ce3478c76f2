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

// Command rekey is the operator and its command line: one binary, with
// subcommands.
//
//	rekey controller   run the KeyRotation manager
//	rekey key ...      manage keys in a keystore
//	rekey keystore ... create, back up, verify and restore a keystore
//	rekey encrypt      encrypt stdin under a key
//	rekey decrypt      decrypt a blob from stdin
//	rekey reencrypt    re-encrypt a blob under another key or version
//	rekey secret ...   write (or apply) a Secret manifest of encrypted values
//	rekey kms serve    serve the engine over the AWS KMS JSON protocol
//	rekey version      print the version (also rekey --version)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"syscall"
)

// version is stamped at build time with -ldflags "-X main.version=...": make
// build and make docker-build stamp `git describe --tags --always --dirty`,
// and so does the Dockerfile through its VERSION argument. An unstamped
// binary reports the module version that go install recorded, else "dev".
var version = "dev"

// moduleVersion returns stamped unless it is the unstamped "dev" and the
// build info holds a released module version (go install ...@v1.2.3).
func moduleVersion(stamped string, info *debug.BuildInfo, ok bool) string {
	if stamped != "dev" || !ok || info.Main.Version == "" || info.Main.Version == "(devel)" {
		return stamped
	}
	return info.Main.Version
}

// command is one subcommand of rekey.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error
}

func commands() map[string]command {
	cmds := []command{
		{"controller", "run the KeyRotation controller manager", runController},
		{"key", "create, describe, list, rotate, alias, disable and enable keys", runKey},
		{"keystore", "create (init), back up, verify and restore the keystore", runKeystore},
		{"encrypt", "encrypt stdin under a key; prints a base64 blob", runEncrypt},
		{"decrypt", "decrypt a base64 blob from stdin", runDecrypt},
		{"reencrypt", "re-encrypt a base64 blob from stdin under another key or version", runReEncrypt},
		{"secret", "create: write (or apply) a Secret manifest of values encrypted under a key", runSecret},
		{"manifests", "reencrypt: re-encrypt the blobs of annotated Secret manifests in files (where Git holds them)", runManifests},
		{"status", "show a KeyRotation (or list them): progress, conditions, failures, inventory", runStatus},
		{"rerun", "start a new run of a finished KeyRotation (rekey.dev/requested-at)", runRerun},
		{"kms", "serve the engine over the AWS KMS API (kms serve)", runKMS},
		{"version", "print rekey's version", runVersion},
	}
	m := make(map[string]command, len(cmds))
	for _, c := range cmds {
		m[c.name] = c
	}
	return m
}

// errUsage marks an error whose message is a usage problem; the exit code is 2.
var errUsage = errors.New("usage")

func main() {
	info, ok := debug.ReadBuildInfo()
	version = moduleVersion(version, info, ok)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmds := commands()
	if len(args) > 0 && (args[0] == "--version" || args[0] == "-version") {
		args = append([]string{"version"}, args[1:]...)
	}
	if len(args) == 0 || isHelp(args[0]) || args[0] == "help" {
		usage(stderr, cmds)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	c, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "rekey: unknown command %q\n", args[0])
		usage(stderr, cmds)
		return 2
	}
	err := c.run(ctx, args[1:], stdin, stdout, stderr)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "rekey %s: %v\n", c.name, err)
		return 2
	default:
		fmt.Fprintf(stderr, "rekey %s: %v\n", c.name, err)
		return 1
	}
}

func usage(w io.Writer, cmds map[string]command) {
	fmt.Fprintln(w, "usage: rekey <command> [flags]")
	fmt.Fprintln(w)
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-12s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'rekey <command> -h' for a command's flags; 'rekey --version' prints the version.")
}

func runVersion(_ context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("version", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	_, err := fmt.Fprintf(stdout, "rekey %s\n", version)
	return err
}

// newFlagSet returns a FlagSet that reports errors instead of exiting.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("rekey "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parseFlags parses args and turns a bad flag into a usage error.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	return nil
}

func isHelp(arg string) bool { return arg == "-h" || arg == "--help" }
