package server

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestMachineIP(t *testing.T) {
	ips := func(ss ...string) []netip.Addr {
		out := make([]netip.Addr, len(ss))
		for i, s := range ss {
			out[i] = netip.MustParseAddr(s)
		}
		return out
	}
	for name, tc := range map[string]struct {
		ips  []netip.Addr
		want string
	}{
		"private wins over public":         {ips("127.0.0.1", "203.0.113.7", "10.1.2.3"), "10.1.2.3"},
		"ranges in order of preference":    {ips("192.168.1.2", "100.64.0.9", "172.16.0.4"), "172.16.0.4"},
		"only a public address":            {ips("127.0.0.1", "192.0.2.2"), "192.0.2.2"},
		"public IPv4 before public IPv6":   {ips("2001:db8::1", "198.51.100.4"), "198.51.100.4"},
		"IPv6 unique local is private":     {ips("198.51.100.4", "fd00::5"), "fd00::5"},
		"loopback only: a node on its own": {ips("127.0.0.1", "::1"), "127.0.0.1"},
	} {
		t.Run(name, func(t *testing.T) {
			require.Equal(t, tc.want, machineIP(tc.ips).String())
		})
	}
}
