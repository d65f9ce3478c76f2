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
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

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

const (
	encryptExample = `  printf hunter2 | rekey encrypt --key alias/billing --context app=billing > blob.b64
  rekey encrypt --key alias/billing --kms-endpoint "$KMS_ENDPOINT" < value > blob.b64`
	decryptExample   = `  rekey decrypt --context app=billing < blob.b64`
	reencryptExample = `  rekey reencrypt --source-key alias/old --destination-key alias/new \
      --context app=billing --destination-context app=billing < blob.b64 > new.b64`
	keyServiceLong = `The key service is the embedded engine over a keystore (--keystore,
--root-key-file), or a KMS endpoint through the AWS SDK's default
configuration (--aws, --kms-endpoint URL).`
)

func newEncryptCmd(s streams) *cobra.Command {
	ec := contextFlag{}
	var ks keyServiceFlags
	var key string
	cmd := &cobra.Command{
		Use:               "encrypt --key KEY",
		Short:             "encrypt stdin under a key; prints a base64 blob",
		Long:              "Encrypts stdin under KEY (as KMS Encrypt: at most 4096 bytes) and prints the ciphertext blob, base64.\n\n" + keyServiceLong,
		Example:           encryptExample,
		Args:              noArgs,
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if key == "" {
				return usageErrorf("--key is required")
			}
			if err := ks.check(); err != nil {
				return err
			}
			pt, err := readStdin(s.in)
			if err != nil {
				return err
			}
			defer clear(pt)
			e, err := ks.open(cmd.Context())
			if err != nil {
				return err
			}
			out, err := e.Encrypt(cmd.Context(), &kms.EncryptInput{KeyID: key, Plaintext: pt, EncryptionContext: ec})
			if err != nil {
				return err
			}
			return writeBlob(s.out, out.CiphertextBlob)
		},
	}
	ks.bind(cmd.Flags(), s.err)
	cmd.Flags().StringVar(&key, "key", "", "`KEY` to encrypt under: key id, key ARN, alias name or alias ARN (required)")
	cmd.Flags().Var(ec, "context", "encryption context pair (repeatable)")
	return cmd
}

func newDecryptCmd(s streams) *cobra.Command {
	ec := contextFlag{}
	var ks keyServiceFlags
	var key string
	cmd := &cobra.Command{
		Use:               "decrypt",
		Short:             "decrypt a base64 blob from stdin",
		Long:              "Decrypts the base64 ciphertext blob on stdin and writes the plaintext to stdout.\n\n" + keyServiceLong,
		Example:           decryptExample,
		Args:              noArgs,
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := ks.check(); err != nil {
				return err
			}
			blob, err := readBlob(s.in)
			if err != nil {
				return err
			}
			e, err := ks.open(cmd.Context())
			if err != nil {
				return err
			}
			out, err := e.Decrypt(cmd.Context(), &kms.DecryptInput{CiphertextBlob: blob, KeyID: key, EncryptionContext: ec})
			if err != nil {
				return err
			}
			defer clear(out.Plaintext)
			_, err = s.out.Write(out.Plaintext)
			return err
		},
	}
	ks.bind(cmd.Flags(), s.err)
	cmd.Flags().StringVar(&key, "key", "", "optional: the `KEY` the blob must be under")
	cmd.Flags().Var(ec, "context", "encryption context pair (repeatable)")
	return cmd
}

func newReEncryptCmd(s streams) *cobra.Command {
	srcCtx, dstCtx := contextFlag{}, contextFlag{}
	var ef engineFlags
	var src, dst string
	cmd := &cobra.Command{
		Use:   "reencrypt --destination-key KEY",
		Short: "re-encrypt a base64 blob from stdin under another key or version",
		Long: `Re-encrypts the base64 ciphertext blob on stdin under the destination key's
current backing version, inside the embedded engine (the plaintext never
leaves it), and prints the new blob.`,
		Example:           reencryptExample,
		Args:              noArgs,
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dst == "" {
				return usageErrorf("--destination-key is required")
			}
			blob, err := readBlob(s.in)
			if err != nil {
				return err
			}
			e, err := ef.open(cmd.Context())
			if err != nil {
				return err
			}
			out, err := e.ReEncrypt(cmd.Context(), &kms.ReEncryptInput{
				CiphertextBlob: blob, SourceKeyID: src, SourceEncryptionContext: srcCtx,
				DestinationKeyID: dst, DestinationEncryptionContext: dstCtx,
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(s.err, "re-encrypted from %s (material %s) to %s (material %s)\n",
				out.SourceKeyID, out.SourceKeyMaterialID, out.KeyID, out.DestinationKeyMaterialID)
			return writeBlob(s.out, out.CiphertextBlob)
		},
	}
	ef.bind(cmd.Flags(), s.err)
	cmd.Flags().StringVar(&dst, "destination-key", "", "`KEY` to re-encrypt under (required)")
	cmd.Flags().StringVar(&src, "source-key", "", "optional: the `KEY` the blob must be under now (IncorrectKeyException otherwise)")
	cmd.Flags().Var(srcCtx, "context", "source encryption context pair (repeatable)")
	cmd.Flags().Var(dstCtx, "destination-context", "destination encryption context pair (repeatable; default: none)")
	return cmd
}
