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

package controllers

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// alertRule is one alerting rule of a Prometheus rule file.
type alertRule struct {
	Alert       string            `json:"alert"`
	Expr        string            `json:"expr"`
	For         string            `json:"for"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

var (
	// {{ $labels.NAME }} in an alert's annotations.
	labelRefs = regexp.MustCompile(`\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)`)
	// The labels an expression keeps: by (...) and on (...) lists, and
	// label_replace's destination label.
	keptLabels   = regexp.MustCompile(`\b(?:by|on)\s*\(([^)]*)\)`)
	replacedInto = regexp.MustCompile(`label_replace\([\s\S]*?,\s*"([a-zA-Z_][a-zA-Z0-9_]*)"`)
)

// TestAlertsQueryExportedMetrics: config/prometheus/rekey-alerts.yaml (the
// Helm chart's PrometheusRule) is a valid rule file of alerts — each named
// once, with an expression, a duration Prometheus reads, a severity and a
// summary and description — whose expressions query only metrics the
// operator exports and whose texts use only labels their expressions keep.
func TestAlertsQueryExportedMetrics(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "config", "prometheus", "rekey-alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Groups []struct {
			Name  string      `json:"name"`
			Rules []alertRule `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.UnmarshalStrict(raw, &file); err != nil {
		t.Fatalf("config/prometheus/rekey-alerts.yaml is not a rule file of alerts: %v", err)
	}
	exported := runningExportedMetrics(t)

	seen := map[string]bool{}
	var used []string
	for _, g := range file.Groups {
		if g.Name == "" || len(g.Rules) == 0 {
			t.Errorf("group %q: no name or no rules", g.Name)
		}
		for _, r := range g.Rules {
			if r.Alert == "" || seen[r.Alert] {
				t.Errorf("alert %q: no name, or the name twice", r.Alert)
			}
			seen[r.Alert] = true
			if r.For != "" {
				if _, err := time.ParseDuration(r.For); err != nil {
					t.Errorf("%s: for %q: %v", r.Alert, r.For, err)
				}
			}
			if r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: want a severity label, a summary and a description", r.Alert)
			}
			if strings.Count(r.Expr, "(") != strings.Count(r.Expr, ")") {
				t.Errorf("%s: unbalanced parentheses in %q", r.Alert, r.Expr)
			}
			names := metricNames(r.Expr)
			if len(names) == 0 {
				t.Errorf("%s: no metric in %q", r.Alert, r.Expr)
			}
			for _, n := range names {
				if !exported[n] {
					t.Errorf("%s queries %s, which rekey does not export (%q)", r.Alert, n, r.Expr)
				}
				used = append(used, n)
			}
			var kept []string
			for _, m := range keptLabels.FindAllStringSubmatch(r.Expr, -1) {
				for _, l := range strings.Split(m[1], ",") {
					kept = append(kept, strings.TrimSpace(l))
				}
			}
			for _, m := range replacedInto.FindAllStringSubmatch(r.Expr, -1) {
				kept = append(kept, m[1])
			}
			for _, text := range r.Annotations {
				for _, m := range labelRefs.FindAllStringSubmatch(text, -1) {
					if !slices.Contains(kept, m[1]) {
						t.Errorf("%s: its text uses $labels.%s, which %q does not keep", r.Alert, m[1], r.Expr)
					}
				}
			}
		}
	}
	for _, want := range []string{"RekeyRotationFailed", "RekeyRotationStalled", "RekeySourceKeysInUse", "RekeyOperatorDown"} {
		if !seen[want] {
			t.Errorf("no alert %s", want)
		}
	}
	slices.Sort(used)
	if t.Failed() {
		return
	}
	t.Logf("%d alerts over %d metric names, all exported: %s", len(seen), len(slices.Compact(used)), strings.Join(slices.Compact(used), " "))
}
