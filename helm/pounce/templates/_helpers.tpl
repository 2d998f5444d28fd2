{{/*
The chart's name, truncated to the 63 characters of a DNS label.
*/}}
{{- define "pounce.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The fully qualified app name: the release name, with the chart name unless it already
contains it.
*/}}
{{- define "pounce.fullname" -}}
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

{{- define "pounce.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The standard labels (https://kubernetes.io/docs/concepts/overview/working-with-objects/common-labels/).
*/}}
{{- define "pounce.labels" -}}
helm.sh/chart: {{ include "pounce.chart" . }}
{{ include "pounce.selectorLabels" . }}
app.kubernetes.io/version: {{ (.Values.image.tag | default .Chart.AppVersion) | toString | trunc 63 | quote }}
app.kubernetes.io/component: server
app.kubernetes.io/part-of: {{ include "pounce.name" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels: stable across upgrades (a Deployment's selector is immutable).
*/}}
{{- define "pounce.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pounce.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "pounce.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "pounce.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "pounce.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}

{{/* Where the chart puts things inside the pod. */}}
{{- define "pounce.configDir" -}}/etc/pounce{{- end }}
{{- define "pounce.configPath" -}}/etc/pounce/pounce.toml{{- end }}
{{- define "pounce.runDir" -}}/run/pounce{{- end }}
{{- define "pounce.controlSocket" -}}/run/pounce/pounce.sock{{- end }}
{{- define "pounce.tlsDir" -}}/etc/pounce-tls{{- end }}

{{/*
The requested CPU in whole cores, rounded up (at least 1): "500m" -> 1, 2 -> 2,
"1.5" -> 2.  Empty without a CPU request.
*/}}
{{- define "pounce.requestedCores" -}}
{{- $requests := (.Values.resources | default dict).requests | default dict }}
{{- if hasKey $requests "cpu" }}
{{- $text := toString $requests.cpu }}
{{- if hasSuffix "m" $text }}
{{- max 1 (divf (trimSuffix "m" $text | float64) 1000 | ceil | int) }}
{{- else }}
{{- max 1 ($text | float64 | ceil | int) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
`config` as Pounce will read it: a copy of the value with what the chart derives added:
server.workers (one per requested core, unless set) and, with tls.enabled, the
certificate and key of the mounted Secret.  Returned as JSON (templates return text).
*/}}
{{- define "pounce.config" -}}
{{- $config := deepCopy .Values.config }}
{{- $server := get $config "server" }}
{{- if not (kindIs "map" $server) }}{{ $server = dict }}{{ end }}
{{- $cores := include "pounce.requestedCores" . }}
{{- if and $cores (not (hasKey $server "workers")) }}
{{- $_ := set $server "workers" ($cores | int) }}
{{- end }}
{{- if $server }}{{ $_ := set $config "server" $server }}{{ end }}
{{- if .Values.tls.enabled }}
{{- $secret := required "tls.secretName is required when tls.enabled" .Values.tls.secretName }}
{{- $tls := get $config "tls" }}
{{- if not (kindIs "map" $tls) }}{{ $tls = dict }}{{ end }}
{{- $_ := set $tls "certfile" (printf "%s/tls.crt" (include "pounce.tlsDir" .)) }}
{{- $_ := set $tls "keyfile" (printf "%s/tls.key" (include "pounce.tlsDir" .)) }}
{{- $_ := set $config "tls" $tls }}
{{- end }}
{{- toJson $config }}
{{- end }}

{{/*
A setting of config.shutdown, or Pounce's own default when unset (hasKey, not
`default`: 0 is a valid value).
*/}}
{{- define "pounce.shutdownSetting" -}}
{{- $shutdown := .root.Values.config.shutdown | default dict }}
{{- if hasKey $shutdown .key }}{{ index $shutdown .key | float64 }}{{ else }}{{ .fallback | float64 }}{{ end }}
{{- end }}

{{/*
terminationGracePeriodSeconds: drain_delay + shutdown.timeout + margin, rounded up.
The countdown starts when the pod is deleted, before the preStop hook (the drain) runs,
so everything must fit in it: the drain delay, in-flight requests finishing, then the
SIGTERM that ends the supervisor.
*/}}
{{- define "pounce.drainSeconds" -}}
{{- $delay := include "pounce.shutdownSetting" (dict "root" . "key" "drain_delay" "fallback" 0) | float64 }}
{{- $timeout := include "pounce.shutdownSetting" (dict "root" . "key" "timeout" "fallback" 30) | float64 }}
{{- addf $delay $timeout | ceil | int }}
{{- end }}

{{- define "pounce.terminationGracePeriodSeconds" -}}
{{- add (include "pounce.drainSeconds" . | int) (.Values.terminationGraceMarginSeconds | int) }}
{{- end }}

{{/*
A TOML value.  Helm reads numbers from YAML and JSON as float64, so whole numbers are
written as integers (Pounce's integer settings reject 2.0; its durations take either).
*/}}
{{- define "pounce.tomlValue" -}}
{{- if kindIs "string" . }}{{ toJson . }}
{{- else if kindIs "bool" . }}{{ ternary "true" "false" . }}
{{- else if or (kindIs "float64" .) (kindIs "float32" .) }}
{{- if eq (floor .) (float64 .) }}{{ int64 . }}{{ else }}{{ . }}{{ end }}
{{- else if or (kindIs "int" .) (kindIs "int64" .) }}{{ . }}
{{- else if kindIs "slice" . }}{{ toJson . }}
{{- else }}{{ fail (printf "config: %v is not a string, number, boolean or list" .) }}
{{- end }}
{{- end }}

{{/*
pounce.toml: `config` (top-level keys first, then one [table] each, its sub-tables
such as [limits.rate] after it; lists as TOML arrays), then the
listeners, admin and control socket the chart manages.  A null value (`--set
config.http.max_body_size=null`) removes a key, so Pounce's default applies.
*/}}
{{- define "pounce.toml" -}}
{{- $config := include "pounce.config" . | fromJson -}}
# Rendered by the {{ include "pounce.chart" . }} chart from its `config` value.
{{- range $key, $value := $config }}
{{- if not (or (kindIs "map" $value) (kindIs "invalid" $value)) }}
{{ $key }} = {{ include "pounce.tomlValue" $value }}
{{- end }}
{{- end }}
{{- range $table, $settings := $config }}
{{- if kindIs "map" $settings }}

[{{ $table }}]
{{- range $key, $value := $settings }}
{{- if not (or (kindIs "map" $value) (kindIs "invalid" $value)) }}
{{ $key }} = {{ include "pounce.tomlValue" $value }}
{{- end }}
{{- end }}
{{- range $sub, $subSettings := $settings }}
{{- if kindIs "map" $subSettings }}

[{{ $table }}.{{ $sub }}]
{{- range $key, $value := $subSettings }}
{{- if not (kindIs "invalid" $value) }}
{{ $key }} = {{ include "pounce.tomlValue" $value }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- range .Values.listen.http.hosts }}

[[listen]]
host = {{ . | toJson }}
port = {{ $.Values.listen.http.port | int }}
{{- end }}
{{- if .Values.listen.uds.enabled }}

[[listen]]
path = {{ .Values.listen.uds.path | toJson }}
mode = {{ .Values.listen.uds.mode }}
{{- end }}

[admin]
host = {{ .Values.admin.host | toJson }}
port = {{ .Values.admin.port | int }}

[control]
socket = {{ include "pounce.controlSocket" . | toJson }}
{{- end }}

{{/*
A path of config.health, or Pounce's default.
*/}}
{{- define "pounce.healthPath" -}}
{{- $health := .root.Values.config.health | default dict }}
{{- if hasKey $health .key }}{{ index $health .key }}{{ else }}{{ .fallback }}{{ end }}
{{- end }}

{{- define "pounce.metricsPath" -}}
{{- $metrics := .Values.config.metrics | default dict }}
{{- if hasKey $metrics "path" }}{{ $metrics.path }}{{ else }}/metrics{{ end }}
{{- end }}
