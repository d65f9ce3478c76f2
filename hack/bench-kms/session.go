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
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/rekey-dev/rekey/internal/keypolicy"
	"github.com/rekey-dev/rekey/internal/kms/keystore"
	"github.com/rekey-dev/rekey/internal/podidentity"
)

// The ServiceAccount the session credentials are for, and the encryption
// context of the blob.
const (
	benchNamespace = "bench"
	benchSA        = "app"
)

var benchContext = map[string]string{"purpose": "bench"}

// decryptPolicy lets the static load principal Decrypt under one alias.
const decryptPolicy = `{"principals": {
  "AKIDBENCHADMIN": {"admin": true},
  "AKIDBENCH": {"operations": ["Decrypt"], "keys": ["alias/bench-app"]}
}}`

// unreachableKubeconfig lets 'kms serve --pod-identity' start without a
// cluster: the load never asks for credentials, it signs with session
// credentials this program mints under the same root key, as any replica
// could.
const unreachableKubeconfig = `apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: none, user: {token: none}}]
contexts: [{name: none, context: {cluster: none, user: none}}]
current-context: none
`

// runDecryptSession measures Decrypt through 'rekey kms serve' twice, the
// same keystore and key each time: signed with a static credential under
// a policy file, and signed with pod-identity session credentials (the key
// allowing the ServiceAccount by its rekey.dev/decrypt tag). Both with the
// audit log to a file, plain HTTP on loopback. It prints each server's CPU
// per Decrypt, as run does for ReEncrypt.
func runDecryptSession(rekeyBin string, d, warmup time.Duration, clients, size, gogc int) error {
	ctx := context.Background()
	dir, remove, err := workDir(rekeyBin, "rekey-bench-kms-session-", decryptPolicy, map[string]string{"kubeconfig": unreachableKubeconfig}, "keys.rks")
	if err != nil {
		return err
	}
	defer remove()
	rootFile := filepath.Join(dir, "root.key")
	rk, err := keystore.ReadRootKeyFile(rootFile)
	if err != nil {
		return err
	}
	sessionKey, err := rk.DeriveKey(podidentity.KeyInfo(filepath.Join(dir, "keys.rks"), "rekey"))
	if err != nil {
		return err
	}
	sessions, err := podidentity.NewSessions(sessionKey, nil, nil)
	if err != nil {
		return err
	}
	sess, err := sessions.Issue(podidentity.Identity{Namespace: benchNamespace, Name: benchSA, UID: "4f1c2b9e-0000-4000-8000-000000000001"},
		time.Now().Add(time.Hour))
	if err != nil {
		return err
	}

	fmt.Printf("bench-kms -decrypt-session: Decrypt of a %d-byte plaintext, %d SDK clients, %v per server (after %v warm-up), GOGC=%d, %d cores\n",
		size, clients, d, warmup, gogc, numCPU())
	fmt.Printf("rekey kms serve --pod-identity, --credentials-file and --policy-file, --audit-log to a file, plain HTTP on loopback\n\n")
	var blob []byte
	type run struct {
		name           string
		id, key, token string
	}
	runs := []run{
		{"static credential, policy file", akid, secret, ""},
		{"session credentials, key tag", sess.AccessKeyID, sess.SecretAccessKey, sess.SessionToken},
	}
	var results []result
	for _, r := range runs {
		cmd := exec.Command(rekeyBin, "kms", "serve", "--listen", "127.0.0.1:0", "--pod-identity",
			"--keystore", filepath.Join(dir, "keys.rks"), "--root-key-file", rootFile,
			"--credentials-file", filepath.Join(dir, "creds"), "--policy-file", filepath.Join(dir, "policy.json"),
			"--audit-log", filepath.Join(dir, "audit.log"))
		cmd.Env = append(os.Environ(), fmt.Sprintf("GOGC=%d", gogc), "KUBECONFIG="+filepath.Join(dir, "kubeconfig"))
		s, err := start(r.name, cmd)
		if err != nil {
			return err
		}
		if blob == nil {
			if blob, err = setupDecrypt(ctx, s.url, size); err != nil {
				s.stop()
				return fmt.Errorf("setup: %w", err)
			}
		}
		c := sessionClient(s.url, r.id, r.key, r.token)
		in := &awskms.DecryptInput{CiphertextBlob: blob, EncryptionContext: benchContext}
		t := &target{s: s, call: func(ctx context.Context) error { _, err := c.Decrypt(ctx, in); return err }}
		if err = load(ctx, t.call, clients, warmup).err(); err != nil {
			err = fmt.Errorf("%s warm-up: %w", s.name, err)
		} else {
			err = t.slice(ctx, clients, d)
		}
		s.stop()
		if err != nil {
			return err
		}
		results = append(results, t.finish())
	}
	fmt.Printf("%-32s %9s %9s %9s %9s %14s\n", "credentials", "ops", "ops/s", "p50", "p99", "server CPU/op")
	for _, r := range results {
		fmt.Printf("%-32s %9d %9.0f %9s %9s %11.1f µs\n", r.name, r.ops, float64(r.ops)/r.elapsed.Seconds(),
			r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), r.cpu.Seconds()/float64(r.ops)*1e6)
	}
	var names []string
	byName := map[string]result{}
	for _, r := range results {
		names, byName[r.name] = append(names, r.name), r
	}
	printRaces(byName, names)
	st, se := results[0].cpu.Seconds()/float64(results[0].ops), results[1].cpu.Seconds()/float64(results[1].ops)
	fmt.Printf("\nsession / static CPU per Decrypt: %.2fx\n", se/st)
	return nil
}

// setupDecrypt creates a key, names it alias/bench-app, lets ServiceAccount
// bench/app decrypt with it, and returns a blob under it.
func setupDecrypt(ctx context.Context, url string, size int) ([]byte, error) {
	c := client(url, adminAKID, adminSecret, nil)
	k, err := c.CreateKey(ctx, &awskms.CreateKeyInput{Description: aws.String("bench app"),
		Tags: []types.Tag{{TagKey: aws.String(keypolicy.DecryptTag), TagValue: aws.String(benchNamespace + "/" + benchSA)}}})
	if err != nil {
		return nil, err
	}
	if _, err := c.CreateAlias(ctx, &awskms.CreateAliasInput{AliasName: aws.String("alias/bench-app"), TargetKeyId: k.KeyMetadata.KeyId}); err != nil {
		return nil, err
	}
	enc, err := c.Encrypt(ctx, &awskms.EncryptInput{KeyId: k.KeyMetadata.KeyId, Plaintext: make([]byte, size),
		EncryptionContext: benchContext})
	if err != nil {
		return nil, err
	}
	return enc.CiphertextBlob, nil
}

func sessionClient(url, id, key, token string) *awskms.Client {
	c := client(url, id, key, nil)
	return awskms.New(c.Options(), func(o *awskms.Options) {
		o.Credentials = credentials.NewStaticCredentialsProvider(id, key, token)
	})
}
