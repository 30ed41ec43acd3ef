#!/usr/bin/env bash
# End-to-end proof of the Helm chart on a real Kubernetes (k8s-local, ../shared/k8s-local):
#
#   1. bring up k8s-local, build bin/pico (CGO_ENABLED=0), build its image with `make image`
#      (no Docker daemon) and import the tarball into the node's containerd;
#   2. `ct install` (chart-testing: install with charts/pico/ci/*-values.yaml, helm test,
#      uninstall, in a throw-away namespace);
#   3. the life cycle with Helm in namespace $E2E_NAMESPACE:
#      install the previous chart version (internal/charttest/testdata/previous) with 3
#      members and upgrade it to this chart: the client Service keeps Ready endpoints through
#      the roll, selects only the server pods after it, and `helm test` no longer makes the
#      PodDisruptionBudget count an unmanaged pod; helm test; upgrade to 5: the 3 existing pods are not
#      restarted and every member reports 5 active members; scale to 2: the departing pods
#      exit 0 (graceful leave) and the rest report 2; a config change rolls the pods one at
#      a time while a request loop through the client Service keeps being answered; delete a
#      pod: it comes back with a new node ID and rejoins; rebalancing (see rebalance_phase):
#      60 agent connections through the client Service spread over the members after
#      scaling 3 → 5; uninstall leaves nothing behind;
#   4. the chart as the subchart of e2e/k8s/umbrella (a file:// dependency) in namespace
#      $E2E_NAMESPACE-umbrella, its image named through global.imageRegistry: install, helm test,
#      uninstall.
#
# Timings are printed as "TIMING name seconds". Environment:
#   K8S_LOCAL       path of the k8s-local scripts (default ../shared/k8s-local from the repo)
#   E2E_NAMESPACE   namespace of the life-cycle test (default pico-e2e)
#   E2E_CT_INSTALL  0 skips the ct install step (default 1)
#   E2E_KEEP        1 leaves the release installed on exit, for debugging (default 0)
#   PICO_BIN        a prebuilt static pico binary to use instead of building bin/pico
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
K8S_LOCAL=${K8S_LOCAL:-$ROOT/../shared/k8s-local}
NS=${E2E_NAMESPACE:-pico-e2e}
RELEASE=pico
STS=pico
CHART=charts/pico
# The chart version released before this one, for the upgrade test.
PREVIOUS_CHART=internal/charttest/testdata/previous/pico-0.1.0.tgz
UMBRELLA=e2e/k8s/umbrella
UNS=$NS-umbrella
CREATED_CRD=
ADMIN_PORT=8002
T0=$(date +%s)

log() { printf '\n=== [%4ss] %s\n' "$(($(date +%s) - T0))" "$*"; }
fail() { printf '\nFAIL: %s\n' "$*" >&2; exit 1; }
timing() { printf 'TIMING %s %s\n' "$1" "$2" | tee -a "$ARTIFACTS/timings.txt"; }
now_ms() { date +%s%3N; }
secs_since() { awk -v a="$1" -v b="$(now_ms)" 'BEGIN { printf "%.1f", (b - a) / 1000 }'; }

ARTIFACTS=${E2E_ARTIFACTS:-$ROOT/e2e/.artifacts/k8s}
mkdir -p "$ARTIFACTS"
: >"$ARTIFACTS/timings.txt"
BG_PIDS=()

# ---------------------------------------------------------------- cluster, binary, image
log "k8s-local up ($K8S_LOCAL)"
[[ -x $K8S_LOCAL/up.sh ]] || fail "k8s-local not found at $K8S_LOCAL (set K8S_LOCAL)"
# up.sh is idempotent but can fail spuriously on a warm machine: under pipefail its
# `ip addr show | grep -q` check sometimes loses to SIGPIPE and it then tries to add the
# bridge address again ("Address already assigned"). Retry it a few times.
for attempt in 1 2 3; do
  "$K8S_LOCAL/up.sh" && break
  [[ $attempt == 3 ]] && fail "k8s-local up.sh failed 3 times (see its output above)"
  echo "k8s-local up.sh failed (attempt $attempt); retrying" >&2
  sleep 2
done
# shellcheck source=/dev/null
. "$K8S_LOCAL/env.sh"
kubectl get nodes -o wide

PICO_BIN=${PICO_BIN:-}
if [[ -z $PICO_BIN ]]; then
  log "build bin/pico (static)"
  mkdir -p bin
  VERSION=$(git describe --tags --always --dirty 2>/dev/null || echo dev)
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X github.com/pico-proxy/pico/internal/version.Version=$VERSION" \
    -o bin/pico ./cmd/pico
  PICO_BIN=bin/pico
fi
# A tag per binary content: pods always run the binary just built, never a stale image.
TAG=e2e-$(sha256sum "$PICO_BIN" | cut -c1-12)
IMAGE=registry.local/pico
# The image is what `make image` ships (tools/mkimage), not a test-only build of it.
log "image $IMAGE:$TAG from $PICO_BIN with make image, imported into the node's containerd"
make --no-print-directory image IMAGE_BINARY="$PICO_BIN" IMAGE_REPOSITORY="$IMAGE" IMAGE_TAG="$TAG" \
  IMAGE_TAR="$ARTIFACTS/pico-image.tar"
$K8S_CTR images import "$ARTIFACTS/pico-image.tar" 2>&1 | grep -v DEPRECATION || true
$K8S_CTR images ls -q 2>/dev/null | grep -qx "$IMAGE:$TAG" || fail "containerd did not import $IMAGE:$TAG from make image's tarball"
# The same image under the chart's default repository path, for global.imageRegistry=registry.local.
$K8S_CTR images tag --force "$IMAGE:$TAG" "registry.local/pico-proxy/pico:$TAG" >/dev/null
IMAGE_ARGS=(--set "image.repository=$IMAGE" --set-string "image.tag=$TAG" --set image.pullPolicy=Never)

# ---------------------------------------------------------------- helpers
diagnose() {
  local ns=$1
  echo "--- diagnostics for namespace $ns" >&2
  kubectl -n "$ns" get pods,svc,endpointslices -o wide >&2 || true
  kubectl -n "$ns" get events --sort-by=.lastTimestamp 2>/dev/null | tail -40 >&2 || true
  for p in $(kubectl -n "$ns" get pods -o name 2>/dev/null); do
    echo "--- $p" >&2
    kubectl -n "$ns" logs "$p" --all-containers --prefix --tail=60 >&2 || true
  done
}

cleanup() {
  local rc=$?
  for pid in "${BG_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  if [[ $rc -ne 0 ]]; then diagnose "$NS"; fi
  if [[ $rc -ne 0 ]] && kubectl get namespace "$UNS" >/dev/null 2>&1; then diagnose "$UNS"; fi
  if [[ ${E2E_KEEP:-0} != 1 ]]; then
    helm uninstall "$RELEASE" -n "$NS" --wait --timeout 2m >/dev/null 2>&1 || true
    kubectl delete namespace "$NS" --wait=true --timeout=2m >/dev/null 2>&1 || true
    helm uninstall umbrella -n "$UNS" --wait --timeout 2m >/dev/null 2>&1 || true
    kubectl delete namespace "$UNS" --wait=true --timeout=2m >/dev/null 2>&1 || true
  fi
  # The cert-manager CRD is cluster-wide: remove it only when this run created it.
  if [[ -n $CREATED_CRD ]]; then kubectl delete crd "$CREATED_CRD" --wait=false >/dev/null 2>&1 || true; fi
  if [[ $rc -eq 0 ]]; then echo "E2E-K8S PASS in $(($(date +%s) - T0))s"; else echo "E2E-K8S FAIL (exit $rc) after $(($(date +%s) - T0))s"; fi
  exit $rc
}
trap cleanup EXIT

# active_members POD: how many members POD's admin API lists as active.
active_members() {
  kubectl get --raw "/api/v1/namespaces/$NS/pods/$1:$ADMIN_PORT/proxy/status/cluster/nodes" 2>/dev/null | tr -d '\n' |
    grep -oE '"status": *"active"' | wc -l || true
}

# member_ids POD: the active member IDs POD's admin API lists, sorted, one a line.
member_ids() {
  kubectl get --raw "/api/v1/namespaces/$NS/pods/$1:$ADMIN_PORT/proxy/status/cluster/nodes" 2>/dev/null | tr -d '\n' |
    grep -oE '\{[^{}]*"status": *"active"[^{}]*\}' | grep -oE '"id": *"[^"]*"' | sed -E 's/.*"([^"]*)"$/\1/' | sort || true
}

# wait_members N TIMEOUT: every pod pico-0..N-1 lists exactly N active members, the same ones.
wait_members() {
  local n=$1 deadline=$(($(date +%s) + $2)) i ok first ids
  while :; do
    ok=1 first=
    for ((i = 0; i < n; i++)); do
      ids=$(member_ids "$STS-$i")
      if [[ $(grep -c . <<<"$ids") != "$n" ]]; then ok=0; break; fi
      if [[ -z $first ]]; then first=$ids; elif [[ $ids != "$first" ]]; then ok=0; break; fi
    done
    [[ $ok == 1 ]] && return 0
    if (($(date +%s) > deadline)); then
      for ((i = 0; i < n; i++)); do echo "$STS-$i sees: $(member_ids "$STS-$i" | tr '\n' ' ')" >&2; done
      return 1
    fi
    sleep 1
  done
}

# wait_ready N TIMEOUT: exactly N server pods exist and all are Ready.
wait_ready() {
  local n=$1 deadline=$(($(date +%s) + $2)) total ready
  while :; do
    total=$(kubectl -n "$NS" get pods -l "app.kubernetes.io/instance=$RELEASE,app.kubernetes.io/component=server" --no-headers 2>/dev/null | wc -l)
    ready=$(kubectl -n "$NS" get pods -l "app.kubernetes.io/instance=$RELEASE,app.kubernetes.io/component=server" \
      -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' 2>/dev/null | grep -c True || true)
    [[ $total == "$n" && $ready == "$n" ]] && return 0
    (($(date +%s) > deadline)) && { kubectl -n "$NS" get pods -o wide >&2; return 1; }
    sleep 0.5
  done
}

# pod_fingerprint POD: uid, restart count and start time of its server container.
pod_fingerprint() {
  kubectl -n "$NS" get pod "$1" -o jsonpath='{.metadata.uid} {.status.containerStatuses[?(@.name=="server")].restartCount} {.status.containerStatuses[?(@.name=="server")].state.running.startedAt}'
}

node_id_of() { # POD: its own active node ID (the prefix is the pod name)
  member_ids "$1" | grep -E "^$1-" | head -1
}

helm_test() {
  local start; start=$(now_ms)
  if ! helm test "$RELEASE" -n "$NS" --timeout 4m; then
    kubectl -n "$NS" logs "$STS-test" >&2 || true
    fail "helm test failed"
  fi
  timing "helm-test-$1" "$(secs_since "$start")"
}

# wait_rolled OLD_REV SAMPLE: waits, 10 minutes at most, until the StatefulSet has replaced all
# 3 pods of revision OLD_REV and all are Ready, calling the function SAMPLE between checks.
wait_rolled() {
  local old_rev=$1 sample=$2 t0 st updated readyr urev crev
  t0=$(date +%s)
  while :; do
    "$sample"
    st=$(kubectl -n "$NS" get statefulset "$STS" -o jsonpath='{.status.updatedReplicas} {.status.readyReplicas} {.status.updateRevision} {.status.currentRevision}')
    read -r updated readyr urev crev <<<"$st"
    [[ $urev != "$old_rev" && $urev == "$crev" && $updated == 3 && $readyr == 3 ]] && return 0
    (($(date +%s) - t0 > 600)) && return 1
    sleep 0.5
  done
}

# ---------------------------------------------------------------- ct install
if [[ ${E2E_CT_INSTALL:-1} == 1 ]]; then
  log "ct install (charts/pico with ci/*-values.yaml: install, helm test, uninstall)"
  # shellcheck source=e2e/k8s/tools.sh
  . e2e/k8s/tools.sh # ct; kubectl and helm come from k8s-local's env.sh
  start=$(now_ms)
  ct install --config ct.yaml --charts "$CHART" \
    --helm-extra-set-args "--set=image.repository=$IMAGE --set-string=image.tag=$TAG --set=image.pullPolicy=Never"
  timing ct-install "$(secs_since "$start")"
fi

# ---------------------------------------------------------------- install 3
log "namespace $NS: the API server checks the chart's objects before the install"
kubectl delete namespace "$NS" --wait=true --ignore-not-found >/dev/null
kubectl create namespace "$NS" >/dev/null
kubectl label namespace "$NS" pod-security.kubernetes.io/enforce=restricted >/dev/null
# The image alone, without the chart's runAsUser or args: the kubelet must accept its own
# non-root user for runAsNonRoot, and its default command must be a server that gets Ready.
start=$(now_ms)
cat <<EOF | kubectl -n "$NS" apply -f - >/dev/null
apiVersion: v1
kind: Pod
metadata: {name: e2e-bare-image}
spec:
  automountServiceAccountToken: false
  securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
  containers:
    - name: pico
      image: $IMAGE:$TAG
      imagePullPolicy: Never
      readinessProbe: {httpGet: {path: /ready, port: 8002}, periodSeconds: 1}
      securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
EOF
if ! kubectl -n "$NS" wait --for=condition=Ready pod/e2e-bare-image --timeout=90s >/dev/null; then
  kubectl -n "$NS" describe pod e2e-bare-image | tail -15 >&2
  fail "the image does not run on its own as a non-root server (make image's user or default command)"
fi
timing bare-image-ready "$(secs_since "$start")"
kubectl -n "$NS" delete pod e2e-bare-image --wait=true >/dev/null
echo "the image alone runs 'pico server' Ready as its non-root user under runAsNonRoot"
# The API server validates every built-in object the chart can render (optional ones
# switched on), rejecting unknown fields, and the cert-manager Certificate against
# cert-manager's CRD (the copy internal/charttest validates with, installed for the dry run
# unless the cluster has it).
if ! kubectl get crd certificates.cert-manager.io >/dev/null 2>&1; then
  kubectl apply -f internal/charttest/testdata/crds/cert-manager.io_certificates.yaml >/dev/null
  CREATED_CRD=certificates.cert-manager.io
  kubectl wait --for condition=established "crd/$CREATED_CRD" --timeout=60s >/dev/null
fi
dry_run() { # extra helm flags: render with them and have the API server validate strictly
  helm template "$RELEASE" "$CHART" -n "$NS" --validate "${IMAGE_ARGS[@]}" \
    --set adminService.enabled=true --set networkPolicy.enabled=true \
    --set ingress.proxy.enabled=true --set 'ingress.proxy.hosts[0]=*.pico.example' \
    --set ingress.upstream.enabled=true --set 'ingress.upstream.hosts[0]=upstream.pico.example' \
    --set auth.existingSecret=pico-auth --set 'commonAnnotations.example\.com/team=edge' \
    --set tls.certManager.issuerRef.name=pico-ca --set tls.certManager.duration=2160h \
    --set service.internalTrafficPolicy=Local --set service.labels.exposure=internal \
    --set grafanaDashboard.enabled=true "$@" |
    kubectl apply -n "$NS" --dry-run=server --validate=strict -f - >/dev/null
}
dry_run --set service.type=NodePort --set podDisruptionBudget.maxUnavailable=null --set podDisruptionBudget.minAvailable=2
dry_run --set service.type=LoadBalancer --set service.loadBalancerClass=example.com/lb \
  --set 'service.loadBalancerSourceRanges[0]=10.0.0.0/8' --set global.imageRegistry=registry.local \
  --set image.digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
echo "server-side dry run (strict) accepted every object, the Certificate included"
if [[ -n $CREATED_CRD ]]; then kubectl delete crd "$CREATED_CRD" >/dev/null && CREATED_CRD=; fi
# proxy.tls.peerCAs (on by default) needs the CA key in tls.existingSecret: with a live API
# server the chart looks the Secret up and refuses a release it would make crash-loop.
kubectl -n "$NS" create secret generic pico-tls-no-ca --type=kubernetes.io/tls \
  --from-literal=tls.crt=leaf --from-literal=tls.key=key >/dev/null
if out=$(helm install "$RELEASE" "$CHART" -n "$NS" --dry-run=server "${IMAGE_ARGS[@]}" \
  --set tls.existingSecret=pico-tls-no-ca --set proxy.tls.enabled=true 2>&1); then
  fail "a release whose TLS Secret lacks ca.crt was accepted with proxy.tls.peerCAs on"
fi
grep -q 'has no key "ca.crt" (proxy.tls.caKey)' <<<"$out" || fail "unexpected refusal: $out"
kubectl -n "$NS" delete secret pico-tls-no-ca >/dev/null
echo "a TLS Secret without ca.crt is refused at install, naming proxy.tls.caKey"
log "helm install $RELEASE from the previous chart ($PREVIOUS_CHART), then helm upgrade to $CHART"
start=$(now_ms)
helm install "$RELEASE" "$PREVIOUS_CHART" -n "$NS" "${IMAGE_ARGS[@]}" --wait --timeout 5m
wait_ready 3 60 || fail "3 pods not Ready"
timing install-to-all-ready "$(secs_since "$start")"
wait_members 3 120 || fail "the 3 members did not form one cluster"
timing install-to-all-members "$(secs_since "$start")"
kubectl -n "$NS" get pods -o wide
for i in 0 1 2; do echo "$STS-$i: node $(node_id_of "$STS-$i"), bootstrap: $(kubectl -n "$NS" logs "$STS-$i" -c bootstrap 2>/dev/null | tail -1)"; done
helm_test previous-chart

# unmanaged_pod_events: how often the PodDisruptionBudget reported pods it cannot account for
# (a pod without a controller, such as the helm test pod, among the ones it selects).
unmanaged_pod_events() {
  kubectl -n "$NS" get events --field-selector "involvedObject.kind=PodDisruptionBudget,involvedObject.name=$STS,reason=UnmanagedPods" \
    -o jsonpath='{range .items[*]}{.count}{"\n"}{end}' 2>/dev/null | awk '{ n += $1 } END { print n + 0 }'
}
# ready_endpoints: the pods behind the client Service's Ready endpoints, sorted, one a line.
ready_endpoints() {
  kubectl -n "$NS" get endpointslices -l "kubernetes.io/service-name=$RELEASE" \
    -o jsonpath='{range .items[*].endpoints[?(@.conditions.ready==true)]}{.targetRef.name}{"\n"}{end}' 2>/dev/null | sort
}
# The previous chart's PDB selects the test pod, which no controller manages: the disruption
# controller says so. That this is seen proves the check after the upgrade can see it.
n=$(unmanaged_pod_events)
echo "the previous chart's PodDisruptionBudget reported unmanaged pods $n time(s) during its helm test"
((n > 0)) || fail "the previous chart's helm test left no UnmanagedPods event: the check below could not see the bug it guards against"
kubectl -n "$NS" delete events --field-selector "involvedObject.kind=PodDisruptionBudget,reason=UnmanagedPods" >/dev/null 2>&1 || true
old_rev=$(kubectl -n "$NS" get statefulset "$STS" -o jsonpath='{.status.updateRevision}')
start=$(now_ms)
helm upgrade "$RELEASE" "$CHART" -n "$NS" "${IMAGE_ARGS[@]}" --timeout 10m
# The new selectors carry app.kubernetes.io/component: server, which the old pods have too, so
# the client Service never loses them while the StatefulSet replaces them one at a time.
min_endpoints=3
sample_endpoints() {
  local n
  n=$(ready_endpoints | grep -c . || true)
  ((n < min_endpoints)) && min_endpoints=$n
  return 0
}
wait_rolled "$old_rev" sample_endpoints || fail "the upgrade's roll did not finish in 10 minutes"
timing upgrade-from-previous-chart "$(secs_since "$start")"
echo "minimum Ready endpoints of Service $RELEASE during the upgrade: $min_endpoints of 3"
((min_endpoints >= 2)) || fail "the upgrade from the previous chart left the client Service with $min_endpoints Ready endpoints"
wait_members 3 120 || fail "3 members after the upgrade from the previous chart"
helm_test 3-members
got=$(ready_endpoints | tr '\n' ' ')
[[ $got == "$STS-0 $STS-1 $STS-2 " ]] || fail "client Service endpoints after the upgrade: '$got', want the 3 members only"
kubectl -n "$NS" get statefulset "$STS" -o jsonpath='{.spec.selector.matchLabels}'; echo
n=$(unmanaged_pod_events)
[[ $n == 0 ]] || fail "the PodDisruptionBudget counted the helm test pod ($n UnmanagedPods events): its selector must require component=server"
echo "after the upgrade: endpoints $got; helm test left the PodDisruptionBudget's count alone"

# ---------------------------------------------------------------- scale up to 5
log "helm upgrade --set replicaCount=5 (no --reuse-values, as users run it): existing pods keep running"
declare -A before
for i in 0 1 2; do before[$i]=$(pod_fingerprint "$STS-$i"); done
start=$(now_ms)
helm upgrade "$RELEASE" "$CHART" -n "$NS" "${IMAGE_ARGS[@]}" --set replicaCount=5 --wait --timeout 5m
wait_ready 5 120 || fail "5 pods not Ready"
timing scale-up-to-all-ready "$(secs_since "$start")"
wait_members 5 120 || fail "the 5 members did not form one cluster"
timing scale-up-to-all-members "$(secs_since "$start")"
for i in 0 1 2; do
  after=$(pod_fingerprint "$STS-$i")
  [[ $after == "${before[$i]}" ]] || fail "$STS-$i was restarted by scaling: before '${before[$i]}' after '$after'"
  echo "$STS-$i unchanged: $after"
done
helm_test 5-members

# ---------------------------------------------------------------- scale down to 2
log "helm upgrade --set replicaCount=2: departing pods leave gracefully"
watch_file=$ARTIFACTS/scale-down-watch.txt
kubectl -n "$NS" get pods -l "app.kubernetes.io/component=server" -w \
  -o jsonpath='{.metadata.name} {.status.containerStatuses[?(@.name=="server")].state.terminated.exitCode} {.status.containerStatuses[?(@.name=="server")].state.terminated.reason}{"\n"}' \
  >"$watch_file" 2>/dev/null &
BG_PIDS+=($!)
sleep 1
start=$(now_ms)
helm upgrade "$RELEASE" "$CHART" -n "$NS" "${IMAGE_ARGS[@]}" --set replicaCount=2 --wait --timeout 5m
for p in "$STS-2" "$STS-3" "$STS-4"; do
  kubectl -n "$NS" wait --for=delete "pod/$p" --timeout=120s >/dev/null 2>&1 || true
done
timing scale-down-pods-gone "$(secs_since "$start")"
wait_members 2 60 || fail "the 2 remaining members still list departed members as active"
timing scale-down-to-2-members "$(secs_since "$start")"
kill "${BG_PIDS[-1]}" 2>/dev/null || true
for p in "$STS-2" "$STS-3" "$STS-4"; do
  code=$(awk -v p="$p" '$1 == p && $2 != "" { c = $2 } END { print c }' "$watch_file")
  [[ $code == 0 ]] || fail "$p did not exit cleanly on SIGTERM (server exit code '${code:-unknown}'; see $watch_file)"
  echo "$p: server exited 0 after SIGTERM"
done
echo "remaining members' view:"
kubectl get --raw "/api/v1/namespaces/$NS/pods/$STS-0:$ADMIN_PORT/proxy/status/cluster/nodes"
echo
helm_test 2-members

# ---------------------------------------------------------------- config change, serving throughout
log "config change rolls the members one at a time while requests keep flowing"
helm upgrade "$RELEASE" "$CHART" -n "$NS" "${IMAGE_ARGS[@]}" --set replicaCount=3 --wait --timeout 5m
wait_members 3 120 || fail "3 members after scaling back up"
# The client uses the Service's ClusterIP, not its DNS name, so that a slow DNS answer on
# this loaded single node cannot count as a failed request.
SVC_IP=$(kubectl -n "$NS" get service "$RELEASE" -o jsonpath='{.spec.clusterIP}')
# Two agent pods (busybox httpd as the local service + pico agent) register endpoint
# e2e-loop through the client Service; a client pod sends one request every 0.2 s through
# the client Service's proxy port. Both run as restricted pods.
cat <<EOF | kubectl -n "$NS" apply -f - >/dev/null
apiVersion: apps/v1
kind: Deployment
metadata: {name: e2e-agent}
spec:
  replicas: 2
  selector: {matchLabels: {app: e2e-agent}}
  template:
    metadata: {labels: {app: e2e-agent}}
    spec:
      automountServiceAccountToken: false
      securityContext: {runAsNonRoot: true, runAsUser: 65532, seccompProfile: {type: RuntimeDefault}}
      containers:
        - name: web
          image: registry.local/busybox:1.35
          imagePullPolicy: Never
          command: [sh, -c, 'echo e2e-loop-ok > /www/index.html && exec httpd -f -p 127.0.0.1:8080 -h /www']
          securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
          volumeMounts: [{name: www, mountPath: /www}]
        - name: agent
          image: $IMAGE:$TAG
          imagePullPolicy: Never
          args: [agent, http, e2e-loop, "127.0.0.1:8080", --connect.url, "http://$RELEASE.$NS.svc:8001"]
          securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
      volumes: [{name: www, emptyDir: {}}]
---
apiVersion: v1
kind: Pod
metadata: {name: e2e-client}
spec:
  restartPolicy: Never
  automountServiceAccountToken: false
  securityContext: {runAsNonRoot: true, runAsUser: 65532, seccompProfile: {type: RuntimeDefault}}
  containers:
    - name: loop
      image: registry.local/busybox:1.35
      imagePullPolicy: Never
      securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
      # Bounded: at most 6000 requests (about 20 minutes), then it exits on its own. (This
      # busybox's wget -T crashes; timeout(1) bounds each request instead.)
      command:
        - sh
        - -c
        - |
          i=0
          while [ \$i -lt 6000 ]; do
            t0=\$(date +%s)
            out=\$(timeout 5 wget -q -O - --header 'x-pico-endpoint: e2e-loop' http://$SVC_IP:8000/ 2>/tmp/err); rc=\$?
            if [ \$rc -eq 0 ] && [ "\$out" = e2e-loop-ok ]; then
              echo "\$t0 ok"
            else
              echo "\$t0 fail rc=\$rc took=\$((\$(date +%s) - t0))s out=\$out err=\$(cat /tmp/err)"
            fi
            i=\$((i+1))
            sleep 0.2
          done
EOF
kubectl -n "$NS" rollout status deployment/e2e-agent --timeout=120s
kubectl -n "$NS" wait --for=condition=Ready pod/e2e-client --timeout=120s >/dev/null
# Wait until the loop is answered before the roll starts.
deadline=$(($(date +%s) + 60))
until kubectl -n "$NS" logs e2e-client 2>/dev/null | tail -3 | grep -q ' ok$'; do
  (($(date +%s) > deadline)) && fail "the request loop never got an answer before the roll"
  sleep 1
done
lines_before=$(kubectl -n "$NS" logs e2e-client | wc -l)
declare -A uid_before
for i in 0 1 2; do uid_before[$i]=$(kubectl -n "$NS" get pod "$STS-$i" -o jsonpath='{.metadata.uid}'); done
old_rev=$(kubectl -n "$NS" get statefulset "$STS" -o jsonpath='{.status.updateRevision}')
# Keep each departing member's log (and the agents') for diagnosis: a pod object that the
# roll replaces takes its log with it.
for i in 0 1 2; do
  kubectl -n "$NS" logs -f "pod/$STS-$i" -c server >"$ARTIFACTS/roll-$STS-$i.log" 2>&1 &
  BG_PIDS+=($!)
done
kubectl -n "$NS" logs -f -l app=e2e-agent -c agent --prefix >"$ARTIFACTS/roll-agents.log" 2>&1 &
BG_PIDS+=($!)
start=$(now_ms)
helm upgrade "$RELEASE" "$CHART" -n "$NS" "${IMAGE_ARGS[@]}" --set replicaCount=3 --set config.proxy.gateway_timeout=20s --timeout 10m
# Sample readiness while the StatefulSet controller rolls: never more than one member down.
min_ready=3
sample_ready() {
  local ready
  ready=$(kubectl -n "$NS" get pods -l "app.kubernetes.io/component=server" \
    -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c True || true)
  ((ready < min_ready)) && min_ready=$ready
  return 0
}
wait_rolled "$old_rev" sample_ready || fail "the roll did not finish in 10 minutes"
timing config-roll "$(secs_since "$start")"
wait_members 3 120 || fail "3 members after the roll"
sleep 3 # a few more loop iterations after the roll
for i in 0 1 2; do
  [[ $(kubectl -n "$NS" get pod "$STS-$i" -o jsonpath='{.metadata.uid}') != "${uid_before[$i]}" ]] || fail "$STS-$i was not replaced by the roll"
done
echo "minimum Ready members during the roll: $min_ready of 3"
((min_ready >= 2)) || fail "the roll took more than one member down at once"
kubectl -n "$NS" logs e2e-client >"$ARTIFACTS/request-loop.txt"
during=$(tail -n +"$((lines_before + 1))" "$ARTIFACTS/request-loop.txt")
total=$(grep -c . <<<"$during" || true)
failed=$(grep -c ' fail' <<<"$during" || true)
echo "requests during the roll: $total, failed: $failed"
[[ $total -gt 0 ]] || fail "no requests were sent during the roll"
if [[ $failed -gt 0 ]]; then
  grep ' fail' <<<"$during" | head -20
  fail "$failed of $total requests through the client Service failed during the roll"
fi
kubectl -n "$NS" delete deployment/e2e-agent pod/e2e-client --wait=true >/dev/null

# ---------------------------------------------------------------- delete a pod
log "kubectl delete pod $STS-1: it comes back with a new node ID and rejoins"
old_id=$(node_id_of "$STS-1")
[[ -n $old_id ]] || fail "no node ID for $STS-1"
start=$(now_ms)
kubectl -n "$NS" delete pod "$STS-1" --wait=true
wait_ready 3 180 || fail "$STS-1 did not come back"
wait_members 3 120 || fail "$STS-1 did not rejoin"
timing delete-pod-to-rejoined "$(secs_since "$start")"
new_id=$(node_id_of "$STS-1")
echo "$STS-1 node ID: $old_id -> $new_id"
[[ -n $new_id && $new_id != "$old_id" ]] || fail "$STS-1 came back with node ID '$new_id' (was '$old_id')"
for i in 0 2; do
  member_ids "$STS-$i" | grep -qx "$new_id" || fail "$STS-$i does not list the new $STS-1 ($new_id)"
  ! member_ids "$STS-$i" | grep -qx "$old_id" || fail "$STS-$i still lists the old $STS-1 ($old_id) as active"
done
helm_test after-pod-delete

# ---------------------------------------------------------------- rebalancing (issue 14)
# rebalance_phase: 2 `pico agent` processes on the host, 30 endpoints each (60 upstream
# connections), connect through the client Service's ClusterIP (kube-proxy balances each
# connection) while 3 members run; then `helm upgrade --set replicaCount=5`. Every member must
# end within 0.7–1.3 × the fair share (12: 9–15 connections), which only cluster.rebalance
# achieves (the agents would otherwise stay on the first 3). TIMING rebalance-* lines record
# the time to balance; the distribution before and after is printed.
REBALANCE_ENDPOINTS=30
REBALANCE_AGENTS=2

# upstream_counts POD: the active members' upstream counts as POD lists them, in ID order,
# space-separated.
upstream_counts() {
  kubectl get --raw "/api/v1/namespaces/$NS/pods/$1:$ADMIN_PORT/proxy/status/cluster/nodes" 2>/dev/null | tr -d '\n' |
    grep -oE '\{[^{}]*"status": *"active"[^{}]*\}' | grep -oE '"upstreams": *[0-9]+' | grep -oE '[0-9]+$' | tr '\n' ' ' || true
}

# balanced_within N TOTAL LOW HIGH: every one of N counts on stdin's line is within
# [LOW, HIGH] × TOTAL/N and they sum to TOTAL.
balanced_within() {
  awk -v n="$1" -v total="$2" -v lo="$3" -v hi="$4" '{
    if (NF != n) exit 1
    sum = 0; fair = total / n
    for (i = 1; i <= NF; i++) { sum += $i; if ($i < lo * fair || $i > hi * fair) exit 1 }
    exit sum == total ? 0 : 1
  }'
}

# wait_balanced N TIMEOUT: pico-0's view of the N members is balanced; prints the counts.
wait_balanced() {
  local n=$1 deadline=$(($(date +%s) + $2)) total=$((REBALANCE_ENDPOINTS * REBALANCE_AGENTS)) counts
  while :; do
    counts=$(upstream_counts "$STS-0")
    if balanced_within "$n" "$total" 0.7 1.3 <<<"$counts"; then
      echo "$counts"
      return 0
    fi
    if (($(date +%s) > deadline)); then
      echo "upstreams per member: $counts (want $n members within 0.7–1.3 × $total/$n)" >&2
      return 1
    fi
    sleep 0.5
  done
}

rebalance_phase() {
  log "rebalancing: $((REBALANCE_ENDPOINTS * REBALANCE_AGENTS)) agent connections through the client Service, then scale 3 → 5"
  local svc_ip cfg i counts start ready_at pid
  svc_ip=$(kubectl -n "$NS" get service "$RELEASE" -o jsonpath='{.spec.clusterIP}')
  cfg=$ARTIFACTS/rebalance-agent.yaml
  {
    printf 'connect:\n  url: http://%s:8001\ngrace_period: 2s\nendpoints:\n' "$svc_ip"
    for ((i = 0; i < REBALANCE_ENDPOINTS; i++)); do
      printf '  - {id: rb%02d, protocol: http, addr: "127.0.0.1:9"}\n' "$i"
    done
  } >"$cfg"
  for ((i = 0; i < REBALANCE_AGENTS; i++)); do
    "$PICO_BIN" agent --config.path "$cfg" >"$ARTIFACTS/rebalance-agent-$i.log" 2>&1 &
    BG_PIDS+=($!)
  done
  wait_balanced 3 120 >/dev/null || fail "the agents did not all register on the 3 members"
  counts=$(upstream_counts "$STS-0")
  echo "upstreams per member, 3 members: $counts"
  start=$(now_ms)
  # --reuse-values: the release's config (gateway_timeout from the roll above) stays, so
  # the 3 members keep running and only the 2 new ones start.
  helm upgrade "$RELEASE" "$CHART" -n "$NS" "${IMAGE_ARGS[@]}" --reuse-values --set replicaCount=5 --wait --timeout 5m
  wait_ready 5 120 || fail "5 pods not Ready"
  ready_at=$(now_ms)
  wait_members 5 120 || fail "the 5 members did not form one cluster"
  echo "upstreams per member right after the 5 are Ready: $(upstream_counts "$STS-0")"
  counts=$(wait_balanced 5 120) || fail "the 5 members did not reach 0.7–1.3 × the fair share of upstreams"
  timing rebalance-scale-up-to-balanced "$(secs_since "$start")"
  timing rebalance-all-ready-to-balanced "$(secs_since "$ready_at")"
  echo "upstreams per member, 5 members, balanced: $counts"
  for ((i = 0; i < 5; i++)); do
    echo "$STS-$i: $(kubectl get --raw "/api/v1/namespaces/$NS/pods/$STS-$i:$ADMIN_PORT/proxy/metrics" | grep '^pico_upstream_rebalanced_total' || true)"
  done
  # The agents started last; cleanup() would also stop them.
  for pid in "${BG_PIDS[@]: -$REBALANCE_AGENTS}"; do kill "$pid" 2>/dev/null || true; done
}

rebalance_phase

# ---------------------------------------------------------------- uninstall
log "helm uninstall leaves nothing behind"
helm uninstall "$RELEASE" -n "$NS" --wait --timeout 3m
kubectl -n "$NS" wait --for=delete pod -l "app.kubernetes.io/instance=$RELEASE" --timeout=120s >/dev/null 2>&1 || true
left=$(kubectl -n "$NS" get all,configmaps,secrets,serviceaccounts,poddisruptionbudgets,networkpolicies,ingresses,endpointslices,persistentvolumeclaims \
  -o name 2>/dev/null | grep -vE '^(configmap/kube-root-ca.crt|serviceaccount/default)$' || true)
[[ -z $left ]] || fail "left behind after uninstall: $(tr '\n' ' ' <<<"$left")"
echo "namespace $NS holds nothing of the release"
kubectl delete namespace "$NS" --wait=true >/dev/null

# ---------------------------------------------------------------- as a subchart
log "the chart as a subchart of $UMBRELLA (file:// dependency) in namespace $UNS"
kubectl delete namespace "$UNS" --wait=true --ignore-not-found >/dev/null
kubectl create namespace "$UNS" >/dev/null
kubectl label namespace "$UNS" pod-security.kubernetes.io/enforce=restricted >/dev/null
helm dependency update "$UMBRELLA" --skip-refresh >/dev/null
start=$(now_ms)
# The image through global.imageRegistry and the chart's default repository path.
helm install umbrella "$UMBRELLA" -n "$UNS" --set global.imageRegistry=registry.local \
  --set-string "pico.image.tag=$TAG" --set pico.image.pullPolicy=Never --wait --timeout 5m
timing umbrella-install "$(secs_since "$start")"
image=$(kubectl -n "$UNS" get statefulset umbrella-pico -o jsonpath='{.spec.template.spec.containers[0].image}')
[[ $image == "registry.local/pico-proxy/pico:$TAG" ]] || fail "the subchart's image is '$image', not the one global.imageRegistry names"
[[ $(kubectl -n "$UNS" get service umbrella-pico -o jsonpath='{.metadata.annotations.example\.com/installed-by}') == pico-umbrella ]] ||
  fail "the umbrella's commonAnnotations did not reach the subchart's Service"
start=$(now_ms)
if ! helm test umbrella -n "$UNS" --timeout 4m; then
  kubectl -n "$UNS" logs umbrella-pico-test >&2 || true
  fail "helm test of the umbrella release failed"
fi
timing helm-test-umbrella "$(secs_since "$start")"
helm uninstall umbrella -n "$UNS" --wait --timeout 3m
kubectl delete namespace "$UNS" --wait=true >/dev/null
echo "the umbrella release installed, passed helm test and was uninstalled"

log "timings"
cat "$ARTIFACTS/timings.txt"
