#!/usr/bin/env bash
# Runs a local 3-node Pico cluster on 127.0.0.1-3 (default ports on each
# address), a demo upstream and an agent connected to node 1, prints curl
# commands that work, and stops everything cleanly on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
PICO=${PICO:-bin/pico}
UPSTREAM=${UPSTREAM:-bin/demo-upstream}
LOGS=$(mktemp -d /tmp/pico-demo.XXXXXX)
pids=()

cleanup() {
  echo
  echo "stopping (SIGTERM)…"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "stopped; logs in $LOGS"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

start() { # name cmd...
  local name=$1; shift
  "$@" >"$LOGS/$name.log" 2>&1 &
  pids+=($!)
}

wait_ready() { # admin-url
  for _ in $(seq 1 100); do
    curl -fsS "$1/ready" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "node at $1 did not become ready; see $LOGS" >&2
  exit 1
}

start upstream "$UPSTREAM" --addr 127.0.0.1:3000
for i in 1 2 3; do
  join=()
  [ "$i" -gt 1 ] && join=(--cluster.join 127.0.0.1)
  start "node$i" "$PICO" server \
    --proxy.bind-addr 127.0.0.$i:8000 --upstream.bind-addr 127.0.0.$i:8001 \
    --admin.bind-addr 127.0.0.$i:8002 --gossip.bind-addr 127.0.0.$i:8003 \
    --cluster.node-id-prefix "demo-$i-" --server.graceful-shutdown-timeout 10s --server.drain-delay 1s "${join[@]}"
done
for i in 1 2 3; do wait_ready "http://127.0.0.$i:8002"; done
start agent "$PICO" agent http demo 127.0.0.1:3000 --connect.url http://127.0.0.1:8001

for _ in $(seq 1 100); do
  curl -fsS -H 'x-pico-endpoint: demo' http://127.0.0.3:8000/ >/dev/null 2>&1 && break
  sleep 0.1
done

cat <<MSG

Pico is running: 3 nodes (127.0.0.1, .2, .3; proxy :8000, upstream :8001, admin :8002, gossip :8003),
a demo upstream on 127.0.0.1:3000 and an agent that registered endpoint "demo" on node 1.

  curl -H 'x-pico-endpoint: demo' http://127.0.0.1:8000/hello     # node 1, local upstream
  curl -H 'x-pico-endpoint: demo' http://127.0.0.3:8000/hello     # node 3 forwards to node 1
  $PICO status cluster nodes --server.url http://127.0.0.2:8002
  $PICO status upstream endpoints --server.url http://127.0.0.1:8002

Logs: $LOGS   —   Ctrl-C stops everything.
MSG
curl -sS -H 'x-pico-endpoint: demo' http://127.0.0.3:8000/hello || true
wait -n "${pids[@]}" || true
