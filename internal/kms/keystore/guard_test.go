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
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/rekey-dev/rekey/internal/kms"
)

// place is one keystore location, with ways to tamper with it from outside
// rekey, as a person or a tool would.
type place struct {
	name string
	// open is a handle that requires the keystore; create one that makes it.
	open, create func() Backend
	// raw returns the stored bytes; putRaw replaces them alone (the file
	// without its record; the Secret's data without its annotations).
	raw    func(t *testing.T) []byte
	putRaw func(t *testing.T, b []byte)
	// save captures everything (file and record; the whole Secret) and
	// returns a function that puts it all back.
	save func(t *testing.T) (putBack func())
	// remove deletes the keystore (not the file's record).
	remove func(t *testing.T)
	// exists reports whether the keystore is there.
	exists func(t *testing.T) bool
}

func filePlace(t *testing.T, root *RootKey) place {
	path := filepath.Join(t.TempDir(), "keys.rks")
	rec := path + ".generation"
	read := func(t *testing.T, p string) []byte {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	return place{
		name:   "file",
		open:   func() Backend { return OpenFile(path, root) },
		create: func() Backend { return NewFile(path, root) },
		raw:    func(t *testing.T) []byte { return read(t, path) },
		putRaw: func(t *testing.T, b []byte) {
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
		},
		save: func(t *testing.T) func() {
			b, r := read(t, path), read(t, rec)
			return func() {
				if err := os.WriteFile(path, b, 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(rec, r, 0o600); err != nil {
					t.Fatal(err)
				}
			}
		},
		remove: func(t *testing.T) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		},
		exists: func(t *testing.T) bool {
			_, err := os.Stat(path)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				t.Fatal(err)
			}
			return err == nil
		},
	}
}

func secretPlace(root *RootKey, ns, name string) place {
	ctx := context.Background()
	key := client.ObjectKey{Namespace: ns, Name: name}
	get := func(t *testing.T) *corev1.Secret {
		var s corev1.Secret
		if err := env.Client.Get(ctx, key, &s); err != nil {
			t.Fatal(err)
		}
		return &s
	}
	return place{
		name:   "secret",
		open:   func() Backend { return OpenSecret(env.Client, ns, name, root) },
		create: func() Backend { return NewSecret(env.Client, ns, name, root) },
		raw:    func(t *testing.T) []byte { return get(t).Data[SecretDataKey] },
		putRaw: func(t *testing.T, b []byte) {
			s := get(t)
			s.Data[SecretDataKey] = b
			if err := env.Client.Update(ctx, s); err != nil {
				t.Fatal(err)
			}
		},
		save: func(t *testing.T) func() {
			old := get(t)
			return func() {
				s := get(t)
				s.Data, s.Annotations = old.Data, old.Annotations
				if err := env.Client.Update(ctx, s); err != nil {
					t.Fatal(err)
				}
			}
		},
		remove: func(t *testing.T) {
			if err := env.Client.Delete(ctx, get(t)); err != nil {
				t.Fatal(err)
			}
		},
		exists: func(t *testing.T) bool {
			var s corev1.Secret
			err := env.Client.Get(ctx, key, &s)
			if err != nil && !apierrors.IsNotFound(err) {
				t.Fatal(err)
			}
			return err == nil
		},
	}
}

func places(t *testing.T, root *RootKey) []place {
	return []place{filePlace(t, root), secretPlace(root, env.Namespace(t), "rekey-keystore")}
}

func header(t *testing.T, b []byte) Header {
	t.Helper()
	h, _, err := parseHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func engine(t *testing.T, s kms.Store) *kms.Engine {
	t.Helper()
	e, err := kms.New(context.Background(), kms.Options{Store: s})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func keyState(t *testing.T, e *kms.Engine, id string) string {
	t.Helper()
	d, err := e.DescribeKey(context.Background(), &kms.DescribeKeyInput{KeyID: id})
	if err != nil {
		t.Fatal(err)
	}
	return d.KeyMetadata.KeyState
}

// TestHeaderIsInTheAAD: every byte of the header (id, generation, location)
// is authenticated: changing any of them makes the keystore fail to open.
func TestHeaderIsInTheAAD(t *testing.T) {
	root := rootKey(t)
	id, _ := newID()
	h := Header{ID: id, Generation: 7, Location: "k8s://ns/name"}
	b, err := root.wrap(h, []byte(`{"formatVersion":1}`))
	if err != nil {
		t.Fatal(err)
	}
	s, err := root.Open(b)
	if err != nil || s.Header != h || string(s.Doc) != `{"formatVersion":1}` {
		t.Fatalf("round trip: %v %+v", err, s)
	}
	_, n, _ := parseHeader(b)
	for i := range n {
		for bit := range 8 {
			c := bytes.Clone(b)
			c[i] ^= 1 << bit
			if _, err := root.Open(c); err == nil {
				t.Fatalf("header byte %d bit %d changed and the keystore still opens", i, bit)
			}
		}
	}
	// The fields most worth forging, with a well-formed header: a higher
	// generation, another location.
	for name, forged := range map[string]Header{
		"generation": {ID: id, Generation: 8, Location: h.Location},
		"location":   {ID: id, Generation: 7, Location: "k8s://ns/other"},
	} {
		hdr, _ := encodeHeader(forged)
		c := append(hdr, b[n:]...)
		if _, err := root.Open(c); !errors.Is(err, ErrWrongRootKey) {
			t.Fatalf("forged %s: %v", name, err)
		}
	}
}

// TestGenerationCountsWrites: a keystore is created at generation 1 and
// every write adds one.
func TestGenerationCountsWrites(t *testing.T) {
	ctx := context.Background()
	for _, p := range places(t, rootKey(t)) {
		t.Run(p.name, func(t *testing.T) {
			h, err := p.open().Init(ctx)
			if err != nil || h.Generation != 1 || len(h.ID) != 32 {
				t.Fatalf("init: %+v %v", h, err)
			}
			if got := header(t, p.raw(t)); got != h {
				t.Fatalf("stored header %+v, init said %+v", got, h)
			}
			e := engine(t, p.open())
			for i := range 3 {
				if _, err := e.CreateKey(ctx, &kms.CreateKeyInput{}); err != nil {
					t.Fatal(err)
				}
				if got := header(t, p.raw(t)); got.Generation != uint64(i+2) || got.ID != h.ID {
					t.Fatalf("after write %d: %+v", i+1, got)
				}
			}
			if _, err := p.open().Init(ctx); !errors.Is(err, ErrExists) {
				t.Fatalf("second init: %v", err)
			}
		})
	}
}

// TestRollbackRefused: an older copy of the keystore put back
// in place of the live one is refused by a running engine and, through the
// record beside the keystore, after a restart; nothing is written over it.
func TestRollbackRefused(t *testing.T) {
	ctx := context.Background()
	for _, p := range places(t, rootKey(t)) {
		t.Run(p.name, func(t *testing.T) {
			e := engine(t, p.create())
			k, err := e.CreateKey(ctx, &kms.CreateKeyInput{})
			if err != nil {
				t.Fatal(err)
			}
			id := k.KeyMetadata.KeyID
			old := p.raw(t) // key enabled, one version
			if _, err := e.RotateKeyOnDemand(ctx, &kms.KeyIDInput{KeyID: id}); err != nil {
				t.Fatal(err)
			}
			if _, err := e.DisableKey(ctx, &kms.KeyIDInput{KeyID: id}); err != nil {
				t.Fatal(err)
			}
			p.putRaw(t, old)

			// The running engine refuses it and keeps what it knew.
			if err := e.Refresh(ctx); !errors.Is(err, ErrRollback) {
				t.Fatalf("Refresh: want ErrRollback, got %v", err)
			}
			if s := keyState(t, e, id); s != kms.KeyStateDisabled {
				t.Fatalf("the running engine's key is %s after the rollback, want Disabled", s)
			}
			// Its writes fail and write nothing.
			if _, err := e.CreateKey(ctx, &kms.CreateKeyInput{}); !errors.Is(err, ErrRollback) {
				t.Fatalf("a write on a rolled-back keystore: want ErrRollback, got %v", err)
			}
			if !bytes.Equal(p.raw(t), old) {
				t.Fatal("a write went to the rolled-back keystore")
			}
			// After a restart the record beside the keystore still refuses it.
			if _, err := kms.New(ctx, kms.Options{Store: p.open()}); !errors.Is(err, ErrRollback) {
				t.Fatalf("new engine: want ErrRollback, got %v", err)
			} else if !strings.Contains(err.Error(), "generation 1,") || !strings.Contains(err.Error(), "generation 3 ") {
				t.Fatalf("the error does not say which generations: %v", err)
			}
			if _, err := p.open().Read(ctx); !errors.Is(err, ErrRollback) {
				t.Fatalf("Read (backup): want ErrRollback, got %v", err)
			}
		})
	}
}

// TestWholeRollback: the keystore and its record put back together. A
// running engine refuses it (it remembers the newest state it saw); a new
// one cannot tell — the documented limit (docs/security.md).
func TestWholeRollback(t *testing.T) {
	ctx := context.Background()
	for _, p := range places(t, rootKey(t)) {
		t.Run(p.name, func(t *testing.T) {
			e := engine(t, p.create())
			k, err := e.CreateKey(ctx, &kms.CreateKeyInput{})
			if err != nil {
				t.Fatal(err)
			}
			putBack := p.save(t)
			if _, err := e.DisableKey(ctx, &kms.KeyIDInput{KeyID: k.KeyMetadata.KeyID}); err != nil {
				t.Fatal(err)
			}
			putBack()
			if err := e.Refresh(ctx); !errors.Is(err, ErrRollback) {
				t.Fatalf("running engine: want ErrRollback, got %v", err)
			}
			// The limit: nothing outside the keystore and its record remembers.
			e2, err := kms.New(ctx, kms.Options{Store: p.open()})
			if err != nil {
				t.Fatalf("a new engine refused the whole rollback (update docs/security.md if this is now detected): %v", err)
			}
			if s := keyState(t, e2, k.KeyMetadata.KeyID); s != kms.KeyStateEnabled {
				t.Fatalf("key %s", s)
			}
		})
	}
}

// TestForeignKeystoreRefused: a keystore made elsewhere
// under the same root key is refused in place of the real one.
func TestForeignKeystoreRefused(t *testing.T) {
	ctx := context.Background()
	root := rootKey(t)
	ns := env.Namespace(t)
	pairs := []struct {
		name       string
		live, from place
	}{
		{"file from another file", filePlace(t, root), filePlace(t, root)},
		{"secret from another secret", secretPlace(root, ns, "live"), secretPlace(root, ns, "other")},
		{"file from a secret", filePlace(t, root), secretPlace(root, ns, "source")},
	}
	for _, pc := range pairs {
		t.Run(pc.name, func(t *testing.T) {
			live := engine(t, pc.live.create())
			if _, err := live.CreateKey(ctx, &kms.CreateKeyInput{Description: "live"}); err != nil {
				t.Fatal(err)
			}
			other := engine(t, pc.from.create())
			for range 3 { // a higher generation than the live one
				if _, err := other.CreateKey(ctx, &kms.CreateKeyInput{Description: "elsewhere"}); err != nil {
					t.Fatal(err)
				}
			}
			pc.live.putRaw(t, pc.from.raw(t))
			if err := live.Refresh(ctx); !errors.Is(err, ErrForeign) {
				t.Fatalf("running engine: want ErrForeign, got %v", err)
			}
			if _, err := kms.New(ctx, kms.Options{Store: pc.live.open()}); !errors.Is(err, ErrForeign) {
				t.Fatalf("new engine: want ErrForeign, got %v", err)
			}
		})
	}

	// A Secret's location is in the AAD: copied data is refused even with
	// no record at all (annotations removed) and a fresh process.
	t.Run("secret data without annotations", func(t *testing.T) {
		a, b := secretPlace(root, ns, "a"), secretPlace(root, ns, "b")
		if _, err := a.open().Init(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := b.open().Init(ctx); err != nil {
			t.Fatal(err)
		}
		var s corev1.Secret
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "a"}, &s); err != nil {
			t.Fatal(err)
		}
		s.Data[SecretDataKey], s.Annotations = b.raw(t), nil
		if err := env.Client.Update(ctx, &s); err != nil {
			t.Fatal(err)
		}
		_, err := kms.New(ctx, kms.Options{Store: a.open()})
		if !errors.Is(err, ErrForeign) || !strings.Contains(err.Error(), "k8s://"+ns+"/b") {
			t.Fatalf("want ErrForeign naming k8s://%s/b, got %v", ns, err)
		}
	})

	// A copy of the same keystore written on its own (same id and
	// generation, different state) is refused too.
	t.Run("diverged copy", func(t *testing.T) {
		a, b := filePlace(t, root), filePlace(t, root)
		if _, err := a.open().Init(ctx); err != nil {
			t.Fatal(err)
		}
		b.putRaw(t, a.raw(t)) // b: a copy of a, with no record
		for _, p := range []place{a, b} {
			if _, err := engine(t, p.open()).CreateKey(ctx, &kms.CreateKeyInput{}); err != nil {
				t.Fatal(err)
			}
		}
		if ha, hb := header(t, a.raw(t)), header(t, b.raw(t)); ha != hb {
			t.Fatalf("setup: %+v %+v", ha, hb)
		}
		a.putRaw(t, b.raw(t))
		if _, err := kms.New(ctx, kms.Options{Store: a.open()}); !errors.Is(err, ErrForeign) {
			t.Fatalf("want ErrForeign, got %v", err)
		}
	})
}

// TestMissingKeystore: opening a keystore that is not there is an error;
// one that vanishes under a running engine is an error, never an empty
// keyring, and the next write does not create a new keystore.
func TestMissingKeystore(t *testing.T) {
	ctx := context.Background()
	for _, p := range places(t, rootKey(t)) {
		t.Run(p.name, func(t *testing.T) {
			_, err := kms.New(ctx, kms.Options{Store: p.open()})
			if !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), "rekey keystore init") {
				t.Fatalf("open a missing keystore: %v", err)
			}
			if _, err := p.open().Save(ctx, []byte(`{"formatVersion":1}`), ""); !errors.Is(err, ErrMissing) {
				t.Fatalf("a first write through a handle that may not create: %v", err)
			}
			if p.exists(t) {
				t.Fatal("opening a missing keystore created it")
			}
			for _, handle := range []struct {
				name string
				s    func() Backend
			}{{"open", p.open}, {"create", p.create}} {
				if _, err := p.create().Init(ctx); err != nil && !errors.Is(err, ErrExists) {
					t.Fatal(err)
				}
				e := engine(t, handle.s())
				k, err := e.CreateKey(ctx, &kms.CreateKeyInput{})
				if err != nil {
					t.Fatal(err)
				}
				p.remove(t)
				if err := e.Refresh(ctx); !errors.Is(err, ErrMissing) {
					t.Fatalf("%s handle: Refresh of a vanished keystore: %v", handle.name, err)
				}
				if _, err := e.CreateKey(ctx, &kms.CreateKeyInput{}); !errors.Is(err, ErrMissing) {
					t.Fatalf("%s handle: a write to a vanished keystore: %v", handle.name, err)
				}
				if p.exists(t) {
					t.Fatalf("%s handle: a write created a new keystore in place of the vanished one", handle.name)
				}
				// It still knows its keys; nothing became empty.
				if s := keyState(t, e, k.KeyMetadata.KeyID); s != kms.KeyStateEnabled {
					t.Fatalf("key %s", s)
				}
				if p.name == "file" {
					// The record remembers: no new keystore, even on purpose.
					if _, err := p.create().Init(ctx); !errors.Is(err, ErrMissing) {
						t.Fatalf("init over a vanished keystore's record: %v", err)
					}
					if _, err := kms.New(ctx, kms.Options{Store: p.create()}); !errors.Is(err, ErrMissing) {
						t.Fatalf("NewFile over a vanished keystore's record: %v", err)
					}
					if err := os.Remove(filepath.Join(filepath.Dir(p.open().String()), "keys.rks.generation")); err != nil {
						t.Fatal(err)
					}
				}
			}
		})
	}
}

// TestRestore: backup, verify and restore at the package level.
func TestRestore(t *testing.T) {
	ctx := context.Background()
	root := rootKey(t)
	for _, p := range places(t, root) {
		t.Run(p.name, func(t *testing.T) {
			if _, err := p.open().Init(ctx); err != nil {
				t.Fatal(err)
			}
			e := engine(t, p.open())
			k, _ := e.CreateKey(ctx, &kms.CreateKeyInput{})
			id := k.KeyMetadata.KeyID
			if _, err := e.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: "alias/r", TargetKeyID: id}); err != nil {
				t.Fatal(err)
			}
			backup, err := p.open().Read(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.RotateKeyOnDemand(ctx, &kms.KeyIDInput{KeyID: id}); err != nil {
				t.Fatal(err)
			}
			if _, err := e.DisableKey(ctx, &kms.KeyIDInput{KeyID: id}); err != nil {
				t.Fatal(err)
			}
			before := p.raw(t)

			res, err := p.open().Restore(ctx, backup, RestoreOptions{})
			if !errors.Is(err, ErrRollback) || res == nil || res.Previous == nil {
				t.Fatalf("restore of an older backup: %+v %v", res, err)
			}
			if !bytes.Equal(p.raw(t), before) {
				t.Fatal("a refused restore wrote")
			}
			prev, err := Summarize(ctx, res.Previous)
			if err != nil {
				t.Fatal(err)
			}
			next, err := Summarize(ctx, backup)
			if err != nil {
				t.Fatal(err)
			}
			losses := strings.Join(Compare(prev, next), "\n")
			for _, want := range []string{"from Disabled to Enabled", "versions 2 to 2 are gone", "different version 2"} {
				if !strings.Contains(losses, want) {
					t.Fatalf("Compare does not say %q:\n%s", want, losses)
				}
			}

			res, err = p.open().Restore(ctx, backup, RestoreOptions{AllowRollback: true})
			if err != nil || !res.Rollback || res.Header.Generation != header(t, before).Generation+1 || res.Header.ID != backup.ID {
				t.Fatalf("restore --allow-rollback: %+v %v", res, err)
			}
			// The running engine takes it as the newest state, on purpose.
			if err := e.Refresh(ctx); err != nil {
				t.Fatal(err)
			}
			if s := keyState(t, e, id); s != kms.KeyStateEnabled {
				t.Fatalf("after restore the key is %s", s)
			}
			if _, err := kms.New(ctx, kms.Options{Store: p.open()}); err != nil {
				t.Fatal(err)
			}
			cur, _ := p.open().Read(ctx)
			if res, err := p.open().Restore(ctx, cur, RestoreOptions{}); err != nil || !res.Unchanged {
				t.Fatalf("restoring the current state: %+v %v", res, err)
			}
		})
	}

	t.Run("rebind", func(t *testing.T) {
		f, s := filePlace(t, root), secretPlace(root, env.Namespace(t), "moved")
		if _, err := f.open().Init(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := engine(t, f.open()).CreateKey(ctx, &kms.CreateKeyInput{Description: "moved"}); err != nil {
			t.Fatal(err)
		}
		backup, err := f.open().Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.open().Restore(ctx, backup, RestoreOptions{}); !errors.Is(err, ErrForeign) {
			t.Fatalf("restore of a file backup into a Secret: %v", err)
		}
		if s.exists(t) {
			t.Fatal("a refused restore created the Secret")
		}
		res, err := s.open().Restore(ctx, backup, RestoreOptions{Rebind: true})
		if err != nil || res.Header.Location != s.open().String() || res.Header.ID != backup.ID {
			t.Fatalf("restore --rebind: %+v %v", res, err)
		}
		keys, _ := engine(t, s.open()).ListKeys(ctx, &kms.ListKeysInput{})
		if len(keys.Keys) != 1 {
			t.Fatalf("%d keys after the move", len(keys.Keys))
		}
		// Another keystore's backup over it needs --rebind and --allow-rollback.
		other := filePlace(t, root)
		if _, err := other.open().Init(ctx); err != nil {
			t.Fatal(err)
		}
		ob, _ := other.open().Read(ctx)
		if _, err := f.open().Restore(ctx, ob, RestoreOptions{}); !errors.Is(err, ErrForeign) {
			t.Fatalf("another keystore's backup: %v", err)
		}
		if _, err := f.open().Restore(ctx, ob, RestoreOptions{Rebind: true}); !errors.Is(err, ErrRollback) {
			t.Fatalf("another keystore's backup with --rebind alone: %v", err)
		}
	})

	t.Run("file gone, record kept", func(t *testing.T) {
		f := filePlace(t, root)
		if _, err := f.open().Init(ctx); err != nil {
			t.Fatal(err)
		}
		old, _ := f.open().Read(ctx)
		if _, err := engine(t, f.open()).CreateKey(ctx, &kms.CreateKeyInput{}); err != nil {
			t.Fatal(err)
		}
		newest, _ := f.open().Read(ctx)
		f.remove(t)
		if _, err := f.open().Restore(ctx, old, RestoreOptions{}); !errors.Is(err, ErrRollback) {
			t.Fatalf("older backup over a vanished keystore: %v", err)
		}
		res, err := f.open().Restore(ctx, newest, RestoreOptions{})
		if err != nil || res.Header.Generation != newest.Generation+1 {
			t.Fatalf("newest backup over a vanished keystore: %+v %v", res, err)
		}
	})
}

// TestOldFormatRefused: a keystore from before the header is refused with
// a message that says so, not taken for a corrupt or empty one.
func TestOldFormatRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.rks")
	if err := os.WriteFile(path, append([]byte("RKS1"), make([]byte, 40)...), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := kms.New(context.Background(), kms.Options{Store: OpenFile(path, rootKey(t))})
	if !errors.Is(err, ErrOldFormat) {
		t.Fatalf("want ErrOldFormat, got %v", err)
	}
}

// TestKeyFileMode is finding 12's key files: one others may read or write,
// or its group may write, is refused; one its group may read is read with a
// warning.
func TestKeyFileMode(t *testing.T) {
	enc, _ := GenerateRootKey()
	dir := t.TempDir()
	for _, tc := range []struct {
		mode    os.FileMode
		refused bool
		warned  bool
	}{
		{0o600, false, false}, {0o400, false, false},
		{0o640, false, true}, {0o440, false, true},
		{0o644, true, false}, {0o604, true, false}, {0o660, true, false}, {0o602, true, false}, {0o666, true, false},
	} {
		path := filepath.Join(dir, fmt.Sprintf("%04o", tc.mode))
		if err := os.WriteFile(path, []byte(enc), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, tc.mode); err != nil {
			t.Fatal(err)
		}
		w, err := CheckKeyFileMode(path)
		_, rerr := ReadRootKeyFile(path)
		if tc.refused {
			if !errors.Is(err, ErrKeyFileMode) || !errors.Is(rerr, ErrKeyFileMode) || !strings.Contains(rerr.Error(), "chmod 600 "+path) {
				t.Fatalf("mode %04o: want refused, got %v / %v", tc.mode, err, rerr)
			}
			continue
		}
		if err != nil || rerr != nil || (w != "") != tc.warned {
			t.Fatalf("mode %04o: err %v / %v, warning %q", tc.mode, err, rerr, w)
		}
	}
	// Group read is what lets this process read a file another user owns
	// (Kubernetes: defaultMode 0440 and the pod's fsGroup): no warning.
	if os.Getuid() == 0 {
		path := filepath.Join(dir, "0440")
		if err := os.Chown(path, 4242, os.Getgid()); err != nil {
			t.Fatal(err)
		}
		if w, err := CheckKeyFileMode(path); err != nil || w != "" {
			t.Fatalf("0440, another owner, our group: %q %v", w, err)
		}
		if err := os.Chown(path, 4242, 4242); err != nil {
			t.Fatal(err)
		}
		if w, err := CheckKeyFileMode(path); err != nil || w == "" {
			t.Fatalf("0440, another owner, another group: %q %v", w, err)
		}
	}
	// Through a symbolic link (as Kubernetes mounts Secret files), the
	// target's mode counts.
	target := filepath.Join(dir, "0644")
	link := filepath.Join(dir, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadRootKeyFile(link); !errors.Is(err, ErrKeyFileMode) {
		t.Fatalf("a link to a 0644 file: %v", err)
	}
}
