package upstream_test

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/pico-proxy/pico/internal/protocol"
	"github.com/pico-proxy/pico/internal/testutil"
	"github.com/pico-proxy/pico/internal/upstream"
	"github.com/pico-proxy/pico/internal/upstream/upstreamtest"
	"github.com/pico-proxy/pico/internal/yamux"
)

type env struct {
	t        *testing.T
	registry *upstream.Registry
	addr     string
}

func newEnv(t *testing.T, opts upstream.RegistryOptions) *env {
	logger := slog.New(slog.DiscardHandler)
	r := upstream.NewRegistry(logger, opts)
	srv := httptest.NewServer(upstream.NewHandler(r, logger))
	t.Cleanup(func() {
		r.Close()
		srv.Close()
	})
	return &env{t: t, registry: r, addr: srv.Listener.Addr().String()}
}

// agent registers endpoint with a TCP agent that echoes every stream.
func (e *env) agent(endpoint string) *upstreamtest.Agent {
	e.t.Helper()
	a, err := upstreamtest.ServeTCP(context.Background(), upstreamtest.URL(e.addr, endpoint), upstreamtest.Echo)
	require.NoError(e.t, err)
	e.t.Cleanup(func() { _ = a.Close() })
	require.Eventually(e.t, func() bool { _, pending := e.pending(endpoint); return !pending }, 5*time.Second, time.Millisecond)
	return a
}

// httpAgent registers endpoint with an HTTP agent answering "ok" to every
// request, and waits until it is routable.
func (e *env) httpAgent(endpoint string) *upstreamtest.Agent {
	e.t.Helper()
	a, err := upstreamtest.ServeHTTP(context.Background(), upstreamtest.URL(e.addr, endpoint),
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }))
	require.NoError(e.t, err)
	e.t.Cleanup(func() { _ = a.Close() })
	require.Eventually(e.t, func() bool { return e.registry.Counts()[endpoint] == 1 }, 5*time.Second, time.Millisecond)
	return a
}

func (e *env) pending(endpoint string) (int, bool) {
	s, avail := e.registry.Acquire(endpoint)
	if s != nil {
		s.Release()
	}
	return e.registry.Counts()[endpoint], avail == upstream.Pending
}

func TestRoundRobinAndExclude(t *testing.T) {
	e := newEnv(t, upstream.RegistryOptions{})
	e.agent("ep")
	e.agent("ep")
	require.Eventually(t, func() bool { return e.registry.Counts()["ep"] == 2 }, 5*time.Second, time.Millisecond)

	first, _ := e.registry.Acquire("ep")
	second, _ := e.registry.Acquire("ep")
	third, _ := e.registry.Acquire("ep")
	require.NotSame(t, first, second)
	require.Same(t, first, third)
	for _, s := range []*upstream.Session{first, second, third} {
		s.Release()
	}

	only, _ := e.registry.Acquire("ep", first)
	require.Same(t, second, only)
	only.Release()
	none, avail := e.registry.Acquire("ep", first, second)
	require.Nil(t, none)
	require.Equal(t, upstream.None, avail)
}

func TestStreamLimit(t *testing.T) {
	e := newEnv(t, upstream.RegistryOptions{MaxStreamsPerConnection: 2})
	e.agent("ep")
	a, _ := e.registry.Acquire("ep")
	b, _ := e.registry.Acquire("ep")
	require.NotNil(t, a)
	require.NotNil(t, b)
	c, avail := e.registry.Acquire("ep")
	require.Nil(t, c)
	require.Equal(t, upstream.Busy, avail)
	a.Release()
	c, _ = e.registry.Acquire("ep")
	require.NotNil(t, c)
	b.Release()
	c.Release()
}

func TestPendingRegistration(t *testing.T) {
	r := upstream.NewRegistry(slog.New(slog.DiscardHandler), upstream.RegistryOptions{})
	_, avail := r.Acquire("ep")
	require.Equal(t, upstream.None, avail)

	changed := r.Changed()
	res, err := r.Reserve("ep")
	require.NoError(t, err)
	_, avail = r.Acquire("ep")
	require.Equal(t, upstream.Pending, avail)
	require.Empty(t, r.Counts(), "a pending registration is not an upstream yet")

	res.Cancel()
	require.True(t, testutil.Closed(changed), "resolving a registration wakes waiters")
	_, avail = r.Acquire("ep")
	require.Equal(t, upstream.None, avail)
}

func TestSessionLeavesRegistryWhenAgentDisconnects(t *testing.T) {
	e := newEnv(t, upstream.RegistryOptions{})
	a := e.agent("ep")
	require.Equal(t, map[string]int{"ep": 1}, e.registry.Counts())
	changed := e.registry.Changed()
	require.NoError(t, a.Close())
	require.Eventually(t, func() bool { return testutil.Closed(changed) && len(e.registry.Counts()) == 0 }, 5*time.Second, time.Millisecond)
}

func TestInvalidEndpointRejected(t *testing.T) {
	e := newEnv(t, upstream.RegistryOptions{})
	_, err := upstreamtest.ServeTCP(context.Background(), upstreamtest.URL(e.addr, "not_valid."), upstreamtest.Echo)
	var dialErr *protocol.DialError
	require.ErrorAs(t, err, &dialErr)
	require.Equal(t, http.StatusBadRequest, dialErr.StatusCode)
	require.Contains(t, dialErr.Body, "invalid")
}

func TestDrain(t *testing.T) {
	e := newEnv(t, upstream.RegistryOptions{})
	idle := e.agent("idle")
	busy := e.agent("busy")
	lease, _ := e.registry.Acquire("busy")
	require.NotNil(t, lease)

	drained := make(chan error, 1)
	go func() { drained <- e.registry.Drain(context.Background()) }()

	require.Eventually(t, func() bool { return len(e.registry.Counts()) == 0 }, 5*time.Second, time.Millisecond, "sessions leave routing at once")
	require.Eventually(t, busy.GoAwayReceived, 5*time.Second, time.Millisecond)
	require.Eventually(t, func() bool { return testutil.Closed(idle.Done()) }, 5*time.Second, time.Millisecond)
	require.False(t, testutil.Closed(busy.Done()), "a busy session stays open")
	_, err := e.registry.Reserve("new")
	require.ErrorIs(t, err, upstream.ErrDraining)
	_, err = upstreamtest.ServeTCP(context.Background(), upstreamtest.URL(e.addr, "new"), upstreamtest.Echo)
	var dialErr *protocol.DialError
	require.ErrorAs(t, err, &dialErr)
	require.Equal(t, http.StatusServiceUnavailable, dialErr.StatusCode)

	lease.Release()
	require.NoError(t, <-drained)
	require.Eventually(t, func() bool { return testutil.Closed(busy.Done()) }, 5*time.Second, time.Millisecond)
}

func TestDrainDeadlineClosesBusySessions(t *testing.T) {
	e := newEnv(t, upstream.RegistryOptions{})
	busy := e.agent("busy")
	lease, _ := e.registry.Acquire("busy")
	defer lease.Release()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, e.registry.Drain(ctx), context.DeadlineExceeded)
	require.Eventually(t, func() bool { return testutil.Closed(busy.Done()) }, 5*time.Second, time.Millisecond)
}

// TestStreamReuse runs HTTP/1.1 keep-alive over one yamux stream.
func TestStreamReuse(t *testing.T) {
	e := newEnv(t, upstream.RegistryOptions{})
	e.httpAgent("ep")

	s, _ := e.registry.Acquire("ep")
	defer s.Release()
	stream, reused, err := s.OpenReusable()
	require.NoError(t, err)
	require.False(t, reused)
	roundTrip(t, stream, false)
	s.PutIdle(stream)
	require.Equal(t, 1, s.IdleStreams())

	again, reused, err := s.OpenReusable()
	require.NoError(t, err)
	require.True(t, reused)
	require.Same(t, stream, again)
	// The agent closes the stream after this one ("Connection: close").
	roundTrip(t, again, true)
	s.PutIdle(again)
	// A stream the agent closed is never handed out again.
	require.Eventually(t, func() bool {
		next, reused, err := s.OpenReusable()
		require.NoError(t, err)
		if reused {
			s.PutIdle(next)
			return false
		}
		_ = next.Close()
		return true
	}, 5*time.Second, time.Millisecond)
}

func TestIdleStreamsExpire(t *testing.T) {
	t.Cleanup(upstream.SetStreamIdleTimeout(50 * time.Millisecond)) // restored once the registry is closed
	e := newEnv(t, upstream.RegistryOptions{})
	a := e.httpAgent("ep")

	s, _ := e.registry.Acquire("ep")
	defer s.Release()
	var streams []*yamux.Stream
	for range 3 {
		stream, _, err := s.OpenReusable()
		require.NoError(t, err)
		roundTrip(t, stream, false)
		streams = append(streams, stream)
	}
	for _, stream := range streams {
		s.PutIdle(stream)
	}
	require.Eventually(t, func() bool { return s.IdleStreams() == 3 }, 5*time.Second, time.Millisecond)
	require.Eventually(t, func() bool { return s.IdleStreams() == 0 }, 5*time.Second, time.Millisecond, "idle streams are closed after the idle timeout")
	require.Eventually(t, func() bool { return a.Session.NumStreams() == 0 }, 5*time.Second, time.Millisecond, "the agent saw them closed")
}

func roundTrip(t *testing.T, stream *yamux.Stream, closeAfter bool) {
	t.Helper()
	req := "GET / HTTP/1.1\r\nHost: ep\r\n"
	if closeAfter {
		req += "Connection: close\r\n"
	}
	_, err := io.WriteString(stream, req+"\r\n")
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(stream), nil)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, "ok", string(body))
}

func TestEndpointsGaugeCountsEndpointsWithSessions(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEnv(t, upstream.RegistryOptions{Metrics: reg})
	gauge := func() float64 {
		mfs, err := reg.Gather()
		require.NoError(t, err)
		for _, mf := range mfs {
			if mf.GetName() == "pico_upstream_endpoints" {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		return -1
	}
	a1 := e.agent("a")
	a2 := e.agent("a")
	b := e.agent("b")
	require.Eventually(t, func() bool { return e.registry.Sessions() == 3 }, 10*time.Second, time.Millisecond)
	require.Equal(t, 2.0, gauge())
	require.NoError(t, a1.Close())
	require.Eventually(t, func() bool { return e.registry.Sessions() == 2 }, 10*time.Second, time.Millisecond)
	require.Equal(t, 2.0, gauge(), "a still has a session")
	require.NoError(t, a2.Close())
	require.Eventually(t, func() bool { return e.registry.Sessions() == 1 }, 10*time.Second, time.Millisecond)
	require.Equal(t, 1.0, gauge())
	require.NoError(t, b.Close())
	require.Eventually(t, func() bool { return e.registry.Sessions() == 0 }, 10*time.Second, time.Millisecond)
	require.Equal(t, 0.0, gauge())
}
