{{/* The chart's name (nameOverride wins). */}}
{{- define "flomastr.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release's full name: fullnameOverride, else the release name when it already contains the
chart's name, else <release>-<chart>. Kept at 46 characters so that "-operator-metrics" still fits
in a 63-character name.
*/}}
{{- define "flomastr.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 46 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 46 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 46 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* <fullname>-operator and <fullname>-engine. */}}
{{- define "flomastr.operator.fullname" -}}
{{- printf "%s-operator" (include "flomastr.fullname" .) }}
{{- end }}
{{- define "flomastr.engine.fullname" -}}
{{- printf "%s-engine" (include "flomastr.fullname" .) }}
{{- end }}

{{/* Chart name and version, for the helm.sh/chart label. */}}
{{- define "flomastr.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "flomastr.labels" -}}
helm.sh/chart: {{ include "flomastr.chart" . }}
{{ include "flomastr.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: flomastr
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels that identify the release (selectors add app.kubernetes.io/component). */}}
{{- define "flomastr.selectorLabels" -}}
app.kubernetes.io/name: {{ include "flomastr.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels and selector labels of one component: (dict "root" $ "component" "engine"). */}}
{{- define "flomastr.componentLabels" -}}
{{ include "flomastr.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- define "flomastr.componentSelectorLabels" -}}
{{ include "flomastr.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* ServiceAccount names. */}}
{{- define "flomastr.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (include "flomastr.operator.fullname" .) .Values.operator.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}
{{- define "flomastr.engine.serviceAccountName" -}}
{{- if .Values.engine.serviceAccount.create }}
{{- default (include "flomastr.engine.fullname" .) .Values.engine.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.engine.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image, with the tag defaulting to the chart's appVersion. */}}
{{- define "flomastr.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The Secret with DATABASE_URL, the admin token and the master key. */}}
{{- define "flomastr.secretName" -}}
{{- default (include "flomastr.fullname" .) .Values.secret.existingSecret }}
{{- end }}

{{/* The engine's Service URL inside the cluster. */}}
{{- define "flomastr.engine.serviceUrl" -}}
{{- printf "http://%s.%s.svc:%v" (include "flomastr.engine.fullname" .) .Release.Namespace .Values.engine.service.port }}
{{- end }}

{{/* The engine's public URL: engine.publicUrl, else the first Ingress host, else nothing. */}}
{{- define "flomastr.engine.publicUrl" -}}
{{- if .Values.engine.publicUrl }}
{{- .Values.engine.publicUrl }}
{{- else if and .Values.engine.ingress.enabled .Values.engine.ingress.hosts }}
{{- printf "https://%s" (first .Values.engine.ingress.hosts) }}
{{- end }}
{{- end }}

{{/* The pod-level and container-level security contexts. */}}
{{- define "flomastr.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext }}
{{- end }}
{{- define "flomastr.securityContext" -}}
{{- toYaml .Values.securityContext }}
{{- end }}

{{/* Required values, checked once (helm also checks values.schema.json). */}}
{{- define "flomastr.validate" -}}
{{- $_ := required "baseDomain is required (the tenants' base domain, e.g. example.com)" .Values.baseDomain }}
{{- if not .Values.secret.existingSecret }}
{{- $_ := required "secret.databaseUrl is required unless secret.existingSecret names a Secret" .Values.secret.databaseUrl }}
{{- end }}
{{- if eq .Values.operator.dns.provider "digitalocean" }}
{{- $_ := required "operator.dns.digitalocean.tokenSecret.name is required with operator.dns.provider digitalocean" .Values.operator.dns.digitalocean.tokenSecret.name }}
{{- end }}
{{- if and (not .Values.operator.leaderElection) (gt (int .Values.operator.replicas) 1) }}
{{- fail "operator.leaderElection false needs operator.replicas 1 (replicas without leader election would all reconcile)" }}
{{- end }}
{{- end }}
