package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pico-proxy/pico/internal/protocol"
	"github.com/pico-proxy/pico/internal/testutil"
	"github.com/pico-proxy/pico/internal/yamux"
)

const cmdWait = 10 * time.Second

// testUpstreamPort accepts agent connections on the real protocol and
// records the endpoints that registered; endpoint "refused" gets 400.
type testUpstreamPort struct {
	srv      *httptest.Server
	mu       sync.Mutex
	sessions map[string]*yamux.Session
}

func newTestUpstreamPort(t *testing.T) *testUpstreamPort {
	p := &testUpstreamPort{sessions: map[string]*yamux.Session{}}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := protocol.EndpointFromPath(r.URL.Path, protocol.UpstreamPathPrefix)
		if id == "refused" {
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte(`{"error":"endpoint refused by test"}`))
			return
		}
		conn, err := protocol.AcceptWebSocket(w, r)
		if err != nil {
			return
		}
		sess, err := yamux.Server(conn, protocol.YamuxConfig(slog.New(slog.DiscardHandler)))
		if err != nil {
			return
		}
		p.mu.Lock()
		p.sessions[id] = sess
		p.mu.Unlock()
	}))
	t.Cleanup(func() {
		p.srv.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, s := range p.sessions {
			s.Close()
		}
	})
	return p
}

func (p *testUpstreamPort) registered() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var ids []string
	for id := range p.sessions {
		ids = append(ids, id)
	}
	return ids
}

func runAgentForTest(t *testing.T, ctx context.Context, args ...string) (int, string) {
	t.Helper()
	var stderr testutil.LogBuffer
	code := agentCommand(ctx, args, &stderr, &stderr) // --help output (stdout) is read here too
	return code, stderr.String()
}

func writeTestFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
	return path
}

func TestAgentUsageErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"no arguments":     {nil, "missing arguments"},
		"unknown flag":     {[]string{"http", "a", "1", "--no-such-flag"}, "unknown flag: --no-such-flag"},
		"unknown protocol": {[]string{"udp", "a", "1"}, `unknown protocol "udp"`},
		"too few":          {[]string{"http", "a"}, "expected http|tcp ENDPOINT ADDR, got 2 arguments"},
		"bad flag value":   {[]string{"http", "a", "1", "--connect.timeout", "soon"}, "connect.timeout"},
	} {
		t.Run(name, func(t *testing.T) {
			code, stderr := runAgentForTest(t, context.Background(), tc.args...)
			require.Equal(t, 2, code)
			require.Contains(t, stderr, tc.want)
			require.Contains(t, stderr, "Usage:")
			require.Contains(t, stderr, "--connect.url")
		})
	}
	code, stderr := runAgentForTest(t, context.Background(), "--help")
	require.Equal(t, 0, code)
	require.Contains(t, stderr, "pico agent http|tcp ENDPOINT ADDR")
}

func TestAgentConfigErrorsAreOneLine(t *testing.T) {
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"bad endpoint": {[]string{"http", "not valid!", "3000"}, "pico agent: ENDPOINT: endpoint ID"},
		"bad addr":     {[]string{"tcp", "db", "99999"}, `pico agent: ADDR: "99999": port "99999"`},
		"bad url":      {[]string{"http", "web", "3000", "--connect.url", "pico:8001"}, "connect.url (--connect.url)"},
		"no endpoints": {[]string{"--config.path", writeTestFile(t, "a.yaml", "connect:\n  url: http://x:1\n")}, "lists no endpoints"},
		"unknown key":  {[]string{"--config.path", writeTestFile(t, "b.yaml", "endpoints:\n  - id: a\n    protocol: http\n    adr: \"1\"\n")}, `unknown key "endpoints[0].adr"`},
		"several problems": {[]string{"--config.path", writeTestFile(t, "c.yaml", "grace_period: -1s\nlog:\n  level: loud\n")},
			"grace_period (--grace-period)"},
		"duplicate": {[]string{"--config.path", writeTestFile(t, "d.yaml", "endpoints:\n  - {id: a, protocol: http, addr: \"1\"}\n"), "tcp", "a", "2"},
			`endpoints[1].id "a" repeats endpoints[0].id`},
	} {
		t.Run(name, func(t *testing.T) {
			code, stderr := runAgentForTest(t, context.Background(), tc.args...)
			require.Equal(t, 1, code, stderr)
			require.Contains(t, stderr, tc.want)
			require.Equal(t, 1, strings.Count(stderr, "\n"), "one line: %q", stderr)
		})
	}
}

func TestAgentServesEndpointsFromFileAndCommandLineUntilSignalled(t *testing.T) {
	upstreams := newTestUpstreamPort(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	path := writeTestFile(t, "agent.yaml", `
connect:
  url: `+upstreams.srv.URL+`
endpoints:
  - {id: one, protocol: http, addr: "3000"}
  - {id: two, protocol: tcp, addr: "`+l.Addr().String()+`"}
`)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr testutil.LogBuffer
	done := make(chan int, 1)
	go func() {
		done <- agentCommand(ctx, []string{"--config.path", path, "http", "three", "localhost:8080", "--grace-period", "2s"}, io.Discard, &stderr)
	}()

	require.Eventually(t, func() bool { return len(upstreams.registered()) == 3 }, cmdWait, 5*time.Millisecond)
	require.ElementsMatch(t, []string{"one", "two", "three"}, upstreams.registered())
	require.Eventually(t, func() bool { return strings.Count(stderr.String(), `"msg":"endpoint registered"`) == 3 }, cmdWait, 5*time.Millisecond)

	cancel() // SIGTERM
	select {
	case code := <-done:
		require.Equal(t, 0, code, stderr.String())
	case <-time.After(cmdWait):
		t.Fatal("pico agent did not exit after the signal")
	}
}

func TestAgentExitsWhenTheServerRefusesTheEndpoint(t *testing.T) {
	upstreams := newTestUpstreamPort(t)
	ctx, cancel := context.WithTimeout(context.Background(), cmdWait)
	defer cancel()
	code, stderr := runAgentForTest(t, ctx, "http", "refused", "3000", "--connect.url", upstreams.srv.URL, "--log.level", "error")
	require.Equal(t, 1, code)
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	last := lines[len(lines)-1]
	require.True(t, strings.HasPrefix(last, `pico agent: endpoint "refused": the server at `), last)
	require.Contains(t, last, "400 endpoint refused by test")
}
