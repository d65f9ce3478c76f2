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

// Package docblocks reads the shell blocks a guide marks for a test to run
// as written: a ```sh block right after a line <!-- MARKER: NAME -->. The
// install test (marker "test") and the chart test ("test/chart") run
// docs/operations.md's blocks this way.
package docblocks

import (
	"fmt"
	"regexp"
	"strings"
)

// Parse returns the ```sh blocks of doc that follow a <!-- marker: NAME -->
// line, by NAME, without the list indentation they may carry. A marker not
// followed by a ```sh block, or a NAME twice, is an error naming the line.
func Parse(doc, marker string) (map[string]string, error) {
	tag := regexp.MustCompile(`^\s*<!-- ` + regexp.QuoteMeta(marker) + `: ([a-z0-9-]+) -->\s*$`)
	blocks := map[string]string{}
	lines := strings.Split(doc, "\n")
	for i := 0; i < len(lines); i++ {
		m := tag.FindStringSubmatch(lines[i])
		if m == nil {
			continue
		}
		if i+1 >= len(lines) || strings.TrimSpace(lines[i+1]) != "```sh" {
			return nil, fmt.Errorf("line %d: <!-- %s: %s --> is not followed by a ```sh block", i+1, marker, m[1])
		}
		indent := lines[i+1][:len(lines[i+1])-len(strings.TrimLeft(lines[i+1], " "))]
		var body []string
		for i += 2; i < len(lines) && strings.TrimSpace(lines[i]) != "```"; i++ {
			body = append(body, strings.TrimPrefix(lines[i], indent))
		}
		if _, dup := blocks[m[1]]; dup {
			return nil, fmt.Errorf("two blocks named %s", m[1])
		}
		blocks[m[1]] = strings.Join(body, "\n") + "\n"
	}
	return blocks, nil
}
