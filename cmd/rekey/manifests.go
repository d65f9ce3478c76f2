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
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/spf13/cobra"

	rekeyv1alpha1 "github.com/rekey-dev/rekey/api/v1alpha1"
	"github.com/rekey-dev/rekey/internal/atomicfile"
	"github.com/rekey-dev/rekey/internal/manifests"
	awsprovider "github.com/rekey-dev/rekey/internal/provider/aws"
	"github.com/rekey-dev/rekey/internal/provider/embedded"
)

const manifestsReencryptLong = `Re-encrypts the blobs of the annotated Secret manifests (rekey.dev/encrypted-keys)
in YAML files — each PATH a file, a directory (every *.yaml and *.yml below it,
and files named Kustomization; hidden directories skipped) or - (stdin to
stdout) — as a KeyRotation would:
the same annotations, contexts and placeholders ({namespace}, {name}, {key}),
and the key service's answer checked. Only the blobs change in a file, byte for
byte; a Secret whose blobs do not all re-encrypt is left as it was. Files are
rewritten in place (--stdout: to standard output, one PATH).

--check changes nothing and exits 1 while any blob is under a source key (for
CI). Kustomize secretGenerator inputs are not read: a generator that holds blobs
(it carries rekey.dev/encrypted-keys, or merges into an annotated Secret) is
listed, as is a kustomize patch of an annotated Secret without its annotations.
Exit status: 0 done, 1 some blob failed, such a generator or patch was found,
or (with --check) a blob is still under a source key, 2 usage.

` + keyServiceLong

const manifestsReencryptExample = `  rekey manifests reencrypt apps/ --source-key alias/billing-2025 --destination-key alias/billing-2026 \
      --kms-endpoint "$KMS_ENDPOINT"
  rekey manifests reencrypt apps/ --check --source-key alias/billing-2025 --destination-key alias/billing-2026 --aws`

func newManifestsCmd(s streams) *cobra.Command {
	c := &cobra.Command{
		Use:   "manifests",
		Short: "re-encrypt the blobs of annotated Secret manifests in files (where Git holds them)",
	}
	c.AddCommand(newManifestsReencryptCmd(s))
	return c
}

// errFindings: the command ran, and its report says what failed.
var errFindings = errors.New("see the report above")

// manifestsReencrypt is one 'rekey manifests reencrypt', from its flags.
type manifestsReencrypt struct {
	ks              keyServiceFlags
	sources, grants []string
	srcCtx, dstCtx  contextFlag
	dest            string
	check, toStdout bool
}

func newManifestsReencryptCmd(s streams) *cobra.Command {
	m := &manifestsReencrypt{srcCtx: contextFlag{}, dstCtx: contextFlag{}}
	cmd := &cobra.Command{
		Use:     "reencrypt PATH... --source-key KEY --destination-key KEY",
		Short:   "re-encrypt the blobs of annotated Secret manifests in files, as a KeyRotation would",
		Long:    manifestsReencryptLong,
		Example: manifestsReencryptExample,
		Args:    minArgs(1),
		RunE: func(cmd *cobra.Command, paths []string) error {
			return m.run(cmd.Context(), paths, s)
		},
	}
	flags := cmd.Flags()
	m.ks.bind(flags, s.err)
	flags.Var(repeated{&m.sources, "string", oneValue}, "source-key", "a `KEY` blobs may be under now (repeatable; as a KeyRotation's sourceKeyIds)")
	flags.StringVar(&m.dest, "destination-key", "", "the `KEY` to re-encrypt under (required; as destinationKeyId)")
	flags.Var(m.srcCtx, "source-context", "source encryption context pair (repeatable; default: each Secret's rekey.dev/encryption-context)")
	flags.Var(m.dstCtx, "destination-context", "destination encryption context pair (repeatable; default: the source context)")
	flags.Var(repeated{&m.grants, "string", oneValue}, "grant-token", "a grant `TOKEN` for every call (repeatable)")
	flags.BoolVar(&m.check, "check", false, "change nothing; exit 1 while any blob is under a source key")
	flags.BoolVar(&m.toStdout, "stdout", false, "write the result to standard output instead of in place (one PATH)")
	return cmd
}

func (m *manifestsReencrypt) run(ctx context.Context, paths []string, s streams) error {
	switch {
	case len(m.sources) == 0 || m.dest == "":
		return usageErrorf("--source-key and --destination-key are required")
	case m.toStdout && (len(paths) != 1 || m.check):
		return usageErrorf("--stdout takes one PATH and no --check")
	case slices.Contains(paths, "-") && len(paths) != 1:
		return usageErrorf("- (stdin) is the only PATH when given")
	}
	if err := m.ks.check(); err != nil {
		return err
	}
	files, err := manifestFiles(paths)
	if err != nil {
		return err
	}
	r := &manifests.Rotation{SourceKeyIDs: m.sources, DestinationKeyID: m.dest, GrantTokens: m.grants,
		SourceEncryptionContext: m.srcCtx, DestinationEncryptionContext: m.dstCtx}
	if err := openManifestKeys(ctx, &m.ks, r); err != nil {
		return err
	}
	if err := r.Resolve(ctx); err != nil {
		return err
	}
	counts := map[manifests.Outcome]int{}
	var all []manifests.Finding
	for _, path := range files {
		found, err := reencryptFile(ctx, r, path, m.check, m.toStdout, s.in, s.out, s.err, counts)
		if err != nil {
			return err
		}
		all = append(all, found...)
	}
	// A Secret without the annotations that shares its name with an
	// annotated one is, in a kustomize tree, a patch replacing its values:
	// blobs that nothing here reads.
	patches := manifests.Unannotated(all)
	for _, f := range patches {
		f.Message = "has data but no " + rekeyv1alpha1.EncryptedKeysAnnotation + " annotation, and an annotated Secret of that name is in these files " +
			"(a kustomize patch?): its values were neither checked nor re-encrypted; give it the same rekey.dev annotations"
		fmt.Fprintln(s.err, f.String())
	}
	// A secretGenerator's inputs are not read: one that carries the
	// annotation, or merges into or replaces an annotated Secret, holds
	// blobs that stay under the old key.
	generators := manifests.UnreadGenerators(all)
	for _, f := range generators {
		f.Message = "kustomize secretGenerator inputs (literals, files, env files) are neither checked nor re-encrypted, and this one "
		if f.Reason == manifests.ReasonAnnotatedGenerator {
			f.Message += "carries " + rekeyv1alpha1.EncryptedKeysAnnotation
		} else {
			f.Message += "merges into or replaces an annotated Secret in these files"
		}
		f.Reason = ""
		f.Message += ": keep its encrypted values in a Secret manifest with the rekey.dev annotations"
		fmt.Fprintln(s.err, f.String())
	}
	verb := "re-encrypted"
	if m.check {
		verb = "under a source key"
	}
	n := counts[manifests.Rotated] + counts[manifests.UnderSource]
	fmt.Fprintf(s.err, "rekey manifests: %d files, %d blobs %s, %d already under the destination, %d unknown, %d failed, %d unannotated patches, %d unread secretGenerators\n",
		len(files), n, verb, counts[manifests.Current], counts[manifests.Unknown], counts[manifests.Failed], len(patches), len(generators))
	if counts[manifests.Failed] > 0 || len(patches) > 0 || len(generators) > 0 || (m.check && (n > 0 || counts[manifests.Unknown] > 0)) {
		return errFindings
	}
	return nil
}

// reencryptFile re-encrypts (or checks) one file, prints its findings,
// adds them to counts and returns them.
func reencryptFile(ctx context.Context, r *manifests.Rotation, path string, check, toStdout bool, stdin io.Reader, stdout, stderr io.Writer,
	counts map[manifests.Outcome]int) ([]manifests.Finding, error) {
	var src []byte
	var err error
	if path == "-" {
		src, err = io.ReadAll(io.LimitReader(stdin, maxManifest+1))
	} else {
		src, err = readManifest(path)
	}
	if err != nil {
		return nil, err
	}
	if len(src) > maxManifest {
		return nil, fmt.Errorf("%s is larger than %d MiB", path, maxManifest>>20)
	}
	var findings []manifests.Finding
	out := src
	if check {
		findings, err = r.Check(ctx, path, src)
	} else {
		out, findings, err = r.Reencrypt(ctx, path, src)
	}
	if err != nil {
		return nil, err
	}
	for _, f := range findings {
		counts[f.Outcome]++
		if f.Outcome != manifests.Current && f.Outcome != manifests.NotAnnotated && f.Outcome != manifests.GeneratorNotRead {
			fmt.Fprintln(stderr, f.String())
		}
	}
	switch {
	case check:
		return findings, nil
	case path == "-" || toStdout:
		_, err := stdout.Write(out)
		return findings, err
	case slices.ContainsFunc(findings, func(f manifests.Finding) bool { return f.Outcome == manifests.Rotated }):
		return findings, writeInPlace(path, out)
	}
	return findings, nil
}

// maxManifest bounds one file read: a manifest, not a data dump.
const maxManifest = 16 << 20

// openManifestKeys opens the key service the flags name: the embedded
// engine (which also reads blob headers), or a KMS endpoint through the
// AWS provider.
func openManifestKeys(ctx context.Context, ks *keyServiceFlags, r *manifests.Rotation) error {
	if !ks.remote() {
		e, err := ks.engine.open(ctx)
		if err != nil {
			return err
		}
		p := embedded.New(e)
		r.Keys, r.Inspector = p, p
		return nil
	}
	region := ""
	if ks.fs.Changed("region") {
		region = ks.engine.region
	}
	if region == "" {
		cfg, err := config.LoadDefaultConfig(ctx)
		if err != nil {
			return fmt.Errorf("loading the AWS SDK configuration: %w", err)
		}
		region = cfg.Region
	}
	if region == "" {
		return usageErrorf("no AWS region: set AWS_REGION (or a profile's region), or give --region")
	}
	p, err := awsprovider.New(ctx, awsprovider.Options{Region: region, Endpoint: ks.endpoint, MaxAttempts: 3})
	if err != nil {
		return err
	}
	r.Keys = p
	return nil
}

// manifestFiles expands the PATHs: files as given, directories to every
// *.yaml and *.yml below them (hidden directories such as .git skipped,
// symbolic links not followed), sorted.
func manifestFiles(paths []string) ([]string, error) {
	var files []string
	for _, p := range paths {
		if p == "-" {
			files = append(files, p)
			continue
		}
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			files = append(files, p)
			continue
		}
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && path != p && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			if d.Type().IsRegular() && (strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml") || d.Name() == "Kustomization") {
				files = append(files, path)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	slices.Sort(files)
	return slices.Compact(files), nil
}

func readManifest(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	return io.ReadAll(io.LimitReader(f, maxManifest+1))
}

// writeInPlace replaces path's contents atomically, keeping its mode.
func writeInPlace(path string, b []byte) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	return atomicfile.Write(path, b, st.Mode().Perm())
}
