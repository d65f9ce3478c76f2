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
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/rekey-dev/rekey/internal/kms"
)

// maxStdin bounds what the crypto commands read: a blob or a plaintext is at
// most a few KiB.
const maxStdin = 64 << 10

func readStdin(stdin io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(stdin, maxStdin+1))
	if err != nil {
		return nil, fmt.Errorf("reading stdin: %w", err)
	}
	if len(b) > maxStdin {
		return nil, fmt.Errorf("stdin is larger than %d bytes", maxStdin)
	}
	return b, nil
}

// readBlob reads a base64 ciphertext blob from stdin.
func readBlob(stdin io.Reader) ([]byte, error) {
	b, err := readStdin(stdin)
	if err != nil {
		return nil, err
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return nil, errors.New("stdin is empty: pipe in a base64 ciphertext blob")
	}
	blob, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, errors.New("stdin is not a base64 ciphertext blob")
	}
	return blob, nil
}

func writeBlob(w io.Writer, blob []byte) error {
	_, err := fmt.Fprintln(w, base64.StdEncoding.EncodeToString(blob))
	return err
}

// engineCommand returns the flag set of a command that opens the engine,
// with the engine's flags bound and a usage line.
func engineCommand(name, usage string, stderr io.Writer) (*flag.FlagSet, *engineFlags) {
	ef := &engineFlags{}
	fs := newFlagSet(name, stderr)
	ef.bind(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: "+usage)
		fs.PrintDefaults()
	}
	return fs, ef
}

// keyServiceCommand is engineCommand for a command that also works through
// a KMS endpoint (--aws, --kms-endpoint).
func keyServiceCommand(name, usage string, stderr io.Writer) (*flag.FlagSet, *keyServiceFlags) {
	ks := &keyServiceFlags{}
	fs := newFlagSet(name, stderr)
	ks.bind(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: "+usage)
		fs.PrintDefaults()
	}
	return fs, ks
}

func runEncrypt(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	ec := contextFlag{}
	fs, ks := keyServiceCommand("encrypt", "rekey encrypt --key ID [--context k=v]... [--keystore ... | --aws | --kms-endpoint URL] < plaintext > blob.b64", stderr)
	key := fs.String("key", "", "key to encrypt under: key id, key ARN, alias name or alias ARN (required)")
	fs.Var(ec, "context", "encryption context pair KEY=VALUE (repeatable)")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if *key == "" {
		return fmt.Errorf("%w: --key is required", errUsage)
	}
	if err := ks.check(); err != nil {
		return err
	}
	pt, err := readStdin(stdin)
	if err != nil {
		return err
	}
	defer clear(pt)
	e, err := ks.open(ctx)
	if err != nil {
		return err
	}
	out, err := e.Encrypt(ctx, &kms.EncryptInput{KeyID: *key, Plaintext: pt, EncryptionContext: ec})
	if err != nil {
		return err
	}
	return writeBlob(stdout, out.CiphertextBlob)
}

func runDecrypt(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	ec := contextFlag{}
	fs, ks := keyServiceCommand("decrypt", "rekey decrypt [--key ID] [--context k=v]... [--keystore ... | --aws | --kms-endpoint URL] < blob.b64 > plaintext", stderr)
	key := fs.String("key", "", "optional: the key the blob must be under")
	fs.Var(ec, "context", "encryption context pair KEY=VALUE (repeatable)")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if err := ks.check(); err != nil {
		return err
	}
	blob, err := readBlob(stdin)
	if err != nil {
		return err
	}
	e, err := ks.open(ctx)
	if err != nil {
		return err
	}
	out, err := e.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob, KeyID: *key, EncryptionContext: ec})
	if err != nil {
		return err
	}
	defer clear(out.Plaintext)
	_, err = stdout.Write(out.Plaintext)
	return err
}

func runReEncrypt(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	srcCtx, dstCtx := contextFlag{}, contextFlag{}
	fs, ef := engineCommand("reencrypt",
		"rekey reencrypt --destination-key ID [--source-key ID] [--context k=v]... [--destination-context k=v]... < blob.b64 > new.b64", stderr)
	dst := fs.String("destination-key", "", "key to re-encrypt under (required)")
	src := fs.String("source-key", "", "optional: the key the blob must be under now (IncorrectKeyException otherwise)")
	fs.Var(srcCtx, "context", "source encryption context pair KEY=VALUE (repeatable)")
	fs.Var(dstCtx, "destination-context", "destination encryption context pair KEY=VALUE (repeatable; default: none)")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if *dst == "" {
		return fmt.Errorf("%w: --destination-key is required", errUsage)
	}
	blob, err := readBlob(stdin)
	if err != nil {
		return err
	}
	e, err := ef.open(ctx)
	if err != nil {
		return err
	}
	out, err := e.ReEncrypt(ctx, &kms.ReEncryptInput{
		CiphertextBlob: blob, SourceKeyID: *src, SourceEncryptionContext: srcCtx,
		DestinationKeyID: *dst, DestinationEncryptionContext: dstCtx,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "re-encrypted from %s (material %s) to %s (material %s)\n",
		out.SourceKeyID, out.SourceKeyMaterialID, out.KeyID, out.DestinationKeyMaterialID)
	return writeBlob(stdout, out.CiphertextBlob)
}
