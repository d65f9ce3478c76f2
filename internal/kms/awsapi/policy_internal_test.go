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

package awsapi

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/rekey-dev/rekey/internal/kms"
)

// TestCheckerAllowsEveryAliasedKey: the checker keeps the first keys a
// grant's aliases name in a fixed array and the rest beside it; a key
// named by the last of many aliases is allowed, a key no alias names is
// not.
func TestCheckerAllowsEveryAliasedKey(t *testing.T) {
	ctx := context.Background()
	e, err := kms.New(ctx, kms.Options{})
	if err != nil {
		t.Fatal(err)
	}
	arns, aliases := make([]string, 0, 7), make([]string, 0, 7)
	for i := range 7 {
		k, err := e.CreateKey(ctx, &kms.CreateKeyInput{})
		if err != nil {
			t.Fatal(err)
		}
		alias := fmt.Sprintf("alias/k%d", i)
		if _, err := e.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: alias, TargetKeyID: k.KeyMetadata.KeyID}); err != nil {
			t.Fatal(err)
		}
		arns, aliases = append(arns, k.KeyMetadata.Arn), append(aliases, `"`+alias+`"`)
	}
	// The last key has an alias but is not in the policy.
	p, err := ParsePolicy([]byte(`{"principals":{"AK":{"operations":["Decrypt"],"keys":[` + strings.Join(aliases[:6], ",") + `]}}}`))
	if err != nil {
		t.Fatal(err)
	}
	s := New(e, Options{Credentials: Credentials{"AK": "SK"}, Policy: p})
	c := checker{s: s, g: s.grants["AK"]}
	for i, arn := range arns {
		if got, want := c.allows(arn), i < 6; got != want {
			t.Errorf("key %d (%s): allows %v, want %v", i, aliases[i], got, want)
		}
	}
}
