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
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

// rekey version and rekey --version print the same line.
func TestVersionAndVersionFlag(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		var out, errOut bytes.Buffer
		if code := run(context.Background(), args, strings.NewReader(""), &out, &errOut); code != 0 {
			t.Fatalf("rekey %s: exit %d: %s", strings.Join(args, " "), code, errOut.String())
		}
		if want := "rekey " + version + "\n"; out.String() != want {
			t.Errorf("rekey %s printed %q, want %q", strings.Join(args, " "), out.String(), want)
		}
	}
	for _, args := range [][]string{{"version", "extra"}, {"--version", "extra"}} {
		var out, errOut bytes.Buffer
		if code := run(context.Background(), args, strings.NewReader(""), &out, &errOut); code != 2 || out.Len() != 0 {
			t.Errorf("rekey %s: exit %d, want 2 (%s)", strings.Join(args, " "), code, errOut.String())
		}
	}
	// Long flags take two dashes: -version would be -v -e -r ... to pflag.
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"-version"}, strings.NewReader(""), &out, &errOut); code != 2 ||
		!strings.Contains(errOut.String(), "long flags take two dashes: --version") || out.Len() != 0 {
		t.Errorf("rekey -version: exit %d, stdout %q, stderr %q", code, out.String(), errOut.String())
	}
}

// The Makefile and the Dockerfile stamp the version with
// -ldflags "-X main.version=...", which silently does nothing when the
// symbol is not there: build the binary that way and run it.
func TestVersionStampedByLdflags(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "rekey")
	const stamp = "v1.2.3-4-gabcdef0-dirty"
	build := exec.Command("go", "build", "-ldflags", "-X main.version="+stamp, "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, arg := range []string{"version", "--version"} {
		out, err := exec.Command(bin, arg).CombinedOutput()
		if err != nil {
			t.Fatalf("rekey %s: %v\n%s", arg, err, out)
		}
		if want := "rekey " + stamp + "\n"; string(out) != want {
			t.Errorf("rekey %s printed %q, want %q", arg, out, want)
		}
	}
}

func TestModuleVersion(t *testing.T) {
	info := func(v string) *debug.BuildInfo {
		return &debug.BuildInfo{Main: debug.Module{Path: "github.com/rekey-dev/rekey", Version: v}}
	}
	for _, c := range []struct {
		stamped string
		info    *debug.BuildInfo
		ok      bool
		want    string
	}{
		{"v0.3.0", info("v0.2.0"), true, "v0.3.0"}, // a stamp wins
		{"dev", info("v0.2.0"), true, "v0.2.0"},    // go install ...@v0.2.0
		{"dev", info("(devel)"), true, "dev"},      // a build from a checkout
		{"dev", info(""), true, "dev"},
		{"dev", nil, false, "dev"},
	} {
		if got := moduleVersion(c.stamped, c.info, c.ok); got != c.want {
			t.Errorf("moduleVersion(%q, %v) = %q, want %q", c.stamped, c.info, got, c.want)
		}
	}
}
