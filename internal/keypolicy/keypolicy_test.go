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

package keypolicy

import (
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, ok := range []string{"", "team-a", "team-a/app", "team-a,team-b/web.v2", "a/b,a"} {
		if _, err := Parse(ok); err != nil {
			t.Errorf("Parse(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"*", "team-a/*", "Team-A", "team-a/", "/app", "team-a//app", "team-a,", ",team-a", "team-a, team-b",
		"team-a,team-a", "a/b/c", "--operations", "-team", strings.Repeat("a", 64), "team-a/" + strings.Repeat("b", 254), "team_a"} {
		if _, err := Parse(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("Parse(%q): want ErrInvalid, got %v", bad, err)
		}
	}
}

func TestAllows(t *testing.T) {
	for _, tc := range []struct {
		value, ns, sa string
		want          bool
	}{
		{"team-a", "team-a", "app", true},
		{"team-a/app", "team-a", "app", true},
		{"team-a/app", "team-a", "other", false},
		{"team-a/app", "team-b", "app", false},
		{"team-b,team-a/app", "team-a", "app", true},
		{"team-ab", "team-a", "app", false},
		{"team-a/appx", "team-a", "app", false},
		{"*", "team-a", "app", false},
		{"team-a/*", "team-a", "app", false},
		{"team-a/", "team-a", "app", false},
		{"", "team-a", "app", false},
		{"team-a", "", "app", false},
		{"team-a", "team-a", "", false},
		{" team-a", "team-a", "app", false},
	} {
		if got := Allows(tc.value, tc.ns, tc.sa); got != tc.want {
			t.Errorf("Allows(%q, %q, %q) = %v, want %v", tc.value, tc.ns, tc.sa, got, tc.want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { Allows("a,b,c/d,team-b,team-a/app", "team-a", "app") }); n != 0 {
		t.Errorf("Allows allocates %v times per call", n)
	}
}

func TestFormatBounded(t *testing.T) {
	var es []Entry
	for i := 0; i < 30; i++ {
		es = append(es, Entry{Namespace: strings.Repeat("n", 9) + string(rune('a'+i%26)), ServiceAccount: "sa"})
	}
	if _, err := Format(es); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Format of %d entries: want ErrInvalid (over 256 characters), got %v", len(es), err)
	}
	v, err := Format(es[:2])
	if err != nil || v != "nnnnnnnnna/sa,nnnnnnnnnb/sa" {
		t.Fatalf("Format: %q %v", v, err)
	}
}

func TestTagFor(t *testing.T) {
	for op, tag := range map[string]string{"Decrypt": DecryptTag, "Encrypt": EncryptTag, "GenerateDataKey": GenerateDataKeyTag,
		"GenerateDataKeyWithoutPlaintext": GenerateDataKeyTag, "ReEncrypt": "", "DescribeKey": "", "CreateKey": "", "TagResource": ""} {
		if got := TagFor(op); got != tag {
			t.Errorf("TagFor(%s) = %q, want %q", op, got, tag)
		}
	}
}
