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

package keystore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/rekey-dev/rekey/internal/kms"
	"github.com/rekey-dev/rekey/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	os.Exit(testenv.Run(m, "", func(e *testenv.Env) { env = e }))
}

func rootKey(t *testing.T) *RootKey {
	t.Helper()
	enc, err := GenerateRootKey()
	if err != nil {
		t.Fatal(err)
	}
	k, err := ParseRootKey([]byte(enc + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// backends returns a fresh file and a fresh Secret keystore under the same
// root key, plus a constructor for a second handle on the same storage.
func backends(t *testing.T) map[string]func(*RootKey) kms.Store {
	dir := t.TempDir()
	ns := env.Namespace(t)
	return map[string]func(*RootKey) kms.Store{
		"file":   func(r *RootKey) kms.Store { return NewFile(filepath.Join(dir, "keys.rks"), r) },
		"secret": func(r *RootKey) kms.Store { return NewSecret(env.Client, ns, "rekey-keystore", r) },
	}
}

func TestKeystorePersistsKeys(t *testing.T) {
	ctx := context.Background()
	root := rootKey(t)
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			e1, err := kms.New(ctx, kms.Options{Store: open(root)})
			if err != nil {
				t.Fatal(err)
			}
			k, err := e1.CreateKey(ctx, &kms.CreateKeyInput{Description: "persisted"})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e1.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: "alias/p", TargetKeyID: k.KeyMetadata.KeyID}); err != nil {
				t.Fatal(err)
			}
			blob, err := e1.Encrypt(ctx, &kms.EncryptInput{KeyID: "alias/p", Plaintext: []byte("kept")})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e1.RotateKeyOnDemand(ctx, &kms.KeyIDInput{KeyID: "alias/p"}); err != nil {
				t.Fatal(err)
			}

			// A second engine on the same storage sees everything.
			e2, err := kms.New(ctx, kms.Options{Store: open(root)})
			if err != nil {
				t.Fatal(err)
			}
			out, err := e2.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob.CiphertextBlob})
			if err != nil || !bytes.Equal(out.Plaintext, []byte("kept")) {
				t.Fatalf("reopened keystore cannot decrypt: %v", err)
			}
			rots, err := e2.ListKeyRotations(ctx, &kms.ListKeyRotationsInput{KeyID: "alias/p"})
			if err != nil || len(rots.Rotations) != 1 {
				t.Fatalf("rotation not persisted: %v %+v", err, rots)
			}

			// A rotation by e2 becomes visible to e1 after Refresh.
			if _, err := e2.RotateKeyOnDemand(ctx, &kms.KeyIDInput{KeyID: "alias/p"}); err != nil {
				t.Fatal(err)
			}
			if err := e1.Refresh(ctx); err != nil {
				t.Fatal(err)
			}
			d1, _ := e1.DescribeKey(ctx, &kms.DescribeKeyInput{KeyID: "alias/p"})
			d2, _ := e2.DescribeKey(ctx, &kms.DescribeKeyInput{KeyID: "alias/p"})
			if d1.KeyMetadata.CurrentKeyMaterialID != d2.KeyMetadata.CurrentKeyMaterialID {
				t.Fatal("Refresh did not pick up the other writer's rotation")
			}
		})
	}
}

// TestKeystoreWrongRootKey: a keystore that exists but does not open is an
// error, never an empty keyring that the next write would overwrite.
func TestKeystoreWrongRootKey(t *testing.T) {
	ctx := context.Background()
	root := rootKey(t)
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			e, err := kms.New(ctx, kms.Options{Store: open(root)})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.CreateKey(ctx, &kms.CreateKeyInput{}); err != nil {
				t.Fatal(err)
			}
			_, err = kms.New(ctx, kms.Options{Store: open(rootKey(t))})
			if !errors.Is(err, ErrWrongRootKey) {
				t.Fatalf("want ErrWrongRootKey, got %v", err)
			}
			// The right key still opens it: nothing was overwritten.
			e2, err := kms.New(ctx, kms.Options{Store: open(root)})
			if err != nil {
				t.Fatal(err)
			}
			keys, _ := e2.ListKeys(ctx, &kms.ListKeysInput{})
			if len(keys.Keys) != 1 {
				t.Fatalf("keystore lost keys: %d", len(keys.Keys))
			}
		})
	}
}

func TestFileKeystoreCorrupt(t *testing.T) {
	ctx := context.Background()
	root := rootKey(t)
	path := filepath.Join(t.TempDir(), "keys.rks")
	e, err := kms.New(ctx, kms.Options{Store: NewFile(path, root)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.CreateKey(ctx, &kms.CreateKeyInput{}); err != nil {
		t.Fatal(err)
	}
	good, _ := os.ReadFile(path)
	cases := map[string][]byte{
		"garbage":   []byte("not a keystore at all"),
		"truncated": good[:len(good)-1],
		"flipped":   func() []byte { b := bytes.Clone(good); b[len(b)/2] ^= 1; return b }(),
		"empty":     {},
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := kms.New(ctx, kms.Options{Store: NewFile(path, root)})
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrWrongRootKey) {
				t.Fatalf("want a corrupt-keystore error, got %v", err)
			}
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("error does not name the file: %v", err)
			}
		})
	}
}

// TestKeystoreConcurrentWriters: two engines on one keystore create keys at
// the same time; every key survives.
func TestKeystoreConcurrentWriters(t *testing.T) {
	ctx := context.Background()
	root := rootKey(t)
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			const writers, each = 2, 10
			engines := make([]*kms.Engine, writers)
			for i := range engines {
				e, err := kms.New(ctx, kms.Options{Store: open(root)})
				if err != nil {
					t.Fatal(err)
				}
				engines[i] = e
			}
			var wg sync.WaitGroup
			errs := make(chan error, writers*each)
			for i, e := range engines {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for j := range each {
						if _, err := e.CreateKey(ctx, &kms.CreateKeyInput{Description: fmt.Sprintf("w%d-%d", i, j)}); err != nil {
							errs <- err
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			e, err := kms.New(ctx, kms.Options{Store: open(root)})
			if err != nil {
				t.Fatal(err)
			}
			limit := int32(1000)
			keys, _ := e.ListKeys(ctx, &kms.ListKeysInput{Limit: &limit})
			if len(keys.Keys) != writers*each {
				t.Fatalf("%d keys survived, want %d", len(keys.Keys), writers*each)
			}
		})
	}
}

// TestReservationsSurviveRestart: encryptions reserved before a "crash"
// count as used after it, so the count never goes backwards.
func TestReservationsSurviveRestart(t *testing.T) {
	ctx := context.Background()
	root := rootKey(t)
	path := filepath.Join(t.TempDir(), "keys.rks")
	opts := kms.Options{Store: NewFile(path, root), ReservationBlock: 4, RotateAfter: 8}
	e1, err := kms.New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := e1.CreateKey(ctx, &kms.CreateKeyInput{})
	if _, err := e1.Encrypt(ctx, &kms.EncryptInput{KeyID: k.KeyMetadata.KeyID, Plaintext: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	// e1 "crashes" with 3 of its 4 reserved encryptions unused. A new process
	// may use only the 4 left before version 2.
	e2, err := kms.New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	perVersion := map[uint32]int{}
	for range 5 {
		out, err := e2.Encrypt(ctx, &kms.EncryptInput{KeyID: k.KeyMetadata.KeyID, Plaintext: []byte("x")})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := kms.ParseBlob(out.CiphertextBlob)
		perVersion[b.Version]++
	}
	if perVersion[1] != 4 || perVersion[2] != 1 {
		t.Fatalf("encryptions per version after restart: %v, want 4 then 1", perVersion)
	}
}

func TestRootKeyNeverPrints(t *testing.T) {
	k := rootKey(t)
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x"} {
		if s := fmt.Sprintf(verb, k); s != "RootKey(redacted)" {
			t.Fatalf("%s printed %q", verb, s)
		}
	}
	for _, bad := range []string{"", "not base64!", "c2hvcnQ="} {
		if _, err := ParseRootKey([]byte(bad)); err == nil {
			t.Fatalf("root key %q accepted", bad)
		}
	}
}
