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
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/validation"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/rekey-dev/rekey/internal/kms"
	"github.com/rekey-dev/rekey/internal/kms/keystore"
)

// engineFlags are the flags of every command that opens the engine.
type engineFlags struct {
	keystore    string
	rootKeyFile string
	region      string
	accountID   string
	// stderr gets warnings.
	stderr io.Writer
}

// bind adds the flags to fs; warnings go to stderr.
func (f *engineFlags) bind(fs *pflag.FlagSet, stderr io.Writer) {
	f.bindStore(fs, stderr)
	fs.StringVar(&f.region, "region", envOr("REKEY_REGION", "local"), "region used in key ARNs; env REKEY_REGION")
	fs.StringVar(&f.accountID, "account-id", envOr("REKEY_ACCOUNT_ID", "000000000000"), "account id used in key ARNs; env REKEY_ACCOUNT_ID")
}

// bindStore adds the flags of the keystore alone (--keystore,
// --root-key-file), for the commands that do not open the engine: the
// keystore commands, which make no key ARNs.
func (f *engineFlags) bindStore(fs *pflag.FlagSet, stderr io.Writer) {
	f.stderr = stderr
	fs.StringVar(&f.keystore, "keystore", os.Getenv("REKEY_KEYSTORE"), "the keystore: a `FILE` or k8s://NAMESPACE/NAME (a Secret, through the kubeconfig), "+
		"made with rekey keystore init; env REKEY_KEYSTORE")
	fs.StringVar(&f.rootKeyFile, "root-key-file", os.Getenv("REKEY_ROOT_KEY_FILE"),
		"`FILE` with the base64 root key that encrypts the keystore, mode 0600 ((umask 077; head -c 32 /dev/urandom | base64 > root.key)); env REKEY_ROOT_KEY_FILE")
	// -h shows no default for these two: an environment value is not
	// shown (a root key set where its file's name belongs would be).
	for _, name := range []string{"keystore", "root-key-file"} {
		fs.Lookup(name).DefValue = ""
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// open returns the engine over the keystore the flags name, which must exist.
func (f *engineFlags) open(ctx context.Context) (*kms.Engine, error) {
	store, err := f.backend()
	if err != nil {
		return nil, err
	}
	return kms.New(ctx, kms.Options{Store: store, Region: f.region, AccountID: f.accountID})
}

// rootKey reads --root-key-file, refusing a file open to other users and
// warning about one open to its group.
func (f *engineFlags) rootKey() (*keystore.RootKey, error) {
	if f.rootKeyFile == "" {
		return nil, usageErrorf("--root-key-file is required (or set REKEY_ROOT_KEY_FILE)")
	}
	return readRootKey(f.rootKeyFile, f.stderr)
}

// readRootKey reads a root key file, writing the warning about a file its
// group may read to stderr.
func readRootKey(path string, stderr io.Writer) (*keystore.RootKey, error) {
	if w, err := keystore.CheckKeyFileMode(path); err == nil && w != "" && stderr != nil {
		fmt.Fprintln(stderr, "rekey: root key: "+w)
	}
	return readRootKeyFile(path, "--root-key-file or REKEY_ROOT_KEY_FILE")
}

// readRootKeyFile is keystore.ReadRootKeyFile, whose error, when the file
// cannot be opened, does not name it: the "path" may be the root key
// itself, given where its file's name belongs. given says where the path
// came from.
func readRootKeyFile(path, given string) (*keystore.RootKey, error) {
	k, err := keystore.ReadRootKeyFile(path)
	if pe := (*os.PathError)(nil); errors.As(err, &pe) {
		return nil, fmt.Errorf("the root key file (given by %s) cannot be read: %w", given, pe.Err)
	}
	return k, err
}

// shownPath is path as an error may show it: not a path that looks like
// a root key (32 bytes, base64), which a user may give where a file's
// name belongs.
func shownPath(path string) string {
	if b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(path)); err == nil && len(b) == 32 {
		return "(a file name that looks like a root key, not shown)"
	}
	return path
}

// backend returns the keystore the flags name, without opening it.
func (f *engineFlags) backend() (keystore.Backend, error) {
	if f.keystore == "" {
		return nil, usageErrorf("--keystore is required (or set REKEY_KEYSTORE)")
	}
	root, err := f.rootKey()
	if err != nil {
		return nil, err
	}
	var c client.Client
	if _, _, isSecret, err := secretRef(f.keystore); err != nil {
		return nil, err
	} else if isSecret {
		cfg, err := ctrl.GetConfig()
		if err != nil {
			return nil, fmt.Errorf("--keystore %s needs a kubeconfig: %w", f.keystore, err)
		}
		if c, err = client.New(cfg, client.Options{Scheme: newScheme()}); err != nil {
			return nil, err
		}
	}
	return openStore(f.keystore, root, c)
}

// secretScheme prefixes a keystore held in a Kubernetes Secret.
const secretScheme = "k8s://"

// openStore returns a keystore that must exist (loading a missing one is
// keystore.ErrMissing): k8s://NAMESPACE/NAME is a Secret read and written
// through c; anything else is a file path.
func openStore(location string, root *keystore.RootKey, c client.Client) (keystore.Backend, error) {
	ns, name, isSecret, err := secretRef(location)
	switch {
	case err != nil:
		return nil, err
	case isSecret:
		return keystore.OpenSecret(c, ns, name, root), nil
	}
	return keystore.OpenFile(location, root), nil
}

// secretRef reads a keystore location k8s://NAMESPACE/NAME: isSecret
// reports the scheme. Its errors never echo the location: a URL may carry
// credentials (https://USER:PASSWORD@...), and so may a malformed k8s://
// one; a valid one is a namespace and a Secret's name.
func secretRef(location string) (ns, name string, isSecret bool, err error) {
	ref, ok := strings.CutPrefix(location, secretScheme)
	if !ok {
		if strings.Contains(location, "://") {
			return "", "", false, usageErrorf("the keystore is a URL other than k8s://NAMESPACE/NAME: use a file path or k8s://NAMESPACE/NAME")
		}
		return "", "", false, nil
	}
	ns, name, ok = strings.Cut(ref, "/")
	if !ok || len(validation.IsDNS1123Label(ns)) > 0 || len(validation.IsDNS1123Subdomain(name)) > 0 {
		return "", "", true, usageErrorf("the keystore is not k8s://NAMESPACE/NAME (a namespace and a Secret's name)")
	}
	return ns, name, true, nil
}

// contextFlag collects repeated --context k=v into an encryption context.
type contextFlag map[string]string

func (c contextFlag) String() string { return strings.Join(c.GetSlice(), ",") }

// GetSlice is the pairs, KEY=VALUE, sorted; it marks the flag repeatable
// (cobra.SliceValue).
func (c contextFlag) GetSlice() []string {
	pairs := make([]string, 0, len(c))
	for _, k := range slices.Sorted(maps.Keys(c)) {
		pairs = append(pairs, k+"="+c[k])
	}
	return pairs
}

func (c contextFlag) Type() string { return "KEY=VALUE" }

func (c contextFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return errors.New("want KEY=VALUE")
	}
	if _, dup := c[k]; dup {
		return fmt.Errorf("context key %q given twice", k)
	}
	c[k] = v
	return nil
}
