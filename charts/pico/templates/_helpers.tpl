{{/*
Chart name, truncated to the 63 characters of a DNS label.
*/}}
{{- define "pico.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: the release name when it already contains the chart name (release `pico` gives
StatefulSet `pico`), else `<release>-<chart>`. 52 characters leave room for the suffixes
(`-headless`, `-admin`, the StatefulSet's controller-revision hash).
*/}}
{{- define "pico.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Name of the headless Service the members discover each other through.
*/}}
{{- define "pico.headlessName" -}}
{{- printf "%s-headless" (include "pico.fullname" .) }}
{{- end }}

{{- define "pico.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels that select the members; they never change over the life of a release.
*/}}
{{- define "pico.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pico.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels of every resource.
*/}}
{{- define "pico.labels" -}}
helm.sh/chart: {{ include "pico.chart" . }}
{{ include "pico.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: pico
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "pico.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "pico.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "pico.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The base server.yaml: values.config plus the keys the chart owns (listener ports and the
drain bound). The chart refuses to render when values.config sets an owned key, so the
ports of the Services, the probes and the server can never disagree.
*/}}
{{- define "pico.baseConfig" -}}
{{- $config := deepCopy (default dict .Values.config) }}
{{- range $section := list "proxy" "upstream" "admin" "gossip" }}
{{- $s := default dict (get $config $section) }}
{{- if not (kindIs "map" $s) }}
{{- fail (printf "config.%s must be a mapping of %s keys" $section $section) }}
{{- end }}
{{- if hasKey $s "bind_addr" }}
{{- fail (printf "config.%s.bind_addr is set by the chart from ports.%s: set ports.%s instead" $section $section $section) }}
{{- end }}
{{- $_ := set $s "bind_addr" (printf ":%d" (int (get $.Values.ports $section))) }}
{{- $_ := set $config $section $s }}
{{- end }}
{{- $server := default dict (get $config "server") }}
{{- if hasKey $server "graceful_shutdown_timeout" }}
{{- fail "config.server.graceful_shutdown_timeout is set by the chart: set terminationGracePeriodSeconds (and shutdownMarginSeconds) instead" }}
{{- end }}
{{- $grace := int .Values.terminationGracePeriodSeconds }}
{{- $margin := int .Values.shutdownMarginSeconds }}
{{- if le $grace $margin }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be greater than shutdownMarginSeconds (%d) so the server can drain before it is killed" $grace $margin) }}
{{- end }}
{{- $_ := set $server "graceful_shutdown_timeout" (printf "%ds" (sub $grace $margin)) }}
{{- $_ := set $config "server" $server }}
{{- $cluster := default dict (get $config "cluster") }}
{{- range $key := list "join" "node_id" "node_id_prefix" }}
{{- if hasKey $cluster $key }}
{{- fail (printf "config.cluster.%s is written by the bootstrap init container from the headless Service: remove it" $key) }}
{{- end }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{/*
Environment shared by the init and server containers.
*/}}
{{- define "pico.podEnv" -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: POD_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
In-cluster DNS names used by NOTES.txt and the test pod.
*/}}
{{- define "pico.serviceHost" -}}
{{- printf "%s.%s.svc" (include "pico.fullname" .) .Release.Namespace }}
{{- end }}
