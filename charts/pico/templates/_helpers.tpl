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
{{- if .Values.admin.tls.enabled }}
{{- if not .Values.tls.existingSecret }}
{{- fail "admin.tls.enabled serves the admin port with the certificate of tls.existingSecret: set tls.existingSecret to a kubernetes.io/tls Secret (tls.crt, tls.key, ca.crt)" }}
{{- end }}
{{- $admin := get $config "admin" }}
{{- $tls := default dict (get $admin "tls") }}
{{- if not (kindIs "map" $tls) }}
{{- fail "config.admin.tls must be a mapping of admin.tls keys" }}
{{- end }}
{{- $dir := trimSuffix "/" .Values.tls.mountPath }}
{{- range $key, $file := dict "cert" "tls.crt" "key" "tls.key" }}
{{- if hasKey $tls $key }}
{{- fail (printf "config.admin.tls.%s is set by the chart when admin.tls.enabled is true (to %s/%s): remove it" $key $dir $file) }}
{{- end }}
{{- $_ := set $tls $key (printf "%s/%s" $dir $file) }}
{{- end }}
{{- $_ := set $admin "tls" $tls }}
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

{{/*
"true" when the admin port serves TLS: admin.tls.enabled, or admin.tls.cert set under config.
The probes, the ServiceMonitor and the test pod then use HTTPS.
*/}}
{{- define "pico.adminTLS" -}}
{{- $admin := get (default dict .Values.config) "admin" }}
{{- $tls := dict }}
{{- if kindIs "map" $admin }}
{{- $tls = get $admin "tls" }}
{{- end }}
{{- if .Values.admin.tls.enabled }}true
{{- else if and (kindIs "map" $tls) (get $tls "cert") }}true
{{- end }}
{{- end }}

{{/*
"true" when config.admin.auth sets a verification key: the admin API then requires a token
everywhere except /health and /ready.
*/}}
{{- define "pico.adminAuth" -}}
{{- $admin := get (default dict .Values.config) "admin" }}
{{- $auth := dict }}
{{- if kindIs "map" $admin }}
{{- $auth = get $admin "auth" }}
{{- end }}
{{- if kindIs "map" $auth }}
{{- range $key := list "token_hmac_secret_key" "token_rsa_public_key" "token_ecdsa_public_key" "jwks_url" }}
{{- if get $auth $key }}true{{ break }}{{ end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Whether the admin clients (ServiceMonitor, test pod) verify the admin certificate against the
CA in tls.existingSecret: "true" or empty.
*/}}
{{- define "pico.adminCA" -}}
{{- if and (eq (include "pico.adminTLS" .) "true") .Values.tls.existingSecret .Values.admin.tls.caKey (not .Values.admin.tls.insecureSkipVerify) }}true{{ end }}
{{- end }}

{{/*
".<clusterDomain>" when clusterDomain is set, else empty: the suffix of in-cluster DNS names.
*/}}
{{- define "pico.domainSuffix" -}}
{{- with .Values.clusterDomain }}.{{ . }}{{ end }}
{{- end }}

{{/*
A probe of the server container. With admin TLS, an httpGet on the admin port that names no
scheme gets `scheme: HTTPS`. Called with (dict "probe" <probe values> "root" $).
*/}}
{{- define "pico.probe" -}}
{{- $probe := deepCopy .probe }}
{{- $get := get $probe "httpGet" }}
{{- if and (eq (include "pico.adminTLS" .root) "true") (kindIs "map" $get) }}
{{- if and (not (hasKey $get "scheme")) (has (toString (get $get "port")) (list "admin" (toString .root.Values.ports.admin))) }}
{{- $_ := set $get "scheme" "HTTPS" }}
{{- end }}
{{- end }}
{{- toYaml $probe }}
{{- end }}
