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

import "testing"

func TestSplitARN(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want ARN
		ok   bool
	}{
		{"arn:aws:kms:eu-west-1:111122223333:key/1234", ARN{"aws", "kms", "eu-west-1", "111122223333", "key/1234"}, true},
		{"arn:aws:kms:eu-west-1:111122223333:alias/a:b", ARN{"aws", "kms", "eu-west-1", "111122223333", "alias/a:b"}, true},
		{"arn:aws:kms:::", ARN{"aws", "kms", "", "", ""}, true},
		{"arn:aws:kms:eu-west-1:111122223333", ARN{}, false},
		{"arn:aws", ARN{}, false},
		{"arn:", ARN{}, false},
		{"alias/a", ARN{}, false},
		{"", ARN{}, false},
	} {
		got, ok := SplitARN(tc.in)
		if ok != tc.ok || got != tc.want {
			t.Errorf("SplitARN(%q) = %+v, %v; want %+v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}
