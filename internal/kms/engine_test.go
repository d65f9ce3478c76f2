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
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is an injected clock tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newTestEngine(t testing.TB, o Options) (*Engine, *fakeClock) {
	t.Helper()
	clk := &fakeClock{now: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
	if o.Now == nil {
		o.Now = clk.Now
	}
	e, err := New(context.Background(), o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return e, clk
}

func mustKey(t testing.TB, e *Engine, alias string) *KeyMetadata {
	t.Helper()
	ctx := context.Background()
	out, err := e.CreateKey(ctx, &CreateKeyInput{Description: alias})
	if err != nil {
		t.Fatalf("CreateKey: %v", err)
	}
	if alias != "" {
		if _, err := e.CreateAlias(ctx, &CreateAliasInput{AliasName: alias, TargetKeyID: out.KeyMetadata.KeyID}); err != nil {
			t.Fatalf("CreateAlias: %v", err)
		}
	}
	return out.KeyMetadata
}

func mustEncrypt(t testing.TB, e *Engine, key string, pt []byte, ctx map[string]string) []byte {
	t.Helper()
	out, err := e.Encrypt(context.Background(), &EncryptInput{KeyID: key, Plaintext: pt, EncryptionContext: ctx})
	if err != nil {
		t.Fatalf("Encrypt: %v", err)
	}
	return out.CiphertextBlob
}

func wantCode(t *testing.T, err error, code ErrorCode) {
	t.Helper()
	if err == nil {
		t.Fatalf("want %s, got success", code)
	}
	if got := CodeOf(err); got != code {
		t.Fatalf("want %s, got %v", code, err)
	}
}

func TestEncryptDecryptRoundTrip(t *testing.T) {
	e, _ := newTestEngine(t, Options{})
	ctx := context.Background()
	k := mustKey(t, e, "alias/app")
	pt := []byte("correct horse battery staple")
	ec := map[string]string{"app": "billing", "secret": "db"}
	// Every form of key id works.
	for _, id := range []string{k.KeyID, k.Arn, "alias/app", "arn:aws:kms:local:000000000000:alias/app"} {
		blob := mustEncrypt(t, e, id, pt, ec)
		out, err := e.Decrypt(ctx, &DecryptInput{CiphertextBlob: blob, EncryptionContext: ec})
		if err != nil {
			t.Fatalf("Decrypt (key named %s): %v", id, err)
		}
		if !bytes.Equal(out.Plaintext, pt) || out.KeyID != k.Arn || out.KeyMaterialID != k.CurrentKeyMaterialID {
			t.Fatalf("Decrypt (key named %s): got key %s material %s", id, out.KeyID, out.KeyMaterialID)
		}
		if bytes.Contains(blob, pt) {
			t.Fatal("blob holds the plaintext")
		}
	}
}

func TestReEncryptAcrossKeys(t *testing.T) {
	e, _ := newTestEngine(t, Options{})
	ctx := context.Background()
	src := mustKey(t, e, "alias/old")
	dst := mustKey(t, e, "alias/new")
	pt := []byte("s3cret")
	srcCtx := map[string]string{"app": "billing"}
	dstCtx := map[string]string{"app": "billing", "ns": "prod"}
	blob := mustEncrypt(t, e, "alias/old", pt, srcCtx)

	out, err := e.ReEncrypt(ctx, &ReEncryptInput{
		CiphertextBlob: blob, SourceKeyID: "alias/old", SourceEncryptionContext: srcCtx,
		DestinationKeyID: "alias/new", DestinationEncryptionContext: dstCtx,
	})
	if err != nil {
		t.Fatalf("ReEncrypt: %v", err)
	}
	if out.KeyID != dst.Arn || out.SourceKeyID != src.Arn {
		t.Fatalf("ReEncrypt named KeyId %s SourceKeyId %s, want %s and %s", out.KeyID, out.SourceKeyID, dst.Arn, src.Arn)
	}
	if out.SourceKeyMaterialID != src.CurrentKeyMaterialID || out.DestinationKeyMaterialID != dst.CurrentKeyMaterialID {
		t.Fatalf("key material ids: got %s -> %s", out.SourceKeyMaterialID, out.DestinationKeyMaterialID)
	}
	if out.SourceEncryptionAlgorithm != AlgorithmSymmetric || out.DestinationEncryptionAlgorithm != AlgorithmSymmetric {
		t.Fatalf("algorithms: %s, %s", out.SourceEncryptionAlgorithm, out.DestinationEncryptionAlgorithm)
	}
	b, err := ParseBlob(out.CiphertextBlob)
	if err != nil || b.KeyID != dst.KeyID || b.Version != 1 {
		t.Fatalf("new blob header: %+v, %v", b, err)
	}
	dec, err := e.Decrypt(ctx, &DecryptInput{CiphertextBlob: out.CiphertextBlob, EncryptionContext: dstCtx})
	if err != nil || !bytes.Equal(dec.Plaintext, pt) {
		t.Fatalf("Decrypt after ReEncrypt: %v", err)
	}
	// The source context no longer opens the new blob.
	_, err = e.Decrypt(ctx, &DecryptInput{CiphertextBlob: out.CiphertextBlob, EncryptionContext: srcCtx})
	wantCode(t, err, CodeInvalidCiphertext)

	// Without SourceKeyId the blob's own key is used and reported.
	out2, err := e.ReEncrypt(ctx, &ReEncryptInput{CiphertextBlob: blob, SourceEncryptionContext: srcCtx, DestinationKeyID: dst.KeyID})
	if err != nil || out2.SourceKeyID != src.Arn {
		t.Fatalf("ReEncrypt without SourceKeyId: %v, %+v", err, out2)
	}
}

func TestReEncryptSameKeyMovesToNewestVersion(t *testing.T) {
	e, _ := newTestEngine(t, Options{})
	ctx := context.Background()
	k := mustKey(t, e, "alias/k")
	blob := mustEncrypt(t, e, "alias/k", []byte("v1 secret"), nil)
	if _, err := e.RotateKeyOnDemand(ctx, &KeyIDInput{KeyID: "alias/k"}); err != nil {
		t.Fatalf("RotateKeyOnDemand: %v", err)
	}
	d, _ := e.DescribeKey(ctx, &DescribeKeyInput{KeyID: k.KeyID})
	if d.KeyMetadata.CurrentKeyMaterialID == k.CurrentKeyMaterialID {
		t.Fatal("rotation did not change the current key material")
	}
	out, err := e.ReEncrypt(ctx, &ReEncryptInput{CiphertextBlob: blob, SourceKeyID: k.Arn, DestinationKeyID: k.Arn})
	if err != nil {
		t.Fatalf("ReEncrypt: %v", err)
	}
	if out.SourceKeyMaterialID != k.CurrentKeyMaterialID || out.DestinationKeyMaterialID != d.KeyMetadata.CurrentKeyMaterialID {
		t.Fatalf("material ids %s -> %s", out.SourceKeyMaterialID, out.DestinationKeyMaterialID)
	}
	b, _ := ParseBlob(out.CiphertextBlob)
	if b.Version != 2 {
		t.Fatalf("blob version: got %d, want 2", b.Version)
	}
	// The old blob still decrypts: rotation never removes a version.
	if _, err := e.Decrypt(ctx, &DecryptInput{CiphertextBlob: blob}); err != nil {
		t.Fatalf("old blob after rotation: %v", err)
	}
	rots, err := e.ListKeyRotations(ctx, &ListKeyRotationsInput{KeyID: "alias/k"})
	if err != nil || len(rots.Rotations) != 1 || rots.Rotations[0].RotationType != RotationTypeOnDemand ||
		rots.Rotations[0].KeyMaterialID != d.KeyMetadata.CurrentKeyMaterialID {
		t.Fatalf("ListKeyRotations: %v %+v", err, rots)
	}
}

func TestReEncryptErrors(t *testing.T) {
	ctx := context.Background()
	e, _ := newTestEngine(t, Options{})
	mustKey(t, e, "alias/src")
	mustKey(t, e, "alias/dst")
	other := mustKey(t, e, "alias/other")
	blob := mustEncrypt(t, e, "alias/src", []byte("x"), map[string]string{"a": "b"})
	good := func() *ReEncryptInput {
		return &ReEncryptInput{CiphertextBlob: blob, SourceKeyID: "alias/src", SourceEncryptionContext: map[string]string{"a": "b"}, DestinationKeyID: "alias/dst"}
	}
	cases := []struct {
		name   string
		mutate func(in *ReEncryptInput)
		code   ErrorCode
	}{
		{"wrong SourceKeyId", func(in *ReEncryptInput) { in.SourceKeyID = other.Arn }, CodeIncorrectKey},
		{"unknown SourceKeyId", func(in *ReEncryptInput) { in.SourceKeyID = "alias/nope" }, CodeNotFound},
		{"unknown destination", func(in *ReEncryptInput) { in.DestinationKeyID = "alias/nope" }, CodeNotFound},
		{"missing destination", func(in *ReEncryptInput) { in.DestinationKeyID = "" }, CodeValidation},
		{"destination in another account", func(in *ReEncryptInput) {
			in.DestinationKeyID = "arn:aws:kms:local:111111111111:key/" + other.KeyID
		}, CodeNotFound},
		{"wrong context", func(in *ReEncryptInput) { in.SourceEncryptionContext = map[string]string{"a": "c"} }, CodeInvalidCiphertext},
		{"missing context", func(in *ReEncryptInput) { in.SourceEncryptionContext = nil }, CodeInvalidCiphertext},
		{"extra context", func(in *ReEncryptInput) { in.SourceEncryptionContext = map[string]string{"a": "b", "c": "d"} }, CodeInvalidCiphertext},
		{"truncated", func(in *ReEncryptInput) { in.CiphertextBlob = blob[:len(blob)-1] }, CodeInvalidCiphertext},
		{"empty blob", func(in *ReEncryptInput) { in.CiphertextBlob = nil }, CodeInvalidCiphertext},
		{"bad algorithm", func(in *ReEncryptInput) { in.DestinationEncryptionAlgorithm = "RSAES_OAEP_SHA_256" }, CodeValidation},
		{"unknown grant token", func(in *ReEncryptInput) { in.GrantTokens = []string{"nope"} }, CodeInvalidGrantToken},
		{"too many grant tokens", func(in *ReEncryptInput) { in.GrantTokens = make([]string, 11) }, CodeValidation},
		{"dry run", func(in *ReEncryptInput) { in.DryRun = true }, CodeDryRunOperation},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := good()
			tc.mutate(in)
			out, err := e.ReEncrypt(ctx, in)
			wantCode(t, err, tc.code)
			if out != nil {
				t.Fatal("a failed ReEncrypt returned output")
			}
		})
	}
	if _, err := e.ReEncrypt(ctx, good()); err != nil {
		t.Fatalf("the unmodified request must succeed: %v", err)
	}
}

func TestKeyStatesGateCrypto(t *testing.T) {
	ctx := context.Background()
	e, clk := newTestEngine(t, Options{})
	src := mustKey(t, e, "alias/src")
	mustKey(t, e, "alias/dst")
	blob := mustEncrypt(t, e, "alias/src", []byte("x"), nil)
	reenc := func() error {
		_, err := e.ReEncrypt(ctx, &ReEncryptInput{CiphertextBlob: blob, DestinationKeyID: "alias/dst"})
		return err
	}

	// A blob reused after its key is disabled.
	if _, err := e.DisableKey(ctx, &KeyIDInput{KeyID: "alias/src"}); err != nil {
		t.Fatal(err)
	}
	wantCode(t, reenc(), CodeDisabled)
	_, err := e.Decrypt(ctx, &DecryptInput{CiphertextBlob: blob})
	wantCode(t, err, CodeDisabled)
	_, err = e.Encrypt(ctx, &EncryptInput{KeyID: "alias/src", Plaintext: []byte("y")})
	wantCode(t, err, CodeDisabled)
	_, err = e.RotateKeyOnDemand(ctx, &KeyIDInput{KeyID: "alias/src"})
	wantCode(t, err, CodeDisabled)
	if _, err := e.EnableKey(ctx, &KeyIDInput{KeyID: src.Arn}); err != nil {
		t.Fatal(err)
	}
	if err := reenc(); err != nil {
		t.Fatalf("after EnableKey: %v", err)
	}

	// Disabled destination.
	if _, err := e.DisableKey(ctx, &KeyIDInput{KeyID: "alias/dst"}); err != nil {
		t.Fatal(err)
	}
	wantCode(t, reenc(), CodeDisabled)
	if _, err := e.EnableKey(ctx, &KeyIDInput{KeyID: "alias/dst"}); err != nil {
		t.Fatal(err)
	}

	// Pending deletion: a 7–30 day window, cancellable, then gone.
	for _, days := range []int32{6, 31} {
		_, err := e.ScheduleKeyDeletion(ctx, &ScheduleKeyDeletionInput{KeyID: "alias/src", PendingWindowInDays: &days})
		wantCode(t, err, CodeValidation)
	}
	days := int32(7)
	sched, err := e.ScheduleKeyDeletion(ctx, &ScheduleKeyDeletionInput{KeyID: "alias/src", PendingWindowInDays: &days})
	if err != nil || sched.KeyState != KeyStatePendingDeletion || !sched.DeletionDate.Equal(clk.Now().Add(7*24*time.Hour)) {
		t.Fatalf("ScheduleKeyDeletion: %v %+v", err, sched)
	}
	wantCode(t, reenc(), CodeInvalidState)
	_, err = e.EnableKey(ctx, &KeyIDInput{KeyID: "alias/src"})
	wantCode(t, err, CodeInvalidState)
	if _, err := e.CancelKeyDeletion(ctx, &KeyIDInput{KeyID: "alias/src"}); err != nil {
		t.Fatal(err)
	}
	d, _ := e.DescribeKey(ctx, &DescribeKeyInput{KeyID: "alias/src"})
	if d.KeyMetadata.KeyState != KeyStateDisabled || d.KeyMetadata.DeletionDate != nil {
		t.Fatalf("after CancelKeyDeletion: %+v", d.KeyMetadata)
	}
	_, err = e.CancelKeyDeletion(ctx, &KeyIDInput{KeyID: "alias/src"})
	wantCode(t, err, CodeInvalidState)

	if _, err := e.ScheduleKeyDeletion(ctx, &ScheduleKeyDeletionInput{KeyID: "alias/src", PendingWindowInDays: &days}); err != nil {
		t.Fatal(err)
	}
	clk.Add(7*24*time.Hour - time.Second)
	if _, err := e.DescribeKey(ctx, &DescribeKeyInput{KeyID: src.KeyID}); err != nil {
		t.Fatalf("key gone before its deletion date: %v", err)
	}
	clk.Add(time.Second)
	_, err = e.DescribeKey(ctx, &DescribeKeyInput{KeyID: src.KeyID})
	wantCode(t, err, CodeNotFound)
	wantCode(t, reenc(), CodeNotFound)
	// The next write purges it for good, with its alias.
	mustKey(t, e, "")
	aliases, _ := e.ListAliases(ctx, &ListAliasesInput{})
	for _, a := range aliases.Aliases {
		if a.AliasName == "alias/src" {
			t.Fatal("alias of a deleted key survived")
		}
	}
}

func TestAliases(t *testing.T) {
	ctx := context.Background()
	e, _ := newTestEngine(t, Options{})
	a := mustKey(t, e, "alias/a")
	b := mustKey(t, e, "")
	_, err := e.CreateAlias(ctx, &CreateAliasInput{AliasName: "alias/a", TargetKeyID: b.KeyID})
	wantCode(t, err, CodeAlreadyExists)
	for _, bad := range []string{"a", "alias/", "alias/aws/x", "alias/sp ace", "alias/" + strings.Repeat("x", 251)} {
		_, err := e.CreateAlias(ctx, &CreateAliasInput{AliasName: bad, TargetKeyID: b.KeyID})
		wantCode(t, err, CodeInvalidAliasName)
	}
	_, err = e.CreateAlias(ctx, &CreateAliasInput{AliasName: "alias/c", TargetKeyID: "alias/a"})
	wantCode(t, err, CodeValidation)
	_, err = e.UpdateAlias(ctx, &UpdateAliasInput{AliasName: "alias/missing", TargetKeyID: b.KeyID})
	wantCode(t, err, CodeNotFound)

	if _, err := e.UpdateAlias(ctx, &UpdateAliasInput{AliasName: "alias/a", TargetKeyID: b.Arn}); err != nil {
		t.Fatal(err)
	}
	d, _ := e.DescribeKey(ctx, &DescribeKeyInput{KeyID: "alias/a"})
	if d.KeyMetadata.KeyID != b.KeyID {
		t.Fatalf("alias/a points at %s, want %s (was %s)", d.KeyMetadata.KeyID, b.KeyID, a.KeyID)
	}
	ls, _ := e.ListAliases(ctx, &ListAliasesInput{KeyID: b.KeyID})
	if len(ls.Aliases) != 1 || ls.Aliases[0].AliasArn != "arn:aws:kms:local:000000000000:alias/a" {
		t.Fatalf("ListAliases: %+v", ls)
	}
	if _, err := e.DeleteAlias(ctx, &DeleteAliasInput{AliasName: "alias/a"}); err != nil {
		t.Fatal(err)
	}
	_, err = e.DescribeKey(ctx, &DescribeKeyInput{KeyID: "alias/a"})
	wantCode(t, err, CodeNotFound)
}

func TestListKeysPages(t *testing.T) {
	ctx := context.Background()
	e, _ := newTestEngine(t, Options{})
	want := map[string]bool{}
	for range 5 {
		want[mustKey(t, e, "").KeyID] = true
	}
	limit := int32(2)
	var marker string
	got := map[string]bool{}
	for pages := 0; ; pages++ {
		out, err := e.ListKeys(ctx, &ListKeysInput{Limit: &limit, Marker: marker})
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range out.Keys {
			got[k.KeyID] = true
		}
		if !out.Truncated {
			break
		}
		if pages > 5 {
			t.Fatal("ListKeys never ends")
		}
		marker = out.NextMarker
	}
	if len(got) != len(want) {
		t.Fatalf("ListKeys returned %d keys, want %d", len(got), len(want))
	}
	_, err := e.ListKeys(ctx, &ListKeysInput{Marker: "garbage"})
	wantCode(t, err, CodeInvalidMarker)
	bad := int32(0)
	_, err = e.ListKeys(ctx, &ListKeysInput{Limit: &bad})
	wantCode(t, err, CodeValidation)
}

func TestGrantTokens(t *testing.T) {
	ctx := context.Background()
	e, _ := newTestEngine(t, Options{})
	src := mustKey(t, e, "alias/src")
	mustKey(t, e, "alias/dst")
	other := mustKey(t, e, "alias/other")
	_, err := e.CreateGrant(ctx, &CreateGrantInput{KeyID: src.KeyID, GranteePrincipal: "rekey", Operations: []string{"Sign"}})
	wantCode(t, err, CodeValidation)
	g, err := e.CreateGrant(ctx, &CreateGrantInput{KeyID: src.KeyID, GranteePrincipal: "rekey", Operations: []string{"ReEncryptFrom"}, Name: "rotation"})
	if err != nil {
		t.Fatal(err)
	}
	og, err := e.CreateGrant(ctx, &CreateGrantInput{KeyID: other.KeyID, GranteePrincipal: "rekey", Operations: []string{"ReEncryptFrom"}})
	if err != nil {
		t.Fatal(err)
	}
	blob := mustEncrypt(t, e, "alias/src", []byte("x"), nil)
	re := func(tokens ...string) error {
		_, err := e.ReEncrypt(ctx, &ReEncryptInput{CiphertextBlob: blob, DestinationKeyID: "alias/dst", GrantTokens: tokens})
		return err
	}
	if err := re(g.GrantToken); err != nil {
		t.Fatalf("ReEncrypt with a live grant token: %v", err)
	}
	wantCode(t, re(og.GrantToken), CodeInvalidGrantToken)
	ls, err := e.ListGrants(ctx, &ListGrantsInput{KeyID: "alias/src"})
	if err != nil || len(ls.Grants) != 1 || ls.Grants[0].GrantID != g.GrantID || ls.Grants[0].Name != "rotation" {
		t.Fatalf("ListGrants: %v %+v", err, ls)
	}
	if _, err := e.RetireGrant(ctx, &RetireGrantInput{GrantToken: g.GrantToken}); err != nil {
		t.Fatal(err)
	}
	wantCode(t, re(g.GrantToken), CodeInvalidGrantToken)
	_, err = e.RetireGrant(ctx, &RetireGrantInput{GrantToken: g.GrantToken})
	wantCode(t, err, CodeInvalidGrantToken)
	if _, err := e.RetireGrant(ctx, &RetireGrantInput{KeyID: other.Arn, GrantID: og.GrantID}); err != nil {
		t.Fatal(err)
	}
}

func TestOnDemandRotationLimit(t *testing.T) {
	ctx := context.Background()
	e, _ := newTestEngine(t, Options{MaxOnDemandRotations: 2})
	mustKey(t, e, "alias/k")
	for range 2 {
		if _, err := e.RotateKeyOnDemand(ctx, &KeyIDInput{KeyID: "alias/k"}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := e.RotateKeyOnDemand(ctx, &KeyIDInput{KeyID: "alias/k"})
	wantCode(t, err, CodeLimitExceeded)
	if ClassOfError(err) != ClassRetry {
		t.Fatalf("LimitExceeded class: %v", ClassOfError(err))
	}
}

// TestEncryptionCountRotatesKey proves a version never performs more than
// RotateAfter encryptions: the engine adds a version first.
func TestEncryptionCountRotatesKey(t *testing.T) {
	ctx := context.Background()
	e, _ := newTestEngine(t, Options{ReservationBlock: 4, RotateAfter: 8})
	k := mustKey(t, e, "alias/k")
	versions := map[uint32]int{}
	for range 20 {
		b, err := ParseBlob(mustEncrypt(t, e, k.KeyID, []byte("x"), nil))
		if err != nil {
			t.Fatal(err)
		}
		versions[b.Version]++
	}
	if versions[1] != 8 || versions[2] != 8 || versions[3] != 4 {
		t.Fatalf("encryptions per version: %v, want 8, 8, 4", versions)
	}
	rots, _ := e.ListKeyRotations(ctx, &ListKeyRotationsInput{KeyID: k.KeyID})
	if len(rots.Rotations) != 2 || rots.Rotations[0].RotationType != RotationTypeAutomatic {
		t.Fatalf("automatic rotations: %+v", rots.Rotations)
	}
}

func TestValidation(t *testing.T) {
	ctx := context.Background()
	e, _ := newTestEngine(t, Options{})
	mustKey(t, e, "alias/k")
	_, err := e.Encrypt(ctx, &EncryptInput{KeyID: "alias/k", Plaintext: make([]byte, 4097)})
	wantCode(t, err, CodeValidation)
	_, err = e.Encrypt(ctx, &EncryptInput{KeyID: "alias/k"})
	wantCode(t, err, CodeValidation)
	_, err = e.Encrypt(ctx, &EncryptInput{KeyID: "alias/k", Plaintext: []byte("x"), EncryptionContext: map[string]string{"": "v"}})
	wantCode(t, err, CodeValidation)
	_, err = e.Encrypt(ctx, &EncryptInput{KeyID: "alias/k", Plaintext: []byte("x"), EncryptionContext: map[string]string{"k": "\xff"}})
	wantCode(t, err, CodeValidation)
	_, err = e.Encrypt(ctx, &EncryptInput{KeyID: "alias/k", Plaintext: []byte("x"), DryRun: true})
	wantCode(t, err, CodeDryRunOperation)
	_, err = e.CreateKey(ctx, &CreateKeyInput{KeySpec: "RSA_2048"})
	wantCode(t, err, CodeUnsupportedOp)
	_, err = e.GenerateDataKey(ctx, &GenerateDataKeyInput{KeyID: "alias/k"})
	wantCode(t, err, CodeValidation)
	n := int32(2000)
	_, err = e.GenerateDataKey(ctx, &GenerateDataKeyInput{KeyID: "alias/k", NumberOfBytes: &n})
	wantCode(t, err, CodeValidation)
	_, err = e.Encrypt(ctx, &EncryptInput{KeyID: "arn:aws:s3:::bucket", Plaintext: []byte("x")})
	wantCode(t, err, CodeNotFound)
}

func TestGenerateDataKey(t *testing.T) {
	ctx := context.Background()
	e, _ := newTestEngine(t, Options{})
	mustKey(t, e, "alias/k")
	ec := map[string]string{"purpose": "dek"}
	out, err := e.GenerateDataKey(ctx, &GenerateDataKeyInput{KeyID: "alias/k", KeySpec: "AES_256", EncryptionContext: ec})
	if err != nil || len(out.Plaintext) != 32 {
		t.Fatalf("GenerateDataKey: %v", err)
	}
	dec, err := e.Decrypt(ctx, &DecryptInput{CiphertextBlob: out.CiphertextBlob, EncryptionContext: ec})
	if err != nil || !bytes.Equal(dec.Plaintext, out.Plaintext) {
		t.Fatalf("data key does not decrypt to itself: %v", err)
	}
	wo, err := e.GenerateDataKeyWithoutPlaintext(ctx, &GenerateDataKeyInput{KeyID: "alias/k", KeySpec: "AES_128"})
	if err != nil || wo.Plaintext != nil {
		t.Fatalf("GenerateDataKeyWithoutPlaintext: %v, plaintext returned: %v", err, wo.Plaintext != nil)
	}
	dec, err = e.Decrypt(ctx, &DecryptInput{CiphertextBlob: wo.CiphertextBlob})
	if err != nil || len(dec.Plaintext) != 16 {
		t.Fatalf("Decrypt of data key: %v", err)
	}
}

func TestDecryptWithWrongKeyID(t *testing.T) {
	ctx := context.Background()
	e, _ := newTestEngine(t, Options{})
	mustKey(t, e, "alias/a")
	mustKey(t, e, "alias/b")
	blob := mustEncrypt(t, e, "alias/a", []byte("x"), nil)
	_, err := e.Decrypt(ctx, &DecryptInput{CiphertextBlob: blob, KeyID: "alias/b"})
	wantCode(t, err, CodeIncorrectKey)
	if !errors.Is(err, ErrIncorrectKey) || errors.Is(err, ErrNotFound) {
		t.Fatal("errors.Is does not follow the code")
	}
}

func TestErrorClasses(t *testing.T) {
	cases := map[ErrorCode]Class{
		CodeThrottling: ClassRetry, CodeInternal: ClassRetry, CodeKeyUnavailable: ClassRetry, CodeDependencyTimeout: ClassRetry,
		CodeIncorrectKey: ClassFailBlob, CodeInvalidCiphertext: ClassFailBlob, CodeInvalidGrantToken: ClassFailBlob,
		CodeDisabled: ClassStopRun, CodeInvalidState: ClassStopRun, CodeNotFound: ClassStopRun, CodeAccessDenied: ClassStopRun,
	}
	for code, want := range cases {
		if got := (&Error{Code: code}).Class(); got != want {
			t.Errorf("%s: class %v, want %v", code, got, want)
		}
	}
}

// TestNothingSecretPrints proves key material never reaches a formatted string.
func TestNothingSecretPrints(t *testing.T) {
	raw := bytes.Repeat([]byte{0xab}, 32)
	m, err := newKeyMaterial(1, "mat-1", raw)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{m.String(), m.GoString()} {
		if strings.Contains(strings.ToLower(s), "abab") {
			t.Fatalf("key material printed: %s", s)
		}
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x"} {
		if s := fmt.Sprintf(verb, m); strings.Contains(strings.ToLower(s), "abab") || strings.Contains(s, "171") {
			t.Fatalf("%s printed key material: %s", verb, s)
		}
	}
	// Errors name keys and sizes, never bytes.
	e, _ := newTestEngine(t, Options{})
	mustKey(t, e, "alias/k")
	pt := []byte("PLAINTEXT-MARKER")
	blob := mustEncrypt(t, e, "alias/k", pt, map[string]string{"a": "b"})
	_, err = e.Decrypt(context.Background(), &DecryptInput{CiphertextBlob: blob})
	if err == nil || strings.Contains(err.Error(), "PLAINTEXT") || strings.Contains(err.Error(), string(blob[40:50])) {
		t.Fatalf("error leaks bytes: %v", err)
	}
}

// TestReEncryptOneContextMapForBothSides: the same map as source and
// destination context (the controller's default) is canonicalised once and
// binds the new blob to that context.
func TestReEncryptOneContextMapForBothSides(t *testing.T) {
	ctx := context.Background()
	e, _ := newTestEngine(t, Options{})
	mustKey(t, e, "alias/a")
	mustKey(t, e, "alias/b")
	ec := map[string]string{"app": "billing", "ns": "prod"}
	blob := mustEncrypt(t, e, "alias/a", []byte("v"), ec)
	out, err := e.ReEncrypt(ctx, &ReEncryptInput{CiphertextBlob: blob, SourceEncryptionContext: ec, DestinationKeyID: "alias/b", DestinationEncryptionContext: ec})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Decrypt(ctx, &DecryptInput{CiphertextBlob: out.CiphertextBlob, EncryptionContext: map[string]string{"ns": "prod", "app": "billing"}}); err != nil {
		t.Fatalf("decrypt with an equal context: %v", err)
	}
	_, err = e.Decrypt(ctx, &DecryptInput{CiphertextBlob: out.CiphertextBlob, EncryptionContext: map[string]string{"app": "billing"}})
	wantCode(t, err, CodeInvalidCiphertext)
	// A bad context shared by both sides is refused once, clearly.
	bad := map[string]string{"": "x"}
	_, err = e.ReEncrypt(ctx, &ReEncryptInput{CiphertextBlob: blob, SourceEncryptionContext: bad, DestinationKeyID: "alias/b", DestinationEncryptionContext: bad})
	wantCode(t, err, CodeValidation)
}

func TestTags(t *testing.T) {
	ctx := context.Background()
	e, _ := newTestEngine(t, Options{})
	out, err := e.CreateKey(ctx, &CreateKeyInput{Tags: []Tag{{TagKey: "team", TagValue: "billing"}}})
	if err != nil {
		t.Fatal(err)
	}
	id := out.KeyMetadata.KeyID
	if _, err := e.TagResource(ctx, &TagResourceInput{KeyID: id, Tags: []Tag{{TagKey: "rekey.dev/namespaces", TagValue: "a,b"}, {TagKey: "team", TagValue: "payments"}}}); err != nil {
		t.Fatal(err)
	}
	ls, err := e.ListResourceTags(ctx, &ListResourceTagsInput{KeyID: id})
	if err != nil || len(ls.Tags) != 2 || ls.Tags[0].TagKey != "rekey.dev/namespaces" || ls.Tags[1].TagValue != "payments" {
		t.Fatalf("ListResourceTags: %v %+v", err, ls)
	}
	if _, err := e.UntagResource(ctx, &UntagResourceInput{KeyID: id, TagKeys: []string{"team"}}); err != nil {
		t.Fatal(err)
	}
	ls, _ = e.ListResourceTags(ctx, &ListResourceTagsInput{KeyID: id})
	if len(ls.Tags) != 1 {
		t.Fatalf("after UntagResource: %+v", ls.Tags)
	}
	for _, bad := range []Tag{{TagKey: ""}, {TagKey: "aws:x"}, {TagKey: "k", TagValue: strings.Repeat("v", 257)}} {
		_, err := e.TagResource(ctx, &TagResourceInput{KeyID: id, Tags: []Tag{bad}})
		wantCode(t, err, CodeValidation)
	}
}
