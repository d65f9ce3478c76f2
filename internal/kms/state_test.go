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
	"errors"
	"strings"
	"testing"
)

// fixedStore is a keystore that always holds doc.
type fixedStore struct{ doc string }

func (s fixedStore) Load(context.Context) ([]byte, string, error) { return []byte(s.doc), "1", nil }
func (s fixedStore) Save(context.Context, []byte, string) (string, error) {
	return "", errors.New("read-only")
}

// TestBadStateIsErrBadState: a keystore that opens but holds no usable key
// state is ErrBadState, which the controller does not retry at start-up.
func TestBadStateIsErrBadState(t *testing.T) {
	good := `{"formatVersion":1,"keys":[{"id":"6f1c2d3e-4a5b-4c6d-8e7f-0a1b2c3d4e5f","state":"Enabled",` +
		`"versions":[{"version":1,"materialId":"m1","material":"` + strings.Repeat("A", 43) + `="}]}]}`
	if _, err := New(context.Background(), Options{Store: fixedStore{good}}); err != nil {
		t.Fatalf("a good state: %v", err)
	}
	for name, doc := range map[string]string{
		"not JSON":       "not json",
		"unknown format": `{"formatVersion":99}`,
		"version gap":    strings.Replace(good, `"version":1`, `"version":2`, 1),
		"no versions":    strings.Replace(good, `[{"version":1,"materialId":"m1","material":"`+strings.Repeat("A", 43)+`="}]`, `[]`, 1),
		"short material": strings.Replace(good, strings.Repeat("A", 43)+"=", "AAAA", 1),
	} {
		_, err := New(context.Background(), Options{Store: fixedStore{doc}})
		if !errors.Is(err, ErrBadState) {
			t.Errorf("%s: got %v, want ErrBadState", name, err)
		}
	}
}
