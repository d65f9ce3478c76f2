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
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/rekey-dev/rekey/internal/kms"
	"github.com/rekey-dev/rekey/internal/kms/keystore"
)

// engineFlags are the flags of every command that opens the engine.
type engineFlags struct {
	keystore    string
	rootKeyFile string
	region      string
	accountID   string
}

func (f *engineFlags) bind(fs *flag.FlagSet) {
	fs.StringVar(&f.keystore, "keystore", os.Getenv("REKEY_KEYSTORE"), "keystore file (created when missing); env REKEY_KEYSTORE")
	fs.StringVar(&f.rootKeyFile, "root-key-file", os.Getenv("REKEY_ROOT_KEY_FILE"),
		"file with the base64 root key that encrypts the keystore (head -c 32 /dev/urandom | base64); env REKEY_ROOT_KEY_FILE")
	fs.StringVar(&f.region, "region", envOr("REKEY_REGION", "local"), "region used in key ARNs; env REKEY_REGION")
	fs.StringVar(&f.accountID, "account-id", envOr("REKEY_ACCOUNT_ID", "000000000000"), "account id used in key ARNs; env REKEY_ACCOUNT_ID")
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// open returns the engine over the keystore the flags name.
func (f *engineFlags) open(ctx context.Context) (*kms.Engine, error) {
	if f.keystore == "" {
		return nil, fmt.Errorf("%w: --keystore is required (or set REKEY_KEYSTORE)", errUsage)
	}
	if f.rootKeyFile == "" {
		return nil, fmt.Errorf("%w: --root-key-file is required (or set REKEY_ROOT_KEY_FILE)", errUsage)
	}
	if strings.Contains(f.keystore, "://") {
		return nil, fmt.Errorf("%w: --keystore %q: only keystore files are supported by this command so far", errUsage, f.keystore)
	}
	root, err := keystore.ReadRootKeyFile(f.rootKeyFile)
	if err != nil {
		return nil, err
	}
	return kms.New(ctx, kms.Options{Store: keystore.NewFile(f.keystore, root), Region: f.region, AccountID: f.accountID})
}

// contextFlag collects repeated --context k=v into an encryption context.
type contextFlag map[string]string

func (c contextFlag) String() string { return fmt.Sprint(map[string]string(c)) }

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
