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

package keystore

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// A wrapped keystore, format RKS2:
//
//	offset  size  field
//	0       4     "RKS2"
//	4       16    keystore id (random, made when the keystore is created)
//	20      8     generation, uint64 big-endian (1 when created, +1 every write)
//	28      2     n = length of the location, uint16 big-endian (at most 1024)
//	30      n     location, UTF-8: "k8s://NAMESPACE/NAME" or "file"
//	30+n    12    nonce (crypto/rand)
//	42+n    …     AES-256-GCM(state document) || 16-byte tag
//	AAD = bytes [0, 30+n)
//
// The header is in the clear, so a backup can be described before it is
// decrypted, and authenticated, so none of it can be changed without the
// root key. Every load checks it against what the reader expects: the
// location against the backend's own, the id and generation against the
// highest ones this process has seen and the record kept beside the
// keystore (see File and Secret).
var magic = []byte("RKS2")

// legacyMagic started keystores written before the header existed.
var legacyMagic = []byte("RKS1")

const (
	idSize         = 16
	nonceSize      = 12
	tagSize        = 16
	maxLocationLen = 1024
	fixedHeaderLen = 4 + idSize + 8 + 2
)

// LocationFile is the location a file keystore binds: files are identified
// by their keystore id and the record beside them, not by their path, so a
// keystore directory can move (see File).
const LocationFile = "file"

// Header is what a wrapped keystore says about itself. It is authenticated
// by the root key but not secret.
type Header struct {
	// ID is the keystore's identity: 32 hex digits made when it was created
	// (rekey keystore init) and kept by every write and restore.
	ID string
	// Generation counts the writes: 1 when created, +1 on every write.
	Generation uint64
	// Location is where the keystore may be loaded: "k8s://NAMESPACE/NAME"
	// for a Secret, "file" for a file.
	Location string
}

func (h Header) String() string {
	return fmt.Sprintf("keystore %s at %s, generation %d", h.ID, h.Location, h.Generation)
}

// Snapshot is a wrapped keystore that was decrypted and authenticated.
type Snapshot struct {
	Header
	// Doc is the engine's state document (empty for a new keystore).
	Doc []byte
	// Wrapped is the keystore as stored.
	Wrapped []byte
	// Digest is the SHA-256 of Wrapped, in hex: it tells two states of the
	// same generation apart.
	Digest string
}

// ErrWrongRootKey means the keystore exists but the root key does not open it
// (or it was altered). The keystore is never treated as empty in that case.
var ErrWrongRootKey = errors.New("keystore cannot be decrypted with this root key (wrong root key, or the keystore is corrupt)")

// ErrCorrupt means the keystore bytes are not a keystore at all.
var ErrCorrupt = errors.New("keystore is not in rekey's keystore format (corrupt or not a keystore)")

// ErrOldFormat means the keystore was written by a development version of
// rekey, before keystores carried their id, location and generation.
var ErrOldFormat = errors.New("keystore is in format RKS1, written by a development version of rekey without location and generation; " +
	"this rekey does not load it: create a new keystore (rekey keystore init) and new keys")

func newID() (string, error) {
	var b [idSize]byte
	if _, err := io.ReadFull(rand.Reader, b[:]); err != nil {
		return "", fmt.Errorf("reading randomness: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

func digest(wrapped []byte) string {
	sum := sha256.Sum256(wrapped)
	return hex.EncodeToString(sum[:])
}

// encodeHeader returns the authenticated header of a wrapped keystore.
func encodeHeader(h Header) ([]byte, error) {
	id, err := hex.DecodeString(h.ID)
	if err != nil || len(id) != idSize {
		return nil, fmt.Errorf("keystore id %q is not %d hex digits", h.ID, 2*idSize)
	}
	if len(h.Location) == 0 || len(h.Location) > maxLocationLen || !utf8.ValidString(h.Location) {
		return nil, fmt.Errorf("keystore location %q is empty, longer than %d bytes or not UTF-8", h.Location, maxLocationLen)
	}
	if h.Generation == 0 {
		return nil, errors.New("keystore generation 0 is not valid")
	}
	out := make([]byte, 0, fixedHeaderLen+len(h.Location))
	out = append(out, magic...)
	out = append(out, id...)
	out = binary.BigEndian.AppendUint64(out, h.Generation)
	out = binary.BigEndian.AppendUint16(out, uint16(len(h.Location)))
	return append(out, h.Location...), nil
}

// parseHeader reads the header of a wrapped keystore without authenticating
// it, and returns it with its length (the AAD).
func parseHeader(b []byte) (Header, int, error) {
	if len(b) >= len(legacyMagic) && bytes.Equal(b[:len(legacyMagic)], legacyMagic) {
		return Header{}, 0, ErrOldFormat
	}
	if len(b) < fixedHeaderLen || !bytes.Equal(b[:len(magic)], magic) {
		return Header{}, 0, ErrCorrupt
	}
	id := hex.EncodeToString(b[4 : 4+idSize])
	gen := binary.BigEndian.Uint64(b[4+idSize:])
	n := int(binary.BigEndian.Uint16(b[4+idSize+8:]))
	if n == 0 || n > maxLocationLen || len(b) < fixedHeaderLen+n+nonceSize+tagSize {
		return Header{}, 0, ErrCorrupt
	}
	loc := b[fixedHeaderLen : fixedHeaderLen+n]
	if gen == 0 || !utf8.Valid(loc) {
		return Header{}, 0, ErrCorrupt
	}
	return Header{ID: id, Generation: gen, Location: string(loc)}, fixedHeaderLen + n, nil
}

// wrap encrypts doc under the root key with h in the AAD.
func (k *RootKey) wrap(h Header, doc []byte) ([]byte, error) {
	hdr, err := encodeHeader(h)
	if err != nil {
		return nil, err
	}
	out := make([]byte, len(hdr)+nonceSize, len(hdr)+nonceSize+len(doc)+tagSize)
	copy(out, hdr)
	if _, err := io.ReadFull(rand.Reader, out[len(hdr):]); err != nil {
		return nil, fmt.Errorf("reading randomness: %w", err)
	}
	return k.aead.Seal(out, out[len(hdr):], doc, hdr), nil
}

// Open decrypts and authenticates a wrapped keystore (a keystore file, the
// data of a keystore Secret, or a backup). It checks nothing about where the
// keystore came from: the backends do that.
func (k *RootKey) Open(wrapped []byte) (*Snapshot, error) {
	h, n, err := parseHeader(wrapped)
	if err != nil {
		return nil, err
	}
	doc, err := k.aead.Open(nil, wrapped[n:n+nonceSize], wrapped[n+nonceSize:], wrapped[:n])
	if err != nil {
		return nil, ErrWrongRootKey
	}
	return &Snapshot{Header: h, Doc: doc, Wrapped: wrapped, Digest: digest(wrapped)}, nil
}
