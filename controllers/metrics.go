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
	"sigs.k8s.io/controller-runtime/pkg/metrics"
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
	}, []string{"namespace", "keyrotation"})
	metricSourceKeyBlobs = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "rekey_source_key_blobs",
		Help: "Selected blobs a KeyRotation's last verification found under a source key (0: drained, as far as it could read).",
	}, []string{"namespace", "keyrotation"})
)

func init() {
	metrics.Registry.MustRegister(metricBlobsReEncrypted, metricFailures, metricRetries, metricLatency, metricSecretsRemaining, metricSourceKeyBlobs)
}
