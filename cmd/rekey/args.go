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
	"flag"
	"fmt"
	"strings"
)

// parseInterspersed parses flags wherever they stand among the positional
// arguments (the standard flag package stops at the first positional) and
// returns the positionals in order; everything after "--" is positional. A
// flag that takes a value but is followed by another of the command's
// flags, or by "--", is a usage error: its value is missing, and taking the
// next flag as the value would act on something the user did not say.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	if err := checkFlagValues(fs, args); err != nil {
		return nil, err
	}
	var pos []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// checkFlagValues refuses "--flag --other" and "--flag --" for a flag that
// takes a value. The value itself is never echoed: it may be a secret.
func checkFlagValues(fs *flag.FlagSet, args []string) error {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return nil
		}
		name, ok := flagName(a)
		if !ok || strings.Contains(name, "=") {
			continue
		}
		f := fs.Lookup(name)
		if f == nil || isBoolFlag(f) || i+1 == len(args) {
			continue // unknown, a switch, or at the end: fs.Parse says so
		}
		next := args[i+1]
		if nn, isFlag := flagName(next); next == "--" || (isFlag && (fs.Lookup(strings.SplitN(nn, "=", 2)[0]) != nil || nn == "h" || nn == "help")) {
			return fmt.Errorf("%w: flag --%s needs a value (it is followed by %s)", errUsage, name, strings.SplitN(next, "=", 2)[0])
		}
		i++ // the value
	}
	return nil
}

// flagName is the name in "-name", "--name" or "--name=value".
func flagName(a string) (string, bool) {
	if len(a) < 2 || a[0] != '-' || a == "--" {
		return "", false
	}
	return strings.TrimPrefix(a[1:], "-"), true
}

func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// parseNoArgs parses a command that takes flags only: flags anywhere, and
// any other argument is a usage error (a stray word would otherwise stop
// flag parsing, and the flags after it would be ignored).
func parseNoArgs(fs *flag.FlagSet, args []string) error {
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: %s takes no arguments besides flags, got %q", errUsage, fs.Name(), pos)
	}
	return nil
}
