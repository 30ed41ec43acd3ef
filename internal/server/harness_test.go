package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pico-proxy/pico/internal/config"
	"github.com/pico-proxy/pico/internal/logging"
	"github.com/pico-proxy/pico/internal/protocol"
	"github.com/pico-proxy/pico/internal/testutil"
	"github.com/pico-proxy/pico/internal/upstream/upstreamtest"
)

// testServer is a server on loopback with every port chosen by the kernel.
type testServer struct {
	*Server
	t    testing.TB
	logs *testutil.LogBuffer
}

type serverSetup struct {
	cfg  func(*config.Server)
	opts []Option
}

func testConfig() *config.Server {
	cfg := config.DefaultServer()
	cfg.Proxy.BindAddr = "127.0.0.1:0"
	cfg.Upstream.BindAddr = "127.0.0.1:0"
	cfg.Admin.BindAddr = "127.0.0.1:0"
	cfg.Gossip.BindAddr = "127.0.0.1:0"
	cfg.Server.GracefulShutdownTimeout = 20 * time.Second
	cfg.Proxy.UpstreamWait = 0 // an unknown endpoint answers 502 at once
	cfg.Server.DrainDelay = 0  // no lame-duck wait unless a test sets one
	return cfg
}

func startServer(t testing.TB, setup serverSetup) *testServer {
	t.Helper()
	cfg := testConfig()
	if setup.cfg != nil {
		setup.cfg(cfg)
	}
	logs := &testutil.LogBuffer{}
	logger := logging.New(logs, slog.LevelInfo, nil)
	require.NoError(t, cfg.Validate())
	srv, err := New(cfg, logger, setup.opts...)
	require.NoError(t, err)
	require.NoError(t, srv.Start(context.Background()))
	t.Cleanup(func() {
		_ = srv.Shutdown(context.Background())
		if t.Failed() {
			t.Logf("server %s logs:\n%s", srv.ID(), logs.String())
		}
	})
	return &testServer{Server: srv, t: t, logs: logs}
}

// proxyURL is the proxy port's URL for path.
func (s *testServer) proxyURL(path string) string { return "http://" + s.Addrs().Proxy + path }

// adminURL is the admin port's URL for path.
func (s *testServer) adminURL(path string) string { return "http://" + s.Addrs().Admin + path }

// agent registers an HTTP agent for endpoint serving h.
func (s *testServer) agent(endpoint string, h http.Handler) *upstreamtest.Agent {
	s.t.Helper()
	a, err := upstreamtest.ServeHTTP(context.Background(), upstreamtest.URL(s.Addrs().Upstream, endpoint), h)
	require.NoError(s.t, err)
	s.t.Cleanup(func() { _ = a.Close() })
	return a
}

// get sends GET path for endpoint (x-pico-endpoint header).
func (s *testServer) get(endpoint, path string) *http.Response {
	s.t.Helper()
	return s.getWith(endpoint, path, nil)
}

// getWith is get with extra request headers.
func (s *testServer) getWith(endpoint, path string, header http.Header) *http.Response {
	s.t.Helper()
	return proxyGet(s.t, http.DefaultClient, s.proxyURL(path), endpoint, header)
}

// proxyGet sends GET url through client for endpoint (x-pico-endpoint
// header) with extra headers; the body is closed when the test ends.
func proxyGet(t testing.TB, client *http.Client, url, endpoint string, header http.Header) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("X-Pico-Endpoint", endpoint)
	resp, err := client.Do(req)
	require.NoError(t, err)
	t.Cleanup(func() { _ = resp.Body.Close() })
	return resp
}

// exchange is the outcome of a request sent in the background.
type exchange struct {
	status int // 0 when the request failed
	body   string
	err    error
}

// getInBackground sends GET / for endpoint from a goroutine and delivers
// the response's status and body, or the error.
func (s *testServer) getInBackground(endpoint string) <-chan exchange {
	done := make(chan exchange, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, s.proxyURL("/"), nil)
		req.Header.Set("X-Pico-Endpoint", endpoint)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- exchange{err: err}
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		done <- exchange{status: resp.StatusCode, body: string(body), err: err}
	}()
	return done
}

// getJSON GETs an admin path and decodes the answer.
func (s *testServer) getJSON(path string, v any) int {
	s.t.Helper()
	resp, err := http.Get(s.adminURL(path))
	require.NoError(s.t, err)
	defer resp.Body.Close()
	require.Equal(s.t, "application/json", resp.Header.Get("Content-Type"))
	require.NoError(s.t, json.NewDecoder(resp.Body).Decode(v))
	return resp.StatusCode
}

func readAll(t *testing.T, r io.Reader) string {
	t.Helper()
	b, err := io.ReadAll(r)
	require.NoError(t, err)
	return string(b)
}

// requireJSONError checks a Pico error answer.
func requireJSONError(t *testing.T, resp *http.Response, status int, contains string) {
	t.Helper()
	require.Equal(t, status, resp.StatusCode)
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	var body struct {
		Error string `json:"error"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	require.Contains(t, body.Error, contains)
}

// echo is an upstream answering a JSON description of the request.
type echoed struct {
	Method string              `json:"method"`
	Path   string              `json:"path"`
	Query  string              `json:"query"`
	Host   string              `json:"host"`
	Header map[string][]string `json:"header"`
	Body   string              `json:"body"`
	Name   string              `json:"name"`
}

func echoHandler(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Upstream", name)
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(echoed{
			Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Host: r.Host,
			Header: r.Header, Body: string(body), Name: name,
		})
	})
}

func decodeEcho(t *testing.T, resp *http.Response) echoed {
	t.Helper()
	require.Equal(t, http.StatusCreated, resp.StatusCode, "body: %s", peek(resp))
	var e echoed
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&e))
	return e
}

func peek(resp *http.Response) string {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	resp.Body = io.NopCloser(io.MultiReader(bytes.NewReader(b), resp.Body))
	return string(b)
}

// rawRequest sends raw bytes to addr and returns the connection.
func rawConn(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// requireTCPRouteEcho opens the TCP route path (e.g.
// protocol.TCPPathPrefix+"db") on the proxy port at proxyAddr and checks
// one round trip of msg through the echo service behind it.
func requireTCPRouteEcho(t *testing.T, proxyAddr, path, msg string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := protocol.DialWebSocket(ctx, "ws://"+proxyAddr+path, nil, nil)
	require.NoError(t, err)
	defer conn.Close()
	testutil.RequireEcho(t, conn, msg)
}
