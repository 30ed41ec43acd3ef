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
Labels that select the server pods (the members) in Services, the PodDisruptionBudget, the
NetworkPolicy and the spread constraints: the StatefulSet's selector plus the component label
the pods have always carried, so the `helm test` pod (component `test`) is never counted as a
member. The StatefulSet's own selector stays pico.selectorLabels: it is immutable.
*/}}
{{- define "pico.serverSelectorLabels" -}}
{{ include "pico.selectorLabels" . }}
app.kubernetes.io/component: server
{{- end }}

{{/*
Labels that select the `helm test` pod.
*/}}
{{- define "pico.testSelectorLabels" -}}
{{ include "pico.selectorLabels" . }}
app.kubernetes.io/component: test
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

{{/*
commonAnnotations as a YAML mapping, or nothing: the annotations of every object. Use it as
  {{- with include "pico.commonAnnotations" . }}
  annotations:
    {{- . | nindent 4 }}
  {{- end }}
or through pico.annotations to merge an object's own annotations in.
*/}}
{{- define "pico.commonAnnotations" -}}
{{- with .Values.commonAnnotations }}
{{- toYaml . }}
{{- end }}
{{- end }}

{{/*
The `annotations:` block of an object: commonAnnotations merged with the object's own
(which win on a clash), or nothing when both are empty. Called with (dict "root" $ "extra"
<map or nil>); indent the result to the object's metadata.
*/}}
{{- define "pico.annotations" -}}
{{- $all := merge (deepCopy (default dict .extra)) (default dict .root.Values.commonAnnotations) }}
{{- with $all }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
The image reference: image.repository, with its registry host replaced by (or, when it names
none, prefixed with) global.imageRegistry; then `@<image.digest>` when a digest is set (it pins
the image, so the tag is left out), else `:<image.tag>` (default: the chart's appVersion). A
registry host is the first path element when it contains a `.` or `:` or is `localhost`, as
container runtimes read it.
*/}}
{{- define "pico.image" -}}
{{- $repo := .Values.image.repository }}
{{- with dig "imageRegistry" "" (default dict .Values.global) }}
{{- $parts := splitList "/" $repo }}
{{- $first := first $parts }}
{{- if and (gt (len $parts) 1) (or (contains "." $first) (contains ":" $first) (eq $first "localhost")) }}
{{- $repo = join "/" (rest $parts) }}
{{- end }}
{{- $repo = printf "%s/%s" (trimSuffix "/" .) $repo }}
{{- end }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repo .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repo (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The imagePullSecrets of the pods: imagePullSecrets, then global.imagePullSecrets (names or
{name: ...}), each name once. Empty when there are none.
*/}}
{{- define "pico.imagePullSecrets" -}}
{{- $names := list }}
{{- range concat (default list .Values.imagePullSecrets) (default list (dig "imagePullSecrets" list (default dict .Values.global))) }}
{{- $name := "" }}
{{- if kindIs "string" . }}
{{- $name = . }}
{{- else }}
{{- $name = .name }}
{{- end }}
{{- if and $name (not (has $name $names)) }}
{{- $names = append $names $name }}
{{- end }}
{{- end }}
{{- range $names }}
- name: {{ . }}
{{- end }}
{{- end }}

{{/*
Name of the kubernetes.io/tls Secret mounted at tls.mountPath: tls.existingSecret, else
`<fullname>-tls` when tls.certManager.issuerRef.name makes the chart's Certificate write it,
else empty (nothing is mounted).
*/}}
{{- define "pico.tlsSecretName" -}}
{{- if .Values.tls.existingSecret }}
{{- .Values.tls.existingSecret }}
{{- else if dig "certManager" "issuerRef" "name" "" .Values.tls }}
{{- printf "%s-tls" (include "pico.fullname" .) }}
{{- end }}
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
{{- range $port := list "proxy" "upstream" "admin" }}
{{- if (index $.Values $port).tls.enabled }}
{{- if not (include "pico.tlsSecretName" $) }}
{{- fail (printf "%s.tls.enabled serves the %s port with the certificate of tls.existingSecret: set tls.existingSecret to a kubernetes.io/tls Secret (tls.crt, tls.key, ca.crt), or tls.certManager.issuerRef.name to have cert-manager issue one" $port $port) }}
{{- end }}
{{- $section := get $config $port }}
{{- $tls := default dict (get $section "tls") }}
{{- if not (kindIs "map" $tls) }}
{{- fail (printf "config.%s.tls must be a mapping of %s.tls keys" $port $port) }}
{{- end }}
{{- $dir := trimSuffix "/" $.Values.tls.mountPath }}
{{- range $key, $file := dict "cert" "tls.crt" "key" "tls.key" }}
{{- if hasKey $tls $key }}
{{- fail (printf "config.%s.tls.%s is set by the chart when %s.tls.enabled is true (to %s/%s): remove it" $port $key $port $dir $file) }}
{{- end }}
{{- $_ := set $tls $key (printf "%s/%s" $dir $file) }}
{{- end }}
{{- /* Members trust the Secret's CA for each other's certificates, which differ for a while
when a renewal reaches the pods one after the other; an explicit peer_cas wins. */}}
{{- if and (eq $port "proxy") $.Values.proxy.tls.peerCAs $.Values.proxy.tls.caKey (not (hasKey $tls "peer_cas")) }}
{{- /* On install and upgrade (not helm template), a Secret that lacks the key stops the
release here, before a pod rolls and fails to start on the missing file. */}}
{{- $secret := lookup "v1" "Secret" $.Release.Namespace (include "pico.tlsSecretName" $) }}
{{- if and $secret (not (hasKey (default dict (get $secret "data")) $.Values.proxy.tls.caKey)) }}
{{- fail (printf "proxy.tls.peerCAs: Secret %q (tls.existingSecret) has no key %q (proxy.tls.caKey), so members could not trust each other's certificates: set proxy.tls.caKey to the key that holds the CA, or caKey=\"\" for a certificate from a public CA, or proxy.tls.peerCAs=false" (include "pico.tlsSecretName" $) $.Values.proxy.tls.caKey) }}
{{- end }}
{{- $_ := set $tls "peer_cas" (printf "%s/%s" $dir $.Values.proxy.tls.caKey) }}
{{- end }}
{{- $_ := set $section "tls" $tls }}
{{- end }}
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
"true" when a port ("proxy", "upstream" or "admin") serves TLS: <port>.tls.enabled, or
<port>.tls.cert set under config. Its clients (the probes and the ServiceMonitor for the admin
port, the test pod for all three) then use HTTPS. Called with (list $ "<port>").
*/}}
{{- define "pico.portTLS" -}}
{{- $root := index . 0 }}
{{- $port := index . 1 }}
{{- $section := get (default dict $root.Values.config) $port }}
{{- $tls := dict }}
{{- if kindIs "map" $section }}
{{- $tls = get $section "tls" }}
{{- end }}
{{- if (index $root.Values $port).tls.enabled }}true
{{- else if and (kindIs "map" $tls) (get $tls "cert") }}true
{{- end }}
{{- end }}

{{- define "pico.adminTLS" -}}
{{- include "pico.portTLS" (list . "admin") }}
{{- end }}

{{/*
"true" when the server verifies tokens on a port ("proxy", "upstream" or "admin"): a
verification key is set in its auth section (config.proxy.auth, config.auth for the upstream
port, config.admin.auth). The admin API then requires a token everywhere except /health and
/ready. Called with (list $ "<port>").
*/}}
{{- define "pico.portAuth" -}}
{{- $root := index . 0 }}
{{- $port := index . 1 }}
{{- $config := default dict $root.Values.config }}
{{- $auth := dict }}
{{- if eq $port "upstream" }}
{{- $auth = get $config "auth" }}
{{- else }}
{{- $section := get $config $port }}
{{- if kindIs "map" $section }}
{{- $auth = get $section "auth" }}
{{- end }}
{{- end }}
{{- if kindIs "map" $auth }}
{{- range $key := list "token_hmac_secret_key" "token_rsa_public_key" "token_ecdsa_public_key" "jwks_url" }}
{{- if get $auth $key }}true{{ break }}{{ end }}
{{- end }}
{{- end }}
{{- end }}

{{- define "pico.adminAuth" -}}
{{- include "pico.portAuth" (list . "admin") }}
{{- end }}

{{/*
Whether the test pod (and for the admin port the ServiceMonitor) verifies a port's
certificate against the CA in tls.existingSecret: "true" or empty. Called with
(list $ "<port>").
*/}}
{{- define "pico.portCA" -}}
{{- $root := index . 0 }}
{{- $v := index $root.Values (index . 1) }}
{{- if and (eq (include "pico.portTLS" .) "true") (include "pico.tlsSecretName" $root) $v.tls.caKey (not $v.tls.insecureSkipVerify) }}true{{ end }}
{{- end }}

{{- define "pico.adminCA" -}}
{{- include "pico.portCA" (list . "admin") }}
{{- end }}

{{/*
"true" when a port ("proxy", "upstream" or "admin") requires client certificates:
config.<port>.tls.client_cas is set. Called with (list $ "<port>").
*/}}
{{- define "pico.portMutual" -}}
{{- $section := get (default dict (index . 0).Values.config) (index . 1) }}
{{- if kindIs "map" $section }}
{{- $tls := get $section "tls" }}
{{- if and (kindIs "map" $tls) (get $tls "client_cas") }}true{{ end }}
{{- end }}
{{- end }}

{{/*
The kubernetes.io/tls Secret whose tls.crt and tls.key the test pod presents as its client
certificate on a port ("proxy" or "upstream"): <port>.tls.clientSecret, or empty. The admin
port has none, since its probes cannot present one. Rendering fails when the port serves no
TLS, where the certificate would never be asked for. Called with (list $ "<port>").
*/}}
{{- define "pico.portClientSecret" -}}
{{- $root := index . 0 }}
{{- $port := index . 1 }}
{{- if ne $port "admin" }}
{{- with (index $root.Values $port).tls.clientSecret }}
{{- if ne (include "pico.portTLS" (list $root $port)) "true" }}
{{- fail (printf "%s.tls.clientSecret gives helm test a client certificate for the %s port, which does not serve TLS: set %s.tls.enabled (or config.%s.tls.cert and key), or remove %s.tls.clientSecret" $port $port $port $port $port) }}
{{- end }}
{{- . }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The appProtocol of a port ("proxy", "upstream" or "admin") in the Services: https when it
serves TLS, so that service meshes and gateways do not read it as plain HTTP. Called with
(list $ "<port>").
*/}}
{{- define "pico.appProtocol" -}}
{{- ternary "https" "http" (eq (include "pico.portTLS" .) "true") }}
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

{{/*
"https" when an Ingress (ingress.proxy or ingress.upstream) terminates TLS for a host: a TLS
entry lists the host, or lists none (then it covers every host); else "http". Called with
(list <ingress values> <host>).
*/}}
{{- define "pico.ingressScheme" -}}
{{- $ing := index . 0 }}
{{- $host := index . 1 }}
{{- $tls := false }}
{{- range $ing.tls }}
{{- if or (not .hosts) (has $host .hosts) }}
{{- $tls = true }}
{{- end }}
{{- end }}
{{- ternary "https" "http" $tls }}
{{- end }}

{{/*
labels and annotations of one alert of the PrometheusRule: prometheusRule.alertLabels with
its severity, prometheusRule.alertAnnotations with its summary and description. Called with
(dict "root" $ "severity" ... "summary" ... "description" ...).
*/}}
{{- define "pico.alertMeta" -}}
{{- $r := .root.Values.prometheusRule }}
{{- $labels := merge (dict "severity" .severity) (default dict $r.alertLabels) }}
{{- $annotations := merge (dict "summary" .summary "description" .description) (default dict $r.alertAnnotations) -}}
labels:
  {{- toYaml $labels | nindent 2 }}
annotations:
  {{- toYaml $annotations | nindent 2 }}
{{- end }}
