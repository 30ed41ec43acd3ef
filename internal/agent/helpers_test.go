package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pico-proxy/pico/internal/config"
	"github.com/pico-proxy/pico/internal/logging"
	"github.com/pico-proxy/pico/internal/protocol"
	"github.com/pico-proxy/pico/internal/testutil"
	"github.com/pico-proxy/pico/internal/yamux"
	"github.com/stretchr/testify/require"
)

const (
	waitFor = 10 * time.Second
	tick    = 5 * time.Millisecond
)

// upstreamServer is a minimal Pico upstream port built on the real
// protocol: WebSocket upgrade, then a yamux server session per agent
// connection. Tests open streams on the sessions as the proxy would.
type upstreamServer struct {
	t      testing.TB
	srv    *httptest.Server
	logger *slog.Logger

	mu       sync.Mutex
	refuse   map[string][]int // endpoint -> statuses to answer with, in turn, before accepting
	attempts map[string]int
	auth     map[string]string        // endpoint -> last Authorization header
	hold     map[string]chan struct{} // endpoint -> handshakes wait until closed
	sessions map[string][]*yamux.Session

	received atomic.Int64 // bytes read from every agent connection
}

// countingConn counts what is read from an agent's connection.
type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func newUpstreamServer(t testing.TB) *upstreamServer {
	s := &upstreamServer{
		t:        t,
		logger:   slog.New(slog.DiscardHandler),
		refuse:   map[string][]int{},
		attempts: map[string]int{},
		auth:     map[string]string{},
		hold:     map[string]chan struct{}{},
		sessions: map[string][]*yamux.Session{},
	}
	s.srv = httptest.NewServer(s)
	t.Cleanup(s.stop)
	return s
}

// restartAt starts a new listener on addr (after stop).
func (s *upstreamServer) restartAt(addr string) {
	l, err := net.Listen("tcp", addr)
	require.NoError(s.t, err)
	s.srv = httptest.NewUnstartedServer(s)
	s.srv.Listener.Close()
	s.srv.Listener = l
	s.srv.Start()
}

// stop closes the listener and every agent connection.
func (s *upstreamServer) stop() {
	s.srv.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, list := range s.sessions {
		for _, sess := range list {
			sess.Close()
		}
	}
}

func (s *upstreamServer) url() string { return s.srv.URL }

func (s *upstreamServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id, ok := protocol.EndpointFromPath(r.URL.Path, protocol.UpstreamPathPrefix)
	if !ok {
		http.NotFound(w, r)
		return
	}
	s.mu.Lock()
	hold := s.hold[id]
	s.mu.Unlock()
	if hold != nil {
		<-hold
	}
	s.mu.Lock()
	s.attempts[id]++
	s.auth[id] = r.Header.Get("Authorization")
	var status int
	if queue := s.refuse[id]; len(queue) > 0 {
		status = queue[0]
		if len(queue) > 1 {
			s.refuse[id] = queue[1:]
		} else if status < 400 || status >= 500 {
			delete(s.refuse, id)
		}
	}
	s.mu.Unlock()
	if status != 0 {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(map[string]string{"error": "test refusal of " + id})
		return
	}
	conn, err := protocol.AcceptWebSocket(w, r)
	if err != nil {
		return
	}
	sess, err := yamux.Server(countingConn{conn, &s.received}, protocol.YamuxConfig(s.logger))
	if err != nil {
		conn.Close()
		return
	}
	s.mu.Lock()
	s.sessions[id] = append(s.sessions[id], sess)
	s.mu.Unlock()
}

// refuseWith makes the next registrations of id fail with statuses in
// turn; a 4xx last status keeps refusing.
func (s *upstreamServer) refuseWith(id string, statuses ...int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refuse[id] = statuses
}

// holdHandshakes makes the handshakes of id wait until release is called.
func (s *upstreamServer) holdHandshakes(id string) (release func()) {
	ch := make(chan struct{})
	s.mu.Lock()
	s.hold[id] = ch
	s.mu.Unlock()
	return func() { close(ch) }
}

func (s *upstreamServer) attemptsFor(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attempts[id]
}

func (s *upstreamServer) authFor(id string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.auth[id]
}

// session waits for the n-th (1-based) connection of endpoint id.
func (s *upstreamServer) session(id string, n int) *yamux.Session {
	s.t.Helper()
	var sess *yamux.Session
	require.Eventually(s.t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		if len(s.sessions[id]) >= n {
			sess = s.sessions[id][n-1]
			return true
		}
		return false
	}, waitFor, tick, "connection %d of endpoint %q never arrived", n, id)
	return sess
}

// client returns an HTTP client whose requests travel through sess the
// way Pico's proxy sends them: one request per stream.
func client(sess *yamux.Session) *http.Client {
	return &http.Client{Transport: streamTransport{sess}}
}

// streamTransport writes each request on a new yamux stream, reads the
// response, and closes the stream when the body is closed.
type streamTransport struct{ sess *yamux.Session }

func (t streamTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	stream, err := t.sess.OpenStream()
	if err != nil {
		return nil, err
	}
	go func() {
		if err := req.Write(stream); err != nil {
			stream.Close()
		}
	}()
	br := bufio.NewReader(stream)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		stream.Close()
		return nil, err
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		resp.Body = upgraded{Reader: br, Writer: stream, Closer: stream}
		return resp, nil
	}
	resp.Body = streamBody{ReadCloser: resp.Body, stream: stream}
	return resp, nil
}

type upgraded struct {
	io.Reader
	io.Writer
	io.Closer
}

type streamBody struct {
	io.ReadCloser
	stream *yamux.Stream
}

func (b streamBody) Close() error {
	b.ReadCloser.Close()
	return b.stream.Close()
}

// agentConfig returns a valid configuration pointing at url.
func agentConfig(url string, endpoints ...Endpoint) Config {
	cfg := config.DefaultAgent()
	cfg.Connect.URL = url
	cfg.GracePeriod = 5 * time.Second
	cfg.Endpoints = endpoints
	return *cfg
}

// runningAgent is an agent running in the background of a test.
type runningAgent struct {
	*Agent
	*testutil.Running
	logs *testutil.LogBuffer
}

// startAgent runs an agent until the test ends.
func startAgent(t testing.TB, cfg Config, options ...func(*Agent)) *runningAgent {
	t.Helper()
	logs := &testutil.LogBuffer{}
	a, err := New(cfg, logging.New(logs, slog.LevelDebug, nil))
	require.NoError(t, err)
	for _, o := range options {
		o(a)
	}
	return &runningAgent{Agent: a, Running: testutil.Go(t, "agent", a.Run), logs: logs}
}

func waitRegistered(t *testing.T, a *runningAgent) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	require.NoError(t, a.WaitRegistered(ctx))
}

// serveEndpoint starts an upstream server and an agent registering ep
// with it, and waits until the endpoint is registered.
func serveEndpoint(t *testing.T, ep Endpoint, options ...func(*Agent)) (*upstreamServer, *runningAgent) {
	t.Helper()
	server := newUpstreamServer(t)
	a := startAgent(t, agentConfig(server.url(), ep), options...)
	waitRegistered(t, a)
	return server, a
}

// httpService is a local HTTP service running h until the test ends.
func httpService(t *testing.T, h http.HandlerFunc) *httptest.Server {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// getInBackground GETs url through sess in a goroutine and delivers the
// response body, or the error's text.
func getInBackground(sess *yamux.Session, url string) <-chan string {
	result := make(chan string, 1)
	go func() {
		resp, err := client(sess).Get(url)
		if err != nil {
			result <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		result <- string(b)
	}()
	return result
}

// retryDelays returns the retry_in of every log line containing sub.
func retryDelays(t *testing.T, logs *testutil.LogBuffer, sub string) []time.Duration {
	t.Helper()
	var delays []time.Duration
	for _, line := range logs.Lines() {
		if !strings.Contains(line, sub) {
			continue
		}
		var rec struct {
			RetryIn string `json:"retry_in"`
		}
		require.NoError(t, json.Unmarshal([]byte(line), &rec))
		d, err := time.ParseDuration(rec.RetryIn)
		require.NoError(t, err)
		delays = append(delays, d)
	}
	return delays
}

// requireClosed fails unless sess closes soon.
func requireClosed(t *testing.T, sess *yamux.Session, why string) {
	t.Helper()
	select {
	case <-sess.CloseChan():
	case <-time.After(waitFor):
		t.Fatal(why)
	}
}
