package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/pico-proxy/pico/internal/config"
	"github.com/pico-proxy/pico/internal/protocol"
	"github.com/pico-proxy/pico/internal/testutil"
	"github.com/pico-proxy/pico/internal/upstream"
	"github.com/pico-proxy/pico/internal/upstream/upstreamtest"
)

func TestRequestReachesUpstreamIntact(t *testing.T) {
	s := startServer(t, serverSetup{})
	s.agent("my-endpoint", echoHandler("a"))

	for name, route := range map[string]func(*http.Request){
		"x-pico-endpoint": func(r *http.Request) { r.Header.Set("X-Pico-Endpoint", "my-endpoint") },
		"x-piko-endpoint": func(r *http.Request) { r.Header.Set("X-Piko-Endpoint", "my-endpoint") },
		"host":            func(r *http.Request) { r.Host = "my-endpoint.example.com" },
	} {
		t.Run(name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, s.proxyURL("/some/path?a=1&b=two%20words"), strings.NewReader("hello body"))
			require.NoError(t, err)
			route(req)
			req.Header.Set("X-Custom", "v1")
			req.Header.Add("X-Custom", "v2")
			req.Header.Set("Authorization", "Bearer secret-token")
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()

			require.Equal(t, "a", resp.Header.Get("X-Upstream"), "response headers pass back")
			e := decodeEcho(t, resp)
			require.Equal(t, http.MethodPost, e.Method)
			require.Equal(t, "/some/path", e.Path)
			require.Equal(t, "a=1&b=two%20words", e.Query)
			require.Equal(t, "hello body", e.Body)
			require.Equal(t, []string{"v1", "v2"}, e.Header["X-Custom"])
			require.Equal(t, []string{"Bearer secret-token"}, e.Header["Authorization"])
			require.Equal(t, []string{"127.0.0.1"}, e.Header["X-Forwarded-For"])
			require.Equal(t, []string{"http"}, e.Header["X-Forwarded-Proto"])
			if name == "host" {
				require.Equal(t, "my-endpoint.example.com", e.Host)
			}
		})
	}
}

func TestXForwardedForIsAppended(t *testing.T) {
	s := startServer(t, serverSetup{})
	s.agent("ep", echoHandler("a"))
	e := decodeEcho(t, s.getWith("ep", "/", http.Header{"X-Forwarded-For": {"203.0.113.7"}, "X-Forwarded-Proto": {"https"}}))
	require.Equal(t, []string{"203.0.113.7, 127.0.0.1"}, e.Header["X-Forwarded-For"])
	require.Equal(t, []string{"http"}, e.Header["X-Forwarded-Proto"], "the client does not choose the scheme Pico saw")
}

func TestPikoAgentRoute(t *testing.T) {
	s := startServer(t, serverSetup{})
	a, err := upstreamtest.ServeHTTP(context.Background(), upstreamtest.PikoURL(s.Addrs().Upstream, "legacy"), echoHandler("piko"))
	require.NoError(t, err)
	defer a.Close()
	resp := s.get("legacy", "/x")
	require.Equal(t, "piko", decodeEcho(t, resp).Name)
}

func TestStreamingBothWays(t *testing.T) {
	s := startServer(t, serverSetup{})
	release := make(chan struct{})
	s.agent("stream", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		require.NoError(t, rc.EnableFullDuplex())
		// Echo each request body line as soon as it arrives, and finish
		// only when the test says so.
		w.WriteHeader(http.StatusOK)
		_ = rc.Flush()
		sc := bufio.NewScanner(r.Body)
		for sc.Scan() {
			fmt.Fprintf(w, "got %s\n", sc.Text())
			_ = rc.Flush()
		}
		<-release
		fmt.Fprintln(w, "end")
	}))

	body, bodyW := io.Pipe()
	req, err := http.NewRequest(http.MethodPost, s.proxyURL("/"), body)
	require.NoError(t, err)
	req.Header.Set("X-Pico-Endpoint", "stream")
	respc := make(chan *http.Response, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			respc <- resp
		}
		close(respc)
	}()
	_, err = bodyW.Write([]byte("one\n"))
	require.NoError(t, err)
	resp := <-respc
	require.NotNil(t, resp)
	defer resp.Body.Close()
	lines := bufio.NewReader(resp.Body)

	line, err := lines.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "got one\n", line, "the upstream received the first chunk before the request body ended")

	_, err = bodyW.Write([]byte("two\n"))
	require.NoError(t, err)
	line, err = lines.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "got two\n", line, "response chunks arrive while the upstream is still working")

	require.NoError(t, bodyW.Close())
	close(release)
	rest := readAll(t, lines)
	require.Equal(t, "end\n", rest)
}

func TestWebSocketUpgradePassesThrough(t *testing.T) {
	s := startServer(t, serverSetup{})
	s.agent("ws", http.HandlerFunc(testutil.WebSocketEcho))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+s.Addrs().Proxy+"/chat", &websocket.DialOptions{
		HTTPHeader: http.Header{"X-Pico-Endpoint": []string{"ws"}},
	})
	require.NoError(t, err)
	defer c.CloseNow()
	for i := range 3 {
		msg := fmt.Sprintf("message %d", i)
		require.NoError(t, c.Write(ctx, websocket.MessageText, []byte(msg)))
		_, got, err := c.Read(ctx)
		require.NoError(t, err)
		require.Equal(t, "echo: "+msg, string(got))
	}
	require.NoError(t, c.Close(websocket.StatusNormalClosure, ""))
}

func TestRoundRobinAcrossAgents(t *testing.T) {
	s := startServer(t, serverSetup{})
	s.agent("rr", echoHandler("a"))
	s.agent("rr", echoHandler("b"))
	// The second registration may still be pending (a request then goes
	// to the first agent rather than wait).
	require.Eventually(t, func() bool { return s.Registry().Counts()["rr"] == 2 }, 5*time.Second, 5*time.Millisecond)
	seen := map[string]int{}
	for range 10 {
		seen[decodeEcho(t, s.get("rr", "/")).Name]++
	}
	require.Equal(t, map[string]int{"a": 5, "b": 5}, seen)
}

func TestAFrozenAgentIsFoundAndItsRequestsGoToTheOther(t *testing.T) {
	probe := upstream.ProbeOptions{Unresponsive: 50 * time.Millisecond, Timeout: 300 * time.Millisecond, Quiet: time.Hour}
	s := startServer(t, serverSetup{opts: []Option{withLiveness(50*time.Millisecond, probe)}})
	s.agent("frz", echoHandler("a"))
	frozen := s.agent("frz", echoHandler("b"))
	require.Eventually(t, func() bool { return s.Registry().Counts()["frz"] == 2 }, 5*time.Second, 5*time.Millisecond)

	// The agent hangs with its connection open: without the check, every
	// second request would wait out the 15 s gateway timeout.
	frozen.Freeze()
	for range 6 {
		require.Equal(t, "a", decodeEcho(t, s.get("frz", "/")).Name)
	}
	require.Equal(t, 1, s.Registry().Counts()["frz"], "the frozen agent's connection is closed")
	require.Equal(t, 1, s.logs.Count(`"upstream stopped answering; closing its connection"`, `"endpoint":"frz"`))
}

func TestASlowButLiveAgentIsKeptAndTheGatewayTimeoutStillHolds(t *testing.T) {
	probe := upstream.ProbeOptions{Unresponsive: 20 * time.Millisecond, Timeout: 100 * time.Millisecond, Quiet: time.Millisecond}
	s := startServer(t, serverSetup{
		cfg:  func(c *config.Server) { c.Proxy.GatewayTimeout = 300 * time.Millisecond },
		opts: []Option{withLiveness(20*time.Millisecond, probe)},
	})
	s.stuckAgent("slow")
	for range 2 {
		// Suspected after 20 ms, pinged, answered: the wait goes on to the timeout.
		requireJSONError(t, s.get("slow", "/"), http.StatusGatewayTimeout, "did not answer within 300ms")
	}
	require.Equal(t, 1, s.Registry().Counts()["slow"], "an agent that answers pings is kept")
	require.Zero(t, s.logs.Count("upstream stopped answering"))
}

func TestTCPRoute(t *testing.T) {
	s := startServer(t, serverSetup{})
	a, err := upstreamtest.ServeTCP(context.Background(), upstreamtest.URL(s.Addrs().Upstream, "db"), upstreamtest.Echo)
	require.NoError(t, err)
	defer a.Close()

	for _, prefix := range []string{protocol.TCPPathPrefix, protocol.PikoTCPPathPrefix} {
		t.Run(prefix, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			conn, err := protocol.DialWebSocket(ctx, "ws://"+s.Addrs().Proxy+prefix+"db", nil, nil)
			require.NoError(t, err)
			defer conn.Close()
			for i := range 3 {
				testutil.RequireEcho(t, conn, fmt.Sprintf("ping %d\n", i))
			}
		})
	}
}

func TestTCPRouteErrors(t *testing.T) {
	s := startServer(t, serverSetup{})
	ctx := context.Background()
	_, err := protocol.DialWebSocket(ctx, "ws://"+s.Addrs().Proxy+protocol.TCPPathPrefix+"nobody", nil, nil)
	var dialErr *protocol.DialError
	require.ErrorAs(t, err, &dialErr)
	require.Equal(t, http.StatusBadGateway, dialErr.StatusCode)
	require.Contains(t, dialErr.Body, `"error"`)

	_, err = protocol.DialWebSocket(ctx, "ws://"+s.Addrs().Proxy+protocol.TCPPathPrefix+"bad.", nil, nil)
	require.ErrorAs(t, err, &dialErr)
	require.Equal(t, http.StatusBadRequest, dialErr.StatusCode)

	resp, err := http.Get(s.proxyURL(protocol.TCPPathPrefix + "db"))
	require.NoError(t, err)
	defer resp.Body.Close()
	requireJSONError(t, resp, http.StatusBadRequest, "WebSocket")
}

func TestProxyErrors(t *testing.T) {
	s := startServer(t, serverSetup{})

	resp, err := http.Get(s.proxyURL("/"))
	require.NoError(t, err)
	requireJSONError(t, resp, http.StatusBadRequest, "no endpoint")
	resp.Body.Close()

	resp = s.get("bad id!", "/")
	requireJSONError(t, resp, http.StatusBadRequest, "invalid")

	req, err := http.NewRequest(http.MethodGet, s.proxyURL("/"), nil)
	require.NoError(t, err)
	req.Host = "-bad-.example.com"
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	requireJSONError(t, resp, http.StatusBadRequest, "invalid")
	resp.Body.Close()

	resp = s.get("nobody-home", "/")
	requireJSONError(t, resp, http.StatusBadGateway, `no upstream for endpoint "nobody-home"`)

	resp, err = http.Get(s.proxyURL("/_pico/v1/unknown"))
	require.NoError(t, err)
	requireJSONError(t, resp, http.StatusNotFound, "reserved")
	resp.Body.Close()
}

func TestRegistrationRejectsInvalidEndpoint(t *testing.T) {
	s := startServer(t, serverSetup{})
	for _, id := range []string{"bad.", ".bad", "-x", strings.Repeat("a", 64), "sp%20ace"} {
		_, err := upstreamtest.ServeHTTP(context.Background(), upstreamtest.URL(s.Addrs().Upstream, id), echoHandler("x"))
		var dialErr *protocol.DialError
		require.ErrorAs(t, err, &dialErr, id)
		require.Equal(t, http.StatusBadRequest, dialErr.StatusCode, id)
		require.Contains(t, dialErr.Body, `"error"`, id)
	}
	require.Empty(t, s.Registry().Counts())
}

func TestUpstreamWaitCoversReconnectingAgent(t *testing.T) {
	s := startServer(t, serverSetup{cfg: func(c *config.Server) { c.Proxy.UpstreamWait = 10 * time.Second }})
	late := s.getInBackground("late")
	require.Eventually(t, func() bool { return s.proxy.InFlight() == 1 }, 5*time.Second, 5*time.Millisecond)
	s.agent("late", echoHandler("late"))
	r := <-late
	require.NoError(t, r.err)
	require.Equal(t, http.StatusCreated, r.status, r.body)
	var e echoed
	require.NoError(t, json.Unmarshal([]byte(r.body), &e))
	require.Equal(t, "late", e.Name)
}

// stuckAgent registers an agent for endpoint whose service answers no
// request until the request is cancelled or the test ends.
func (s *testServer) stuckAgent(endpoint string) {
	stuck := make(chan struct{})
	s.t.Cleanup(func() { close(stuck) })
	s.agent(endpoint, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-stuck:
		case <-r.Context().Done():
		}
	}))
}

func TestGatewayTimeout(t *testing.T) {
	s := startServer(t, serverSetup{cfg: func(c *config.Server) { c.Proxy.GatewayTimeout = 300 * time.Millisecond }})
	s.stuckAgent("slow")
	resp := s.get("slow", "/")
	requireJSONError(t, resp, http.StatusGatewayTimeout, "did not answer within 300ms")
	// The stream was released: the session can serve again.
	require.Eventually(t, func() bool { return s.proxy.InFlight() == 0 }, 5*time.Second, 10*time.Millisecond)
}

func TestSlowlorisIsDisconnected(t *testing.T) {
	s := startServer(t, serverSetup{cfg: func(c *config.Server) { c.Proxy.ReadHeaderTimeout = 200 * time.Millisecond }})
	c := rawConn(t, s.Addrs().Proxy)
	_, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: ep.example.com\r\nX-Slow: "))
	require.NoError(t, err)
	// The server closes the connection after the read-header timeout;
	// the client-side deadline only keeps a broken test from hanging.
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, err = io.ReadAll(c)
	require.NoError(t, err, "the server closed the connection (EOF), not our deadline")
}

func TestOversizedHeadersRejected(t *testing.T) {
	s := startServer(t, serverSetup{})
	s.agent("ep", echoHandler("a"))
	resp := s.getWith("ep", "/", http.Header{"X-Big": {strings.Repeat("x", 1100<<10)}})
	require.Equal(t, http.StatusRequestHeaderFieldsTooLarge, resp.StatusCode)
}

func TestRegisteredEndpointIsRoutableAtOnce(t *testing.T) {
	// No upstream wait: only the pending registration stands between the
	// 101 and the first request.
	s := startServer(t, serverSetup{cfg: func(c *config.Server) { c.Proxy.UpstreamWait = 0 }})
	for i := range 100 {
		endpoint := fmt.Sprintf("fresh-%d", i)
		a := s.agent(endpoint, echoHandler(endpoint))
		resp := s.get(endpoint, "/")
		require.Equal(t, endpoint, decodeEcho(t, resp).Name, "request %d", i)
		resp.Body.Close()
		require.NoError(t, a.Close())
	}
}

func TestStreamLimitPerConnection(t *testing.T) {
	s := startServer(t, serverSetup{cfg: func(c *config.Server) { c.Upstream.MaxStreamsPerConnection = 1 }})
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	s.agent("one", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
	}))
	first := s.getInBackground("one")
	<-entered
	resp := s.get("one", "/")
	requireJSONError(t, resp, http.StatusServiceUnavailable, "stream limit")
	close(release)
	require.Equal(t, http.StatusOK, (<-first).status)
}

func TestUpstreamDisconnectGives502(t *testing.T) {
	s := startServer(t, serverSetup{})
	a := s.agent("gone", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	require.Equal(t, http.StatusOK, s.get("gone", "/").StatusCode)
	require.NoError(t, a.Close())
	require.Eventually(t, func() bool { return len(s.Registry().Counts()) == 0 }, 5*time.Second, 5*time.Millisecond)
	requireJSONError(t, s.get("gone", "/"), http.StatusBadGateway, "no upstream")
}

func TestAccessLog(t *testing.T) {
	s := startServer(t, serverSetup{})
	s.agent("logged", echoHandler("a"))
	resp := s.getWith("logged", "/a/b?secret=no", http.Header{"Authorization": {"Bearer very-secret-token"}})
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	var records []map[string]any
	require.Eventually(t, func() bool {
		records = s.logs.Records("request")
		return len(records) == 1
	}, 5*time.Second, 5*time.Millisecond)
	rec := records[0]
	require.Equal(t, "GET", rec["method"])
	require.Equal(t, "/a/b", rec["path"])
	require.Equal(t, float64(http.StatusCreated), rec["status"])
	require.Equal(t, "logged", rec["endpoint"])
	require.Equal(t, s.ID(), rec["upstream_node"])
	require.Equal(t, "proxy", rec["subsystem"])
	require.Contains(t, rec, "duration_ms")
	require.Contains(t, rec, "host")
	require.NotContains(t, s.logs.String(), "very-secret-token")
}

func TestUpstreamPortRejectsNonWebSocket(t *testing.T) {
	s := startServer(t, serverSetup{})
	resp, err := http.Get("http://" + s.Addrs().Upstream + "/elsewhere")
	require.NoError(t, err)
	requireJSONError(t, resp, http.StatusNotFound, "/pico/v1/upstream/")
	resp.Body.Close()

	resp, err = http.Get("http://" + s.Addrs().Upstream + protocol.UpstreamPathPrefix + "ep")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.GreaterOrEqual(t, resp.StatusCode, 400)
	require.Empty(t, s.Registry().Counts(), "a failed handshake leaves nothing registered")
}

func TestStreamsAreReusedForKeepAlive(t *testing.T) {
	s := startServer(t, serverSetup{cfg: func(c *config.Server) { c.Upstream.ReuseStreams = true }})
	a := s.agent("ka", echoHandler("ka"))
	for range 5 {
		e := decodeEcho(t, s.get("ka", "/"))
		require.NotContains(t, e.Header, "Connection")
	}
	// Sequential requests shared one stream, which stays open (idle).
	require.Eventually(t, func() bool { return a.Session.NumStreams() == 1 }, 5*time.Second, 5*time.Millisecond)
}

func TestOneRequestPerStreamWhenReuseIsOff(t *testing.T) {
	s := startServer(t, serverSetup{cfg: func(c *config.Server) { c.Upstream.ReuseStreams = false }})
	a := s.agent("once", echoHandler("once"))
	for range 3 {
		e := decodeEcho(t, s.get("once", "/"))
		require.Equal(t, []string{"close"}, e.Header["Connection"])
	}
	require.Eventually(t, func() bool { return a.Session.NumStreams() == 0 }, 5*time.Second, 5*time.Millisecond, "every stream was closed after its request")
}

func TestClientGoneEndsTheUpstreamExchange(t *testing.T) {
	s := startServer(t, serverSetup{})
	upstreamDone := make(chan struct{})
	s.agent("events", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(upstreamDone)
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: first\n\n")
		http.NewResponseController(w).Flush()
		<-r.Context().Done() // then silence until the client is gone
	}))
	resp := s.get("events", "/events")
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "data: first\n", line)
	require.NoError(t, resp.Body.Close()) // the client leaves mid-stream

	select {
	case <-upstreamDone:
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream never learned that the client left")
	}
	require.Eventually(t, func() bool { return s.proxy.InFlight() == 0 }, 5*time.Second, 5*time.Millisecond)
}

// The protocol's default: every HTTP request gets a stream of its own,
// closed after the response.
func TestOneRequestPerStreamByDefault(t *testing.T) {
	s := startServer(t, serverSetup{})
	a := s.agent("one", echoHandler("one"))
	for range 3 {
		e := decodeEcho(t, s.get("one", "/"))
		require.Equal(t, []string{"close"}, e.Header["Connection"])
	}
	require.Eventually(t, func() bool { return a.Session.NumStreams() == 0 }, 5*time.Second, 5*time.Millisecond)
}

func TestTrailersPassBothWays(t *testing.T) {
	s := startServer(t, serverSetup{})
	gotTrailer := make(chan string, 1)
	s.agent("trailers", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		gotTrailer <- string(body) + " " + r.Trailer.Get("X-Checksum")
		w.Header().Set("Trailer", "X-Served-Checksum")
		io.WriteString(w, "done")
		w.Header().Set("X-Served-Checksum", "abc")
	}))
	req, err := http.NewRequest(http.MethodPost, s.proxyURL("/upload"), io.NopCloser(strings.NewReader("payload")))
	require.NoError(t, err)
	req.Header.Set("X-Pico-Endpoint", "trailers")
	req.ContentLength = -1 // chunked, so that it can carry a trailer
	req.Trailer = http.Header{"X-Checksum": {"42"}}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, "done", string(body))
	require.Equal(t, "abc", resp.Trailer.Get("X-Served-Checksum"), "the response trailer reaches the client")
	require.Equal(t, "payload 42", <-gotTrailer, "the request trailer reaches the upstream")
}
