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
	"errors"
	"flag"
	"io"
	"slices"
	"strings"
	"testing"
)

func TestParseInterspersed(t *testing.T) {
	cases := []struct {
		args []string
		pos  []string
		key  string
		on   bool
		err  string
	}{
		{args: []string{"a", "--key", "k", "b"}, pos: []string{"a", "b"}, key: "k"},
		{args: []string{"--key=k", "a", "--on"}, pos: []string{"a"}, key: "k", on: true},
		{args: []string{"--on", "a"}, pos: []string{"a"}, on: true},
		{args: []string{"--on=false", "a"}, pos: []string{"a"}},
		{args: []string{"a", "--", "--key", "-x"}, pos: []string{"a", "--key", "-x"}},
		{args: []string{"--key", "-", "a"}, pos: []string{"a"}, key: "-"},
		// Only the command's own flags count as a missing value.
		{args: []string{"--key", "-x", "a"}, pos: []string{"a"}, key: "-x"},
		{args: []string{"a", "--key", "--on"}, err: "flag --key needs a value (it is followed by --on)"},
		{args: []string{"a", "--key", "--on=true"}, err: "flag --key needs a value (it is followed by --on)"},
		{args: []string{"a", "-key", "-h"}, err: "flag --key needs a value (it is followed by -h)"},
		{args: []string{"a", "--key", "--"}, err: "flag --key needs a value"},
		{args: []string{"a", "--key"}, err: "flag needs an argument"},
		{args: []string{"--frob", "a"}, err: "not defined: -frob"},
	}
	for _, tc := range cases {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		key := fs.String("key", "", "")
		on := fs.Bool("on", false, "")
		pos, err := parseInterspersed(fs, tc.args)
		if tc.err != "" {
			if err == nil || !errors.Is(err, errUsage) || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want a usage error with %q", tc.args, err, tc.err)
			}
			continue
		}
		if err != nil || !slices.Equal(pos, tc.pos) || *key != tc.key || *on != tc.on {
			t.Errorf("%q: positionals %q key %q on %v, error %v; want %q %q %v", tc.args, pos, *key, *on, err, tc.pos, tc.key, tc.on)
		}
	}
}
