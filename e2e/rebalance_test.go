//go:build e2e

package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pico-proxy/pico/internal/adminapi"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Rebalancing (cluster.rebalance, defaults): agents connect through a
// round-robin balancer in front of the upstream ports; when the cluster
// grows, shrinks or restarts, members above their fair share send a few
// agents a GoAway at a time until every member holds about as many.

const (
	// rebalanceEndpoints × agentsPerEndpoint agents.
	rebalanceEndpoints = 30
	// rebalanceRate is the load during the test (requests per second).
	rebalanceRate = 100
	// rebalanceWithin is the bound on the time to balance.
	rebalanceWithin = 60 * time.Second
	// rebalanceLow and rebalanceHigh bound every member's share of the
	// fair share once balanced.
	rebalanceLow, rebalanceHigh = 0.7, 1.3
)

// distribution is the upstream count of every node of lc, as the first
// reachable node lists it (active members only), in node order, and
// whether every node is listed.
func (lc *loadedCluster) distribution() ([]int, bool) {
	for _, n := range lc.nodes {
		members, err := n.TryMembers()
		if err != nil {
			continue
		}
		byAddr := map[string]int{}
		for _, m := range members {
			if m.Status == adminapi.StatusActive {
				byAddr[m.ProxyAddr] = m.Upstreams
			}
		}
		out := make([]int, len(lc.nodes))
		for i, o := range lc.nodes {
			c, ok := byAddr[o.IP+":8000"]
			if !ok {
				return nil, false
			}
			out[i] = c
		}
		return out, true
	}
	return nil, false
}

// balanced reports whether counts hold total connections, each within
// [low, high] × the fair share.
func balanced(counts []int, total int) bool {
	sum := 0
	fair := float64(total) / float64(len(counts))
	for _, c := range counts {
		sum += c
		if float64(c) < rebalanceLow*fair || float64(c) > rebalanceHigh*fair {
			return false
		}
	}
	return sum == total
}

// waitBalanced waits up to rebalanceWithin for every node to hold
// 0.7–1.3 × the fair share of the agents' connections, as every node
// sees it, and logs the distribution before and after and the time it
// took from since.
func (lc *loadedCluster) waitBalanced(what string, since time.Time) time.Duration {
	lc.t.Helper()
	total := len(lc.agents)
	before, _ := lc.distribution()
	var last []int
	ok := assert.Eventually(lc.t, func() bool {
		counts, ok := lc.distribution()
		if !ok {
			return false
		}
		last = counts
		if !balanced(counts, total) {
			return false
		}
		// Every node sees the same total (gossip has caught up).
		for _, n := range lc.nodes {
			if upstreamsSeenBy(n) != total {
				return false
			}
		}
		return true
	}, rebalanceWithin, 100*time.Millisecond)
	if !ok {
		require.FailNowf(lc.t, "not balanced", "%s: not balanced within %s: upstreams per member %v (before %v, fair share %.1f)",
			what, rebalanceWithin, last, before, float64(total)/float64(len(lc.nodes)))
	}
	took := time.Since(since)
	lc.t.Logf("TIMING %s: balanced in %.1f s; upstreams per member before %v, after %v (fair share %.1f, bounds %.1f–%.1f)",
		what, took.Seconds(), before, last, float64(total)/float64(len(lc.nodes)),
		rebalanceLow*float64(total)/float64(len(lc.nodes)), rebalanceHigh*float64(total)/float64(len(lc.nodes)))
	return took
}

// addNode starts a node joining the cluster and puts it behind the
// balancers once ready, as a scaled-up StatefulSet does.
func (lc *loadedCluster) addNode() *Node {
	lc.t.Helper()
	var join []string
	for _, n := range lc.nodes {
		join = append(join, n.IP)
	}
	n := StartNodeNoWait(lc.t, "", []string{"--cluster.join", strings.Join(join, ",")})
	lc.nodes = append(lc.nodes, n)
	lc.putIn(n)
	return n
}

// removeNode takes the last node out of the balancers and stops it
// gracefully, as a scaled-down StatefulSet does.
func (lc *loadedCluster) removeNode() {
	lc.t.Helper()
	n := lc.nodes[len(lc.nodes)-1]
	lc.takeOut(n)
	require.Equal(lc.t, 0, n.Terminate(lc.t, 40*time.Second), "graceful shutdown exits 0")
	lc.replace(n, nil)
}

// TestRebalanceScaleAndRollingRestart: 60 agents (30 endpoints × 2) on 3
// members behind a round-robin balancer under steady load. Scaled to 5,
// to 2 after a rolling restart of the 5, every member ends within 0.7–1.3
// × its fair share within 60 s each time, and no request fails. Without
// rebalancing the new members keep 0 agents and the member restarted
// last ends with none.
func TestRebalanceScaleAndRollingRestart(t *testing.T) {
	var endpoints []string
	for i := range rebalanceEndpoints {
		endpoints = append(endpoints, fmt.Sprintf("rb%02d", i))
	}
	lc := newLoadedClusterWith(t, startPeers(t, 3), endpoints, rebalanceRate)
	lc.waitBalanced("start, 3 members", time.Now())

	// 3 → 5.
	began := time.Now()
	lc.addNode()
	lc.addNode()
	waitMembers(t, lc.nodes, 5)
	lc.waitBalanced("scale 3 → 5", began)

	// Rolling restart of the 5, one after the other (without waiting for
	// balance in between, as a StatefulSet's rolling update).
	for i := range lc.nodes {
		lc.restartGracefully(lc.nodes[i])
	}
	waitMembers(t, lc.nodes, 5)
	lc.waitBalanced("rolling restart of 5, after the last restart", time.Now())

	// 5 → 2.
	began = time.Now()
	for len(lc.nodes) > 2 {
		lc.removeNode()
	}
	waitMembers(t, lc.nodes, 2)
	lc.waitBalanced("scale 5 → 2, after the last exit", time.Now())
	t.Logf("scale 5 → 2 took %s in all", time.Since(began).Round(100*time.Millisecond))

	s := lc.finish("rebalancing: 3 → 5, rolling restart, 5 → 2")
	require.Zero(t, s.Failed, "failed requests: %v", s.FailureStrings())
	shed := 0
	for _, n := range lc.nodes {
		shed += metricValue(n, "pico_upstream_rebalanced_total")
	}
	t.Logf("the 2 remaining members shed %d connections", shed)
}

// metricValue is the sum of a metric's samples on n (-1 if unreadable).
func metricValue(n *Node, name string) int {
	body, err := getText(n.AdminURL() + "/metrics")
	if err != nil {
		return -1
	}
	total := 0.0
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, name+" ") || strings.HasPrefix(line, name+"{") {
			var v float64
			fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v)
			total += v
		}
	}
	return int(total)
}

func getText(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}
