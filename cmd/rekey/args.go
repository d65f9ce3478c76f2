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
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// errUsage marks an error whose message is a usage problem; the exit code is 2.
var errUsage = errors.New("usage")

// usageErrorf is a usage error with the message given.
func usageErrorf(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, a...))
}

// asUsage marks err as a usage error (unless it is one already).
func asUsage(err error) error {
	if err == nil || errors.Is(err, errUsage) {
		return err
	}
	return fmt.Errorf("%w: %w", errUsage, err)
}

// The positional-argument checks of the commands. Their errors count the
// arguments and never echo them: a stray word may be a flag's value (a
// secret) that lost its flag.

// noArgs refuses any argument besides flags.
func noArgs(_ *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageErrorf("takes no arguments besides flags, got %d", len(args))
	}
	return nil
}

// exactArgs wants n arguments.
func exactArgs(n int) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != n {
			return usageErrorf("takes %s, got %d", arguments(n), len(args))
		}
		return nil
	}
}

// minArgs wants at least n arguments.
func minArgs(n int) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) < n {
			return usageErrorf("takes at least %s, got %d", arguments(n), len(args))
		}
		return nil
	}
}

// maxArgs wants at most n arguments.
func maxArgs(n int) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) > n {
			return usageErrorf("takes at most %s, got %d", arguments(n), len(args))
		}
		return nil
	}
}

func arguments(n int) string {
	if n == 1 {
		return "1 argument"
	}
	return strconv.Itoa(n) + " arguments"
}

// checkRawArgs looks at the arguments of the command cobra found, as they
// were given, before pflag parses them; fs holds the command's flags.
// Everything after "--" is positional.
//
//   - A flag that takes a value but is followed by another of the
//     command's flags, by any argument that begins with "--", or by "--",
//     is a usage error: its value is missing, and pflag would take the next
//     flag as the value, acting on something the user did not say (--key
//     --from-literal ..., -n -A, --to --force with a typo'd or another
//     command's flag). A value that begins with -- is given as --to=--x.
//   - A long flag written with one dash (-keystore) is a usage error:
//     pflag would read it as shorthand flags, and -namespace as -n with
//     the value "amespace".
//
// Values are never echoed: they may be secrets.
func checkRawArgs(fs *pflag.FlagSet, args []string) error {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		if len(a) > 2 && a[0] == '-' && a[1] != '-' {
			if name, _, _ := strings.Cut(a[1:], "="); len(name) > 1 && fs.Lookup(name) != nil {
				return usageErrorf("-%s: long flags take two dashes: --%s", name, name)
			}
		}
		f := flagTakingNext(fs, a)
		if f == nil || i+1 == len(args) {
			continue // not such a flag (pflag reports an unknown one), or pflag says the value is missing
		}
		shown := "--" + f.Name
		if a[1] != '-' {
			shown = "-" + f.Shorthand
		}
		switch next := args[i+1]; {
		case next == "--" || isFlagOf(fs, next):
			return usageErrorf("flag %s needs a value (it is followed by %s)", shown, flagPart(fs, next))
		case strings.HasPrefix(next, "--"):
			return usageErrorf("flag %s needs a value (it is followed by %s; a value that begins with -- is written %s=VALUE)",
				shown, flagPart(fs, next), shown)
		}
		i++ // the value
	}
	return checkValues(fs, args)
}

// checkValues refuses
//
//   - a flag that takes one value given twice with different values
//     (--keystore A --keystore B; pflag keeps the last). Repeatable flags
//     (their values are cobra.SliceValues: --context, --from-literal, ...)
//     are not counted;
//   - an empty value given to a flag where empty makes no sense (noEmptyValue):
//     --keystore= would silently stand for no keystore, or let an
//     environment variable or a default through.
func checkValues(fs *pflag.FlagSet, args []string) error {
	shadow := shadowFlags(fs)
	shadow.ParseErrorsAllowlist.UnknownFlags = true
	given := map[string]string{}
	var twice, empty string
	_ = shadow.ParseAll(args, func(f *pflag.Flag, value string) error { // pflag reports its errors later
		if value == "" && noEmptyValue[f.Name] && empty == "" {
			empty = f.Name
		}
		if _, repeatable := fs.Lookup(f.Name).Value.(cobra.SliceValue); repeatable {
			return nil
		}
		if prev, ok := given[f.Name]; ok && prev != value && twice == "" {
			twice = f.Name
		}
		given[f.Name] = value
		return nil
	})
	switch {
	case empty != "":
		return usageErrorf("--%s: the value is empty", empty)
	case twice != "":
		return usageErrorf("--%s given twice, with different values", twice)
	}
	return nil
}

// noEmptyValue are the flags, of any command, for which an empty value makes
// no sense.
var noEmptyValue = nameSet(`keystore root-key-file region account-id kms-endpoint
	key source-key destination-key alias operations namespace output to from listen audit-log`)

// nameSet is the set of the space-separated names in names.
func nameSet(names string) map[string]bool {
	set := map[string]bool{}
	for _, name := range strings.Fields(names) {
		set[name] = true
	}
	return set
}

// shadowFlags is a flag set with the names, shorthands and switches of
// fs, whose values go nowhere: it parses a command line as fs would,
// without setting anything.
func shadowFlags(fs *pflag.FlagSet) *pflag.FlagSet {
	shadow := pflag.NewFlagSet("shadow", pflag.ContinueOnError)
	shadow.SetOutput(io.Discard)
	shadow.Usage = func() {}
	fs.VisitAll(func(f *pflag.Flag) {
		shadow.AddFlag(&pflag.Flag{Name: f.Name, Shorthand: f.Shorthand, NoOptDefVal: f.NoOptDefVal, Value: discardValue{f.Value.Type()}})
	})
	return shadow
}

// discardValue is a flag value that keeps nothing.
type discardValue struct{ typ string }

func (discardValue) String() string   { return "" }
func (discardValue) Set(string) error { return nil }
func (v discardValue) Type() string   { return v.typ }

// flagTakingNext returns the flag of fs that the argument a names without
// its value, so that it takes the next argument as its value: --name, or a
// cluster of shorthands ending with one that takes a value. nil for
// anything else: a positional, --name=value, a switch, an unknown flag.
func flagTakingNext(fs *pflag.FlagSet, a string) *pflag.Flag {
	switch {
	case len(a) < 2 || a[0] != '-' || a == "--":
		return nil
	case a[1] == '-':
		if f := fs.Lookup(a[2:]); f != nil && f.NoOptDefVal == "" {
			return f
		}
		return nil
	}
	return shorthandTakingNext(fs, a[1:])
}

// shorthandTakingNext returns the flag of a cluster of shorthands (-A,
// -An, -nNS) that takes the next argument as its value: the last one, when
// it takes a value. nil when none does or the cluster holds an unknown
// shorthand (pflag reports it).
func shorthandTakingNext(fs *pflag.FlagSet, cluster string) *pflag.Flag {
	for ; cluster != ""; cluster = cluster[1:] {
		f := fs.ShorthandLookup(cluster[:1])
		switch {
		case f == nil:
			return nil
		case f.NoOptDefVal == "" && len(cluster) == 1:
			return f
		case f.NoOptDefVal == "":
			return nil // the rest of the cluster is its value
		}
	}
	return nil
}

// isFlagOf reports whether a names one of the flags in fs.
func isFlagOf(fs *pflag.FlagSet, a string) bool {
	if len(a) < 2 || a[0] != '-' {
		return false
	}
	if a[1] == '-' {
		name, _, _ := strings.Cut(a[2:], "=")
		return fs.Lookup(name) != nil
	}
	name, _, _ := strings.Cut(a[1:], "=")
	return fs.Lookup(name) != nil || fs.ShorthandLookup(a[1:2]) != nil
}

// flagPart is the flag a names, without a value: --name of --name=value
// (or of "--name value" in one argument), -name of -name=value, -x of a
// cluster -xVALUE.
func flagPart(fs *pflag.FlagSet, a string) string {
	if name, _ := flagName(strings.TrimPrefix(a, "--")); strings.HasPrefix(a, "--") {
		return "--" + name
	}
	if name, _ := flagName(a[1:]); fs.Lookup(name) != nil {
		return "-" + name
	}
	return a[:2]
}

// flagError turns pflag's parse errors into usage errors that name at most
// a flag, never a value nor a whole argument: pflag's own messages echo
// the value ("invalid argument"), the whole argument ("bad flag syntax"),
// or everything up to an '=' ("unknown flag", which takes in a value given
// in the same argument after a space).
func flagError(_ *cobra.Command, err error) error {
	var (
		invalid  *pflag.InvalidValueError
		unknown  *pflag.NotExistError
		syntax   *pflag.InvalidSyntaxError
		required *pflag.ValueRequiredError
	)
	switch {
	case errors.As(err, &invalid):
		f := invalid.GetFlag()
		if want := typeName(f.Value.Type()); want != "" {
			return usageErrorf("invalid value for --%s: want %s", f.Name, want)
		}
		if want := otherValues[f.Name]; want != "" {
			return usageErrorf("invalid value for --%s: want %s", f.Name, want)
		}
		if ownValue(f.Value) {
			// rekey's own flag types say what is wrong without the value.
			return usageErrorf("invalid value for --%s: %v", f.Name, invalid.Unwrap())
		}
		return usageErrorf("invalid value for --%s", f.Name)
	case errors.As(err, &unknown) && unknown.GetSpecifiedShortnames() != "":
		return usageErrorf("unknown shorthand flag -%s", unknown.GetSpecifiedName())
	case errors.As(err, &unknown):
		name, cut := flagName(unknown.GetSpecifiedName())
		if cut {
			return usageErrorf("unknown flag: --%s (a flag and its value in one argument? give them as two, or as --%s=VALUE)", name, name)
		}
		return usageErrorf("unknown flag: --%s", name)
	case errors.As(err, &syntax):
		arg := syntax.GetSpecifiedFlag()
		if name, _ := flagName(strings.TrimLeft(arg, "-")); strings.HasPrefix(arg, "---") && name != "" {
			return usageErrorf("bad flag syntax: an argument starts with three dashes (---%s); flags take two: --%s", name, name)
		}
		return usageErrorf("bad flag syntax: an argument starts with %q", arg[:min(len(arg), 3)])
	case errors.As(err, &required):
		if required.GetSpecifiedShortnames() != "" {
			return usageErrorf("flag -%s needs a value", required.GetSpecifiedName())
		}
		return usageErrorf("flag --%s needs a value", required.GetSpecifiedName())
	}
	// No other error comes out of pflag's parse; should one, its text may
	// hold a value.
	return usageErrorf("the flags do not parse (see -h)")
}

// flagName is the name part of a flag written name=value or with its value
// after a space in the same argument; cut reports whether anything
// followed the name.
func flagName(s string) (name string, cut bool) {
	i := strings.IndexFunc(s, func(r rune) bool { return r == '=' || unicode.IsSpace(r) })
	if i < 0 {
		return s, false
	}
	return s[:i], true
}

// repeated is a flag that may be given more than once, collecting into a
// []string. It is a cobra.SliceValue, so checkValues does not take a
// second use for a conflicting value. each turns one value given into the
// values it adds, or refuses it with an error that does not echo it.
type repeated struct {
	values *[]string
	typ    string
	each   func(string) ([]string, error)
}

func (r repeated) String() string {
	if r.values == nil {
		return ""
	}
	return strings.Join(*r.values, ",")
}

// GetSlice marks the flag repeatable (cobra.SliceValue).
func (r repeated) GetSlice() []string { return *r.values }

func (r repeated) Type() string { return r.typ }

func (r repeated) Set(s string) error {
	vs, err := r.each(s)
	if err != nil {
		return err
	}
	*r.values = append(*r.values, vs...)
	return nil
}

// oneValue takes one value, not an empty one.
func oneValue(s string) ([]string, error) {
	if s == "" {
		return nil, errors.New("empty value")
	}
	return []string{s}, nil
}

// oneNamespace takes one namespace name (checked later), not a list.
func oneNamespace(s string) ([]string, error) {
	if s == "" || strings.Contains(s, ",") {
		return nil, errors.New("want one namespace name")
	}
	return []string{s}, nil
}

// commaSeparated takes a comma-separated list; blanks around and between
// the commas are dropped.
func commaSeparated(s string) ([]string, error) {
	var vs []string
	for v := range strings.SplitSeq(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			vs = append(vs, v)
		}
	}
	return vs, nil
}

// ownValue reports whether v is one of rekey's flag types, whose errors
// say what is wrong without echoing the value.
func ownValue(v pflag.Value) bool {
	switch v.(type) {
	case contextFlag, repeated, rawFlag:
		return true
	}
	return false
}

// otherValues say what the values of flags of other packages' types look
// like (controller-runtime's logging flags), whose errors echo the value.
var otherValues = map[string]string{
	"zap-log-level":        "debug, info, error, panic or an integer above 0",
	"zap-encoder":          "json or console",
	"zap-stacktrace-level": "info, error or panic",
	"zap-time-encoding":    "epoch, millis, nanos, iso8601, rfc3339 or rfc3339nano",
}

// typeName says what a value of one of pflag's (or Go's) types looks
// like; "" for other types.
func typeName(t string) string {
	switch t {
	case "bool":
		return "true or false"
	case "duration":
		return "a duration such as 30s, 5m or 1h"
	case "float32", "float64":
		return "a number"
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return "an integer"
	}
	return ""
}
