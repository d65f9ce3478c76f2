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

package v1alpha1

import (
	"maps"
	"slices"
	"strings"
	"testing"
)

func TestEncryptedKeys(t *testing.T) {
	data := map[string][]byte{"b": nil, "a": nil, "c": nil}
	cases := []struct {
		annotation string
		want       []string
	}{
		{"*", []string{"a", "b", "c"}},
		{" * ", []string{"a", "b", "c"}},
		{"b,a", []string{"a", "b"}},
		{" b , a ,, b,", []string{"a", "b"}},
		{"missing", []string{"missing"}},
		{"", nil},
	}
	for _, tc := range cases {
		if got := EncryptedKeys(tc.annotation, data); !slices.Equal(got, tc.want) {
			t.Errorf("EncryptedKeys(%q) = %q, want %q", tc.annotation, got, tc.want)
		}
	}
}

// What Format* writes, Parse* and EncryptedKeys read back unchanged.
func TestFormattedAnnotationsReadBack(t *testing.T) {
	keys := []string{"token", "password", "token", "a.b_c-d"}
	ann := FormatEncryptedKeys(keys)
	if ann != "a.b_c-d,password,token" {
		t.Fatalf("FormatEncryptedKeys = %q", ann)
	}
	if got := EncryptedKeys(ann, nil); !slices.Equal(got, []string{"a.b_c-d", "password", "token"}) {
		t.Fatalf("read back %q", got)
	}

	ec := map[string]string{"z": "1", "app": "<billing & co>", "ünï": `"quoted"`}
	s, err := FormatEncryptionContext(ec)
	if err != nil {
		t.Fatal(err)
	}
	if s != `{"app":"<billing & co>","z":"1","ünï":"\"quoted\""}` {
		t.Fatalf("FormatEncryptionContext = %s", s)
	}
	back, err := ParseEncryptionContext(s)
	if err != nil || !maps.Equal(back, ec) {
		t.Fatalf("read back %v, %v", back, err)
	}
	if _, err := FormatEncryptionContext(map[string]string{"": "x"}); err == nil {
		t.Fatal("an empty context key was written")
	}
	if s, _ := FormatEncryptionContext(nil); s != "{}" {
		t.Fatalf("nil context written as %s", s)
	}
}

func TestParseEncryptionContextRefuses(t *testing.T) {
	for ann, msg := range map[string]string{
		`{"a":1}`:  "not a JSON object of strings",
		`["a"]`:    "not a JSON object of strings",
		`{"a":"b"`: "not a JSON object of strings",
		`{"":"b"}`: "has an empty key",
	} {
		if _, err := ParseEncryptionContext(ann); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("ParseEncryptionContext(%s): %v, want %q", ann, err, msg)
		}
	}
}

func TestKeyNamespaces(t *testing.T) {
	for in, want := range map[string]string{
		"":                          "",
		"billing":                   "billing",
		" billing , payments,,":     "billing|payments",
		"billing,billing,*,billing": "billing|*",
	} {
		if got := strings.Join(KeyNamespaces(in), "|"); got != want {
			t.Errorf("KeyNamespaces(%q) = %q, want %q", in, got, want)
		}
	}
}
