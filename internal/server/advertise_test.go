package server

import (
	"context"
	"net"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pico-proxy/pico/internal/config"
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

// TestGossipAddrs: the gossip listener follows the rule of the other
// listeners — configured (a name resolved), else the bound IP, else the
// machine's IP — with the configured port (0 stays 0 until bound).
func TestGossipAddrs(t *testing.T) {
	machine, err := advertiseIP(netip.IPv4Unspecified())
	require.NoError(t, err)
	for name, tc := range map[string]struct {
		bind, advertise string
		wantBind        string
		wantAdvertise   string
	}{
		"all interfaces": {":8003", "", "0.0.0.0:8003", netip.AddrPortFrom(machine, 8003).String()},
		"a specific IP":  {"10.1.2.3:0", "", "10.1.2.3:0", "10.1.2.3:0"},
		"configured":     {":8003", "192.0.2.9:9003", "0.0.0.0:8003", "192.0.2.9:9003"},
	} {
		t.Run(name, func(t *testing.T) {
			bind, adv, err := gossipAddrs(context.Background(), net.DefaultResolver, config.Gossip{Listener: config.Listener{BindAddr: tc.bind, AdvertiseAddr: tc.advertise}})
			require.NoError(t, err)
			require.Equal(t, tc.wantBind, bind.String())
			require.Equal(t, tc.wantAdvertise, adv.String())
		})
	}
	bind, adv, err := gossipAddrs(context.Background(), net.DefaultResolver, config.Gossip{Listener: config.Listener{BindAddr: "localhost:8003"}})
	require.NoError(t, err)
	require.True(t, bind.Addr().IsLoopback(), "a name is resolved: %s", bind)
	require.Equal(t, bind, adv, "and its IP advertised")
}

// TestNamedGossipBindAddressIsAdvertisedAsItsIP: a node whose
// gossip.bind_addr names a host tells the other members the IP memberlist
// listens on. On the base commit the server derived the machine's private
// IP for a name and handed it to the cluster as the configured advertise
// address, so members were told an address nothing listened on.
func TestNamedGossipBindAddressIsAdvertisedAsItsIP(t *testing.T) {
	srv, err := clusterServerWith(t, func(cfg *config.Server) { cfg.Gossip.BindAddr = "localhost:0" })
	require.NoError(t, err)
	nodes := srv.membership.Nodes()
	require.Len(t, nodes, 1)
	host, _, err := net.SplitHostPort(nodes[0].GossipAddr)
	require.NoError(t, err)
	require.True(t, netip.MustParseAddr(host).IsLoopback(), "gossip_addr %s", nodes[0].GossipAddr)
}
