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

	"github.com/spf13/cobra"

	"github.com/rekey-dev/rekey/internal/kms/keystore"
)

const keystoreLong = `Create (init), back up, verify and restore the embedded engine's keystore.

A keystore is created only by init (or by restore where there is none);
every other command refuses a missing keystore. restore refuses a backup
older than the keystore (--allow-rollback: lose what changed since) or of
another keystore or location (--rebind). Every subcommand takes --keystore
and --root-key-file (or REKEY_KEYSTORE and REKEY_ROOT_KEY_FILE); verify FILE
takes only --root-key-file. See docs/operations.md, "Keystore backups".`

func newKeystoreCmd(s streams) *cobra.Command {
	c := &cobra.Command{
		Use:   "keystore",
		Short: "create (init), back up, verify and restore the keystore",
		Long:  keystoreLong,
		Example: `  rekey keystore init --keystore keys.rks --root-key-file root.key
  rekey keystore backup --to keys-2026-11-30.rks
  rekey keystore verify keys-2026-11-30.rks`,
	}

	var initFlags engineFlags
	initCmd := &cobra.Command{
		Use:   "init",
		Short: "create a new, empty keystore at --keystore",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := initFlags.backend()
			if err != nil {
				return err
			}
			h, err := b.Init(cmd.Context())
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(s.out, "created keystore %s (id %s, generation %d)\n", b, h.ID, h.Generation)
			return err
		},
	}
	initFlags.bindStore(initCmd.Flags(), s.err)

	var backupFlags engineFlags
	var to string
	backupCmd := &cobra.Command{
		Use:   "backup --to FILE",
		Short: "copy the keystore, still encrypted under the root key, to FILE (a new file)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if to == "" {
				return usageErrorf("--to is required")
			}
			b, err := backupFlags.backend()
			if err != nil {
				return err
			}
			return backup(cmd.Context(), b, to, s.out)
		},
	}
	backupFlags.bindStore(backupCmd.Flags(), s.err)
	backupCmd.Flags().StringVar(&to, "to", "", "`FILE` to write the backup to; it must not exist (required)")

	var verifyFlags engineFlags
	verifyCmd := &cobra.Command{
		Use:   "verify [FILE]",
		Short: "decrypt and check FILE (a backup), or the keystore itself; print what it holds",
		Long: `Decrypts and checks FILE (a backup), or the keystore itself, with the root
key, and prints its id, location, generation and keys (never key material).`,
		Args: maxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				if cmd.Flags().Changed("keystore") {
					return usageErrorf("--keystore does not apply to keystore verify FILE, which reads FILE with the root key alone " +
						"(keystore verify without FILE checks the keystore)")
				}
				root, err := verifyFlags.rootKey()
				if err != nil {
					return err
				}
				return verifyFile(cmd.Context(), root, args[0], s.out)
			}
			b, err := verifyFlags.backend()
			if err != nil {
				return err
			}
			st, err := b.Read(cmd.Context())
			if err != nil {
				return err
			}
			return printSummary(cmd.Context(), b.String(), st, s.out)
		},
	}
	verifyFlags.bindStore(verifyCmd.Flags(), s.err)

	var restoreFlags engineFlags
	var from string
	var opts keystore.RestoreOptions
	restoreCmd := &cobra.Command{
		Use:   "restore --from FILE",
		Short: "put a backup back, as a generation newer than any seen there",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if from == "" {
				return usageErrorf("--from is required")
			}
			b, err := restoreFlags.backend()
			if err != nil {
				return err
			}
			return restore(cmd.Context(), restoreFlags, b, from, opts, s.out, s.err)
		},
	}
	restoreFlags.bindStore(restoreCmd.Flags(), s.err)
	restoreCmd.Flags().StringVar(&from, "from", "", "backup `FILE` to restore (required)")
	restoreCmd.Flags().BoolVar(&opts.AllowRollback, "allow-rollback", false,
		"restore a backup older than the keystore: keys disabled since are enabled again, keys and versions added since are lost")
	restoreCmd.Flags().BoolVar(&opts.Rebind, "rebind", false, "restore a backup of another keystore or location (a keystore moved between files and Secrets)")

	for _, sub := range []*cobra.Command{initCmd, backupCmd, restoreCmd} {
		sub.ValidArgsFunction = cobra.NoFileCompletions
	}
	c.AddCommand(initCmd, backupCmd, verifyCmd, restoreCmd)
	return c
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
	if pe := (*os.PathError)(nil); errors.As(err, &pe) {
		return nil, fmt.Errorf("reading %s: %w", shownPath(path), pe.Err)
	}
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
