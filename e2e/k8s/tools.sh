# Sourced by the e2e/k8s scripts: builds the pinned chart tools from e2e/k8s/tools/go.mod into
# $PICO_TOOLS_BIN when missing or stale (ct always; helm only when none is available) and
# puts them on PATH.
# shellcheck shell=bash
PICO_TOOLS_BIN=${PICO_TOOLS_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/pico-tools/bin}
pico_tools_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/tools" && pwd)

# build_tool NAME PACKAGE: rebuild when the pinned versions (go.sum) changed since the last build.
build_tool() {
  local name=$1 pkg=$2 stamp
  stamp=$(sha256sum "$pico_tools_dir/go.sum" | cut -c1-16)
  if [[ -x $PICO_TOOLS_BIN/$name && -f $PICO_TOOLS_BIN/.$name.stamp && $(cat "$PICO_TOOLS_BIN/.$name.stamp") == "$stamp" ]]; then
    return 0
  fi
  echo "building $name ($pkg) into $PICO_TOOLS_BIN" >&2
  mkdir -p "$PICO_TOOLS_BIN"
  (cd "$pico_tools_dir" && CGO_ENABLED=0 go build -trimpath -o "$PICO_TOOLS_BIN/$name" "$pkg")
  echo "$stamp" >"$PICO_TOOLS_BIN/.$name.stamp"
}

# ensure_yamllint: ct runs yamllint on Chart.yaml and values.yaml; it comes from Debian.
ensure_yamllint() {
  command -v yamllint >/dev/null && return 0
  echo "installing yamllint (Debian package)" >&2
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq yamllint >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq yamllint >/dev/null
  fi
}

build_tool ct github.com/helm/chart-testing/v3/ct
export PATH=$PICO_TOOLS_BIN:$PATH
# ct drives a helm binary. Building one takes minutes on a small machine, so an existing helm
# (on PATH, or the one k8s-local builds) is used; only without one is the pinned helm built.
if ! command -v helm >/dev/null; then
  if [[ -x ${K8S_LOCAL_DIR:-/tmp/k8s-local}/bin/helm ]]; then
    export PATH=$PATH:${K8S_LOCAL_DIR:-/tmp/k8s-local}/bin
  else
    build_tool helm helm.sh/helm/v3/cmd/helm
  fi
fi
