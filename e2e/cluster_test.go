//go:build e2e

package e2e

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pico-proxy/pico/internal/adminapi"
	"github.com/stretchr/testify/require"
)

// startCluster starts n nodes; nodes 2..n join node 1's IP. It waits until
// every node lists all n as active and logs how long that took.
func startCluster(t *testing.T, n int, extra ...string) []*Node {
	t.Helper()
	nodes := []*Node{StartNode(t, "", extra)}
	start := time.Now()
	for i := 1; i < n; i++ {
		nodes = append(nodes, StartNode(t, "", append([]string{"--cluster.join", nodes[0].IP}, extra...)))
	}
	waitMembers(t, nodes, n)
	t.Logf("%d nodes converged %s after the last start", n, time.Since(start).Round(time.Millisecond))
	return nodes
}

// waitMembers waits until every node lists exactly want active members.
func waitMembers(t *testing.T, nodes []*Node, want int) {
	t.Helper()
	require.Eventually(t, func() bool {
		for _, n := range nodes {
			if len(n.ActiveIDs()) != want {
				return false
			}
		}
		return true
	}, 15*time.Second, 20*time.Millisecond, "cluster did not converge to %d active members", want)
}

// waitRoutable waits until a request for endpoint through node answers 200.
func waitRoutable(t *testing.T, node *Node, endpoint string) {
	t.Helper()
	require.Eventually(t, func() bool {
		code, _ := proxyGet(http.DefaultClient, node.ProxyURL(), endpoint, "/ping")
		return code == http.StatusOK
	}, 15*time.Second, 20*time.Millisecond, "endpoint %s never routable through %s", endpoint, node.IP)
}

func TestClusterFormsAndListsEveryMember(t *testing.T) {
	nodes := startCluster(t, 3)
	for _, n := range nodes {
		members := n.Members(t)
		require.Len(t, members, 3)
		for _, m := range members {
			require.Equal(t, adminapi.StatusActive, m.Status)
			require.NotEmpty(t, m.ProxyAddr)
			require.NotEmpty(t, m.AdminAddr)
		}
	}
}

func TestRequestIsForwardedToTheNodeHoldingTheUpstream(t *testing.T) {
	nodes := startCluster(t, 3)
	upstream := StartUpstream(t, "svc")
	StartAgent(t, nodes[0].UpstreamURL(), "e1", upstream)
	waitRoutable(t, nodes[0], "e1")

	waitRoutable(t, nodes[2], "e1")
	code, body := proxyGet(http.DefaultClient, nodes[2].ProxyURL(), "e1", "/hello")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "svc /hello ", body)

	// The admin API of every node shows where the upstream is.
	var holder adminapi.NodeSummary
	for _, m := range nodes[2].Members(t) {
		if m.Upstreams > 0 {
			holder = m
		}
	}
	require.Equal(t, 1, holder.Endpoints)
	require.Equal(t, nodes[0].IP+":8000", holder.ProxyAddr)
}

func TestForgedForwardingHeadersAreIgnored(t *testing.T) {
	nodes := startCluster(t, 2)
	StartAgent(t, nodes[0].UpstreamURL(), "e1", StartUpstream(t, "svc"))
	waitRoutable(t, nodes[1], "e1")
	holderID := ""
	for _, m := range nodes[1].Members(t) {
		if m.Upstreams > 0 {
			holderID = m.ID
		}
	}

	// A client claims the request was already forwarded: were the claim
	// trusted, node 2 (no local upstream) would answer 502 instead of
	// forwarding it to node 1.
	req, _ := http.NewRequest(http.MethodGet, nodes[1].ProxyURL()+"/forged", nil)
	req.Header.Set("x-pico-endpoint", "e1")
	req.Header.Set("X-Pico-Forwarded-By", holderID)
	req.Header.Set("X-Pico-Forward-Signature", "deadbeef")
	req.Header.Set("x-piko-forward", "true")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
}

func TestRequestsSpreadByUpstreamCount(t *testing.T) {
	nodes := startCluster(t, 3)
	one, three := StartUpstream(t, "one"), StartUpstream(t, "three")
	StartAgent(t, nodes[0].UpstreamURL(), "spread", one)
	for i := 0; i < 3; i++ {
		StartAgent(t, nodes[1].UpstreamURL(), "spread", three)
	}
	require.Eventually(t, func() bool {
		var ups []int
		for _, m := range nodes[2].Members(t) {
			ups = append(ups, m.Upstreams)
		}
		sort.Ints(ups)
		return fmt.Sprint(ups) == "[0 1 3]"
	}, 15*time.Second, 20*time.Millisecond)

	counts := map[string]int{}
	for i := 0; i < 400; i++ {
		code, body := proxyGet(http.DefaultClient, nodes[2].ProxyURL(), "spread", "/")
		require.Equal(t, http.StatusOK, code, body)
		counts[strings.Fields(body)[0]]++
	}
	t.Logf("spread over nodes with 1 and 3 upstreams: %v", counts)
	// Expected 100:300; a fair coin would give 200:200.
	require.Greater(t, counts["three"], 2*counts["one"])
	require.Greater(t, counts["one"], 40)
}

func TestGracefulLeaveFinishesInFlightRequests(t *testing.T) {
	nodes := startCluster(t, 3)
	slow := StartUpstream(t, "slow")
	lb := StartLoadBalancer(t, nodes[0].IP+":8001", nodes[1].IP+":8001")
	for i := 0; i < 2; i++ {
		StartAgent(t, lb.URL(), "slow", slow)
	}
	waitRoutable(t, nodes[2], "slow")

	// Load on every node, including the one that leaves. Like a load
	// balancer that saw /ready turn 503, clients send no new requests to the
	// leaving node once it got SIGTERM; the requests already in flight there
	// (and those it forwards or receives) must all succeed.
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		failures []string
		total    int
		draining atomic.Bool
		stop     = make(chan struct{})
		client   = &http.Client{Timeout: 30 * time.Second}
		leaving  = nodes[0]
	)
	for _, n := range nodes {
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func(n *Node) {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					if n == leaving && draining.Load() {
						return
					}
					code, body := proxyGet(client, n.ProxyURL(), "slow", "/x?sleep=150ms")
					mu.Lock()
					total++
					if code != http.StatusOK {
						failures = append(failures, fmt.Sprintf("%s: %d %s", n.IP, code, body))
					}
					mu.Unlock()
				}
			}(n)
		}
	}
	time.Sleep(500 * time.Millisecond) // let load build up before the leave
	lb.SetBackends(nodes[1].IP + ":8001")
	draining.Store(true)
	require.Equal(t, 0, leaving.Terminate(t, 30*time.Second), "graceful shutdown exits 0")
	// Peers drop it at once (graceful leave, not a failure-detection timeout).
	waitMembers(t, nodes[1:], 2)
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("%d requests, %d failed", total, len(failures))
	require.Empty(t, firstN(failures, 10))
}

func firstN(s []string, n int) []string {
	if len(s) > n {
		return append(s[:n:n], fmt.Sprintf("… and %d more", len(s)-n))
	}
	return s
}

func TestKilledNodeIsRemovedAndAgentsMoveOn(t *testing.T) {
	nodes := startCluster(t, 3)
	lb := StartLoadBalancer(t, nodes[0].IP+":8001")
	StartAgent(t, lb.URL(), "moving", StartUpstream(t, "svc"))
	waitRoutable(t, nodes[2], "moving")

	lb.SetBackends(nodes[0].IP+":8001", nodes[1].IP+":8001")
	killed := time.Now()
	nodes[0].Kill(t)

	waitMembers(t, nodes[1:], 2)
	t.Logf("killed node removed after %s", time.Since(killed).Round(time.Millisecond))
	waitRoutable(t, nodes[2], "moving")
	t.Logf("traffic resumed %s after the kill", time.Since(killed).Round(time.Millisecond))
}
