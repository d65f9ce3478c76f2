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
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// exportedMetrics is every metric name the operator's /metrics serves:
// rekey's own (described, so vectors without series count too, with a
// histogram's _bucket, _sum and _count) and everything else in the
// registry (controller-runtime's controller, work queue, client, leader
// election, Go and process metrics) once a controller exists.
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	descs := make(chan *prometheus.Desc, 100)
	go func() {
		for _, c := range collectors {
			c.Describe(descs)
		}
		close(descs)
	}()
	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)
	for d := range descs {
		m := fqName.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("no name in %s", d)
		}
		names[m[1]] = true
	}
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range families {
		names[mf.GetName()] = true
		if mf.GetType() == dto.MetricType_HISTOGRAM {
			names[mf.GetName()+"_bucket"], names[mf.GetName()+"_sum"], names[mf.GetName()+"_count"] = true, true, true
		}
	}
	for n := range names {
		if names[n] && strings.HasPrefix(n, "rekey_") && strings.HasSuffix(n, "_seconds") {
			names[n+"_bucket"], names[n+"_sum"], names[n+"_count"] = true, true, true
		}
	}
	return names
}

// runningExportedMetrics starts a manager as the operator runs it — leader
// election on, a controller, a KeyRotation to queue — so that
// controller-runtime's series, created as they are first used, exist, and
// returns exportedMetrics then.
func runningExportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	f := newFixture(t)
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme:                  env.Scheme,
		Logger:                  zap.New(zap.WriteTo(f.logs)),
		Metrics:                 metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress:  "0",
		LeaderElection:          true,
		LeaderElectionID:        "rekey.dev-controller",
		LeaderElectionNamespace: f.ns,
		Cache:                   cache.Options{DefaultNamespaces: map[string]cache.Config{f.ns: {}}},
		Controller:              config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := (&ConditionMetricsReconciler{}).SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			t.Errorf("manager: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	f.rotation("queued", nil)
	var exported map[string]bool
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		exported = exportedMetrics(t)
		if exported["leader_election_master_status"] && exported["workqueue_depth"] || time.Now().After(deadline) {
			break
		}
	}
	return exported
}

var (
	promStrings  = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	promMatchers = regexp.MustCompile(`\{[^}]*\}`)
	promGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promRanges   = regexp.MustCompile(`\[[^\]]*\]`)
	promVars     = regexp.MustCompile(`\$\{[^}]*\}|\$\w+`)
	promIdent    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*\s*\(?`)
	labelValues  = regexp.MustCompile(`^label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*\w+\s*\)$`)
	promKeywords = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "vector": true, "inf": true, "nan": true}
)

// metricNames are the metric names a PromQL expression selects.
func metricNames(expr string) []string {
	if m := labelValues.FindStringSubmatch(strings.TrimSpace(expr)); m != nil {
		return []string{m[1]}
	}
	for _, re := range []*regexp.Regexp{promStrings, promMatchers, promGrouping, promRanges, promVars} {
		expr = re.ReplaceAllString(expr, " ")
	}
	var out []string
	for _, tok := range promIdent.FindAllString(expr, -1) {
		if strings.HasSuffix(tok, "(") || promKeywords[strings.ToLower(strings.TrimSpace(tok))] {
			continue // a function or aggregation, or a keyword
		}
		out = append(out, strings.TrimSpace(tok))
	}
	return out
}

func TestMetricNames(t *testing.T) {
	for expr, want := range map[string]string{
		`sum by (le, provider) (rate(rekey_reencrypt_duration_seconds_bucket{a="b"}[$__rate_interval]))`:      "rekey_reencrypt_duration_seconds_bucket",
		`count(rekey_keyrotation_status_condition{namespace=~"$namespace",status="False"} == 1) or vector(0)`: "rekey_keyrotation_status_condition",
		`label_values(rekey_keyrotation_status_condition, namespace)`:                                         "rekey_keyrotation_status_condition",
		`histogram_quantile(0.99, sum by (le) (rate(workqueue_queue_duration_seconds_bucket[5m])))`:           "workqueue_queue_duration_seconds_bucket",
		`a_total / on (x) b_total`: "a_total b_total",
	} {
		if got := strings.Join(metricNames(expr), " "); got != want {
			t.Errorf("%s: %q, want %q", expr, got, want)
		}
	}
}

// TestDashboardQueriesExportedMetrics: config/grafana's dashboard is valid
// JSON and every metric its panels and variables query is one the operator
// exports.
func TestDashboardQueriesExportedMetrics(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "config", "grafana", "rekey-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name  string          `json:"name"`
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	if err := dec.Decode(&dash); err != nil {
		t.Fatalf("the dashboard is not valid JSON: %v", err)
	}
	if dash.Title == "" || len(dash.Panels) == 0 {
		t.Fatal("the dashboard has no title or no panels")
	}

	exported := runningExportedMetrics(t)

	queries := map[string]string{} // expression -> where
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			queries[tg.Expr] = "panel " + p.Title
		}
	}
	for _, v := range dash.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			t.Fatalf("variable %s: %v", v.Name, err)
		}
		queries[q.Query] = "variable " + v.Name
	}
	var used []string
	for expr, where := range queries {
		names := metricNames(expr)
		if len(names) == 0 {
			t.Errorf("%s: no metric in %q", where, expr)
		}
		for _, n := range names {
			if !exported[n] {
				t.Errorf("%s queries %s, which rekey does not export (%q)", where, n, expr)
			}
			used = append(used, n)
		}
	}
	slices.Sort(used)
	t.Logf("%d queries over %d metric names, all exported: %s", len(queries), len(used), strings.Join(used, " "))
	// Every metric of rekey's own is on the dashboard.
	for n := range exported {
		histogram := strings.HasSuffix(n, "_seconds") && exported[n+"_bucket"]
		if strings.HasPrefix(n, "rekey_") && !strings.HasSuffix(n, "_sum") && !strings.HasSuffix(n, "_count") &&
			!histogram && !contains(used, n) {
			t.Errorf("rekey metric %s is not on the dashboard", n)
		}
	}
}
