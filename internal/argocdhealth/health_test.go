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

package argocdhealth

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// Dir is where rekey's health check for KeyRotation lives, in Argo CD's
// resource_customizations layout (group/Kind/health.lua, health_test.yaml,
// testdata/).
const Dir = "../../config/argocd/rekey.dev/KeyRotation"

// configMap is the argocd-cm patch that installs the check.
const configMap = "../../config/argocd/argocd-cm.yaml"

var update = flag.Bool("update", false, "rewrite config/argocd/argocd-cm.yaml from health.lua")

type fixtures struct {
	Tests []struct {
		HealthStatus Status `json:"healthStatus"`
		InputPath    string `json:"inputPath"`
	} `json:"tests"`
}

func readYAML(t *testing.T, path string, into any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestHealthFixtures runs every fixture of health_test.yaml, as Argo CD's
// own test of its resource customisations does, and requires that every
// file of testdata/ is one of them.
func TestHealthFixtures(t *testing.T) {
	script, err := ReadScript(filepath.Join(Dir, "health.lua"))
	if err != nil {
		t.Fatal(err)
	}
	var f fixtures
	readYAML(t, filepath.Join(Dir, "health_test.yaml"), &f)
	if len(f.Tests) == 0 {
		t.Fatal("health_test.yaml has no tests")
	}
	used := map[string]bool{}
	for _, tc := range f.Tests {
		t.Run(strings.TrimSuffix(filepath.Base(tc.InputPath), ".yaml"), func(t *testing.T) {
			used[filepath.Clean(tc.InputPath)] = true
			var obj map[string]any
			readYAML(t, filepath.Join(Dir, tc.InputPath), &obj)
			got, err := Evaluate(script, obj)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.HealthStatus {
				t.Fatalf("health:\n got %+v\nwant %+v", got, tc.HealthStatus)
			}
		})
	}
	files, err := filepath.Glob(filepath.Join(Dir, "testdata", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range files {
		rel, _ := filepath.Rel(Dir, file)
		if !used[rel] {
			t.Errorf("%s is in no test of health_test.yaml", rel)
		}
	}
}

// TestConfigMapCarriesTheScript keeps the argocd-cm patch in step with
// health.lua (go test ./internal/argocdhealth -update rewrites it).
func TestConfigMapCarriesTheScript(t *testing.T) {
	script, err := ReadScript(filepath.Join(Dir, "health.lua"))
	if err != nil {
		t.Fatal(err)
	}
	want := configMapFor(script)
	if *update {
		if err := os.WriteFile(configMap, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(configMap)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("%s is not in step with health.lua: go test ./internal/argocdhealth -run TestConfigMapCarriesTheScript -update", configMap)
	}
	var cm struct {
		Data map[string]string `json:"data"`
	}
	if err := yaml.Unmarshal(got, &cm); err != nil {
		t.Fatal(err)
	}
	if cm.Data[ConfigMapKey] != script {
		t.Fatalf("%s: data[%q] is not health.lua", configMap, ConfigMapKey)
	}
}

// TestEvaluateRefusesWhatArgoCDWouldNotRead: a script that fails, returns
// no table, an invalid status, or reaches for a library Argo CD does not
// open is an error, so a broken check cannot pass its fixtures.
func TestEvaluateRefusesWhatArgoCDWouldNotRead(t *testing.T) {
	obj := map[string]any{"metadata": map[string]any{"name": "x"}}
	for name, script := range map[string]string{
		"a runtime error":     `return obj.status.phase`,
		"no table":            `return "Healthy"`,
		"an invalid status":   `return {status = "Fine"}`,
		"the string library":  `return {status = string.upper("healthy")}`,
		"the os library":      `os.exit(1)`,
		"a message not text":  `return {status = "Healthy", message = {}}`,
		"a loop past the cap": `while true do end`,
	} {
		t.Run(name, func(t *testing.T) {
			if got, err := Evaluate(script, obj); err == nil {
				t.Fatalf("Evaluate: %+v, want an error", got)
			}
		})
	}
	got, err := Evaluate(`return {status = "Healthy", message = obj.metadata.name}`, obj)
	if err != nil || got != (Status{Status: "Healthy", Message: "x"}) {
		t.Fatalf("Evaluate: %+v, %v", got, err)
	}
}
