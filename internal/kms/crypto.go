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
	"fmt"
	"io"
	"reflect"
	"sync"
)

// Plaintext limits, as AWS KMS has them.
const (
	maxPlaintext   = 4096
	maxDataKeySize = 1024
)

// takeEncryption picks the newest version of k for one encryption, reserving
// a new block of encryptions in the keystore when this process has used its
// own, and adding a new version (an AUTOMATIC rotation) before a version
// reaches RotateAfter encryptions.
func (e *Engine) takeEncryption(ctx context.Context, k *rkey) (*rkey, *keyMaterial, error) {
	for range 4 {
		m := k.newest()
		if m.take() {
			return k, m, nil
		}
		if err := e.reserve(ctx, k.rec.ID); err != nil {
			return nil, nil, err
		}
		nk := e.view.Load().keys[k.rec.ID]
		if nk == nil {
			return nil, nil, newError(CodeNotFound, "key %s does not exist", k.arn)
		}
		k = nk
	}
	return nil, nil, newError(CodeInternal, "could not reserve encryptions for key %s", k.arn)
}

// reserve persists a new block of encryptions for the key's newest version
// (or a new version when the newest is used up) and grants it to this process.
func (e *Engine) reserve(ctx context.Context, keyID string) error {
	var granted string
	err := e.mutate(ctx, func(d *stateDoc) error {
		rec := d.key(keyID)
		if rec == nil {
			return newError(CodeNotFound, "key %s does not exist", e.KeyARN(keyID))
		}
		cur := &rec.Versions[len(rec.Versions)-1]
		if cur.Reserved+e.block > e.rotateAfter {
			vr, err := e.newVersion(uint32(len(rec.Versions) + 1))
			if err != nil {
				return err
			}
			rec.Versions = append(rec.Versions, vr)
			rec.Rotations = append(rec.Rotations, rotationRecord{Date: vr.Created, Type: RotationTypeAutomatic, MaterialID: vr.MaterialID})
			cur = &rec.Versions[len(rec.Versions)-1]
		}
		cur.Reserved += e.block
		granted = cur.MaterialID
		return nil
	})
	if err != nil {
		return err
	}
	// mutate published the new view, so the material exists.
	e.writeMu.Lock()
	m := e.materials[granted]
	e.writeMu.Unlock()
	if m == nil {
		return newError(CodeInternal, "reserved key material %s vanished", granted)
	}
	m.grant(e.block)
	return nil
}

func (e *Engine) newVersion(n uint32) (versionRecord, error) {
	raw := make([]byte, 32)
	if _, err := io.ReadFull(e.rand, raw); err != nil {
		return versionRecord{}, fmt.Errorf("reading randomness: %w", err)
	}
	id, err := e.randomHex(32)
	if err != nil {
		return versionRecord{}, err
	}
	return versionRecord{Version: n, MaterialID: id, Created: e.now().UTC(), Material: raw}, nil
}

// aadPool holds scratch buffers for AAD: header || canonical(context).
var aadPool = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

// aadBuffer is a pooled AAD buffer whose first headerLen bytes are left for
// the blob header, followed by the canonical encryption context.
type aadBuffer struct {
	p   *[]byte
	aad []byte
}

func newAAD(ctx map[string]string) (aadBuffer, error) {
	p := aadPool.Get().(*[]byte)
	aad, err := AppendCanonicalContext(append((*p)[:0], make([]byte, headerLen)...), ctx)
	if err != nil {
		aadPool.Put(p)
		return aadBuffer{}, err
	}
	return aadBuffer{p: p, aad: aad}, nil
}

// with returns the AAD for a blob with this header.
func (a aadBuffer) with(header []byte) []byte {
	copy(a.aad[:headerLen], header)
	return a.aad
}

// clone copies the buffer (header room and context) into a pooled one.
func (a aadBuffer) clone() aadBuffer {
	p := aadPool.Get().(*[]byte)
	return aadBuffer{p: p, aad: append((*p)[:0], a.aad...)}
}

// SameContext reports whether a and b are the same map (not merely equal
// ones): ReEncrypt then canonicalises it once for both sides.
func SameContext(a, b map[string]string) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

func (a aadBuffer) release() {
	*a.p = a.aad[:0]
	aadPool.Put(a.p)
}

// seal encrypts plaintext under m, appending the blob to dst.
func (e *Engine) seal(dst []byte, k *rkey, m *keyMaterial, aad aadBuffer, plaintext []byte) ([]byte, error) {
	start := len(dst)
	dst = appendHeader(dst, k.rec.ID, m.version)
	hdrEnd := len(dst)
	dst = append(dst, make([]byte, nonceSize)...)
	nonce := dst[hdrEnd:]
	if _, err := io.ReadFull(e.rand, nonce); err != nil {
		return nil, fmt.Errorf("reading randomness: %w", err)
	}
	return m.aead.Seal(dst, nonce, plaintext, aad.with(dst[start:hdrEnd])), nil
}

// opened is a blob authenticated and decrypted.
type opened struct {
	key *rkey
	mat *keyMaterial
}

// open authenticates and decrypts a blob, appending the plaintext to dst.
// expect, when not nil, is the key the caller says the blob is under.
func (e *Engine) open(dst []byte, v *view, b rawBlob, expect *rkey, aad aadBuffer) ([]byte, opened, error) {
	var k *rkey
	if expect != nil && expect.rec.ID == string(b.keyID) {
		k = expect // the caller named the blob's own key: no lookup
	} else {
		k = v.keys[string(b.keyID)]
	}
	if k == nil || e.expired(k) {
		if expect != nil {
			return nil, opened{}, newError(CodeIncorrectKey, "the ciphertext was not encrypted under key %s", expect.arn)
		}
		return nil, opened{}, newError(CodeNotFound, "the key the ciphertext names, %s, does not exist", e.KeyARN(string(b.keyID)))
	}
	if expect != nil && expect != k {
		return nil, opened{}, newError(CodeIncorrectKey, "the ciphertext was not encrypted under key %s", expect.arn)
	}
	if err := e.usable(k); err != nil {
		return nil, opened{}, err
	}
	if int(b.version) > len(k.versions) {
		return nil, opened{}, newError(CodeInvalidCiphertext, "the ciphertext names a backing key that key %s does not have", k.arn)
	}
	m := k.versions[b.version-1]
	dst, err := m.aead.Open(dst, b.nonce, b.sealed, aad.with(b.header))
	if err != nil {
		return nil, opened{}, newError(CodeInvalidCiphertext, "the ciphertext failed authentication under key %s (wrong encryption context, or altered)", k.arn)
	}
	return dst, opened{key: k, mat: m}, nil
}

// prepareEncrypt runs the checks every encrypting operation shares (context,
// key, state, grant tokens, DryRun) and takes one encryption of the key's
// newest version. The caller releases the AAD buffer.
func (e *Engine) prepareEncrypt(ctx context.Context, keyID string, ec map[string]string, tokens []string, dryRun bool) (aadBuffer, *rkey, *keyMaterial, error) {
	aad, err := newAAD(ec)
	if err != nil {
		return aadBuffer{}, nil, nil, err
	}
	fail := func(err error) (aadBuffer, *rkey, *keyMaterial, error) {
		aad.release()
		return aadBuffer{}, nil, nil, err
	}
	v := e.view.Load()
	k, err := e.resolve(v, keyID)
	if err != nil {
		return fail(err)
	}
	if err := e.usable(k); err != nil {
		return fail(err)
	}
	if err := checkGrantTokens(v, tokens, k); err != nil {
		return fail(err)
	}
	if dryRun {
		return fail(newError(CodeDryRunOperation, "the request would have succeeded"))
	}
	k, m, err := e.takeEncryption(ctx, k)
	if err != nil {
		return fail(err)
	}
	return aad, k, m, nil
}

// Encrypt encrypts up to 4096 bytes under a key's newest backing version.
func (e *Engine) Encrypt(ctx context.Context, in *EncryptInput) (*EncryptOutput, error) {
	if len(in.Plaintext) == 0 || len(in.Plaintext) > maxPlaintext {
		return nil, newError(CodeValidation, "Plaintext must be 1 to %d bytes, got %d", maxPlaintext, len(in.Plaintext))
	}
	if err := checkAlgorithm("EncryptionAlgorithm", in.EncryptionAlgorithm); err != nil {
		return nil, err
	}
	aad, k, m, err := e.prepareEncrypt(ctx, in.KeyID, in.EncryptionContext, in.GrantTokens, in.DryRun)
	if err != nil {
		return nil, err
	}
	defer aad.release()
	blob, err := e.seal(make([]byte, 0, len(in.Plaintext)+BlobOverhead), k, m, aad, in.Plaintext)
	if err != nil {
		return nil, err
	}
	return &EncryptOutput{CiphertextBlob: blob, KeyID: k.arn, EncryptionAlgorithm: AlgorithmSymmetric}, nil
}

// Decrypt decrypts a blob. KeyId, when given, must be the blob's key.
func (e *Engine) Decrypt(_ context.Context, in *DecryptInput) (*DecryptOutput, error) {
	if err := checkAlgorithm("EncryptionAlgorithm", in.EncryptionAlgorithm); err != nil {
		return nil, err
	}
	aad, err := newAAD(in.EncryptionContext)
	if err != nil {
		return nil, err
	}
	defer aad.release()
	v := e.view.Load()
	var expect *rkey
	if in.KeyID != "" {
		if expect, err = e.resolve(v, in.KeyID); err != nil {
			return nil, err
		}
	}
	b, err := parseBlob(in.CiphertextBlob)
	if err != nil {
		return nil, err
	}
	pt, o, err := e.open(nil, v, b, expect, aad)
	if err != nil {
		return nil, err
	}
	if err := checkGrantTokens(v, in.GrantTokens, o.key); err != nil {
		clear(pt)
		return nil, err
	}
	if in.DryRun {
		clear(pt)
		return nil, newError(CodeDryRunOperation, "the request would have succeeded")
	}
	return &DecryptOutput{KeyID: o.key.arn, Plaintext: pt, EncryptionAlgorithm: AlgorithmSymmetric, KeyMaterialID: o.mat.materialID}, nil
}

// plaintextPool holds scratch buffers for ReEncrypt's plaintext, which is
// zeroed before it goes back.
var plaintextPool = sync.Pool{New: func() any { b := make([]byte, 0, maxPlaintext+tagSize); return &b }}

// ReEncrypt decrypts a blob and encrypts it again under the destination key
// (the newest backing version of it), inside the engine. SourceKeyId is
// optional; when given it must be the blob's key (IncorrectKeyException).
// The response names the source key the blob was under, which callers check.
func (e *Engine) ReEncrypt(ctx context.Context, in *ReEncryptInput) (*ReEncryptOutput, error) {
	if err := checkAlgorithm("SourceEncryptionAlgorithm", in.SourceEncryptionAlgorithm); err != nil {
		return nil, err
	}
	if err := checkAlgorithm("DestinationEncryptionAlgorithm", in.DestinationEncryptionAlgorithm); err != nil {
		return nil, err
	}
	srcAAD, err := newAAD(in.SourceEncryptionContext)
	if err != nil {
		return nil, err
	}
	var dstAAD aadBuffer
	if SameContext(in.SourceEncryptionContext, in.DestinationEncryptionContext) {
		// One context for both sides (what a rotation usually sends):
		// canonicalise it once.
		dstAAD = srcAAD.clone()
	} else if dstAAD, err = newAAD(in.DestinationEncryptionContext); err != nil {
		srcAAD.release()
		return nil, err
	}
	pp := plaintextPool.Get().(*[]byte)
	var pt []byte
	defer func() {
		clear(pt) // the plaintext never outlives the call
		plaintextPool.Put(pp)
		srcAAD.release()
		dstAAD.release()
	}()
	v := e.view.Load()
	var expect *rkey
	if in.SourceKeyID != "" {
		if expect, err = e.resolve(v, in.SourceKeyID); err != nil {
			return nil, err
		}
	}
	b, err := parseBlob(in.CiphertextBlob)
	if err != nil {
		return nil, err
	}
	dk, err := e.resolve(v, in.DestinationKeyID)
	if err != nil {
		return nil, err
	}
	pt, src, err := e.open((*pp)[:0], v, b, expect, srcAAD)
	if err != nil {
		return nil, err
	}
	*pp = pt[:0]
	if err := e.usable(dk); err != nil {
		return nil, err
	}
	if err := checkGrantTokens(v, in.GrantTokens, src.key, dk); err != nil {
		return nil, err
	}
	if in.DryRun {
		return nil, newError(CodeDryRunOperation, "the request would have succeeded")
	}
	dk, dm, err := e.takeEncryption(ctx, dk)
	if err != nil {
		return nil, err
	}
	blob, err := e.seal(make([]byte, 0, len(pt)+BlobOverhead), dk, dm, dstAAD, pt)
	if err != nil {
		return nil, err
	}
	return &ReEncryptOutput{
		CiphertextBlob:                 blob,
		KeyID:                          dk.arn,
		SourceKeyID:                    src.key.arn,
		SourceEncryptionAlgorithm:      AlgorithmSymmetric,
		DestinationEncryptionAlgorithm: AlgorithmSymmetric,
		SourceKeyMaterialID:            src.mat.materialID,
		DestinationKeyMaterialID:       dm.materialID,
	}, nil
}

// GenerateDataKey returns a fresh data key in plaintext and encrypted.
func (e *Engine) GenerateDataKey(ctx context.Context, in *GenerateDataKeyInput) (*GenerateDataKeyOutput, error) {
	return e.generateDataKey(ctx, in, true)
}

// GenerateDataKeyWithoutPlaintext returns a fresh data key, encrypted only.
func (e *Engine) GenerateDataKeyWithoutPlaintext(ctx context.Context, in *GenerateDataKeyInput) (*GenerateDataKeyOutput, error) {
	return e.generateDataKey(ctx, in, false)
}

func (e *Engine) generateDataKey(ctx context.Context, in *GenerateDataKeyInput, withPlaintext bool) (*GenerateDataKeyOutput, error) {
	var n int
	switch {
	case in.KeySpec != "" && in.NumberOfBytes != nil:
		return nil, newError(CodeValidation, "give KeySpec or NumberOfBytes, not both")
	case in.KeySpec == "AES_256":
		n = 32
	case in.KeySpec == "AES_128":
		n = 16
	case in.KeySpec != "":
		return nil, newError(CodeValidation, "KeySpec %q is not AES_256 or AES_128", in.KeySpec)
	case in.NumberOfBytes != nil:
		n = int(*in.NumberOfBytes)
		if n < 1 || n > maxDataKeySize {
			return nil, newError(CodeValidation, "NumberOfBytes must be 1 to %d, got %d", maxDataKeySize, n)
		}
	default:
		return nil, newError(CodeValidation, "KeySpec or NumberOfBytes is required")
	}
	aad, k, m, err := e.prepareEncrypt(ctx, in.KeyID, in.EncryptionContext, in.GrantTokens, in.DryRun)
	if err != nil {
		return nil, err
	}
	defer aad.release()
	pt := make([]byte, n)
	if _, err := io.ReadFull(e.rand, pt); err != nil {
		return nil, fmt.Errorf("reading randomness: %w", err)
	}
	blob, err := e.seal(make([]byte, 0, n+BlobOverhead), k, m, aad, pt)
	if err != nil {
		return nil, err
	}
	out := &GenerateDataKeyOutput{CiphertextBlob: blob, KeyID: k.arn, KeyMaterialID: m.materialID}
	if withPlaintext {
		out.Plaintext = pt
	} else {
		clear(pt)
	}
	return out, nil
}
