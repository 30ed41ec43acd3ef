package cluster

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/pico-proxy/pico/internal/adminapi"
	"github.com/pico-proxy/pico/internal/config"
)

func TestThreeNodesFormOneCluster(t *testing.T) {
	nodes := startCluster(t, 3)
	for _, n := range nodes {
		list := n.Nodes()
		require.Len(t, list, 3)
		for _, m := range list {
			other := nodes[0]
			for _, o := range nodes {
				if o.LocalID() == m.ID {
					other = o
				}
			}
			require.Equal(t, other.LocalID(), m.ID)
			require.Equal(t, adminapi.StatusActive, m.Status)
			require.Equal(t, other.cfg.ProxyAddr, m.ProxyAddr)
			require.Equal(t, other.cfg.AdminAddr, m.AdminAddr)
			require.Equal(t, other.cfg.UpstreamAddr, m.UpstreamAddr)
			require.Equal(t, other.GossipAddr(), m.GossipAddr)
		}
	}
}

func TestEndpointUpdatesSpreadToEveryNode(t *testing.T) {
	nodes := startCluster(t, 3)
	a, b, c := nodes[0], nodes[1], nodes[2]

	a.UpdateLocalEndpoints(map[string]int{"e1": 2, "e2": 1})
	for _, n := range []*Cluster{b, c} {
		require.Eventually(t, func() bool { return routesTo(n, "e1", a.LocalID()) && routesTo(n, "e2", a.LocalID()) }, eventually, tick)
		d, ok := n.Node(a.LocalID())
		require.True(t, ok)
		require.Equal(t, map[string]int{"e1": 2, "e2": 1}, d.Endpoints)
		require.Equal(t, 3, d.Upstreams)
	}
	_, ok := a.PickRemote("e1")
	require.False(t, ok, "a node never picks itself")
	local, ok := a.Node(a.LocalID())
	require.True(t, ok)
	require.Equal(t, map[string]int{"e1": 2, "e2": 1}, local.Endpoints)

	// A second node takes e1 too; the first drops e2.
	b.UpdateLocalEndpoints(map[string]int{"e1": 1})
	a.UpdateLocalEndpoints(map[string]int{"e1": 2})
	require.Eventually(t, func() bool {
		d, _ := c.Node(a.LocalID())
		db, _ := c.Node(b.LocalID())
		_, stillE2 := c.PickRemote("e2")
		return len(d.Endpoints) == 1 && len(db.Endpoints) == 1 && !stillE2 && routesTo(a, "e1", b.LocalID())
	}, eventually, tick, describe(nodes))
	for _, s := range c.Nodes() {
		if s.ID == b.LocalID() {
			require.Equal(t, 1, s.Upstreams)
			require.Equal(t, 1, s.Endpoints)
		}
	}

	// Everything gone: nothing is routable.
	a.UpdateLocalEndpoints(nil)
	b.UpdateLocalEndpoints(map[string]int{})
	require.Eventually(t, func() bool {
		_, ok := c.PickRemote("e1")
		return !ok
	}, eventually, tick)
}

func TestLargeEndpointSetSpreadsBeyondTheMetadataLimit(t *testing.T) {
	nodes := startCluster(t, 3)
	a := nodes[0]

	const n = 5000
	big := make(map[string]int, n)
	for i := range n {
		big[fmt.Sprintf("endpoint-%031d", i)] = 1 + i%3 // 40 characters
	}
	require.Len(t, "endpoint-0000000000000000000000000000000", 40)
	a.UpdateLocalEndpoints(big)
	for _, other := range nodes[1:] {
		require.Eventually(t, func() bool {
			d, _ := other.Node(a.LocalID())
			return len(d.Endpoints) == n
		}, eventually, tick)
		d, _ := other.Node(a.LocalID())
		require.Equal(t, big, d.Endpoints)
		require.True(t, routesTo(other, "endpoint-0000000000000000000000000004999", a.LocalID()))
		require.Positive(t, counterValue(t, other.metrics.pulls), "the set is too large for a delta: members pull it")
	}

	// A small change on top of the large set travels as a delta.
	big2 := make(map[string]int, n)
	for k, v := range big {
		big2[k] = v
	}
	delete(big2, "endpoint-0000000000000000000000000000000")
	big2["another-endpoint"] = 7
	a.UpdateLocalEndpoints(big2)
	for _, other := range nodes[1:] {
		require.Eventually(t, func() bool { return routesTo(other, "another-endpoint", a.LocalID()) }, eventually, tick)
		_, ok := other.PickRemote("endpoint-0000000000000000000000000000000")
		require.False(t, ok)
	}

	// A node that joins later has the whole table when Join returns: the
	// push/pull of the join carries every member's state.
	late := joinNode(t, testConfig(nextIP(), nodes[1].GossipAddr()))
	d, ok := late.Node(a.LocalID())
	require.True(t, ok)
	require.Equal(t, big2, d.Endpoints)
}

func TestPickRemoteWeightsNodesByUpstreamCount(t *testing.T) {
	nodes := startCluster(t, 3)
	one, three, client := nodes[0], nodes[1], nodes[2]
	one.UpdateLocalEndpoints(map[string]int{"w": 1})
	three.UpdateLocalEndpoints(map[string]int{"w": 3})
	require.Eventually(t, func() bool {
		d1, _ := client.Node(one.LocalID())
		d3, _ := client.Node(three.LocalID())
		return d1.Upstreams == 1 && d3.Upstreams == 3
	}, eventually, tick)

	const picks = 4000
	counts := map[string]int{}
	for range picks {
		n, ok := client.PickRemote("w")
		require.True(t, ok)
		counts[n.ID]++
	}
	t.Logf("picks: %d of %d to the node with 1 upstream, %d to the node with 3", counts[one.LocalID()], picks, counts[three.LocalID()])
	// Expected 1000 (p = 1/4, σ ≈ 27); uniform picking would give 2000.
	require.InDelta(t, picks/4, counts[one.LocalID()], 200)
	require.Equal(t, picks, counts[one.LocalID()]+counts[three.LocalID()])

	for range 50 {
		n, ok := client.PickRemote("w", three.LocalID())
		require.True(t, ok)
		require.Equal(t, one.LocalID(), n.ID, "excluded nodes are skipped")
	}
	_, ok := client.PickRemote("w", three.LocalID(), one.LocalID())
	require.False(t, ok)
	_, ok = client.PickRemote("nobody-has-this")
	require.False(t, ok)
}

func TestLeavingNodeGetsNoNewRequests(t *testing.T) {
	nodes := startCluster(t, 3)
	a, b, c := nodes[0], nodes[1], nodes[2]
	a.UpdateLocalEndpoints(map[string]int{"e": 1})
	b.UpdateLocalEndpoints(map[string]int{"e": 1})
	require.Eventually(t, func() bool {
		d1, _ := c.Node(a.LocalID())
		d2, _ := c.Node(b.LocalID())
		return d1.Upstreams == 1 && d2.Upstreams == 1
	}, eventually, tick)

	a.SetLeaving()
	require.Equal(t, adminapi.StatusLeaving, status(a, a.LocalID()))
	for _, n := range []*Cluster{b, c} {
		require.Eventually(t, func() bool { return status(n, a.LocalID()) == adminapi.StatusLeaving }, eventually, tick)
	}
	for range 100 {
		n, ok := c.PickRemote("e")
		require.True(t, ok)
		require.Equal(t, b.LocalID(), n.ID)
	}
	// A leaving member is still a member: its forwarded requests verify.
	_, ok := c.memberSecret(a.LocalID())
	require.True(t, ok)
}

func TestGracefulLeaveRemovesTheNodeAtOnce(t *testing.T) {
	nodes := startCluster(t, 3)
	a := nodes[0]
	a.UpdateLocalEndpoints(map[string]int{"e": 1})
	for _, n := range nodes[1:] {
		require.Eventually(t, func() bool { return routesTo(n, "e", a.LocalID()) }, eventually, tick)
	}

	a.SetLeaving()
	for _, n := range nodes[1:] {
		require.Eventually(t, func() bool { _, ok := n.PickRemote("e"); return !ok }, eventually, tick)
		require.False(t, n.Gone(a.LocalID()), "a leaving node finishes what it holds")
	}
	require.NoError(t, a.Leave(5*time.Second))
	// a keeps running (and answering probes), so failure detection cannot
	// be what removes it: only the leave message can, and it marks the
	// node "left", never "dead".
	for _, n := range nodes[1:] {
		require.Eventually(t, func() bool { return status(n, a.LocalID()) == adminapi.StatusLeft }, eventually, tick)
		require.False(t, n.Gone(a.LocalID()), "a node that left answered what it held: not failed")
		_, ok := n.PickRemote("e")
		require.False(t, ok)
		_, ok = n.memberSecret(a.LocalID())
		require.False(t, ok, "a departed node's forwarded requests no longer verify")
	}
	waitActive(t, nodes[1:], ids(nodes[1:])...)
	require.Equal(t, adminapi.StatusLeft, status(a, a.LocalID()))
}

func TestWholeClusterLeavingAtOnceDoesNotWaitOutTheTimeout(t *testing.T) {
	// Every node stops together (helm uninstall, all pods evicted): once
	// the others are gone, nobody is left to hear a leave announcement,
	// and waiting for it to go out would hold each node until its timeout.
	const timeout = 20 * time.Second
	for round := 0; round < 3; round++ {
		nodes := startCluster(t, 3)
		errs := make(chan error, len(nodes))
		for _, n := range nodes {
			n.SetLeaving()
		}
		for _, n := range nodes {
			go func() { errs <- n.Leave(timeout) }()
		}
		for range nodes {
			require.NoError(t, <-errs, "round %d", round)
		}
		for _, n := range nodes {
			require.NoError(t, n.Shutdown())
		}
	}
}

func TestKilledNodeIsRemovedFromRouting(t *testing.T) {
	nodes := startCluster(t, 3)
	a := nodes[0]
	a.UpdateLocalEndpoints(map[string]int{"e": 1})
	for _, n := range nodes[1:] {
		require.Eventually(t, func() bool { return routesTo(n, "e", a.LocalID()) }, eventually, tick)
	}

	require.False(t, nodes[1].Gone(a.LocalID()))
	killed := time.Now()
	require.NoError(t, a.Shutdown()) // no Leave: the others must detect it
	for _, n := range nodes[1:] {
		require.Eventually(t, func() bool {
			_, routable := n.PickRemote("e")
			return !routable && status(n, a.LocalID()) == adminapi.StatusDead
		}, eventually, tick, describe(nodes[1:]))
		require.True(t, n.Gone(a.LocalID()))
	}
	t.Logf("killed node removed from routing after %s", time.Since(killed).Round(time.Millisecond))
	waitActive(t, nodes[1:], ids(nodes[1:])...)
}

func TestDeadNodesAreForgottenAfterAWhile(t *testing.T) {
	first := nextIP()
	cfg := testConfig(first)
	cfg.Timing.ForgetAfter = 200 * time.Millisecond
	a := joinNode(t, cfg)
	b := joinNode(t, testConfig(nextIP(), first.String()))
	waitActive(t, []*Cluster{a, b}, a.LocalID(), b.LocalID())

	require.NoError(t, b.Leave(5*time.Second))
	require.NoError(t, b.Shutdown())
	require.Eventually(t, func() bool {
		_, listed := a.Node(b.LocalID())
		return !listed && len(a.Nodes()) == 1
	}, eventually, tick)
}

// TestRestartedNodeGetsANewIDTheClusterAccepts: a node started with a
// prefix uses prefix + suffix as its memberlist name (config.NewNodeID),
// and a restart on the same address with a new ID is accepted next to the
// cluster's memory of the old one.
func TestRestartedNodeGetsANewIDTheClusterAccepts(t *testing.T) {
	ip := nextIP()
	seed := joinNode(t, testConfig(nextIP()))
	cfg := testConfig(ip, seed.GossipAddr())
	prefixed := config.Cluster{NodeIDPrefix: "pico-1-"}
	cfg.NodeID = prefixed.NewNodeID()
	old := joinNode(t, cfg)
	require.True(t, strings.HasPrefix(old.LocalID(), "pico-1-"))
	waitActive(t, []*Cluster{seed}, seed.LocalID(), old.LocalID())
	require.NoError(t, old.Shutdown()) // crash: the seed still remembers it
	cfg.NodeID = prefixed.NewNodeID()  // the server of the new process chooses again
	restarted := joinNode(t, cfg)
	require.NotEqual(t, old.LocalID(), restarted.LocalID())
	require.Eventually(t, func() bool { return status(seed, restarted.LocalID()) == adminapi.StatusActive }, eventually, tick)
}

func TestNewRejectsBadConfiguration(t *testing.T) {
	ip := nextIP()
	for name, tc := range map[string]struct {
		change func(*Config)
		want   string
	}{
		// The configuration's own checks are config.Server.Validate's
		// (internal/config TestClusterAndGossipAreValidatedAtLoad).
		"no node id":      {func(c *Config) { c.NodeID = "" }, "node ID is empty"},
		"no proxy addr":   {func(c *Config) { c.ProxyAddr = "" }, "proxy address"},
		"long proxy addr": {func(c *Config) { c.ProxyAddr = strings.Repeat("a", 200) + ":1" }, "proxy.advertise_addr"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := testConfig(ip)
			tc.change(&cfg)
			c, err := New(cfg)
			if err == nil {
				_ = c.Shutdown()
			}
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestMetrics(t *testing.T) {
	first := nextIP()
	reg := prometheus.NewRegistry()
	cfg := testConfig(first)
	cfg.Registerer = reg
	a := joinNode(t, cfg)
	b := joinNode(t, testConfig(nextIP(), first.String()))
	b.UpdateLocalEndpoints(map[string]int{"x": 1, "y": 2})
	require.Eventually(t, func() bool { return a.routingEntries() == 2 }, eventually, tick)
	got := gathered(t, reg)
	for key, want := range map[string]float64{
		`pico_cluster_members{status="active"}`:                                    2,
		`pico_cluster_members{status="leaving"}`:                                   0,
		`pico_cluster_members{status="left"}`:                                      0,
		`pico_cluster_members{status="dead"}`:                                      0,
		`pico_cluster_routing_entries`:                                             2,
		`pico_cluster_forward_verification_failures_total{reason="bad_signature"}`: 0,
		`pico_cluster_state_pulls_total`:                                           0,
	} {
		require.Contains(t, got, key)
		require.Equal(t, want, got[key], key)
	}
	b.SetLeaving()
	require.Eventually(t, func() bool {
		got := gathered(t, reg)
		return got[`pico_cluster_members{status="leaving"}`] == 1 && got[`pico_cluster_routing_entries`] == 0
	}, eventually, tick)

	// A second node with the same registry is refused, not half-registered.
	cfg2 := testConfig(nextIP())
	cfg2.Registerer = reg
	_, err := New(cfg2)
	require.ErrorContains(t, err, "registering metrics")

	// Shutdown unregisters, so a new node can use the registry.
	require.NoError(t, a.Shutdown())
	startNode(t, cfg2)
}

func TestChangedIsClosedOnChanges(t *testing.T) {
	nodes := startCluster(t, 2)
	a, b := nodes[0], nodes[1]
	changed := b.Changed()
	select {
	case <-changed:
		t.Fatal("Changed is closed before any change")
	default:
	}
	a.UpdateLocalEndpoints(map[string]int{"wake": 1})
	n := waitRoute(t, b, "wake", eventually)
	require.Equal(t, a.LocalID(), n.ID)
	select {
	case <-changed:
	default:
		t.Fatal("the channel taken before the change was not closed")
	}
}

func TestRunReturnsWhenContextEnds(t *testing.T) {
	for _, interval := range []time.Duration{0, time.Hour} {
		cfg := testConfig(nextIP(), "127.0.0.1:1")
		cfg.RejoinInterval = interval
		c := startNode(t, cfg)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { c.Run(ctx); close(done) }()
		cancel()
		<-done
	}
}

func TestNodesReportedUnreachableAreAvoidedWhileOthersHoldTheEndpoint(t *testing.T) {
	nodes := startCluster(t, 3)
	a, b, client := nodes[0], nodes[1], nodes[2]
	a.UpdateLocalEndpoints(map[string]int{"shared": 5, "only-a": 1})
	b.UpdateLocalEndpoints(map[string]int{"shared": 1})
	require.Eventually(t, func() bool {
		return routesTo(client, "only-a", a.LocalID()) && status(client, b.LocalID()) == adminapi.StatusActive && func() bool {
			d, _ := client.Node(b.LocalID())
			return d.Upstreams == 1
		}()
	}, eventually, tick)

	client.ReportUnreachable(a.LocalID())
	for range 200 {
		n, ok := client.PickRemote("shared")
		require.True(t, ok)
		require.Equal(t, b.LocalID(), n.ID, "another holder is preferred")
	}
	// The only holder is still returned: the proxy fails fast on it
	// rather than finding nothing.
	require.True(t, routesTo(client, "only-a", a.LocalID()))
	client.ReportUnreachable("no-such-node") // ignored
}
