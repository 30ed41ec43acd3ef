#!/usr/bin/env bash
# bench/ab.sh BASE NEW [ROUNDS]: two pico binaries side by side, in
# interleaved rounds (BASE, NEW, BASE, NEW, ...), on the single-node path:
# one standalone node and one `pico agent` in front of pico-bench's 1 KiB
# upstream. Per round and binary: requests/s and the node's and agent's CPU
# time and read/write system calls per request with wrk -c 50, then the p50
# at 1 connection (and the direct p50 measured right after it).
# `make bench-ab BASE=<git rev>` builds both and runs this.
set -euo pipefail
BASE=$1 NEW=$2 ROUNDS=${3:-3}
IP=${AB_IP:-127.0.7.1} UP=${AB_UPSTREAM:-127.0.7.9:3000}
BENCH=${PICO_BENCH:-bin/pico-bench}
command -v wrk >/dev/null || { echo "ab.sh: wrk is needed (apt-get install wrk)" >&2; exit 1; }
tmp=$(mktemp -d)
"$BENCH" --serve-upstream "$UP" & upstream=$!
trap 'kill $upstream 2>/dev/null; rm -rf "$tmp"' EXIT
tck=$(getconf CLK_TCK)
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
io() { awk '/^syscr|^syscw/{printf "%s ", $2}' "/proc/$1/io"; }
per() { awk -v a="$1" -v b="$2" -v n="$3" -v s="${4:-1}" 'BEGIN{printf "%.*f", (s==1?2:0), (b-a)*s/n}'; }
one() { # one BINARY NAME
  "$1" server --proxy.bind-addr $IP:8000 --upstream.bind-addr $IP:8001 --admin.bind-addr $IP:8002 \
    --gossip.bind-addr $IP:8003 --log.level warn >"$tmp/node.log" 2>&1 & local node=$!
  sleep 0.3
  "$1" agent http bench "$UP" --connect.url "http://$IP:8001" --log.level warn >"$tmp/agent.log" 2>&1 & local agent=$!
  for _ in $(seq 100); do curl -fs -H 'x-pico-endpoint: bench' "http://$IP:8000/" -o /dev/null && break; sleep 0.1; done
  wrk -t2 -c50 -d2s -H 'x-pico-endpoint: bench' "http://$IP:8000/" >/dev/null
  local n0 a0 ni0 ai0 out n1 a1 ni1 ai1 req c1 d1
  n0=$(cpu $node); a0=$(cpu $agent); read -r -a ni0 <<<"$(io $node)"; read -r -a ai0 <<<"$(io $agent)"
  out=$(wrk -t2 -c50 -d8s -H 'x-pico-endpoint: bench' "http://$IP:8000/")
  n1=$(cpu $node); a1=$(cpu $agent); read -r -a ni1 <<<"$(io $node)"; read -r -a ai1 <<<"$(io $agent)"
  req=$(awk '/requests in/{print $1}' <<<"$out")
  c1=$(wrk -t1 -c1 -d4s --latency -H 'x-pico-endpoint: bench' "http://$IP:8000/" | awk '/ 50%/{print $2}')
  d1=$(wrk -t1 -c1 -d2s --latency "http://$UP/" | awk '/ 50%/{print $2}')
  printf '| %s | %s | %s | %s | %s / %s | %s / %s | %s | %s |\n' "$2" "$(awk '/Requests\/sec/{printf "%.0f", $2}' <<<"$out")" \
    "$(per $n0 $n1 $req $((1000000/tck)))" "$(per $a0 $a1 $req $((1000000/tck)))" \
    "$(per ${ni0[0]} ${ni1[0]} $req)" "$(per ${ni0[1]} ${ni1[1]} $req)" \
    "$(per ${ai0[0]} ${ai1[0]} $req)" "$(per ${ai0[1]} ${ai1[1]} $req)" "$c1" "$d1"
  kill $agent $node; wait $agent $node 2>/dev/null || true
}
echo "| binary | req/s (-c 50) | node µs/req | agent µs/req | node reads / writes per req | agent reads / writes per req | p50 -c 1 | direct p50 -c 1 |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for _ in $(seq "$ROUNDS"); do
  one "$BASE" base
  one "$NEW" new
done
