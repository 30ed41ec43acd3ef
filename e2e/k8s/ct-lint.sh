#!/usr/bin/env bash
# Lints the chart with chart-testing, offline: `ct lint --config ct.yaml` on charts/pico
# (helm lint with the chart's values and every charts/pico/ci/*-values.yaml, yamllint of
# Chart.yaml and values.yaml, Chart.yaml's schema, and the version-increment check, as ct.yaml
# says).
#
# The version check compares charts/pico/Chart.yaml with ct.yaml's target branch as ct reads it,
# `<remote>/<target-branch>`: origin/main on a clone with that remote, else the local branch
# (remote `refs/heads`), for a clone or worktree without it. ct checks versions only of the
# charts it finds changed against that branch, and never with --charts; so when charts/pico
# differs from the branch ct finds it itself (and refuses an unchanged version), and when it is
# the same there (main itself, a fresh clone of main) or no branch exists, --charts names it and
# there is nothing to bump.
# Chart.yaml's schema check runs yamale (Python); where yamale is not installed (it is not
# packaged for Debian bookworm) it is skipped with a note: helm lint's Chart.yaml rules, which
# TestLint also applies, still run.
set -euo pipefail
cd "$(dirname "$0")/../.."
. e2e/k8s/tools.sh
ensure_yamllint
ct version
helm version --short

args=()
target=$(awk '$1 == "target-branch:" { print $2 }' ct.yaml)
remote=origin
if git rev-parse -q --verify "refs/remotes/$remote/$target" >/dev/null; then
  ref=$remote/$target
elif git rev-parse -q --verify "refs/heads/$target" >/dev/null; then
  remote=refs/heads ref=refs/heads/$target
else
  ref=
fi
if [[ -n $ref ]] && ! git diff --quiet "$ref" -- charts/pico; then
  echo "version check: charts/pico differs from $ref, so its version must be higher than there"
  args+=(--remote "$remote")
else
  echo "version check: charts/pico is the same as on ${ref:-(no branch $target)}, nothing to bump"
  args+=(--charts charts/pico)
fi
if ! command -v yamale >/dev/null; then
  echo "Chart.yaml schema check: yamale is not installed; skipped (helm lint checks Chart.yaml)"
  args+=(--validate-chart-schema=false)
fi
ct lint --config ct.yaml "${args[@]}"
