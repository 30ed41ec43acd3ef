//go:build e2e

package e2e

import (
	"testing"

	"github.com/pico-proxy/pico/internal/testutil"
)

// LoadBalancer is a round-robin TCP load balancer in front of several
// backends, like a Kubernetes Service (testutil.Balancer).
type LoadBalancer = testutil.Balancer

// StartLoadBalancer listens on a loopback port.
func StartLoadBalancer(t testing.TB, backends ...string) *LoadBalancer {
	t.Helper()
	return testutil.StartBalancer(t, backends...)
}
