package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pico-proxy/pico/internal/config"
	"github.com/pico-proxy/pico/internal/protocol"
	"github.com/pico-proxy/pico/internal/testutil"
	"github.com/pico-proxy/pico/internal/upstream/upstreamtest"
)

// Raw-socket tests of the proxy port: bytes in over a TCP connection,
// the bytes the upstream received out. They cover request smuggling
// (broken chunked bodies, ambiguous framing) and hostile agents.

// recordingAgent is an upstream that serves every stream as HTTP/1.1
// itself, recording the raw bytes it received and the requests it parsed
// from them, and answering each request 200 "ok".
type recordingAgent struct {
	*upstreamtest.Agent
	mu       sync.Mutex
	raw      bytes.Buffer
	requests []string // "METHOD /path"
}

// recordingUpstream registers a recordingAgent for endpoint on s until
// the test ends.
func (s *testServer) recordingUpstream(endpoint string) *recordingAgent {
	s.t.Helper()
	rec, err := startRecording(s.Addrs().Upstream, endpoint)
	require.NoError(s.t, err)
	s.t.Cleanup(func() { _ = rec.Close() })
	return rec
}

// startRecording registers a recordingAgent for endpoint at the upstream
// listener addr; it says it serves HTTP.
func startRecording(addr, endpoint string) (*recordingAgent, error) {
	rec := &recordingAgent{}
	a, err := upstreamtest.ServeStreams(context.Background(), upstreamtest.URL(addr, endpoint), protocol.ProtocolHTTP, rec.serve)
	if err != nil {
		return nil, err
	}
	rec.Agent = a
	return rec, nil
}

func (rec *recordingAgent) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(io.TeeReader(c, recordWriter{rec}))
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		rec.mu.Lock()
		rec.requests = append(rec.requests, req.Method+" "+req.URL.Path)
		rec.mu.Unlock()
		if _, err := io.Copy(io.Discard, req.Body); err != nil {
			return
		}
		if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
			return
		}
		if req.Close {
			return
		}
	}
}

type recordWriter struct{ rec *recordingAgent }

func (w recordWriter) Write(p []byte) (int, error) {
	w.rec.mu.Lock()
	defer w.rec.mu.Unlock()
	return w.rec.raw.Write(p)
}

// Requests returns the requests parsed so far.
func (rec *recordingAgent) Requests() []string {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]string(nil), rec.requests...)
}

// Raw returns the bytes received so far.
func (rec *recordingAgent) Raw() string {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return rec.raw.String()
}

// rawExchange writes raw to a new connection to the proxy port and reads
// every response the proxy sends until it closes the connection (the
// test fails if it does not within 10 s). It returns the responses and
// whether the connection was closed by the proxy.
func (s *testServer) rawExchange(raw string) (resps []*http.Response, bodies []string, closed bool) {
	s.t.Helper()
	c := rawConn(s.t, s.Addrs().Proxy)
	_, err := io.WriteString(c, raw)
	require.NoError(s.t, err)
	require.NoError(s.t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	br := bufio.NewReader(c)
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			var ne net.Error
			timedOut := errors.As(err, &ne) && ne.Timeout()
			return resps, bodies, !timedOut
		}
		body, err := io.ReadAll(resp.Body)
		require.NoError(s.t, err)
		resps = append(resps, resp)
		bodies = append(bodies, string(body))
	}
}

// requireErrorBody checks a Pico JSON error body.
func requireErrorBody(t *testing.T, resp *http.Response, body string, status int, contains string) {
	t.Helper()
	require.Equal(t, status, resp.StatusCode, body)
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	var e struct {
		Error string `json:"error"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &e), body)
	require.Contains(t, e.Error, contains)
}

func TestBrokenChunkedBodyClosesTheConnection(t *testing.T) {
	s := startServer(t, serverSetup{})
	rec := s.recordingUpstream("raw")
	smuggled := "GET /smuggled HTTP/1.1\r\nHost: raw.x\r\n\r\n"
	for name, body := range map[string]string{
		"chunk data longer than its size": "3\r\nhello" + smuggled + "0\r\n\r\n",
		"invalid chunk size":              "zz\r\nhello\r\n0\r\n\r\n" + smuggled,
		"bare LF after the chunk size":    "5\nhello\r\n0\r\n\r\n" + smuggled,
		"bare LF after the chunk data":    "5\r\nhello\n0\r\n\r\n" + smuggled,
		"chunk size overflow":             "fffffffffffffffff\r\nhello\r\n0\r\n\r\n" + smuggled,
	} {
		t.Run(name, func(t *testing.T) {
			resps, bodies, closed := s.rawExchange("POST /a HTTP/1.1\r\nHost: raw.x\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
			require.True(t, closed, "the proxy closed the connection")
			require.Len(t, resps, 1, "one answer, nothing for the bytes after the broken framing")
			requireErrorBody(t, resps[0], bodies[0], http.StatusBadRequest, "chunk")
			require.True(t, resps[0].Close, "the answer says Connection: close")
			require.NotContains(t, rec.Requests(), "GET /smuggled")
			require.NotContains(t, rec.Raw(), "/smuggled")
		})
	}
}

func TestChunkedBodyBrokenAfterTheResponseHeadClosesTheConnection(t *testing.T) {
	s := startServer(t, serverSetup{})
	var mu sync.Mutex
	var seen []string
	s.agent("early", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.Path)
		mu.Unlock()
		rc := http.NewResponseController(w)
		_ = rc.EnableFullDuplex()
		w.WriteHeader(http.StatusAccepted) // answers before the body ends
		_, _ = io.WriteString(w, "started\n")
		_ = rc.Flush()
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	c := rawConn(t, s.Addrs().Proxy)
	_, err := io.WriteString(c, "POST /a HTTP/1.1\r\nHost: early.x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "started\n", line)
	// The head is out; now the framing breaks, and a request follows.
	_, err = io.WriteString(c, "3\r\nhelloGET /smuggled HTTP/1.1\r\nHost: early.x\r\n\r\n0\r\n\r\n")
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	_, err = http.ReadResponse(br, nil)
	var ne net.Error
	require.False(t, errors.As(err, &ne) && ne.Timeout(), "the proxy closed the connection: %v", err)
	require.Error(t, err, "no second answer")
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []string{"POST /a"}, seen)
}

func TestAmbiguousFramingClosesTheConnection(t *testing.T) {
	s := startServer(t, serverSetup{})
	rec := s.recordingUpstream("raw")
	pipelined := "GET /pipelined HTTP/1.1\r\nHost: raw.x\r\n\r\n"
	for name, raw := range map[string]string{
		"content-length and transfer-encoding": "POST /a HTTP/1.1\r\nHost: raw.x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"transfer-encoding and content-length": "POST /a HTTP/1.1\r\nHost: raw.x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
		"HTTP/1.0 with transfer-encoding":      "POST /a HTTP/1.0\r\nHost: raw.x\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
		"HTTP/1.0 with transfer-encoding only": "POST /a HTTP/1.0\r\nHost: raw.x\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			resps, bodies, closed := s.rawExchange(raw + pipelined)
			require.True(t, closed, "the proxy closed the connection")
			require.Len(t, resps, 1, "the pipelined request got no answer")
			require.Equal(t, http.StatusOK, resps[0].StatusCode, bodies[0])
			require.True(t, resps[0].Close, "the answer says Connection: close")
			require.NotContains(t, rec.Requests(), "GET /pipelined")
		})
	}
	// A well-framed keep-alive request still keeps its connection.
	resps, _, _ := s.rawExchange("POST /a HTTP/1.1\r\nHost: raw.x\r\nContent-Length: 2\r\n\r\nhi" + pipelined + "GET /last HTTP/1.1\r\nHost: raw.x\r\nConnection: close\r\n\r\n")
	require.Len(t, resps, 3)
	require.Contains(t, rec.Requests(), "GET /pipelined")
}

// hostileAgent registers an upstream for endpoint whose every stream
// reads the request head, then writes the response that respond writes
// (until the stream fails); written counts the bytes it managed to send.
func (s *testServer) hostileAgent(endpoint string, respond func(io.Writer) error) (written *atomic.Int64) {
	s.t.Helper()
	written = &atomic.Int64{}
	a, err := upstreamtest.ServeStreams(context.Background(), upstreamtest.URL(s.Addrs().Upstream, endpoint), protocol.ProtocolHTTP, func(c net.Conn) {
		defer c.Close()
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		_ = respond(countingWriter{c, written})
	})
	require.NoError(s.t, err)
	s.t.Cleanup(func() { _ = a.Close() })
	return written
}

type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

func TestEndlessResponseHeadIsCutAtTheBound(t *testing.T) {
	const bound = 64 << 10
	s := startServer(t, serverSetup{cfg: func(c *config.Server) {
		c.Proxy.MaxResponseHeaderBytes = bound
		c.Proxy.GatewayTimeout = 5 * time.Second
	}})
	line := "X-Filler: " + strings.Repeat("a", 1000) + "\r\n"
	written := s.hostileAgent("endless", func(w io.Writer) error {
		if _, err := io.WriteString(w, "HTTP/1.1 200 OK\r\n"); err != nil {
			return err
		}
		for {
			if _, err := io.WriteString(w, line); err != nil {
				return err
			}
		}
	})
	resps, bodies, _ := s.rawExchange("GET / HTTP/1.1\r\nHost: endless.x\r\nConnection: close\r\n\r\n")
	require.Len(t, resps, 1)
	requireErrorBody(t, resps[0], bodies[0], http.StatusBadGateway, "proxy.max_response_header_bytes (65536 bytes)")
	// What the agent could send at all: the bound, then at most one
	// yamux stream window (256 KiB) that nobody reads; never the
	// gigabytes an unbounded read takes in.
	require.Less(t, written.Load(), int64(bound+256<<10+64<<10))
}

func TestEndlessInformationalResponsesAreCut(t *testing.T) {
	s := startServer(t, serverSetup{cfg: func(c *config.Server) { c.Proxy.GatewayTimeout = 5 * time.Second }})
	s.hostileAgent("hints", func(w io.Writer) error {
		for {
			if _, err := io.WriteString(w, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"); err != nil {
				return err
			}
		}
	})
	resps, bodies, _ := s.rawExchange("GET / HTTP/1.1\r\nHost: hints.x\r\nConnection: close\r\n\r\n")
	require.Len(t, resps, 1)
	requireErrorBody(t, resps[0], bodies[0], http.StatusBadGateway, "more than 5 informational (1xx) responses")

	s.hostileAgent("few-hints", func(w io.Writer) error {
		_, err := io.WriteString(w, strings.Repeat("HTTP/1.1 103 Early Hints\r\n\r\n", 5)+"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return err
	})
	resps, bodies, _ = s.rawExchange("GET / HTTP/1.1\r\nHost: few-hints.x\r\nConnection: close\r\n\r\n")
	require.Len(t, resps, 1)
	require.Equal(t, http.StatusOK, resps[0].StatusCode)
	require.Equal(t, "ok", bodies[0])
}

func TestForwardedResponseHeadIsBoundToo(t *testing.T) {
	c := newTestCluster()
	a := startNode(t, c, "node-a")
	b := startNode(t, c, "node-b", func(cfg *config.Server) { cfg.Proxy.MaxResponseHeaderBytes = 64 << 10 })
	// node-a takes this 100 KiB head (its bound is 1 MiB) and passes it
	// on; node-b reads it from node-a under its own bound.
	a.hostileAgent("big", func(w io.Writer) error {
		_, err := io.WriteString(w, "HTTP/1.1 200 OK\r\nX-Big: "+strings.Repeat("b", 100<<10)+"\r\nContent-Length: 2\r\n\r\nok")
		return err
	})
	routable(t, c, b, "big")
	resps, bodies, _ := b.rawExchange("GET / HTTP/1.1\r\nHost: big.x\r\nConnection: close\r\n\r\n")
	require.Len(t, resps, 1)
	requireErrorBody(t, resps[0], bodies[0], http.StatusBadGateway, "proxy.max_response_header_bytes (65536 bytes)")
	resps, _, _ = a.rawExchange("GET / HTTP/1.1\r\nHost: big.x\r\nConnection: close\r\n\r\n")
	require.Equal(t, http.StatusOK, resps[0].StatusCode, "within node-a's bound")
}

// tcpRouteUpgrade is a raw WebSocket upgrade to the TCP route path, on
// a connection to be closed after it.
func tcpRouteUpgrade(path string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: proxy.x\r\nConnection: Upgrade, close\r\nUpgrade: websocket\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
}

func TestTCPRouteToAnHTTPEndpointIsRefused(t *testing.T) {
	s := startServer(t, serverSetup{})
	rec := s.recordingUpstream("web")
	for _, prefix := range []string{protocol.TCPPathPrefix, protocol.PikoTCPPathPrefix} {
		t.Run(prefix, func(t *testing.T) {
			resps, bodies, _ := s.rawExchange(tcpRouteUpgrade(prefix + "web"))
			require.NotEmpty(t, resps)
			requireErrorBody(t, resps[0], bodies[0], http.StatusBadRequest, `endpoint "web" is an HTTP endpoint (its agent registered it with protocol http)`)
			require.Empty(t, rec.Raw(), "no byte reached the upstream")
		})
	}
}

func TestTCPRouteToAnHTTPEndpointOnAnotherNodeIsRefused(t *testing.T) {
	c := newTestCluster()
	a := startNode(t, c, "node-a")
	b := startNode(t, c, "node-b")
	rec := a.recordingUpstream("web")
	routable(t, c, b, "web")
	resps, bodies, _ := b.rawExchange(tcpRouteUpgrade(protocol.TCPPathPrefix + "web"))
	require.NotEmpty(t, resps)
	requireErrorBody(t, resps[0], bodies[0], http.StatusBadRequest, `endpoint "web" is an HTTP endpoint (its agent registered it with protocol http)`)
	require.Empty(t, rec.Raw(), "no byte reached the upstream")
}

// An agent that does not say how it serves its endpoint (Piko's agents)
// keeps the TCP route, as on Piko: `piko forward` to a Piko TCP agent works.
func TestTCPRouteToAnEndpointOfUnknownProtocolIsServed(t *testing.T) {
	s := startServer(t, serverSetup{})
	a, err := upstreamtest.ServeStreams(context.Background(), upstreamtest.PikoURL(s.Addrs().Upstream, "legacy-db"), protocol.ProtocolUnknown, upstreamtest.Echo)
	require.NoError(t, err)
	defer a.Close()
	requireTCPRouteEcho(t, s.Addrs().Proxy, protocol.PikoTCPPathPrefix+"legacy-db", "ping\n")
}

func TestTheAgentSaysItsEndpointsProtocol(t *testing.T) {
	s := startServer(t, serverSetup{})
	web := startAgent(t, "http://"+s.Addrs().Upstream, "site", echoHandler("site"), nil)
	web.waitRegistered(t)
	echo := testutil.ServeTCP(t, upstreamtest.Echo)
	db := runAgent(t, "http://"+s.Addrs().Upstream, config.AgentEndpoint{ID: "db", Protocol: config.ProtocolTCP, Addr: echo.Addr().String()}, nil)
	db.waitRegistered(t)
	// The agent counts itself registered when the 101 arrives, a moment
	// before the server logs the connection.
	require.Eventually(t, func() bool {
		return s.logs.Count(`"upstream connected"`, `"endpoint":"site"`, `"protocol":"http"`) == 1 &&
			s.logs.Count(`"upstream connected"`, `"endpoint":"db"`, `"protocol":"tcp"`) == 1
	}, 10*time.Second, 5*time.Millisecond, "server logs:\n%s", s.logs.String())

	resps, bodies, _ := s.rawExchange(tcpRouteUpgrade(protocol.TCPPathPrefix + "site"))
	require.NotEmpty(t, resps)
	requireErrorBody(t, resps[0], bodies[0], http.StatusBadRequest, `endpoint "site" is an HTTP endpoint`)

	requireTCPRouteEcho(t, s.Addrs().Proxy, protocol.TCPPathPrefix+"db", "ping\n")
}

func TestRegistrationRejectsAnUnknownProtocol(t *testing.T) {
	s := startServer(t, serverSetup{})
	_, err := protocol.DialSession(context.Background(), upstreamtest.URL(s.Addrs().Upstream, "odd"), http.Header{protocol.EndpointProtocolHeader: {"udp"}}, nil)
	var dialErr *protocol.DialError
	require.ErrorAs(t, err, &dialErr)
	require.Equal(t, http.StatusBadRequest, dialErr.StatusCode)
	require.Contains(t, dialErr.Body, `X-Pico-Endpoint-Protocol \"udp\" is invalid: use http or tcp`)
	require.Empty(t, s.Registry().Counts())
}

// The close after a chunked request is for client connections: a
// member's forwarded request is framed by Pico, and its connection is
// pooled for the next one.
func TestForwardedChunkedRequestsShareANodeConnection(t *testing.T) {
	_, a, b := forwardingPair(t, "far")
	for range 2 {
		resps, bodies, _ := b.rawExchange("POST / HTTP/1.1\r\nHost: far.x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
		require.Len(t, resps, 1)
		require.True(t, resps[0].Close, "the client's connection closes")
		require.Contains(t, bodies[0], `"body":"hello"`)
	}
	var records []map[string]any
	require.Eventually(t, func() bool {
		records = a.logs.Records("request")
		return len(records) == 2
	}, 10*time.Second, 5*time.Millisecond)
	require.Equal(t, "node-b", records[0]["forwarded_by"])
	require.Equal(t, records[0]["remote_addr"], records[1]["remote_addr"], "both came over one pooled connection")
}
