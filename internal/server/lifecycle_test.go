package server

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pico-proxy/pico/internal/adminapi"
	"github.com/pico-proxy/pico/internal/config"
	"github.com/pico-proxy/pico/internal/protocol"
	"github.com/pico-proxy/pico/internal/testutil"
	"github.com/pico-proxy/pico/internal/upstream/upstreamtest"
)

func readyStatus(t *testing.T, s *testServer) int {
	t.Helper()
	resp, err := http.Get(s.adminURL("/ready"))
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestGracefulShutdown(t *testing.T) {
	s := startServer(t, serverSetup{cfg: func(c *config.Server) { c.Server.DrainDelay = 300 * time.Millisecond }})
	require.Equal(t, http.StatusOK, readyStatus(t, s))

	entered := make(chan struct{})
	release := make(chan struct{})
	agent := s.agent("busy", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		_, _ = io.WriteString(w, "finished")
	}))
	idle := s.agent("idle", echoHandler("idle"))

	inFlight := s.getInBackground("busy")
	<-entered

	shutdown := make(chan error, 1)
	go func() { shutdown <- s.Shutdown(context.Background()) }()

	// /ready turns 503 at once, while the admin port keeps answering.
	require.Eventually(t, func() bool { return readyStatus(t, s) == http.StatusServiceUnavailable }, 5*time.Second, 5*time.Millisecond)
	// No new upstream connections.
	require.Eventually(t, func() bool {
		_, err := upstreamtest.ServeHTTP(context.Background(), upstreamtest.URL(s.Addrs().Upstream, "newcomer"), echoHandler("x"))
		var dialErr *protocol.DialError
		return err != nil && errors.As(err, &dialErr) && dialErr.StatusCode == http.StatusServiceUnavailable
	}, 5*time.Second, 10*time.Millisecond)
	// Every agent is told to go away; the idle one is closed at once.
	require.Eventually(t, agent.GoAwayReceived, 5*time.Second, 5*time.Millisecond)
	require.Eventually(t, func() bool { return testutil.Closed(idle.Done()) }, 5*time.Second, 5*time.Millisecond)
	// The busy one stays until its request is finished.
	require.False(t, testutil.Closed(agent.Done()), "a session with a request in flight was closed")
	select {
	case err := <-shutdown:
		t.Fatalf("shutdown finished with a request in flight: %v", err)
	default:
	}

	close(release)
	r := <-inFlight
	require.NoError(t, r.err)
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, "finished", r.body)
	require.Eventually(t, func() bool { return testutil.Closed(agent.Done()) }, 5*time.Second, 5*time.Millisecond)
	require.NoError(t, <-shutdown)

	_, err := net.Dial("tcp", s.Addrs().Proxy)
	require.Error(t, err, "the proxy port is closed after the drain")
}

func TestShutdownIsBoundedByTheTimeout(t *testing.T) {
	s := startServer(t, serverSetup{cfg: func(c *config.Server) { c.Server.GracefulShutdownTimeout = 500 * time.Millisecond }})
	entered := make(chan struct{})
	stuck := make(chan struct{})
	defer close(stuck)
	agent := s.agent("stuck", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		select {
		case <-stuck:
		case <-r.Context().Done():
		}
	}))
	cut := s.getInBackground("stuck")
	<-entered
	err := s.Shutdown(context.Background())
	require.Error(t, err, "the drain reports that it cut work short")
	require.Contains(t, err.Error(), "in flight")
	require.Eventually(t, func() bool { return testutil.Closed(agent.Done()) }, 5*time.Second, 5*time.Millisecond)
	require.Contains(t, []int{0, http.StatusBadGateway}, (<-cut).status, "the stuck request was cut")
}

func TestAdminEndpoints(t *testing.T) {
	s := startServer(t, serverSetup{cfg: func(c *config.Server) { c.Cluster.NodeIDPrefix = "pico-0-" }})
	require.True(t, strings.HasPrefix(s.ID(), "pico-0-"), s.ID())

	var health map[string]string
	require.Equal(t, http.StatusOK, s.getJSON("/health", &health))
	var ready map[string]string
	require.Equal(t, http.StatusOK, s.getJSON("/ready", &ready))

	s.agent("alpha", echoHandler("a"))
	s.agent("alpha", echoHandler("b"))
	s.agent("beta", echoHandler("c"))
	require.Eventually(t, func() bool { return s.Registry().Sessions() == 3 }, 5*time.Second, 5*time.Millisecond)

	var endpoints map[string]int
	require.Equal(t, http.StatusOK, s.getJSON("/status/upstream/endpoints", &endpoints))
	require.Equal(t, map[string]int{"alpha": 2, "beta": 1}, endpoints)

	var nodes []map[string]any
	require.Eventually(t, func() bool {
		s.getJSON("/status/cluster/nodes", &nodes)
		return len(nodes) == 1 && nodes[0]["upstreams"] == float64(3)
	}, 5*time.Second, 5*time.Millisecond)
	n := nodes[0]
	require.Equal(t, s.ID(), n["id"])
	require.Equal(t, adminapi.StatusActive, n["status"])
	require.Equal(t, s.Addrs().Proxy, n["proxy_addr"])
	require.Equal(t, s.Addrs().Admin, n["admin_addr"])
	require.Equal(t, float64(2), n["endpoints"])

	var detail adminapi.NodeDetail
	require.Equal(t, http.StatusOK, s.getJSON("/status/cluster/nodes/"+s.ID(), &detail))
	require.Equal(t, map[string]int{"alpha": 2, "beta": 1}, detail.Endpoints)
	require.Equal(t, 3, detail.Upstreams)

	var notFound map[string]string
	require.Equal(t, http.StatusNotFound, s.getJSON("/status/cluster/nodes/nobody", &notFound))
	require.Contains(t, notFound["error"], "nobody")
}

func TestMetrics(t *testing.T) {
	s := startServer(t, serverSetup{})
	s.agent("measured", echoHandler("m"))
	resp := s.get("measured", "/")
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	s.get("unknown", "/").Body.Close()

	var text string
	require.Eventually(t, func() bool {
		resp, err := http.Get(s.adminURL("/metrics"))
		require.NoError(t, err)
		defer resp.Body.Close()
		text = readAll(t, resp.Body)
		return strings.Contains(text, `pico_proxy_requests_total{endpoint="measured",status="201"} 1`)
	}, 5*time.Second, 10*time.Millisecond, "metrics:\n%s", text)
	for _, want := range []string{
		`pico_proxy_requests_total{endpoint="",status="502"} 1`,
		`pico_proxy_request_duration_seconds_bucket`,
		`pico_proxy_requests_in_flight 0`,
		`pico_upstream_connections 1`,
		`pico_upstream_endpoints 1`,
		`pico_upstream_registrations_total{result="accepted"} 1`,
		`go_goroutines`,
	} {
		require.Contains(t, text, want)
	}
}
