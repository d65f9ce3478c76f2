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

package kms

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"fmt"
	"testing"
)

var benchSizes = []int{64, 1024, 4096}

// BenchmarkReEncrypt measures the engine's ReEncrypt from one key to another:
// parse, key lookup, context canonicalisation, open, seal, fresh nonce. The
// same context map goes to both sides, as the controller sends it; the
// "distinct-contexts" case passes two equal but separate maps.
func BenchmarkReEncrypt(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) { benchReEncrypt(b, size, false) })
	}
	b.Run("1024B-distinct-contexts", func(b *testing.B) { benchReEncrypt(b, 1024, true) })
}

func benchReEncrypt(b *testing.B, size int, distinct bool) {
	ctx := context.Background()
	e, _ := newTestEngine(b, Options{})
	mustKey(b, e, "alias/src")
	mustKey(b, e, "alias/dst")
	ec := map[string]string{"app": "billing"}
	blob := mustEncrypt(b, e, "alias/src", make([]byte, size), ec)
	dstCtx := ec
	if distinct {
		dstCtx = map[string]string{"app": "billing"}
	}
	in := &ReEncryptInput{CiphertextBlob: blob, SourceKeyID: "alias/src", SourceEncryptionContext: ec,
		DestinationKeyID: "alias/dst", DestinationEncryptionContext: dstCtx}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.ReEncrypt(ctx, in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRawAESGCMOpenSeal is the baseline: AES-256-GCM open then seal of
// the same sizes with prebuilt AEADs and a random nonce — the cryptographic
// work ReEncrypt cannot avoid.
func BenchmarkRawAESGCMOpenSeal(b *testing.B) {
	newAEAD := func() cipher.AEAD {
		key := make([]byte, 32)
		_, _ = rand.Read(key)
		block, _ := aes.NewCipher(key)
		a, _ := cipher.NewGCM(block)
		return a
	}
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			src, dst := newAEAD(), newAEAD()
			aad := make([]byte, 42+12)
			nonce := make([]byte, 12)
			_, _ = rand.Read(nonce)
			sealed := src.Seal(nil, nonce, make([]byte, size), aad)
			pt := make([]byte, 0, size)
			out := make([]byte, 0, size+16)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				p, err := src.Open(pt[:0], nonce, sealed, aad)
				if err != nil {
					b.Fatal(err)
				}
				n := make([]byte, 12)
				_, _ = rand.Read(n)
				out = dst.Seal(out[:0], n, p, aad)
			}
		})
	}
}
