//go:build e2e

package e2e

import (
	"bufio"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pico-proxy/pico/internal/adminapi"
	"github.com/stretchr/testify/require"
)

// The lifecycle scenarios run a cluster under a steady load while it
// changes: rolling restarts, scaling, a killed node, a partition, agent
// and server restarts. Clients reach the proxy ports through a load
// balancer whose backends the test manages like Kubernetes does with a
// readiness probe: a node leaves the balancer before it gets SIGTERM and
// comes back once /ready answers 200. Agents connect through another
// balancer in front of the upstream ports, like a Kubernetes Service.
// Timings are logged; assertions use generous bounds.

const (
	// loadRate is the load generator's rate, spread over the endpoints.
	loadRate = 250
	// loadClientTimeout bounds one request of the load generator.
	loadClientTimeout = 20 * time.Second
	// agentsPerEndpoint agents serve each endpoint, each forwarding to a
	// service of its own (named endpoint-a, endpoint-b), so that answers
	// tell which agent served them.
	agentsPerEndpoint = 2
)

var lifecycleEndpoints = []string{"lc1", "lc2", "lc3"}

// lcAgent is an agent process with the service it forwards to.
type lcAgent struct {
	*Process
	endpoint, service, serviceAddr, connectURL string
}

// loadedCluster is a cluster behind balancers with agents and a load.
type loadedCluster struct {
	t          *testing.T
	nodes      []*Node
	proxyLB    *LoadBalancer
	upstreamLB *LoadBalancer
	inService  map[string]bool // node IPs the balancers send to
	agents     []*lcAgent
	load       *LoadGen
}

// newLoadedCluster puts nodes behind the balancers, starts the agents of
// every endpoint through the upstream balancer, waits until every node
// routes every endpoint to all its agents and starts the load.
func newLoadedCluster(t *testing.T, nodes []*Node) *loadedCluster {
	t.Helper()
	return newLoadedClusterWith(t, nodes, lifecycleEndpoints, loadRate)
}

// newLoadedClusterWith is newLoadedCluster with agentsPerEndpoint agents
// for each of endpoints and a load of rate requests per second.
func newLoadedClusterWith(t *testing.T, nodes []*Node, endpoints []string, rate int) *loadedCluster {
	t.Helper()
	lc := &loadedCluster{
		t:          t,
		nodes:      append([]*Node(nil), nodes...),
		proxyLB:    StartLoadBalancer(t),
		upstreamLB: StartLoadBalancer(t),
		inService:  map[string]bool{},
	}
	for _, n := range nodes {
		lc.inService[n.IP] = true
	}
	lc.syncBalancers()
	for _, ep := range endpoints {
		for i := range agentsPerEndpoint {
			service := ep + "-" + string(rune('a'+i))
			lc.agents = append(lc.agents, lc.startAgent(ep, service, StartUpstream(t, service), lc.upstreamLB.URL()))
		}
	}
	lc.waitUpstreamsWithin(len(lc.agents), 15*time.Second+time.Duration(len(lc.agents))*time.Second/2)
	for _, n := range nodes {
		for _, ep := range endpoints {
			waitRoutable(t, n, ep)
		}
	}
	lc.load = StartLoad(t, lc.proxyLB.URL(), endpoints, rate, loadClientTimeout)
	lc.load.WaitRequests(t, time.Now(), rate) // a second of steady load
	return lc
}

func (lc *loadedCluster) startAgent(endpoint, service, serviceAddr, connectURL string) *lcAgent {
	lc.t.Helper()
	return &lcAgent{
		Process:     StartAgent(lc.t, connectURL, endpoint, serviceAddr),
		endpoint:    endpoint,
		service:     service,
		serviceAddr: serviceAddr,
		connectURL:  connectURL,
	}
}

func (lc *loadedCluster) syncBalancers() {
	var proxies, upstreams []string
	for _, n := range lc.nodes {
		if lc.inService[n.IP] {
			proxies = append(proxies, n.IP+":8000")
			upstreams = append(upstreams, n.IP+":8001")
		}
	}
	lc.proxyLB.SetBackends(proxies...)
	lc.upstreamLB.SetBackends(upstreams...)
}

// takeOut removes n from the balancers, as a failing readiness probe does.
func (lc *loadedCluster) takeOut(n *Node) {
	delete(lc.inService, n.IP)
	lc.syncBalancers()
}

// putIn adds n to the balancers once it is ready.
func (lc *loadedCluster) putIn(n *Node) {
	n.WaitReady(lc.t, 30*time.Second)
	lc.inService[n.IP] = true
	lc.syncBalancers()
}

// replace swaps a node for its new process (or removes it if repl is nil).
func (lc *loadedCluster) replace(old, repl *Node) {
	i := slices.Index(lc.nodes, old)
	require.GreaterOrEqual(lc.t, i, 0)
	if repl == nil {
		lc.nodes = slices.Delete(lc.nodes, i, i+1)
		return
	}
	lc.nodes[i] = repl
}

// waitUpstreams waits until every node sees want upstream connections in
// the cluster (the sum of the members' upstream counts).
func (lc *loadedCluster) waitUpstreams(want int) {
	lc.t.Helper()
	lc.waitUpstreamsWithin(want, 15*time.Second)
}

// waitUpstreamsWithin is waitUpstreams with its own bound.
func (lc *loadedCluster) waitUpstreamsWithin(want int, timeout time.Duration) {
	lc.t.Helper()
	require.Eventually(lc.t, func() bool {
		for _, n := range lc.nodes {
			if upstreamsSeenBy(n) != want {
				return false
			}
		}
		return true
	}, timeout, 20*time.Millisecond, "the nodes do not all see %d upstreams", want)
}

// upstreamsSeenBy is the sum of the upstream counts of the members n
// lists as active, -1 if its admin API cannot be reached.
func upstreamsSeenBy(n *Node) int {
	members, err := n.TryMembers()
	if err != nil {
		return -1
	}
	total := 0
	for _, m := range members {
		if m.Status == adminapi.StatusActive {
			total += m.Upstreams
		}
	}
	return total
}

// startPeers starts n nodes at once, each joining all the others (like
// the pods of a StatefulSet whose join names resolve to every pod), so
// that a node restarted with the same flags joins the running ones. It
// waits until every node lists all n as active.
func startPeers(t *testing.T, n int, extra ...string) []*Node {
	t.Helper()
	ips := make([]string, n)
	for i := range ips {
		ips[i] = nextIP()
	}
	return startPeersOn(t, ips, func(i int) []string {
		var others []string
		for j, ip := range ips {
			if j != i {
				others = append(others, ip)
			}
		}
		return append([]string{"--cluster.join", strings.Join(others, ",")}, extra...)
	})
}

// startPeersOn starts a node on each IP with the flags flags(i) gives,
// all at once, waits for them to be ready and to list each other.
func startPeersOn(t *testing.T, ips []string, flags func(i int) []string) []*Node {
	t.Helper()
	began := time.Now()
	nodes := make([]*Node, len(ips))
	for i, ip := range ips {
		nodes[i] = StartNodeNoWait(t, ip, flags(i))
	}
	for _, n := range nodes {
		n.WaitReady(t, 30*time.Second)
	}
	waitMembers(t, nodes, len(nodes))
	t.Logf("%d nodes started together formed one cluster in %s", len(nodes), time.Since(began).Round(time.Millisecond))
	return nodes
}

// restartGracefully does what a StatefulSet rolling update does to one
// pod: out of the balancers, SIGTERM, wait for exit 0, start a new process
// on the same IP (a new node ID), wait for /ready, back into the
// balancers. It returns the new node.
func (lc *loadedCluster) restartGracefully(old *Node) *Node {
	lc.t.Helper()
	oldID := old.ID(lc.t)
	lc.takeOut(old)
	began := time.Now()
	require.Equal(lc.t, 0, old.Terminate(lc.t, 40*time.Second), "graceful shutdown exits 0")
	drained := time.Since(began)
	n := old.StartAgain(lc.t)
	lc.replace(old, n)
	lc.putIn(n)
	newID := n.ID(lc.t)
	require.NotEqual(lc.t, oldID, newID, "a restarted node has a new ID")
	lc.t.Logf("restarted %s: %s → %s (drain and exit %s, ready %s later)", n.IP, oldID, newID,
		drained.Round(time.Millisecond), (time.Since(began) - drained).Round(time.Millisecond))
	return n
}

// finish runs the load a little longer, stops it and returns the summary
// of the whole run.
func (lc *loadedCluster) finish(what string) LoadSummary {
	lc.t.Helper()
	lc.load.WaitRequests(lc.t, time.Now(), lc.load.rate/2)
	lc.load.Stop()
	s := Summarize(lc.load.Results())
	s.Log(lc.t, what)
	require.GreaterOrEqual(lc.t, s.Rate, 0.9*float64(lc.load.rate), "the load generator kept its rate")
	return s
}

// TestLifecycleRollingRestart: a rolling restart of 3 nodes, one at a
// time, twice around, loses no request.
func TestLifecycleRollingRestart(t *testing.T) {
	lc := newLoadedCluster(t, startPeers(t, 3))
	began := time.Now()
	for round := 1; round <= 2; round++ {
		for i := range 3 {
			lc.restartGracefully(lc.nodes[i])
		}
	}
	waitMembers(t, lc.nodes, 3)
	t.Logf("two rolling restarts took %s", time.Since(began).Round(time.Millisecond))
	s := lc.finish("rolling restart")
	require.Zero(t, s.Failed, "failed requests: %v", s.FailureStrings())
}

// TestLifecycleScaleUp: scaling from 3 to 5 nodes started by `pico
// bootstrap` from the cluster DNS loses no request; the new nodes become
// members everywhere and serve traffic once in the balancer.
func TestLifecycleScaleUp(t *testing.T) {
	dns := StartClusterDNS(t)
	var nodes []*Node
	for i := range 3 {
		pod, ip := "pico-"+strconv.Itoa(i), nextIP()
		dns.PublishPod(headless, pod, Addr(ip), 8003)
		nodes = append(nodes, bootstrapAndStart(t, dns, pod, ip))
	}
	waitMembers(t, nodes, 3)
	lc := newLoadedCluster(t, nodes)

	var added []*Node
	for i := 3; i < 5; i++ {
		pod, ip := "pico-"+strconv.Itoa(i), nextIP()
		dns.PublishPod(headless, pod, Addr(ip), 8003)
		began := time.Now()
		n := bootstrapAndStart(t, dns, pod, ip)
		ready := time.Since(began)
		lc.nodes = append(lc.nodes, n)
		added = append(added, n)
		id := n.ID(t)
		require.Eventually(t, func() bool {
			for _, other := range lc.nodes {
				if !slices.Contains(other.ActiveIDs(), id) {
					return false
				}
			}
			return true
		}, 15*time.Second, 5*time.Millisecond, "%s is not a member everywhere", id)
		t.Logf("%s (%s): bootstrap and start until /ready %s; active on every node %s after /ready",
			pod, id, ready.Round(time.Millisecond), (time.Since(began) - ready).Round(time.Millisecond))
	}
	waitMembers(t, lc.nodes, 5)

	// Like Kubernetes once the new pods are ready: the balancer sends
	// them traffic, and they serve it.
	for _, n := range added {
		lc.putIn(n)
	}
	for _, n := range added {
		require.Eventually(t, func() bool {
			return lc.proxyLB.Connections(n.IP+":8000") >= 50 && proxyAnswered(n, http.StatusOK) >= 50
		}, 20*time.Second, 20*time.Millisecond, "%s serves no traffic", n.Name)
	}
	s := lc.finish("scale up 3 → 5")
	for _, n := range added {
		t.Logf("%s: %d client connections from the balancer, %d requests answered 200 by its proxy",
			n.IP, lc.proxyLB.Connections(n.IP+":8000"), proxyAnswered(n, http.StatusOK))
	}
	require.Zero(t, s.Failed, "failed requests: %v", s.FailureStrings())
}

// proxyAnswered is the number of requests the node's proxy answered with
// status (its pico_proxy_requests_total metric, all endpoints), -1 if the
// metrics cannot be read.
func proxyAnswered(n *Node, status int) int {
	resp, err := http.Get(n.AdminURL() + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	total := 0.0
	label := `status="` + strconv.Itoa(status) + `"`
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "pico_proxy_requests_total{") && strings.Contains(line, label) {
			if v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64); err == nil {
				total += v
			}
		}
	}
	return int(total)
}

// TestLifecycleScaleDown: scaling from 5 to 2 nodes (SIGTERM of the three
// highest) loses no request, and each departed node leaves the member
// lists at once: it is listed as left (a graceful leave), never as dead
// (a failure-detection timeout).
func TestLifecycleScaleDown(t *testing.T) {
	lc := newLoadedCluster(t, startPeers(t, 5))
	for i := 4; i >= 2; i-- {
		leaving := lc.nodes[i]
		id := leaving.ID(t)
		lc.takeOut(leaving)
		require.Equal(t, 0, leaving.Terminate(t, 40*time.Second), "graceful shutdown exits 0")
		exited := time.Now()
		lc.replace(leaving, nil)
		var wrong []string // statuses that no graceful leave gives
		require.Eventually(t, func() bool {
			done := true
			for _, n := range lc.nodes {
				switch status := statusOf(n, id); status {
				case adminapi.StatusLeft, "": // left, or already forgotten
				case adminapi.StatusLeaving:
					done = false
				default:
					wrong = append(wrong, n.IP+" lists it as "+status)
				}
			}
			return done || len(wrong) > 0
		}, 5*time.Second, 5*time.Millisecond, "%s is not listed as left everywhere", id)
		require.Empty(t, wrong, "%s exited after a graceful leave but is not listed as left", id)
		t.Logf("%s (%s) exited; listed as left by the %d others %s later", leaving.IP, id, len(lc.nodes),
			time.Since(exited).Round(time.Millisecond))
		waitMembers(t, lc.nodes, len(lc.nodes))
	}
	s := lc.finish("scale down 5 → 2")
	require.Zero(t, s.Failed, "failed requests: %v", s.FailureStrings())
}

// statusOf is id's status in n's member list ("" if not listed, "?" if
// the list cannot be read).
func statusOf(n *Node, id string) string {
	members, err := n.TryMembers()
	if err != nil {
		return "?"
	}
	for _, m := range members {
		if m.ID == id {
			return m.Status
		}
	}
	return ""
}

// TestLifecycleKilledNode: SIGKILL of one node of 3 that is still in the
// balancer. Failures are bounded: no request takes longer than the
// gateway timeout, and from 5 s after the kill at least 99.9% of the
// requests succeed.
func TestLifecycleKilledNode(t *testing.T) {
	const gatewayTimeout = 3 * time.Second
	lc := newLoadedCluster(t, startPeers(t, 3, "--proxy.gateway-timeout", gatewayTimeout.String()))
	victim := lc.nodes[0]
	killed := time.Now()
	victim.Kill(t)
	// The balancers keep the dead node (they skip it as it refuses
	// connections); the test stops asking it for its member list.
	lc.replace(victim, nil)
	lc.waitUpstreams(len(lc.agents))
	t.Logf("every agent registered with a surviving node %s after the kill", time.Since(killed).Round(time.Millisecond))
	waitMembers(t, lc.nodes, 2)
	t.Logf("killed node out of the member lists %s after the kill", time.Since(killed).Round(time.Millisecond))

	settled := killed.Add(5 * time.Second)
	lc.load.WaitRequests(t, settled, 10*loadRate)
	s := lc.finish("SIGKILL of one node of 3")
	if s.Failed > 0 {
		last := s.Failures[len(s.Failures)-1]
		t.Logf("unavailability window: %d failed requests, the first started %s after the kill, the last ended %s after it",
			s.Failed, s.Failures[0].Start.Sub(killed).Round(time.Millisecond),
			last.Start.Add(last.Duration).Sub(killed).Round(time.Millisecond))
	} else {
		t.Logf("unavailability window: none (no failed request)")
	}
	// The client measures the gateway timeout plus the way there and back
	// (balancer, forwarding between nodes, a shared machine's scheduling).
	for _, r := range lc.load.Results() {
		require.LessOrEqual(t, r.Duration, gatewayTimeout+time.Second, "a request hung longer than the gateway timeout: %s", r)
	}
	after := Summarize(Since(lc.load.Results(), settled))
	require.GreaterOrEqual(t, float64(after.Total-after.Failed), 0.999*float64(after.Total),
		"from 5 s after the kill: %d of %d failed: %v", after.Failed, after.Total, after.FailureStrings())
}

// TestLifecycleFrozenAgent: one of an endpoint's two agents hangs with its
// connection open (SIGSTOP), as a wedged process or a host gone without a
// TCP reset would. No request is lost: the node pings the agent once a
// response is slow, sends new requests to the other agent while the ping
// is unanswered, and closes the connection when the ping times out, upon
// which the requests it held are retried on the other agent, well before
// the gateway timeout.
func TestLifecycleFrozenAgent(t *testing.T) {
	lc := newLoadedCluster(t, startPeers(t, 3))
	victim := lc.agents[0]
	frozen := time.Now()
	require.NoError(t, syscall.Kill(victim.PID(), syscall.SIGSTOP))
	t.Cleanup(func() { _ = syscall.Kill(victim.PID(), syscall.SIGCONT) }) // so that it can be stopped
	// Without the liveness check, yamux's keepalive would close it after 30–40 s.
	lc.waitUpstreamsWithin(len(lc.agents)-1, 40*time.Second)
	t.Logf("the frozen agent's connection was closed %s after the freeze", time.Since(frozen).Round(time.Millisecond))

	s := lc.finish("an agent frozen (SIGSTOP) with its connection open")
	require.Zero(t, s.Failed, "failed requests: %v", s.FailureStrings())
	slowest := time.Duration(0)
	for _, r := range lc.load.Results() {
		slowest = max(slowest, r.Duration)
	}
	t.Logf("slowest request: %s (the requests the frozen agent held)", slowest.Round(time.Millisecond))
	require.Less(t, slowest, 15*time.Second, "a request waited for the gateway timeout")
}

// TestLifecyclePartitionHeals: one node is cut off from the others' gossip
// (both directions) until each side declares the other dead; once the
// network heals, the cluster converges back to one membership.
func TestLifecyclePartitionHeals(t *testing.T) {
	part := &Partition{}
	ips := []string{nextIP(), nextIP(), nextIP()}
	var relays []*GossipRelay
	for _, ip := range ips {
		relays = append(relays, part.NewRelay(t, ip))
	}
	nodes := startPeersOn(t, ips, func(i int) []string {
		var others []string
		for j, r := range relays {
			if j != i {
				others = append(others, r.Addr())
			}
		}
		return []string{"--gossip.advertise-addr", relays[i].Addr(), "--cluster.join", strings.Join(others, ",")}
	})
	lc := newLoadedCluster(t, nodes)

	cutOff, others := nodes[2], nodes[:2]
	cutID := cutOff.ID(t)
	cut := time.Now()
	part.Cut(cutOff.IP, cutOff.PID())
	require.Eventually(t, func() bool {
		for _, n := range others {
			if slices.Contains(n.ActiveIDs(), cutID) {
				return false
			}
		}
		return len(cutOff.ActiveIDs()) == 1
	}, 30*time.Second, 10*time.Millisecond, "the two sides did not declare each other dead")
	t.Logf("partition detected on both sides %s after the cut", time.Since(cut).Round(time.Millisecond))

	healed := time.Now()
	part.Heal()
	require.Eventually(t, func() bool {
		want := nodes[0].ActiveIDs()
		if len(want) != 3 {
			return false
		}
		slices.Sort(want)
		for _, n := range nodes[1:] {
			got := n.ActiveIDs()
			slices.Sort(got)
			if !slices.Equal(got, want) {
				return false
			}
		}
		return true
	}, 30*time.Second, 10*time.Millisecond, "the cluster did not converge back to one membership within 30 s of healing")
	t.Logf("one membership again %s after healing", time.Since(healed).Round(time.Millisecond))
	for _, n := range nodes {
		for _, ep := range lifecycleEndpoints {
			waitRoutable(t, n, ep)
		}
	}
	routable := time.Now()
	t.Logf("every endpoint routable from every node %s after healing", routable.Sub(healed).Round(time.Millisecond))
	// A partitioned node keeps taking client requests (its readiness does
	// not depend on its peers) but cannot forward them, and its peers
	// cannot forward to it: failures while cut off are expected and only
	// reported. Once healed, nothing may fail.
	lc.load.WaitRequests(t, routable, 2*loadRate)
	lc.finish("partition and heal (failures during the cut are expected)")
	after := Summarize(Since(lc.load.Results(), routable))
	after.Log(t, "after healing")
	require.Zero(t, after.Failed, "failed requests after healing: %v", after.FailureStrings())
}

// TestLifecycleAgentAndServerRestarts: an agent restarted, and an agent
// whose node restarts, are back and routable within about a second of
// the server being reachable; the load loses no request meanwhile.
func TestLifecycleAgentAndServerRestarts(t *testing.T) {
	lc := newLoadedCluster(t, startPeers(t, 3))

	// An agent restarts: SIGTERM, then a new process for the same
	// service. The other agent of its endpoint carries the load. A node
	// prefers its local upstreams, so the new agent is "routable" once a
	// request through some node reaches it and every node counts it.
	old := lc.agents[0]
	require.Equal(t, 0, old.Terminate(t, 30*time.Second), "agent exits 0 on SIGTERM")
	lc.waitUpstreams(len(lc.agents) - 1)
	started := time.Now()
	repl := lc.startAgent(old.endpoint, old.service, old.serviceAddr, old.connectURL)
	lc.agents[0] = repl
	served := waitServed(t, lc.nodes, repl.endpoint, repl.service, false)
	lc.waitUpstreams(len(lc.agents))
	counted := time.Now()
	t.Logf("restarted agent: serving %s and counted by every node %s after its process started",
		served.Sub(started).Round(time.Millisecond), counted.Sub(started).Round(time.Millisecond))
	require.Less(t, counted.Sub(started), 2*time.Second, "the restarted agent is back within 1 s (plus process start-up; asserted with a margin)")

	// Server-side disconnect: an agent connected straight to one node
	// (no balancer) while that node restarts. It can only come back once
	// the new process listens.
	node := lc.nodes[0]
	soloAddr := StartUpstream(t, "solo-a")
	lc.startAgent("solo", "solo-a", soloAddr, node.UpstreamURL())
	waitServed(t, lc.nodes, "solo", "solo-a", true)

	lc.takeOut(node)
	require.Equal(t, 0, node.Terminate(t, 40*time.Second), "graceful shutdown exits 0")
	repNode := node.StartAgain(t)
	lc.replace(node, repNode)
	reachable := waitListening(t, repNode.IP+":8001")
	onNode := waitServed(t, []*Node{repNode}, "solo", "solo-a", true)
	everywhere := waitServed(t, lc.nodes, "solo", "solo-a", true)
	t.Logf("agent of a restarted node: routable through that node %s and through every node %s after its upstream port listened",
		onNode.Sub(reachable).Round(time.Millisecond), everywhere.Sub(reachable).Round(time.Millisecond))
	require.Less(t, everywhere.Sub(reachable), 2*time.Second, "the agent is back within 1 s of the server being reachable (asserted with a margin)")
	lc.putIn(repNode)

	s := lc.finish("agent restart and server restart")
	require.Zero(t, s.Failed, "failed requests: %v", s.FailureStrings())
}

// waitServed waits until requests for endpoint are answered by service
// through every one of nodes (everyNode) or through any of them, and
// returns when that was first true.
func waitServed(t *testing.T, nodes []*Node, endpoint, service string, everyNode bool) time.Time {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	pending := slices.Clone(nodes)
	require.Eventually(t, func() bool {
		pending = slices.DeleteFunc(pending, func(n *Node) bool {
			code, body := proxyGet(client, n.ProxyURL(), endpoint, "/probe")
			return code == http.StatusOK && strings.HasPrefix(body, service+" ")
		})
		return len(pending) == 0 || (!everyNode && len(pending) < len(nodes))
	}, 15*time.Second, time.Millisecond, "%s is not served by %s", endpoint, service)
	return time.Now()
}

// waitListening waits until addr accepts TCP connections and returns when.
func waitListening(t *testing.T, addr string) time.Time {
	t.Helper()
	require.Eventually(t, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}, 30*time.Second, 2*time.Millisecond, "%s never listened", addr)
	return time.Now()
}
