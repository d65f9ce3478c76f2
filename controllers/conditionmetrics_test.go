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
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	rekeyv1alpha1 "github.com/rekey-dev/rekey/api/v1alpha1"
)

// startConditionMetrics runs the condition metrics controller for the
// fixture's namespace, in its own manager.
func (f *fixture) startConditionMetrics() {
	f.t.Helper()
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme:                 env.Scheme,
		Logger:                 zap.New(zap.WriteTo(f.logs)),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  cache.Options{DefaultNamespaces: map[string]cache.Config{f.ns: {}}},
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		f.t.Fatal(err)
	}
	if err := (&ConditionMetricsReconciler{}).SetupWithManager(mgr); err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			f.t.Errorf("manager: %v", err)
		}
	}()
	f.t.Cleanup(func() { cancel(); <-done })
}

// conditionSeries is the rotation's rekey_keyrotation_status_condition
// series, gathered from the registry /metrics serves, as
// "condition/status=value", sorted.
func conditionSeries(t *testing.T, ns, name string) []string {
	t.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, mf := range families {
		if mf.GetName() != "rekey_keyrotation_status_condition" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := labelMap(m)
			if l["namespace"] == ns && l["name"] == name {
				out = append(out, fmt.Sprintf("%s/%s=%g", l["condition"], l["status"], m.GetGauge().GetValue()))
			}
		}
	}
	slices.Sort(out)
	return out
}

func labelMap(m *dto.Metric) map[string]string {
	l := map[string]string{}
	for _, p := range m.GetLabel() {
		l[p.GetName()] = p.GetValue()
	}
	return l
}

func (f *fixture) waitSeries(name string, want ...string) {
	f.t.Helper()
	slices.Sort(want)
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := conditionSeries(f.t, f.ns, name)
		if strings.Join(got, " ") == strings.Join(want, " ") {
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("rekey_keyrotation_status_condition for %s:\n got %v\nwant %v", name, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestConditionMetric: rekey_keyrotation_status_condition follows a
// rotation's conditions as saved in its status — 1 on each condition's
// status, 0 on the other two, no series for an absent condition — and the
// rotation's series go when it is deleted.
func TestConditionMetric(t *testing.T) {
	f := newFixture(t)
	f.key("alias/old")
	f.key("alias/new")
	f.secrets(5, "alias/old", billingCtx)
	f.startConditionMetrics()

	// Paused: the conditions the operator reports for a paused rotation.
	f.rotation("billing", func(kr *rekeyv1alpha1.KeyRotation) {
		kr.Spec.SourceEncryptionContext = billingCtx
		kr.Spec.Paused = true
	})
	f.start(2)
	kr := f.wait("billing", "paused", func(kr *rekeyv1alpha1.KeyRotation) bool { return len(kr.Status.Conditions) > 0 })
	want := func(kr *rekeyv1alpha1.KeyRotation) []string {
		w := make([]string, 0, len(conditionStatuses)*len(kr.Status.Conditions))
		for _, c := range kr.Status.Conditions {
			for _, st := range conditionStatuses {
				v := 0
				if st == c.Status {
					v = 1
				}
				w = append(w, fmt.Sprintf("%s/%s=%d", c.Type, st, v))
			}
		}
		return w
	}
	f.waitSeries("billing", want(kr)...)

	// Running to the end: Ready and SourceKeysDrained True; Reconciling and
	// Stalled gone, and so their series.
	kr.Spec.Paused = false
	if err := k8sClient.Update(context.Background(), kr); err != nil {
		t.Fatal(err)
	}
	kr = f.wait("billing", "drained", func(kr *rekeyv1alpha1.KeyRotation) bool {
		return kr.Status.Phase == rekeyv1alpha1.PhaseSucceeded && drained(kr) == metav1.ConditionTrue
	})
	f.waitSeries("billing",
		"Ready/True=1", "Ready/False=0", "Ready/Unknown=0",
		"SourceKeysDrained/True=1", "SourceKeysDrained/False=0", "SourceKeysDrained/Unknown=0")
	if got := want(kr); len(got) != 6 {
		t.Fatalf("conditions of a drained rotation: %v", kr.Status.Conditions)
	}
	if err := k8sClient.Delete(context.Background(), kr); err != nil {
		t.Fatal(err)
	}
	f.waitSeries("billing")
}
