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
	"testing"
)

// KeyTag resolves every form of key reference as the operations do and
// sees tag changes at once.
func TestKeyTag(t *testing.T) {
	ctx := context.Background()
	e, _ := newTestEngine(t, Options{})
	k, err := e.CreateKey(ctx, &CreateKeyInput{Tags: []Tag{{TagKey: "rekey.dev/decrypt", TagValue: "team-a"}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.CreateAlias(ctx, &CreateAliasInput{AliasName: "alias/app", TargetKeyID: k.KeyMetadata.KeyID}); err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{k.KeyMetadata.KeyID, k.KeyMetadata.Arn, "alias/app", e.aliasARN("alias/app")} {
		arn, v, err := e.KeyTag(ref, "rekey.dev/decrypt")
		if err != nil || arn != k.KeyMetadata.Arn || v != "team-a" {
			t.Fatalf("KeyTag(%s): %q %q %v", ref, arn, v, err)
		}
	}
	if _, v, err := e.KeyTag("alias/app", "rekey.dev/encrypt"); err != nil || v != "" {
		t.Fatalf("an absent tag: %q %v", v, err)
	}
	if _, err := e.UntagResource(ctx, &UntagResourceInput{KeyID: "alias/app", TagKeys: []string{"rekey.dev/decrypt"}}); err != nil {
		t.Fatal(err)
	}
	if _, v, _ := e.KeyTag("alias/app", "rekey.dev/decrypt"); v != "" {
		t.Fatalf("after UntagResource: %q", v)
	}
	for _, ref := range []string{"", "alias/nope", "00000000-0000-0000-0000-000000000000", "arn:aws:kms:elsewhere:000000000000:key/" + k.KeyMetadata.KeyID} {
		if _, _, err := e.KeyTag(ref, "rekey.dev/decrypt"); err == nil {
			t.Fatalf("KeyTag(%q): no error", ref)
		}
	}
}
