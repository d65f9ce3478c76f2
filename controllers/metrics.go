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
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	rekeyv1alpha1 "github.com/rekey-dev/rekey/api/v1alpha1"
)

// Labels of the per-rotation metrics.
const (
	labelNamespace   = "namespace"
	labelKeyRotation = "keyrotation"
)

// Metrics on the manager's /metrics endpoint.
var (
	metricBlobsReEncrypted = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rekey_blobs_reencrypted_total",
		Help: "Blobs re-encrypted and written back, by key service.",
	}, []string{"provider"})
	metricFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rekey_blob_failures_total",
		Help: "Secrets that failed to rotate, by reason (the key service's error name or a rekey reason).",
	}, []string{"reason"})
	metricRetries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rekey_reencrypt_retries_total",
		Help: "ReEncrypt calls retried after a transient error, by error name.",
	}, []string{"reason"})
	metricLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "rekey_reencrypt_duration_seconds",
		Help:    "Latency of ReEncrypt calls, by key service.",
		Buckets: prometheus.ExponentialBuckets(0.00005, 3, 12),
	}, []string{"provider"})
	metricSecretsRemaining = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "rekey_secrets_remaining",
		Help: "Selected Secrets a running KeyRotation has not reached yet.",
	}, []string{labelNamespace, labelKeyRotation})
	metricSourceKeyBlobs = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "rekey_source_key_blobs",
		Help: "Selected blobs a KeyRotation's last verification found under a source key (0: drained, as far as it could read).",
	}, []string{labelNamespace, labelKeyRotation})
	metricCondition = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "rekey_keyrotation_status_condition",
		Help: "A KeyRotation's conditions as saved in its status: 1 for the status each condition has, 0 for the other two.",
	}, []string{labelNamespace, "name", "condition", "status"})
)

// collectors are rekey's own metrics (the dashboard in config/grafana may
// query these and controller-runtime's).
var collectors = []prometheus.Collector{metricBlobsReEncrypted, metricFailures, metricRetries, metricLatency,
	metricSecretsRemaining, metricSourceKeyBlobs, metricCondition}

func init() {
	metrics.Registry.MustRegister(collectors...)
}

// conditionTypes are the conditions a KeyRotation reports.
var conditionTypes = []string{
	rekeyv1alpha1.ConditionReady, rekeyv1alpha1.ConditionReconciling,
	rekeyv1alpha1.ConditionStalled, rekeyv1alpha1.ConditionSourceKeysDrained,
}

var conditionStatuses = []metav1.ConditionStatus{metav1.ConditionTrue, metav1.ConditionFalse, metav1.ConditionUnknown}

// recordConditions sets rekey_keyrotation_status_condition from the status
// just saved: for each condition present, 1 on its status and 0 on the
// other two (as kube-state-metrics and external-secrets do, so that
// `== 1` selects and a change of status shows in one series); the series of
// a condition that is absent are removed.
func recordConditions(kr *rekeyv1alpha1.KeyRotation) {
	for _, typ := range conditionTypes {
		c := meta.FindStatusCondition(kr.Status.Conditions, typ)
		for _, st := range conditionStatuses {
			labels := prometheus.Labels{labelNamespace: kr.Namespace, "name": kr.Name, "condition": typ, "status": string(st)}
			switch {
			case c == nil:
				metricCondition.Delete(labels)
			case c.Status == st:
				metricCondition.With(labels).Set(1)
			default:
				metricCondition.With(labels).Set(0)
			}
		}
	}
}

// forgetConditions removes a deleted KeyRotation's condition series.
func forgetConditions(key types.NamespacedName) {
	metricCondition.DeletePartialMatch(prometheus.Labels{labelNamespace: key.Namespace, "name": key.Name})
}
