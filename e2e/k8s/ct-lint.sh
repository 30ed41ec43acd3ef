#!/usr/bin/env bash
# Lints the chart with chart-testing, offline: `ct lint --config ct.yaml` on charts/pico
# (helm lint with the chart's values and every charts/pico/ci/*-values.yaml, yamllint of
# Chart.yaml and values.yaml, maintainers and Chart.yaml schema checks off as ct.yaml says).
# --charts names the chart explicitly, so ct needs no Git remote to find changed charts.
set -euo pipefail
cd "$(dirname "$0")/../.."
. e2e/k8s/tools.sh
ensure_yamllint
ct version
helm version --short
ct lint --config ct.yaml --charts charts/pico --check-version-increment=false
