{{/* Chart name. */}}
{{- define "sluice.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name prefix of every object (at most 45 characters, so that suffixes fit in 63). */}}
{{- define "sluice.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 45 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 45 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 45 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Labels every object carries. */}}
{{- define "sluice.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "sluice.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sluice
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels selecting this release's pods. */}}
{{- define "sluice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sluice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The image reference: [global.imageRegistry or image.registry/]repository, then @digest or :tag. */}}
{{- define "sluice.image" -}}
{{- $registry := default .Values.image.registry ((.Values.global).imageRegistry) }}
{{- $name := ternary (printf "%s/%s" $registry .Values.image.repository) .Values.image.repository (ne $registry "") }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $name .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $name (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* metadata.annotations: commonAnnotations, then the object's own (which win). Args:
(dict "root" $ "extra" <map or nil>). Renders nothing when both are empty. */}}
{{- define "sluice.annotations" -}}
{{- $all := merge (dict) (deepCopy (default (dict) .extra)) (deepCopy (default (dict) .root.Values.commonAnnotations)) }}
{{- with $all }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* A role's HorizontalPodAutoscaler. Args: (dict "root" $ "component" "edge"|"quota" "a" <autoscaling values>). */}}
{{- define "sluice.hpa" -}}
{{- $a := .a }}
{{- if $a.enabled }}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "sluice.fullname" .root }}-{{ .component }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "sluice.labels" .root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
  {{- include "sluice.annotations" (dict "root" .root) | nindent 2 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "sluice.fullname" .root }}-{{ .component }}
  minReplicas: {{ $a.minReplicas }}
  maxReplicas: {{ $a.maxReplicas }}
  {{- if not (or $a.targetCPUUtilizationPercentage $a.targetMemoryUtilizationPercentage) }}
  {{- fail (printf "%s.autoscaling needs targetCPUUtilizationPercentage or targetMemoryUtilizationPercentage" .component) }}
  {{- end }}
  metrics:
    {{- with $a.targetCPUUtilizationPercentage }}
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ . }}
    {{- end }}
    {{- with $a.targetMemoryUtilizationPercentage }}
    - type: Resource
      resource:
        name: memory
        target:
          type: Utilization
          averageUtilization: {{ . }}
    {{- end }}
  {{- with $a.behavior }}
  behavior:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- end }}

{{/* ServiceAccount name of the edge and quota pods. */}}
{{- define "sluice.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sluice.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Name of the Secret holding the URLs. */}}
{{- define "sluice.secretName" -}}
{{- default (include "sluice.fullname" .) .Values.existingSecret.name }}
{{- end }}

{{/* A map of settings as TOML `key = value` lines (JSON scalars and string arrays are TOML). */}}
{{- define "sluice.toml" -}}
{{- range $key, $value := . }}
{{ $key }} = {{ toJson $value }}
{{- end }}
{{- end }}

{{/* host:port from listenHost. Args: (list $ port). */}}
{{- define "sluice.listen" -}}
{{- $root := index . 0 }}
{{- printf "%s:%v" $root.Values.listenHost (index . 1) }}
{{- end }}

{{/* host:port of a metrics listener, from metricsListenHost. Args: (list $ port). */}}
{{- define "sluice.metricsListen" -}}
{{- $root := index . 0 }}
{{- printf "%s:%v" $root.Values.metricsListenHost (index . 1) }}
{{- end }}

{{/* The edges' quota URLs: edge.quotaUrls, or the headless quota Service (https:// with
grpc.tls.enabled). */}}
{{- define "sluice.quotaUrls" -}}
{{- if .Values.edge.quotaUrls }}
{{- toJson .Values.edge.quotaUrls }}
{{- else }}
{{- toJson (list (printf "%s://%s-quota-headless.%s.svc:10033" (ternary "https" "http" .Values.grpc.tls.enabled) (include "sluice.fullname" .) .Release.Namespace)) }}
{{- end }}
{{- end }}

{{/* Anti-affinity preset. Args: (dict "root" $ "component" "edge" "mode" "soft"). */}}
{{- define "sluice.antiAffinity" -}}
{{- $term := dict "topologyKey" "kubernetes.io/hostname" "labelSelector" (dict "matchLabels" (merge (fromYaml (include "sluice.selectorLabels" .root)) (dict "app.kubernetes.io/component" .component))) }}
{{- if eq .mode "hard" }}
podAntiAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
    {{- toYaml (list $term) | nindent 4 }}
{{- else if eq .mode "soft" }}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    {{- toYaml (list (dict "weight" 100 "podAffinityTerm" $term)) | nindent 4 }}
{{- else if ne .mode "" }}
{{- fail (printf "antiAffinity must be \"soft\", \"hard\" or \"\", not %q" .mode) }}
{{- end }}
{{- end }}

{{/* Fails unless terminationGracePeriodSeconds > preStop sleep + shutdown grace. Args: (list name values). */}}
{{- define "sluice.checkGrace" -}}
{{- $name := index . 0 }}
{{- $v := index . 1 }}
{{- $grace := int (default 10 $v.config.shutdown_grace_secs) }}
{{- $sleep := int $v.preStopSleepSeconds }}
{{- if $v.lifecycle }}{{- $sleep = 0 }}{{- end }}
{{- if le (int $v.terminationGracePeriodSeconds) (add $grace $sleep) }}
{{- fail (printf "%s.terminationGracePeriodSeconds (%v) must exceed %s.preStopSleepSeconds + %s.config.shutdown_grace_secs (%d): otherwise requests in flight are killed" $name $v.terminationGracePeriodSeconds $name $name (add $grace $sleep)) }}
{{- end }}
{{- end }}

{{/* Lifecycle of a role. Args: values of the role. */}}
{{- define "sluice.lifecycle" -}}
{{- if .lifecycle }}
{{- toYaml .lifecycle }}
{{- else if gt (int .preStopSleepSeconds) 0 }}
preStop:
  sleep:
    seconds: {{ int .preStopSleepSeconds }}
{{- end }}
{{- end }}

{{/* Probes on the metrics port. Args: values of the role. */}}
{{- define "sluice.probes" -}}
startupProbe:
  httpGet:
    path: /healthz
    port: metrics
  periodSeconds: {{ .probes.startup.periodSeconds }}
  failureThreshold: {{ .probes.startup.failureThreshold }}
livenessProbe:
  httpGet:
    path: /healthz
    port: metrics
  periodSeconds: {{ .probes.liveness.periodSeconds }}
  timeoutSeconds: {{ .probes.liveness.timeoutSeconds }}
  failureThreshold: {{ .probes.liveness.failureThreshold }}
readinessProbe:
  httpGet:
    path: /readyz
    port: metrics
  periodSeconds: {{ .probes.readiness.periodSeconds }}
  timeoutSeconds: {{ .probes.readiness.timeoutSeconds }}
  failureThreshold: {{ .probes.readiness.failureThreshold }}
{{- end }}

{{/* Common environment: log settings. */}}
{{- define "sluice.logEnv" -}}
- name: SLUICE_LOG_FORMAT
  value: {{ .Values.log.format | quote }}
- name: SLUICE_LOG
  value: {{ .Values.log.level | quote }}
{{- end }}
