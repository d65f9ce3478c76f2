{{/*
Names. With the release name rekey (or a fullnameOverride of rekey) every
object has the name the kustomize bundle gives it: rekey-controller-manager,
rekey-manager-role, rekey-keep-keys, ...
*/}}
{{- define "rekey.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "rekey.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "rekey.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The bundle's selector labels: the Deployment's, the Service's. */}}
{{- define "rekey.selectorLabels" -}}
control-plane: controller-manager
app.kubernetes.io/name: {{ include "rekey.name" . }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "rekey.labels" -}}
app.kubernetes.io/name: {{ include "rekey.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ include "rekey.chart" . }}
{{- end }}

{{/*
What `helm uninstall` must leave (the keep-keys policy and its binding):
kept by Helm, Argo CD and Flux, and by `make undeploy`'s label selector, as
in the bundle.
*/}}
{{- define "rekey.keepLabels" -}}
rekey.dev/uninstall: keep
{{- end }}
{{- define "rekey.keepAnnotations" -}}
helm.sh/resource-policy: keep
argocd.argoproj.io/sync-options: Delete=false,Prune=false
kustomize.toolkit.fluxcd.io/prune: disabled
{{- end }}

{{- define "rekey.serviceAccountName" -}}
{{ include "rekey.fullname" . }}-controller-manager
{{- end }}

{{- define "rekey.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "rekey.leaderElectionNamespace" -}}
{{ .Values.leaderElection.namespace | default .Release.Namespace }}
{{- end }}

{{/* host:port */}}
{{- define "rekey.address" -}}
{{ .host | default "" }}:{{ .port }}
{{- end }}

{{/* The key service's selector labels (kms.enabled): config/kms-service's. */}}
{{- define "rekey.kmsSelectorLabels" -}}
app.kubernetes.io/name: {{ include "rekey.name" . }}
app.kubernetes.io/component: kms
{{- end }}
