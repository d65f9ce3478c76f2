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

// BlobKey says which key and backing-key version a blob is under, read from
// its header alone: nothing is decrypted and the blob is not authenticated,
// so callers use it only to decide whether to call ReEncrypt.
type BlobKey struct {
	KeyARN        string
	KeyMaterialID string
	// Current is true when the version is the key's newest.
	Current bool
}

// InspectBlob reads a blob's header. A blob that does not parse is
// InvalidCiphertextException; one under a key or version this engine does not
// have is NotFoundException / InvalidCiphertextException.
func (e *Engine) InspectBlob(blob []byte) (BlobKey, error) {
	b, err := parseBlob(blob)
	if err != nil {
		return BlobKey{}, err
	}
	k := e.view.Load().keys[string(b.keyID)]
	if k == nil || e.expired(k) {
		return BlobKey{}, newError(CodeNotFound, "the key the ciphertext names, %s, does not exist", e.KeyARN(string(b.keyID)))
	}
	if int(b.version) > len(k.versions) {
		return BlobKey{}, newError(CodeInvalidCiphertext, "the ciphertext names a backing key that key %s does not have", k.arn)
	}
	m := k.versions[b.version-1]
	return BlobKey{KeyARN: k.arn, KeyMaterialID: m.materialID, Current: m == k.newest()}, nil
}

// VerifyBlob authenticates a blob under the encryption context it should
// have and says which key and version it is under, without returning the
// plaintext: the engine opens the blob into a scratch buffer and zeroes it.
// A caller that skips a blob because its header names a key uses this to
// make sure the header is not forged. Errors are the ones Decrypt returns
// (InvalidCiphertextException for a forged or altered blob or a wrong
// context, NotFoundException, DisabledException, ...).
func (e *Engine) VerifyBlob(blob []byte, encryptionContext map[string]string) (BlobKey, error) {
	aad, err := newAAD(encryptionContext)
	if err != nil {
		return BlobKey{}, err
	}
	defer aad.release()
	b, err := parseBlob(blob)
	if err != nil {
		return BlobKey{}, err
	}
	bufp := plaintextPool.Get().(*[]byte)
	pt, o, err := e.open((*bufp)[:0], e.view.Load(), b, nil, aad)
	clear(pt)
	plaintextPool.Put(bufp)
	if err != nil {
		return BlobKey{}, err
	}
	return BlobKey{KeyARN: o.key.arn, KeyMaterialID: o.mat.materialID, Current: o.mat == o.key.newest()}, nil
}
