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

package docblocks

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	doc := "1. Install:\n\n   <!-- test: install -->\n   ```sh\n   make deploy\n     echo indented\n   ```\n\n<!-- test/chart: install -->\n```sh\nhelm install\n```\n"
	got, err := Parse(doc, "test")
	if err != nil || len(got) != 1 || got["install"] != "make deploy\n  echo indented\n" {
		t.Fatalf("%q %v", got, err)
	}
	got, err = Parse(doc, "test/chart")
	if err != nil || len(got) != 1 || got["install"] != "helm install\n" {
		t.Fatalf("%q %v", got, err)
	}
	for name, bad := range map[string]string{
		"no block after the marker": "<!-- test: a -->\ntext\n",
		"a name twice":              "<!-- test: a -->\n```sh\nx\n```\n<!-- test: a -->\n```sh\ny\n```\n",
	} {
		if _, err := Parse(bad, "test"); err == nil || !strings.Contains(err.Error(), "a") {
			t.Errorf("%s: %v", name, err)
		}
	}
}
