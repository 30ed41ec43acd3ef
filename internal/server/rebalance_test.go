package server

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pico-proxy/pico/internal/config"
	"github.com/pico-proxy/pico/internal/testutil"
)

// rebalanceServer starts a server on the real memberlist cluster joining
// join, rebalancing every 200 ms when enabled.
func rebalanceServer(t *testing.T, enabled bool, join ...string) *Server {
	t.Helper()
	srv, err := clusterServerWith(t, func(cfg *config.Server) {
		cfg.Cluster.JoinTimeout = 5 * time.Second
		cfg.Proxy.UpstreamWait = 5 * time.Second
		cfg.Cluster.Rebalance.Enabled = enabled
		cfg.Cluster.Rebalance.Interval = 200 * time.Millisecond
		cfg.Cluster.Rebalance.NewMemberDelay = 500 * time.Millisecond
	}, join...)
	require.NoError(t, err)
	return srv
}

// upstreamCounts is every member's upstream count as srv sees it.
func upstreamCounts(srv *Server) map[string]int {
	out := map[string]int{}
	for _, n := range srv.membership.Nodes() {
		out[n.ID] = n.Upstreams
	}
	return out
}

// rebalanceSetup is two clustered servers, 12 real agents (6 endpoints ×
// 2) connected through a round-robin balancer while only the first server
// was behind it, then the second added to the balancer.
func rebalanceSetup(t *testing.T, enabled bool) (a, b *Server, lb *testutil.Balancer) {
	t.Helper()
	a = rebalanceServer(t, enabled)
	b = rebalanceServer(t, enabled, a.Addrs().Gossip)
	require.Eventually(t, func() bool { return len(a.membership.Nodes()) == 2 && len(b.membership.Nodes()) == 2 },
		10*time.Second, 10*time.Millisecond)
	lb = testutil.StartBalancer(t, a.Addrs().Upstream)
	for i := range 6 {
		for j := range 2 {
			name := fmt.Sprintf("rb%d-%d", i, j)
			agent := startAgent(t, lb.URL(), fmt.Sprintf("rb%d", i), echoHandler(name), nil)
			agent.waitRegistered(t)
		}
	}
	// An agent is registered once its handshake is answered; the server
	// counts the session a moment later.
	require.Eventually(t, func() bool { return a.Registry().Sessions() == 12 }, 10*time.Second, 5*time.Millisecond,
		"sessions on a: %d", a.Registry().Sessions())
	lb.SetBackends(a.Addrs().Upstream, b.Addrs().Upstream)
	return a, b, lb
}

// TestRebalanceSpreadsAgentsToANewMember: with every agent on one member
// and another one added to the balancer, the first sheds the excess with
// GoAway until both hold 4–8 (fair share 6, band 2); requests meanwhile
// all succeed. On the base commit the agents stay: 12 and 0.
func TestRebalanceSpreadsAgentsToANewMember(t *testing.T) {
	a, b, _ := rebalanceSetup(t, true)

	var failed, sent atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		client := &http.Client{Timeout: 10 * time.Second}
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			ep := fmt.Sprintf("rb%d", i%6)
			req, _ := http.NewRequest(http.MethodGet, "http://"+b.Addrs().Proxy+"/", nil)
			req.Header.Set("x-pico-endpoint", ep)
			resp, err := client.Do(req)
			sent.Add(1)
			if err != nil {
				failed.Add(1)
				continue
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			// echoHandler answers 201 with its name.
			if resp.StatusCode != http.StatusCreated || !strings.Contains(string(body), `"name":"`+ep+"-") {
				if failed.Add(1) <= 5 {
					t.Logf("%s: %d %s", ep, resp.StatusCode, body)
				}
			}
		}
	})

	require.Eventually(t, func() bool {
		counts := upstreamCounts(a)
		return counts[a.ID()] >= 4 && counts[a.ID()] <= 8 && counts[b.ID()] >= 4 && counts[b.ID()] <= 8 &&
			a.Registry().Sessions()+b.Registry().Sessions() == 12
	}, 30*time.Second, 20*time.Millisecond, "not rebalanced: %v", upstreamCounts(a))
	close(stop)
	wg.Wait()
	t.Logf("rebalanced to %d and %d; %d requests, %d failed", a.Registry().Sessions(), b.Registry().Sessions(), sent.Load(), failed.Load())
	require.Zero(t, failed.Load())
	require.Positive(t, sent.Load())
	require.Positive(t, gatheredValue(t, a, "pico_upstream_rebalanced_total"))
	// Every endpoint still has both its agents.
	for i := range 6 {
		ep := fmt.Sprintf("rb%d", i)
		require.Equal(t, 2, a.Registry().Counts()[ep]+b.Registry().Counts()[ep], ep)
	}
}

// TestRebalanceDisabledKeepsAgents: cluster.rebalance.enabled false
// leaves the agents where they are.
func TestRebalanceDisabledKeepsAgents(t *testing.T) {
	a, b, _ := rebalanceSetup(t, false)
	time.Sleep(2 * time.Second) // ten intervals in which nothing may happen
	require.Equal(t, 12, a.Registry().Sessions())
	require.Zero(t, b.Registry().Sessions())
}

// gatheredValue is the sum of the samples of a metric in srv's registry.
func gatheredValue(t *testing.T, srv *Server, name string) float64 {
	t.Helper()
	families, err := srv.metrics.Gather()
	require.NoError(t, err)
	total := 0.0
	for _, f := range families {
		if f.GetName() == name {
			for _, m := range f.GetMetric() {
				total += m.GetCounter().GetValue()
			}
		}
	}
	return total
}
