//go:build tools

// Package tools pins the command-line tools the chart checks build: ct (chart-testing) and
// helm.
package tools

import (
	_ "github.com/helm/chart-testing/v3/ct"
	_ "helm.sh/helm/v3/cmd/helm"
)
