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
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/rekey-dev/rekey/internal/kms/keystore"
)

const keystoreUsage = `usage: rekey keystore <subcommand> [flags]

  init                          create a new, empty keystore at --keystore
  backup  --to FILE             copy the keystore, still encrypted under the root key, to FILE (a new file)
  verify  [FILE]                decrypt and check FILE (a backup), or the keystore itself, with the root
                                key; print its id, location, generation and keys (never key material)
  restore --from FILE [--allow-rollback] [--rebind]
                                put a backup back, as a generation newer than any seen there

A keystore is created only by init (or by restore where there is none);
every other command refuses a missing keystore. restore refuses a backup
older than the keystore (--allow-rollback: lose what changed since) or of
another keystore or location (--rebind). Every subcommand takes --keystore
and --root-key-file (or REKEY_KEYSTORE and REKEY_ROOT_KEY_FILE); verify FILE
needs only --root-key-file. See docs/operations.md, "Keystore backups".`

// The keystore subcommands.
const (
	ksInit    = "init"
	ksBackup  = "backup"
	ksVerify  = "verify"
	ksRestore = "restore"
)

func runKeystore(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || isHelp(args[0]) {
		fmt.Fprintln(stderr, keystoreUsage)
		if len(args) == 0 {
			return fmt.Errorf("%w: a subcommand is required", errUsage)
		}
		return nil
	}
	sub, args := args[0], args[1:]
	var ef engineFlags
	fs := newFlagSet("keystore "+sub, stderr)
	ef.bind(fs)
	var to, from *string
	var allowRollback, rebind *bool
	switch sub {
	case ksInit, ksVerify:
	case ksBackup:
		to = fs.String("to", "", "file to write the backup to; it must not exist (required)")
	case ksRestore:
		from = fs.String("from", "", "backup file to restore (required)")
		allowRollback = fs.Bool("allow-rollback", false,
			"restore a backup older than the keystore: keys disabled since are enabled again, keys and versions added since are lost")
		rebind = fs.Bool("rebind", false, "restore a backup of another keystore or location (a keystore moved between files and Secrets)")
	default:
		fmt.Fprintln(stderr, keystoreUsage)
		return fmt.Errorf("%w: unknown subcommand %q", errUsage, sub)
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if want := map[string]int{ksVerify: 1}[sub]; len(pos) > want {
		return fmt.Errorf("%w: keystore %s takes at most %d argument(s), got %d (see rekey keystore --help)", errUsage, sub, want, len(pos))
	}
	switch sub {
	case ksBackup:
		if *to == "" {
			return fmt.Errorf("%w: --to is required", errUsage)
		}
	case ksRestore:
		if *from == "" {
			return fmt.Errorf("%w: --from is required", errUsage)
		}
	case ksVerify:
		if len(pos) == 1 {
			root, err := ef.rootKey()
			if err != nil {
				return err
			}
			return verifyFile(ctx, root, pos[0], stdout)
		}
	}
	b, err := ef.backend()
	if err != nil {
		return err
	}
	switch sub {
	case ksInit:
		h, err := b.Init(ctx)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "created keystore %s (id %s, generation %d)\n", b, h.ID, h.Generation)
		return err
	case ksVerify:
		s, err := b.Read(ctx)
		if err != nil {
			return err
		}
		return printSummary(ctx, b.String(), s, stdout)
	case ksBackup:
		return backup(ctx, b, *to, stdout)
	default:
		return restore(ctx, ef, b, *from, keystore.RestoreOptions{AllowRollback: *allowRollback, Rebind: *rebind}, stdout, stderr)
	}
}

// backup copies the keystore, as stored, to a new file and reads it back.
func backup(ctx context.Context, b keystore.Backend, to string, stdout io.Writer) error {
	s, err := b.Read(ctx)
	if err != nil {
		return err
	}
	sum, err := keystore.Summarize(ctx, s)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	_, err = f.Write(s.Wrapped)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(to)
		return fmt.Errorf("backup: %w", err)
	}
	back, err := os.ReadFile(to)
	if err != nil {
		return fmt.Errorf("backup: reading %s back: %w", to, err)
	}
	if !bytes.Equal(back, s.Wrapped) {
		return fmt.Errorf("backup: %s does not read back as written", to)
	}
	_, err = fmt.Fprintf(stdout, "backed up %s (keystore %s, generation %d, %d keys) to %s\n",
		b, s.ID, s.Generation, len(sum.Keys), to)
	return err
}

// readBackup reads and decrypts a backup (or a keystore file).
func readBackup(root *keystore.RootKey, path string) (*keystore.Snapshot, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s, err := root.Open(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

func verifyFile(ctx context.Context, root *keystore.RootKey, path string, stdout io.Writer) error {
	s, err := readBackup(root, path)
	if err != nil {
		return err
	}
	return printSummary(ctx, path, s, stdout)
}

// printSummary checks a keystore's contents and prints them: no key
// material, no secrets.
func printSummary(ctx context.Context, name string, s *keystore.Snapshot, stdout io.Writer) error {
	sum, err := keystore.Summarize(ctx, s)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: keystore %s\n  location    %s\n  generation  %d\n  keys        %d\n",
		name, s.ID, s.Location, s.Generation, len(sum.Keys))
	if len(sum.Keys) > 0 {
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KEY ID\tSTATE\tVERSIONS\tALIASES")
		for _, k := range sum.Keys {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", k.ID, k.State, k.Versions, strings.Join(k.Aliases, ","))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	_, err = fmt.Fprintln(stdout, "OK: it decrypts with this root key and holds a consistent key state")
	return err
}

func restore(ctx context.Context, ef engineFlags, b keystore.Backend, from string, o keystore.RestoreOptions, stdout, stderr io.Writer) error {
	root, err := ef.rootKey()
	if err != nil {
		return err
	}
	s, err := readBackup(root, from)
	if err != nil {
		return err
	}
	next, err := keystore.Summarize(ctx, s)
	if err != nil {
		return err
	}
	res, err := b.Restore(ctx, s, o)
	var losses []string
	if res != nil && res.Previous != nil {
		prev, serr := keystore.Summarize(ctx, res.Previous)
		if serr != nil {
			return errors.Join(err, serr)
		}
		losses = keystore.Compare(prev, next)
	}
	if err != nil {
		if errors.Is(err, keystore.ErrRollback) && len(losses) > 0 {
			fmt.Fprintf(stderr, "rekey keystore restore: restoring %s would change:\n", from)
			for _, l := range losses {
				fmt.Fprintln(stderr, "  - "+l)
			}
		}
		return err
	}
	if res.Unchanged {
		_, err = fmt.Fprintf(stdout, "%s already holds the state of %s (keystore %s, generation %d): nothing written\n", b, from, res.Header.ID, res.Header.Generation)
		return err
	}
	if res.Rollback {
		fmt.Fprintf(stderr, "rekey keystore restore: WARNING: --allow-rollback: %s replaced a newer state of %s, and changed:\n", from, b)
		for _, l := range losses {
			fmt.Fprintln(stderr, "  - "+l)
		}
		if res.Previous == nil {
			fmt.Fprintln(stderr, "  (the keystore it replaced is gone, so what it held cannot be listed)")
		}
	}
	_, err = fmt.Fprintf(stdout, "restored %s from %s (backup generation %d) as keystore %s, generation %d; "+
		"running servers and the operator load it at their next refresh\n", b, from, s.Generation, res.Header.ID, res.Header.Generation)
	return err
}
