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

// Command workload is the application of the end-to-end test and of `make
// demo-workload`: a program that decrypts Secret values with the AWS SDK for
// Go v2 and nothing of rekey's. It is configured only by the SDK's default
// configuration (config.LoadDefaultConfig), that is by the standard
// environment variables of a Pod using the key service (docs/workloads.md):
// AWS_CONTAINER_CREDENTIALS_FULL_URI and AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE
// (its ServiceAccount token), AWS_ENDPOINT_URL_KMS, AWS_REGION,
// AWS_CA_BUNDLE, and SSL_CERT_FILE for the credentials endpoint's CA.
//
//	workload [-context k=v]... [-decrypt FILE]... [-denied FILE]... [-show FILE]...
//
// Each FILE holds one ciphertext blob, as a Secret volume mounts a value.
// -decrypt must decrypt, -denied must be refused with AccessDeniedException;
// -show decrypts and prints the plaintext (for a demo value only). It
// prints one line per file — never a plaintext but -show's — and exits 0
// only when every file went as expected.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/smithy-go"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	var decrypt, denied, show, kv list
	flag.Var(&decrypt, "decrypt", "a file whose blob must decrypt (repeatable)")
	flag.Var(&denied, "denied", "a file whose blob must be refused with AccessDeniedException (repeatable)")
	flag.Var(&show, "show", "a file whose blob must decrypt, its plaintext printed (repeatable; demo values only)")
	flag.Var(&kv, "context", "encryption context k=v (repeatable)")
	flag.Parse()
	ec := map[string]string{}
	for _, p := range kv {
		k, v, ok := strings.Cut(p, "=")
		if !ok {
			fmt.Fprintf(os.Stderr, "-context %q: want k=v\n", p)
			os.Exit(2)
		}
		ec[k] = v
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		fmt.Printf("FAIL loading the AWS SDK's default configuration: %v\n", err)
		os.Exit(1)
	}
	client := kms.NewFromConfig(cfg)
	if creds, err := cfg.Credentials.Retrieve(ctx); err != nil {
		fmt.Printf("FAIL getting credentials: %v\n", err)
		os.Exit(1)
	} else {
		fmt.Printf("credentials from %s, valid until %s\n", creds.Source, creds.Expires.UTC().Format(time.RFC3339))
	}

	ok := true
	run := func(file string, want string) {
		blob, err := os.ReadFile(file)
		if err != nil {
			fmt.Printf("FAIL %s: %v\n", file, err)
			ok = false
			return
		}
		out, err := client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob, EncryptionContext: ec})
		var ae smithy.APIError
		switch {
		case err == nil && want == "denied":
			fmt.Printf("FAIL %s: decrypted under %s, want AccessDeniedException\n", file, *out.KeyId)
			ok = false
		case err == nil && want == "show":
			fmt.Printf("DECRYPTED %s under %s: %q\n", file, *out.KeyId, out.Plaintext)
		case err == nil:
			fmt.Printf("DECRYPTED %s under %s: %d bytes\n", file, *out.KeyId, len(out.Plaintext))
		case want == "denied" && errors.As(err, &ae) && ae.ErrorCode() == "AccessDeniedException":
			fmt.Printf("DENIED %s: %s: %s\n", file, ae.ErrorCode(), ae.ErrorMessage())
		default:
			fmt.Printf("FAIL %s: %v\n", file, err)
			ok = false
		}
	}
	for _, f := range decrypt {
		run(f, "decrypt")
	}
	for _, f := range show {
		run(f, "show")
	}
	for _, f := range denied {
		run(f, "denied")
	}
	if !ok {
		os.Exit(1)
	}
	fmt.Println("OK")
}
