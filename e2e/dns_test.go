//go:build e2e

package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pico-proxy/pico/internal/testdns"
)

// ClusterDNS is a test DNS server on port 53 of its own loopback address
// plus a resolv.conf pointing at it, like a pod's DNS view in Kubernetes.
type ClusterDNS struct {
	*testdns.Server
	IP         string
	ResolvConf string
}

// StartClusterDNS starts the server (needs root for port 53).
func StartClusterDNS(t testing.TB) *ClusterDNS {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: a DNS server on port 53 and mount namespaces for resolv.conf")
	}
	ip := nextIP()
	srv, err := testdns.Start(ip + ":53")
	require.NoError(t, err)
	t.Cleanup(func() { srv.Close() })
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	content := fmt.Sprintf("nameserver %s\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5 timeout:1 attempts:2\n", ip)
	require.NoError(t, os.WriteFile(resolv, []byte(content), 0o644))
	return &ClusterDNS{Server: srv, IP: ip, ResolvConf: resolv}
}

// Addr parses an IP for the DNS API.
func Addr(ip string) netip.Addr { return netip.MustParseAddr(ip) }
