package server

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/pico-proxy/pico/internal/adminapi"
	"github.com/pico-proxy/pico/internal/config"
	"github.com/pico-proxy/pico/internal/protocol"
	"github.com/pico-proxy/pico/internal/proxy"
	"github.com/pico-proxy/pico/internal/testutil"
	"github.com/pico-proxy/pico/internal/upstream/upstreamtest"
)

// testCluster is an in-memory membership shared by in-process servers:
// routing follows the counts each member publishes (plus claims the test
// injects), and forwarding is signed with an HMAC over the sender, method,
// request URI and endpoint. It stands in for internal/cluster, which has
// its own tests; the proxy protocol between the nodes is real.
type testCluster struct {
	mu      sync.Mutex
	members map[string]*testMember
	claims  map[string]proxy.Node // endpoint -> a node claimed to hold it
	// unreachable lists, in order, the node IDs members reported.
	unreachable []string
	gone        map[string]bool // node IDs failure detection declared dead
	changed     chan struct{}
	key         []byte
}

func newTestCluster() *testCluster {
	return &testCluster{
		members: map[string]*testMember{},
		claims:  map[string]proxy.Node{},
		gone:    map[string]bool{},
		changed: make(chan struct{}),
		key:     []byte("test cluster key"),
	}
}

type testMember struct {
	c       *testCluster
	local   LocalNode
	counts  map[string]int
	leaving bool
	left    bool
}

func (c *testCluster) factory(local LocalNode, _ prometheus.Registerer) (Membership, error) {
	m := &testMember{c: c, local: local, counts: map[string]int{}}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.members[local.ID] = m
	c.notifyLocked()
	return m, nil
}

func (c *testCluster) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// claim makes every node believe node holds endpoint (a stale route).
func (c *testCluster) claim(endpoint string, node proxy.Node) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.claims[endpoint] = node
	c.notifyLocked()
}

func (m *testMember) PickRemote(endpoint string, exclude ...string) (proxy.Node, bool) {
	m.c.mu.Lock()
	defer m.c.mu.Unlock()
	if n, ok := m.c.claims[endpoint]; ok && n.ID != m.local.ID && !slices.Contains(exclude, n.ID) {
		return n, true
	}
	ids := make([]string, 0, len(m.c.members))
	for id := range m.c.members {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		o := m.c.members[id]
		if id == m.local.ID || o.leaving || o.left || o.counts[endpoint] == 0 || slices.Contains(exclude, id) {
			continue
		}
		return proxy.Node{ID: id, ProxyAddr: o.local.ProxyAddr}, true
	}
	return proxy.Node{}, false
}

func (m *testMember) mac(from string, r *http.Request, uri string) string {
	endpoint, _ := protocol.EndpointFromRequest(r)
	h := hmac.New(sha256.New, m.c.key)
	fmt.Fprintf(h, "%s\n%s\n%s\n%s", from, r.Method, uri, endpoint)
	return hex.EncodeToString(h.Sum(nil))
}

func (m *testMember) SignForward(r *http.Request) {
	r.Header.Set(proxy.ForwardedByHeader, m.local.ID)
	r.Header.Set(proxy.ForwardSignatureHeader, m.mac(m.local.ID, r, r.URL.RequestURI()))
}

func (m *testMember) VerifyForward(r *http.Request) (string, error) {
	from := r.Header.Get(proxy.ForwardedByHeader)
	m.c.mu.Lock()
	_, member := m.c.members[from]
	m.c.mu.Unlock()
	if !member {
		return "", fmt.Errorf("%q is not a member", from)
	}
	if !hmac.Equal([]byte(r.Header.Get(proxy.ForwardSignatureHeader)), []byte(m.mac(from, r, r.RequestURI))) {
		return "", errors.New("bad signature")
	}
	return from, nil
}

func (m *testMember) ReportUnreachable(id string) {
	m.c.mu.Lock()
	defer m.c.mu.Unlock()
	m.c.unreachable = append(m.c.unreachable, id)
}

// fail declares node id dead, as failure detection would.
func (c *testCluster) fail(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gone[id] = true
	c.notifyLocked()
}

func (m *testMember) Gone(id string) bool {
	m.c.mu.Lock()
	defer m.c.mu.Unlock()
	return m.c.gone[id]
}

func (m *testMember) Changed() <-chan struct{} {
	m.c.mu.Lock()
	defer m.c.mu.Unlock()
	return m.c.changed
}

func (m *testMember) GossipAddr() string         { return "" }
func (m *testMember) Join(context.Context) error { return nil }

func (m *testMember) UpdateLocalEndpoints(counts map[string]int) {
	m.c.mu.Lock()
	defer m.c.mu.Unlock()
	m.counts = counts
	m.c.notifyLocked()
}

func (m *testMember) SetLeaving() {
	m.c.mu.Lock()
	defer m.c.mu.Unlock()
	m.leaving = true
	m.c.notifyLocked()
}

func (m *testMember) Nodes() []adminapi.NodeSummary { return nil }

func (m *testMember) Node(string) (adminapi.NodeDetail, bool) { return adminapi.NodeDetail{}, false }

func (m *testMember) Leave(time.Duration) error {
	m.c.mu.Lock()
	defer m.c.mu.Unlock()
	m.left = true
	m.c.notifyLocked()
	return nil
}

func (m *testMember) Shutdown() error { return nil }

// member is the membership of s in c.
func (c *testCluster) member(s *testServer) *testMember {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.members[s.ID()]
}

// startNode starts a server named id in c, configured further by edits.
func startNode(t *testing.T, c *testCluster, id string, edits ...func(*config.Server)) *testServer {
	return startServer(t, serverSetup{
		cfg: func(cfg *config.Server) {
			cfg.Cluster.NodeID = id
			for _, edit := range edits {
				edit(cfg)
			}
		},
		opts: []Option{WithMembership(c.factory)},
	})
}

// forwardingPair starts node-a and node-b in a new test cluster, both
// configured further by edits, serves endpoint from an echo agent on
// node-a and waits until node-b routes endpoint there.
func forwardingPair(t *testing.T, endpoint string, edits ...func(*config.Server)) (c *testCluster, a, b *testServer) {
	t.Helper()
	c = newTestCluster()
	a = startNode(t, c, "node-a", edits...)
	b = startNode(t, c, "node-b", edits...)
	a.agent(endpoint, echoHandler(endpoint))
	routable(t, c, b, endpoint)
	return c, a, b
}

// routable waits until from routes endpoint to another node.
func routable(t *testing.T, c *testCluster, from *testServer, endpoint string) {
	t.Helper()
	require.Eventually(t, func() bool {
		_, ok := c.member(from).PickRemote(endpoint)
		return ok
	}, 5*time.Second, 5*time.Millisecond)
}

func TestForwardToNodeWithUpstream(t *testing.T) {
	_, a, b := forwardingPair(t, "far")

	req, err := http.NewRequest(http.MethodPut, b.proxyURL("/over/there?x=1"), strings.NewReader("payload"))
	require.NoError(t, err)
	req.Host = "far.example.com"
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	e := decodeEcho(t, resp)
	require.Equal(t, "far", e.Name)
	require.Equal(t, "/over/there", e.Path)
	require.Equal(t, "x=1", e.Query)
	require.Equal(t, "payload", e.Body)
	require.Equal(t, "far.example.com", e.Host)
	require.Equal(t, []string{"127.0.0.1"}, e.Header["X-Forwarded-For"], "the client once, not the forwarding node")
	for h := range e.Header {
		require.NotContains(t, h, "X-Pico-Forward", "forwarding headers never reach the upstream")
	}

	require.Eventually(t, func() bool { return len(b.logs.Records("request")) == 1 && len(a.logs.Records("request")) == 1 }, 5*time.Second, 5*time.Millisecond)
	require.Equal(t, "node-a", b.logs.Records("request")[0]["upstream_node"])
	require.Equal(t, "node-b", a.logs.Records("request")[0]["forwarded_by"])
}

func TestForgedForwardingHeadersAreStripped(t *testing.T) {
	_, a, b := forwardingPair(t, "ep")

	forged := http.Header{
		proxy.ForwardedByHeader:      {"node-a"},
		proxy.ForwardSignatureHeader: {"forged"},
		proxy.PikoForwardHeader:      {"true"},
	}
	for _, s := range []*testServer{a, b} {
		// On b (no local upstream) a trusted claim would have meant 502:
		// the forged one is ignored and the request forwarded as usual.
		e := decodeEcho(t, s.getWith("ep", "/", forged))
		for _, h := range []string{proxy.ForwardedByHeader, proxy.ForwardSignatureHeader, proxy.PikoForwardHeader} {
			require.NotContains(t, e.Header, h, "reached the upstream through %s", s.ID())
		}
	}
}

func TestStaleRouteRetriesAnotherNode(t *testing.T) {
	c, _, b := forwardingPair(t, "moved")
	stale := startNode(t, c, "node-stale")
	// Everyone believes node-stale still holds the endpoint.
	c.claim("moved", proxy.Node{ID: stale.ID(), ProxyAddr: stale.Addrs().Proxy})

	resp := b.get("moved", "/")
	require.Equal(t, "moved", decodeEcho(t, resp).Name)
	require.Eventually(t, func() bool { return len(stale.logs.Records("request")) == 1 }, 5*time.Second, 5*time.Millisecond)
	rec := stale.logs.Records("request")[0]
	require.Equal(t, float64(http.StatusBadGateway), rec["status"], "the stale node answered 502 (no upstream) and b retried")
}

func TestDeadNodeRetriesAnotherNode(t *testing.T) {
	c, _, b := forwardingPair(t, "ep")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := ln.Addr().String()
	require.NoError(t, ln.Close())
	c.claim("ep", proxy.Node{ID: "node-dead", ProxyAddr: dead})

	req, err := http.NewRequest(http.MethodPost, b.proxyURL("/"), strings.NewReader("not idempotent"))
	require.NoError(t, err)
	req.Header.Set("X-Pico-Endpoint", "ep")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, "not idempotent", decodeEcho(t, resp).Body, "a refused connection sent nothing: even a POST is retried")
	c.mu.Lock()
	reported := slices.Clone(c.unreachable)
	c.mu.Unlock()
	require.Equal(t, []string{"node-dead"}, reported, "b told the routing table, so that the next requests avoid node-dead")
	warn := b.logs.Records("cannot reach node")
	require.Len(t, warn, 1, "the failed dial is logged, as the retry hides it from the client")
	require.Equal(t, "node-dead", warn[0]["node"])
	require.Equal(t, "WARN", warn[0]["level"])
}

func TestARequestWaitingOnANodeThatFailsGoesToAnother(t *testing.T) {
	c, _, b := forwardingPair(t, "ep")
	// A frozen process: the kernel accepts its connections, nothing answers.
	accepted := make(chan struct{}, 4)
	frozen := testutil.ServeTCP(t, func(conn net.Conn) {
		accepted <- struct{}{}
		_, _ = io.Copy(io.Discard, conn) // until the sender gives up on it
	})
	c.claim("ep", proxy.Node{ID: "node-frozen", ProxyAddr: frozen.Addr().String()})

	answer := make(chan *http.Response, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, b.proxyURL("/"), nil)
		req.Header.Set("X-Pico-Endpoint", "ep")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			answer <- resp
		}
		close(answer)
	}()
	<-accepted
	c.fail("node-frozen") // failure detection, seconds before the gateway timeout
	resp, ok := <-answer
	require.True(t, ok, "the request failed")
	defer resp.Body.Close()
	require.Equal(t, "ep", decodeEcho(t, resp).Name, "retried on node-a once node-frozen was declared dead")
}

func TestForwardedNodeWithoutUpstreamSays502NoUpstream(t *testing.T) {
	c := newTestCluster()
	a := startNode(t, c, "node-a")
	b := startNode(t, c, "node-b")
	// b signs a request for an endpoint a does not have.
	req, err := http.NewRequest(http.MethodGet, a.proxyURL("/"), nil)
	require.NoError(t, err)
	req.Header.Set("X-Pico-Endpoint", "nowhere")
	c.member(b).SignForward(req)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, "1", resp.Header.Get(proxy.NoUpstreamHeader))
	requireJSONError(t, resp, http.StatusBadGateway, "no upstream")
}

func TestForwardedTCPRoute(t *testing.T) {
	c := newTestCluster()
	a := startNode(t, c, "node-a")
	b := startNode(t, c, "node-b")
	agent, err := upstreamtest.ServeTCP(context.Background(), upstreamtest.URL(a.Addrs().Upstream, "db"), upstreamtest.Echo)
	require.NoError(t, err)
	defer agent.Close()
	routable(t, c, b, "db")

	requireTCPRouteEcho(t, b.Addrs().Proxy, protocol.TCPPathPrefix+"db", "through two nodes\n")
}

func TestDrainPublishesNoEndpointsAndLeaves(t *testing.T) {
	c, a, _ := forwardingPair(t, "ep")

	require.NoError(t, a.Shutdown(context.Background()))
	ma := c.member(a)
	c.mu.Lock()
	defer c.mu.Unlock()
	require.True(t, ma.leaving)
	require.True(t, ma.left)
	require.Empty(t, ma.counts, "a drained node publishes no endpoints")
}
