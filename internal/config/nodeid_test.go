package config

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// Moved from internal/cluster (TestNodeIDs) with the rule.
func TestNodeIDs(t *testing.T) {
	given := Cluster{NodeID: "given-id"}
	require.NoError(t, given.validateNodeIDs())
	require.Equal(t, "given-id", given.NewNodeID())

	prefixed := Cluster{NodeIDPrefix: "pico-0-"}
	require.NoError(t, prefixed.validateNodeIDs())
	first, second := prefixed.NewNodeID(), prefixed.NewNodeID()
	require.True(t, strings.HasPrefix(first, "pico-0-"))
	require.Len(t, first, len("pico-0-")+nodeIDSuffixLength)
	require.NotEqual(t, first, second, "every start gets a fresh suffix")

	random := Cluster{}
	require.NoError(t, random.validateNodeIDs())
	require.Len(t, random.NewNodeID(), nodeIDSuffixLength)

	for _, bad := range []struct{ id, prefix, want string }{
		{"has space", "", "cluster.node_id (--cluster.node-id)"},
		{"", "bad/prefix", "cluster.node_id_prefix (--cluster.node-id-prefix)"},
		{strings.Repeat("x", MaxNodeIDLength+1), "", "cluster.node_id"},
		{"", strings.Repeat("x", MaxNodeIDLength-nodeIDSuffixLength+1), "cluster.node_id_prefix"},
		{"a", "b", "set only one"},
	} {
		c := Cluster{NodeID: bad.id, NodeIDPrefix: bad.prefix}
		require.ErrorContains(t, c.validateNodeIDs(), bad.want, "id %q prefix %q", bad.id, bad.prefix)
	}
}

// TestClusterAndGossipAreValidatedAtLoad: the checks internal/cluster.New
// made at cluster start (TestNewRejectsBadConfiguration there) are made
// when the configuration is loaded, all at once, naming key and flag; the
// parsed join entries and gossip keys are what the components take.
func TestClusterAndGossipAreValidatedAtLoad(t *testing.T) {
	for name, tc := range map[string]struct {
		change func(*Server)
		want   string
	}{
		"bad node id":        {func(c *Server) { c.Cluster.NodeID = "a b" }, "cluster.node_id (--cluster.node-id)"},
		"bad join entry":     {func(c *Server) { c.Cluster.Join = []string{"10.0.0.1:99999"} }, "cluster.join[0] (--cluster.join)"},
		"bad join name":      {func(c *Server) { c.Cluster.Join = []string{"ok.example", "not a name"} }, "cluster.join[1] (--cluster.join)"},
		"empty join entry":   {func(c *Server) { c.Cluster.Join = []string{""} }, "cluster.join[0] (--cluster.join) \"\": empty entry"},
		"bad bind addr":      {func(c *Server) { c.Gossip.BindAddr = "nonsense" }, "gossip.bind_addr"},
		"bad gossip key":     {func(c *Server) { c.Gossip.SecretKey = "c2hvcnQ=" }, "gossip.secret_key (--gossip.secret-key): the value decodes to 5 bytes"},
		"no gossip key file": {func(c *Server) { c.Gossip.SecretKey = "/no/such/gossip.key" }, "gossip.secret_key (--gossip.secret-key): file /no/such/gossip.key does not exist"},
		"unspecified adv.":   {func(c *Server) { c.Gossip.AdvertiseAddr = "0.0.0.0:1" }, "gossip.advertise_addr (--gossip.advertise-addr)"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := DefaultServer()
			tc.change(cfg)
			require.ErrorContains(t, cfg.Validate(), tc.want)
			require.False(t, cfg.Validated())
		})
	}

	cfg := DefaultServer()
	cfg.Cluster.Join = []string{"10.0.0.1", "pico-headless:7946"}
	cfg.Gossip.SecretKey = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" // base64 of 32 bytes
	require.NoError(t, cfg.Validate())
	require.True(t, cfg.Validated())
	require.Equal(t, []string{"10.0.0.1", "pico-headless"}, []string{cfg.Cluster.JoinTargets()[0].IP.String(), cfg.Cluster.JoinTargets()[1].Host})
	require.Equal(t, uint16(7946), cfg.Cluster.JoinTargets()[1].Port)
	require.Equal(t, [][]byte{[]byte("0123456789abcdef0123456789abcdef")}, cfg.Gossip.Keys().Keys)
}
