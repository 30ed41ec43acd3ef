package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/pico-proxy/pico/internal/adminapi"
	"github.com/pico-proxy/pico/internal/config"
	"github.com/pico-proxy/pico/internal/testdns"
)

// Every test node gets its own loopback IP (all of 127.0.0.0/8 is local on
// Linux) with the same gossip port, as pods of a StatefulSet do. The
// second and third octets are random so that concurrent test runs and the
// e2e suite (127.0.1x.y) do not meet.
const testGossipPort = 17946

var (
	ipBase = [2]byte{byte(100 + rand.IntN(150)), byte(rand.IntN(200))}
	ipNext atomic.Uint32
)

func nextIP() netip.Addr {
	n := ipNext.Add(1)
	return netip.AddrFrom4([4]byte{127, ipBase[0], ipBase[1] + byte(n/250), byte(1 + n%250)})
}

// eventually is the wait used for cluster convergence: generous, because
// -race on a busy 2-core machine is slow; the timings themselves are
// measured by the benchmarks.
const (
	eventually = 15 * time.Second
	tick       = 10 * time.Millisecond
)

func testLogger() *slog.Logger {
	if os.Getenv("PICO_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// testConfig is the configuration of a node on ip with the default test
// port, with a fresh node ID.
func testConfig(ip netip.Addr, join ...string) Config {
	gossip := netip.AddrPortFrom(ip, testGossipPort)
	cl := config.DefaultCluster()
	cl.NodeIDPrefix = "node-" + ip.String() + "-"
	return Config{
		NodeID:           cl.NewNodeID(),
		BindAddr:         gossip,
		AdvertiseAddr:    gossip,
		Join:             joinTargets(join...),
		JoinTimeout:      cl.JoinTimeout,
		AbortIfJoinFails: cl.AbortIfJoinFails,
		ProxyAddr:        net.JoinHostPort(ip.String(), "8000"),
		AdminAddr:        net.JoinHostPort(ip.String(), "8002"),
		UpstreamAddr:     net.JoinHostPort(ip.String(), "8001"),
		Logger:           testLogger(),
	}
}

// joinTargets parses cluster.join entries as config.Cluster.Validate does.
func joinTargets(entries ...string) []config.JoinTarget {
	var out []config.JoinTarget
	for _, e := range entries {
		t, err := config.ParseJoinEntry(e)
		if err != nil {
			panic(err)
		}
		out = append(out, t)
	}
	return out
}

// loadKeys reads a gossip.secret_key value as config.Gossip.Validate does.
func loadKeys(t testing.TB, value string) config.GossipKeys {
	t.Helper()
	keys, err := config.LoadGossipKeys(value)
	require.NoError(t, err)
	return keys
}

// startNode creates a node and shuts it down at the end of the test.
func startNode(t testing.TB, cfg Config) *Cluster {
	t.Helper()
	c, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Shutdown() })
	return c
}

// joinNode creates a node and runs its initial join, which must succeed.
func joinNode(t testing.TB, cfg Config) *Cluster {
	t.Helper()
	c := startNode(t, cfg)
	require.NoError(t, c.Join(context.Background()))
	return c
}

// startCluster starts n nodes, the others joining the first by IP, and
// waits until every node lists all n as active.
func startCluster(t testing.TB, n int) []*Cluster {
	t.Helper()
	first := nextIP()
	nodes := []*Cluster{joinNode(t, testConfig(first))}
	for i := 1; i < n; i++ {
		nodes = append(nodes, joinNode(t, testConfig(nextIP(), first.String())))
	}
	waitActive(t, nodes, ids(nodes)...)
	return nodes
}

func ids(nodes []*Cluster) []string {
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.LocalID()
	}
	slices.Sort(out)
	return out
}

// activeIDs lists the IDs a node sees as active, sorted.
func activeIDs(c *Cluster) []string {
	var out []string
	for _, n := range c.Nodes() {
		if n.Status == adminapi.StatusActive {
			out = append(out, n.ID)
		}
	}
	return out
}

// waitActive waits until every node sees exactly want as active members.
func waitActive(t testing.TB, nodes []*Cluster, want ...string) {
	t.Helper()
	slices.Sort(want)
	require.Eventually(t, func() bool {
		for _, n := range nodes {
			if !slices.Equal(activeIDs(n), want) {
				return false
			}
		}
		return true
	}, eventually, tick, "nodes did not converge to active members %v: %s", want, describe(nodes))
}

// describe prints every node's view, for failure messages.
func describe(nodes []*Cluster) string {
	s := ""
	for _, n := range nodes {
		s += fmt.Sprintf("\n%s sees:", n.LocalID())
		for _, m := range n.Nodes() {
			s += fmt.Sprintf(" %s=%s(%d endpoints)", m.ID, m.Status, m.Endpoints)
		}
	}
	return s
}

// status returns the status of id as seen by c ("" when not listed).
func status(c *Cluster, id string) string {
	if d, ok := c.Node(id); ok {
		return d.Status
	}
	return ""
}

// routesTo reports whether c forwards endpoint to the node with id.
func routesTo(c *Cluster, endpoint, id string) bool {
	n, ok := c.PickRemote(endpoint)
	return ok && n.ID == id
}

// waitRoute blocks until c routes endpoint to some node, waking on every
// change instead of polling; it fails the test after timeout.
func waitRoute(t testing.TB, c *Cluster, endpoint string, timeout time.Duration) Node {
	t.Helper()
	deadline := time.After(timeout)
	for {
		changed := c.Changed()
		if n, ok := c.PickRemote(endpoint); ok {
			return n
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("%s never routed %s", c.LocalID(), endpoint)
		}
	}
}

// testResolver sends every DNS question to srv.
func testResolver(srv *testdns.Server) *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, srv.Addr())
		},
	}
}

func startDNS(t testing.TB) *testdns.Server {
	t.Helper()
	srv, err := testdns.Start("127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}

// counterValue reads a counter.
func counterValue(t testing.TB, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	require.NoError(t, c.Write(&m))
	return m.GetCounter().GetValue()
}

// gathered returns every sample of reg as `name{label="value",…}` → value.
func gathered(t testing.TB, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	out := make(map[string]float64)
	for _, f := range families {
		for _, m := range f.GetMetric() {
			key := f.GetName()
			if len(m.GetLabel()) > 0 {
				key += "{"
				for i, l := range m.GetLabel() {
					if i > 0 {
						key += ","
					}
					key += l.GetName() + "=" + strconv.Quote(l.GetValue())
				}
				key += "}"
			}
			switch {
			case m.GetGauge() != nil:
				out[key] = m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				out[key] = m.GetCounter().GetValue()
			}
		}
	}
	return out
}
