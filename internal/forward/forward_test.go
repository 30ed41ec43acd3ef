package forward

import (
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pico-proxy/pico/internal/config"
	"github.com/pico-proxy/pico/internal/logging"
	"github.com/pico-proxy/pico/internal/protocol"
	"github.com/pico-proxy/pico/internal/testutil"
	"github.com/stretchr/testify/require"
)

const (
	waitFor = 10 * time.Second
	tick    = 5 * time.Millisecond
)

// proxyPort is a minimal proxy port serving Pico's TCP route with
// in-test "upstreams" chosen by endpoint ID.
type proxyPort struct {
	srv  *httptest.Server
	mu   sync.Mutex
	auth string
	open int // WebSockets being served
}

func (p *proxyPort) openConns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.open
}

func newProxyPort(t *testing.T) *proxyPort {
	p := &proxyPort{}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *proxyPort) serve(w http.ResponseWriter, r *http.Request) {
	id, ok := protocol.EndpointFromPath(r.URL.Path, protocol.TCPPathPrefix)
	if !ok {
		http.NotFound(w, r)
		return
	}
	p.mu.Lock()
	p.auth = r.Header.Get("Authorization")
	p.mu.Unlock()
	if id == "missing" {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadGateway)
		json.NewEncoder(w).Encode(map[string]string{"error": "no upstream for endpoint missing"})
		return
	}
	conn, err := protocol.AcceptWebSocket(w, r)
	if err != nil {
		return
	}
	defer conn.Close()
	p.mu.Lock()
	p.open++
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.open--
		p.mu.Unlock()
	}()
	switch id {
	case "echo":
		io.Copy(conn, conn)
	case "greeter": // says hello and hangs up
		io.WriteString(conn, "hello from upstream")
	case "reverse3": // answers three bytes reversed, then hangs up
		buf := make([]byte, 3)
		if _, err := io.ReadFull(conn, buf); err == nil {
			conn.Write([]byte{buf[2], buf[1], buf[0]})
		}
	}
}

// running is a forwarder to a proxy port of its own, serving in the
// background of a test.
type running struct {
	*Forwarder
	*testutil.Running
	proxy *proxyPort
	logs  *testutil.LogBuffer
}

// start runs a forwarder to endpoint on a new proxy port until the test
// ends.
func start(t *testing.T, endpoint string, edit ...func(*config.Forward)) *running {
	t.Helper()
	proxy := newProxyPort(t)
	cfg := config.DefaultForward()
	cfg.Connect.URL = proxy.srv.URL
	cfg.GracePeriod = 5 * time.Second
	for _, e := range edit {
		e(cfg)
	}
	logs := &testutil.LogBuffer{}
	f, err := Listen(*cfg, "127.0.0.1:0", endpoint, logging.New(logs, slog.LevelDebug, nil))
	require.NoError(t, err)
	f.linger = 100 * time.Millisecond
	return &running{Forwarder: f, Running: testutil.Go(t, "forwarder", f.Serve), proxy: proxy, logs: logs}
}

func (r *running) dial(t *testing.T) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", r.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

func TestForwardsTCPThroughTheProxyPort(t *testing.T) {
	f := start(t, "echo", func(c *config.Forward) { c.Connect.Token = "tok" })

	var wg sync.WaitGroup
	for i := range 5 {
		wg.Go(func() {
			c := f.dial(t)
			for j := range 3 {
				msg := strings.Repeat("x", 1+i*1000+j)
				if _, err := io.WriteString(c, msg); err != nil {
					t.Error(err)
					return
				}
				got := make([]byte, len(msg))
				if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
					t.Errorf("connection %d message %d: got %d bytes, err %v", i, j, len(got), err)
					return
				}
			}
		})
	}
	wg.Wait()
	f.proxy.mu.Lock()
	defer f.proxy.mu.Unlock()
	require.Equal(t, "Bearer tok", f.proxy.auth)
}

func TestUpstreamHangUpReachesTheClient(t *testing.T) {
	f := start(t, "greeter")
	got, err := io.ReadAll(f.dial(t))
	require.NoError(t, err, "the client sees a clean end of stream")
	require.Equal(t, "hello from upstream", string(got))
}

func TestClientHalfCloseKeepsTheResponseFlowing(t *testing.T) {
	f := start(t, "reverse3")
	c := f.dial(t)
	_, err := io.WriteString(c, "abc")
	require.NoError(t, err)
	require.NoError(t, c.CloseWrite())
	got, err := io.ReadAll(c)
	require.NoError(t, err)
	require.Equal(t, "cba", string(got))
}

func TestClientCloseReleasesTheUpstreamConnection(t *testing.T) {
	f := start(t, "echo")
	c := f.dial(t)
	testutil.RequireEcho(t, c, "hi")
	require.Equal(t, 1, f.proxy.openConns())
	require.NoError(t, c.Close())
	require.Eventually(t, func() bool { return f.proxy.openConns() == 0 }, waitFor, tick,
		"the WebSocket closes once the client is gone and the answer idle")
}

func TestRefusedConnectionIsClosedAndLogged(t *testing.T) {
	f := start(t, "missing")
	c := f.dial(t)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(waitFor)))
	n, err := c.Read(make([]byte, 1))
	require.Zero(t, n)
	require.ErrorIs(t, err, io.EOF)
	require.Contains(t, f.logs.String(), "no upstream for endpoint missing")
	require.Contains(t, f.logs.String(), `"status":502`)
}

func TestShutdownLetsOpenConnectionsFinish(t *testing.T) {
	f := start(t, "echo")
	c := f.dial(t)
	testutil.RequireEcho(t, c, "before")

	f.Cancel() // SIGTERM
	require.Eventually(t, func() bool {
		c, err := net.Dial("tcp", f.Addr().String())
		if err == nil {
			c.Close()
		}
		return err != nil
	}, waitFor, tick, "the listener closes at once")
	testutil.RequireEcho(t, c, "during", "open connections keep working while draining")
	select {
	case <-f.Done():
		t.Fatal("Serve returned while a connection was open")
	default:
	}
	c.Close()
	require.NoError(t, f.Wait(t))
}

func TestGracePeriodClosesLingeringConnections(t *testing.T) {
	f := start(t, "echo", func(c *config.Forward) { c.GracePeriod = 50 * time.Millisecond })
	c := f.dial(t)
	testutil.RequireEcho(t, c, "x")

	require.NoError(t, f.Stop(t))
	require.NoError(t, c.SetReadDeadline(time.Now().Add(waitFor)))
	_, err := c.Read(make([]byte, 1))
	require.Error(t, err, "the lingering connection was closed")
	require.Contains(t, f.logs.String(), "grace period over")
}

func TestListenRejectsBadArguments(t *testing.T) {
	logger := slog.New(slog.DiscardHandler)
	cfg := *config.DefaultForward()
	_, err := Listen(cfg, "127.0.0.1:0", "bad id", logger)
	require.ErrorContains(t, err, "ENDPOINT")
	_, err = Listen(cfg, "127.0.0.1:http", "ok", logger)
	require.ErrorContains(t, err, "LOCAL_ADDR")
	cfg.Connect.URL = "localhost:8000"
	_, err = Listen(cfg, "127.0.0.1:0", "ok", logger)
	require.ErrorContains(t, err, "connect.url")
}

func TestParseLocalAddr(t *testing.T) {
	for in, want := range map[string]string{
		"6000":           "localhost:6000",
		"0":              "localhost:0",
		":6000":          ":6000",
		"127.0.0.1:6000": "127.0.0.1:6000",
		"[::1]:6000":     "[::1]:6000",
	} {
		got, err := ParseLocalAddr(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got)
	}
	for _, in := range []string{"", "x", "70000", "-1", "host:port", "a b:1", "1:2:3"} {
		_, err := ParseLocalAddr(in)
		require.Error(t, err, in)
	}
}
