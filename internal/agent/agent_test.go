package agent

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pico-proxy/pico/internal/config"
	"github.com/pico-proxy/pico/internal/testutil"
	"github.com/pico-proxy/pico/internal/yamux"
	"github.com/stretchr/testify/require"
)

// echoed is what the local test service saw of a request.
type echoed struct {
	Method string              `json:"method"`
	Path   string              `json:"path"`
	Query  string              `json:"query"`
	Host   string              `json:"host"`
	Header map[string][]string `json:"header"`
	Body   string              `json:"body"`
}

// echoService is a local service answering 201 with what it saw.
func echoService(t *testing.T) *httptest.Server {
	return httpService(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Service", "echo")
		w.Header().Add("Set-Cookie", "a=1")
		w.Header().Add("Set-Cookie", "b=2")
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(echoed{r.Method, r.URL.EscapedPath(), r.URL.RawQuery, r.Host, r.Header, string(body)})
	})
}

func TestHTTPRoundTripKeepsTheRequestIntact(t *testing.T) {
	service := echoService(t)
	hostPort := strings.TrimPrefix(service.URL, "http://")
	_, port, _ := net.SplitHostPort(hostPort)
	server := newUpstreamServer(t)
	cfg := agentConfig(server.url(),
		Endpoint{ID: "by-port", Protocol: "http", Addr: port},
		Endpoint{ID: "by-hostport", Protocol: "http", Addr: hostPort},
		Endpoint{ID: "by-url", Protocol: "http", Addr: service.URL + "/base"},
	)
	cfg.Connect.Token = "s3cret"
	a := startAgent(t, cfg)
	waitRegistered(t, a)
	require.Equal(t, 1, a.logs.Count(`"endpoint registered"`, `"endpoint":"by-port"`))
	require.Equal(t, "Bearer s3cret", server.authFor("by-url"))

	for id, prefix := range map[string]string{"by-port": "", "by-hostport": "", "by-url": "/base"} {
		t.Run(id, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPatch, "http://"+id+".example.com/a/b%2Fc?x=1&y=two&x=3", strings.NewReader("the body"))
			require.NoError(t, err)
			req.Header.Add("X-Custom", "one")
			req.Header.Add("X-Custom", "two")
			req.Header.Set("X-Forwarded-For", "203.0.113.7, 10.0.0.1")
			req.Header.Set("X-Forwarded-Proto", "https")
			req.Header.Set("Accept-Encoding", "gzip")
			resp, err := client(server.session(id, 1)).Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			require.Equal(t, http.StatusCreated, resp.StatusCode)
			require.Equal(t, "echo", resp.Header.Get("X-Service"))
			require.Equal(t, []string{"a=1", "b=2"}, resp.Header.Values("Set-Cookie"))

			var got echoed
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&got))
			require.Equal(t, http.MethodPatch, got.Method)
			require.Equal(t, prefix+"/a/b%2Fc", got.Path)
			require.Equal(t, "x=1&y=two&x=3", got.Query)
			require.Equal(t, id+".example.com", got.Host)
			require.Equal(t, []string{"one", "two"}, got.Header["X-Custom"])
			require.Equal(t, []string{"203.0.113.7, 10.0.0.1"}, got.Header["X-Forwarded-For"], "X-Forwarded-For kept as the server set it")
			require.Equal(t, []string{"https"}, got.Header["X-Forwarded-Proto"])
			require.Equal(t, []string{"gzip"}, got.Header["Accept-Encoding"])
			require.Equal(t, "the body", got.Body)
		})
	}
}

func TestHTTPStreamsBothWays(t *testing.T) {
	firstPartRead := make(chan struct{})
	sendRest := make(chan struct{})
	service := httpService(t, func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, len("part1"))
		_, err := io.ReadFull(r.Body, buf)
		if err != nil || string(buf) != "part1" {
			http.Error(w, "bad first part", http.StatusBadRequest)
			return
		}
		close(firstPartRead) // the agent did not wait for the whole request body
		rest, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "got "+string(buf)+string(rest)+";")
		w.(http.Flusher).Flush()
		<-sendRest
		io.WriteString(w, "done")
	})
	server, _ := serveEndpoint(t, Endpoint{ID: "stream", Protocol: "http", Addr: service.URL})

	bodyReader, bodyWriter := io.Pipe()
	req, err := http.NewRequest(http.MethodPost, "http://stream.example.com/upload", bodyReader)
	require.NoError(t, err)
	respCh := make(chan *http.Response, 1)
	go func() {
		resp, err := client(server.session("stream", 1)).Do(req)
		if err == nil {
			respCh <- resp
		}
		close(respCh)
	}()
	_, err = io.WriteString(bodyWriter, "part1")
	require.NoError(t, err)
	select {
	case <-firstPartRead:
	case <-time.After(waitFor):
		t.Fatal("the request body was not streamed to the local service")
	}
	io.WriteString(bodyWriter, "part2")
	bodyWriter.Close()

	resp := <-respCh
	require.NotNil(t, resp)
	defer resp.Body.Close()
	first := make([]byte, len("got part1part2;"))
	_, err = io.ReadFull(resp.Body, first)
	require.NoError(t, err, "the first response chunk arrives while the service still holds the response open")
	require.Equal(t, "got part1part2;", string(first))
	close(sendRest)
	rest, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, "done", string(rest))
}

func TestWebSocketUpgradePassesThrough(t *testing.T) {
	service := httpService(t, testutil.WebSocketEcho)
	server, _ := serveEndpoint(t, Endpoint{ID: "ws", Protocol: "http", Addr: service.URL})

	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://ws.example.com/socket", &websocket.DialOptions{HTTPClient: client(server.session("ws", 1))})
	require.NoError(t, err)
	defer c.CloseNow()
	for _, msg := range []string{"hello", "world"} {
		require.NoError(t, c.Write(ctx, websocket.MessageText, []byte(msg)))
		_, got, err := c.Read(ctx)
		require.NoError(t, err)
		require.Equal(t, "echo: "+msg, string(got))
	}
}

func TestTCPEndpointPipesWithHalfClose(t *testing.T) {
	echo := testutil.ServeTCP(t, func(c net.Conn) {
		data, _ := io.ReadAll(c) // until the client's half-close
		c.Write([]byte(strings.ToUpper(string(data))))
		c.(*net.TCPConn).CloseWrite()
	})
	server, _ := serveEndpoint(t, Endpoint{ID: "tcp-echo", Protocol: "tcp", Addr: echo.Addr().String()})

	sess := server.session("tcp-echo", 1)
	for range 3 { // one stream per proxied connection, each a new local connection
		stream, err := sess.OpenStream()
		require.NoError(t, err)
		_, err = stream.Write([]byte("ping over tcp"))
		require.NoError(t, err)
		require.NoError(t, stream.Close()) // half-close: the service sees EOF
		got, err := io.ReadAll(stream)
		require.NoError(t, err)
		require.Equal(t, "PING OVER TCP", string(got))
	}
}

func TestLocalServiceDownGives502(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	server, _ := serveEndpoint(t, Endpoint{ID: "down", Protocol: "http", Addr: addr})

	resp, err := client(server.session("down", 1)).Get("http://down.example.com/")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusBadGateway, resp.StatusCode)
	var body map[string]string
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	require.Contains(t, body["error"], "local service")
}

func TestReconnectsAfterTheServerClosesTheConnection(t *testing.T) {
	for name, tc := range map[string]struct {
		healthyAfter time.Duration
		logged       string
	}{
		// A connection that was up long enough is replaced at once.
		"after a healthy connection": {0, `"upstream connection ended; reconnecting"`},
		// One dropped right after it was made backs off.
		"after a short-lived connection": {time.Hour, `"upstream connection ended soon after it was made; reconnecting"`},
	} {
		t.Run(name, func(t *testing.T) {
			server, a := serveEndpoint(t, Endpoint{ID: "again", Protocol: "http", Addr: echoService(t).URL},
				func(a *Agent) { a.healthyAfter = tc.healthyAfter })

			for n := 1; n <= 3; n++ {
				sess := server.session("again", n)
				resp, err := client(sess).Get("http://again.example.com/")
				require.NoError(t, err)
				resp.Body.Close()
				require.Equal(t, http.StatusCreated, resp.StatusCode)
				require.NoError(t, sess.Close())
			}
			resp, err := client(server.session("again", 4)).Get("http://again.example.com/")
			require.NoError(t, err)
			resp.Body.Close()
			require.Equal(t, http.StatusCreated, resp.StatusCode)
			// The server sees the fourth connection, and can use it, before
			// the agent's connect returns and logs it.
			require.Eventually(t, func() bool { return a.logs.Count(`"endpoint registered"`) == 4 }, waitFor, tick,
				"the fourth registration is never logged")
			require.Equal(t, 3, a.logs.Count(tc.logged, `"reason":"connection closed"`))
		})
	}
}

func TestKeepaliveIntervalPacesThePings(t *testing.T) {
	server := newUpstreamServer(t)
	cfg := agentConfig(server.url(), Endpoint{ID: "pinged", Protocol: "http", Addr: echoService(t).URL})
	cfg.KeepaliveInterval = 20 * time.Millisecond
	a := startAgent(t, cfg)
	waitRegistered(t, a)
	server.session("pinged", 1)
	// An idle connection carries nothing but the agent's pings: a yamux
	// frame header of 12 bytes each (the default 10 s would send none
	// within the wait).
	const frame = 12
	before := server.received.Load()
	require.Eventually(t, func() bool { return server.received.Load()-before >= 3*frame }, waitFor, tick,
		"three pings reach the server")
}

func TestReconnectsAtGoAwayWhileTheOldConnectionFinishes(t *testing.T) {
	inFlight := make(chan struct{})
	release := make(chan struct{})
	service := httpService(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(inFlight)
			<-release
		}
		io.WriteString(w, "ok "+r.URL.Path)
	})
	server, _ := serveEndpoint(t, Endpoint{ID: "drain", Protocol: "http", Addr: service.URL})
	old := server.session("drain", 1)

	slow := getInBackground(old, "http://drain.example.com/slow")
	<-inFlight

	// The server restarts: it tells the agent to go away but keeps
	// serving the in-flight request.
	require.NoError(t, old.GoAway())
	replacement := server.session("drain", 2)
	require.False(t, old.IsClosed(), "the agent keeps the old connection for its in-flight request")

	resp, err := client(replacement).Get("http://drain.example.com/fast")
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, "ok /fast", string(b))

	close(release)
	require.Equal(t, "ok /slow", <-slow)
}

func TestReconnectsWhenTheServerComesBack(t *testing.T) {
	server, a := serveEndpoint(t, Endpoint{ID: "phoenix", Protocol: "http", Addr: echoService(t).URL})
	server.session("phoenix", 1)

	addr := server.srv.Listener.Addr().String()
	server.stop()
	failed := func() int { return a.logs.Count(`cannot connect to the server`, `"endpoint":"phoenix"`) }
	require.Eventually(t, func() bool { return failed() >= 2 }, waitFor, tick)
	server.restartAt(addr)

	resp, err := client(server.session("phoenix", 2)).Get("http://phoenix.example.com/")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	require.LessOrEqual(t, failed(), 3, "the agent is back at the first retry after the server returns")
}

func TestRefusedConnectionsAreRetriedOftenWhateverTheOutage(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	l.Close() // the server is down from the start
	a := startAgent(t, agentConfig("http://"+addr, Endpoint{ID: "patient", Protocol: "tcp", Addr: "1"}))

	refused := func() int { return a.logs.Count("cannot connect to the server", "connection refused") }
	require.Eventually(t, func() bool { return refused() >= 6 }, waitFor, tick)
	for _, d := range retryDelays(t, a.logs, "connection refused") {
		require.LessOrEqual(t, d, 400*time.Millisecond, "a refused connection is retried within 400 ms however long it lasts")
	}

	server := newUpstreamServer(t)
	server.stop()
	server.restartAt(addr)
	waitRegistered(t, a)
}

func TestDrainingServerIsRetriedOftenHoweverLongItDrains(t *testing.T) {
	service := echoService(t)
	server := newUpstreamServer(t)
	// A draining server answers 503 until it exits; the agent must ask
	// often enough to be back soon after the new process listens.
	refusals := []int{503, 503, 503, 503, 503, 503}
	server.refuseWith("patient", refusals...)
	a := startAgent(t, agentConfig(server.url(), Endpoint{ID: "patient", Protocol: "http", Addr: service.URL}))
	waitRegistered(t, a)
	require.Equal(t, len(refusals)+1, server.attemptsFor("patient"))

	delays := retryDelays(t, a.logs, "test refusal of patient")
	for _, d := range delays {
		require.LessOrEqual(t, d, 400*time.Millisecond, "a 503 (server shutting down) is retried within 400 ms however long it lasts")
	}
	require.Len(t, delays, len(refusals))
}

func TestBackoffGrowsAndIsCapped(t *testing.T) {
	low := func() float64 { return 0 }
	high := func() float64 { return 0.999999 }
	require.Equal(t, time.Duration(0), backoff(0, low))
	want := []time.Duration{100, 200, 400, 800, 1600, 3200, 6400, 12800, 15000, 15000}
	for i, w := range want {
		attempt := i + 1
		require.Equal(t, w*time.Millisecond, backoff(attempt, low), "attempt %d without jitter", attempt)
		jittered := backoff(attempt, high)
		require.Less(t, jittered, w*time.Millisecond, "jitter shortens attempt %d", attempt)
		require.GreaterOrEqual(t, jittered, w*time.Millisecond*3/4, "jitter takes at most a quarter of attempt %d", attempt)
	}
	for _, attempt := range []int{20, 64, 1000, int(^uint(0) >> 1)} {
		require.Equal(t, maxBackoff, backoff(attempt, low), "attempt %d is capped", attempt)
	}
}

func TestBadRequestRefusalIsPermanent(t *testing.T) {
	service := echoService(t)
	server := newUpstreamServer(t)
	server.refuseWith("rejected", http.StatusBadRequest)
	release := server.holdHandshakes("rejected")
	a := startAgent(t, agentConfig(server.url(),
		Endpoint{ID: "fine", Protocol: "http", Addr: service.URL},
		Endpoint{ID: "rejected", Protocol: "http", Addr: service.URL},
	))
	fine := server.session("fine", 1)
	release()
	err := a.Wait(t)
	require.Error(t, err)
	require.ErrorContains(t, err, `endpoint "rejected"`)
	require.ErrorContains(t, err, "400 test refusal of rejected")
	require.ErrorContains(t, err, "/pico/v1/upstream/rejected")
	require.Equal(t, 1, server.attemptsFor("rejected"), "a 400 is not retried")

	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	require.ErrorContains(t, a.WaitRegistered(ctx), `endpoint "rejected"`)
	requireClosed(t, fine, "the other endpoints stop too")
}

func TestServerErrorsAndOtherRefusalsAreRetried(t *testing.T) {
	service := echoService(t)
	server := newUpstreamServer(t)
	server.refuseWith("flaky", http.StatusServiceUnavailable, http.StatusUnauthorized, http.StatusBadGateway)
	a := startAgent(t, agentConfig(server.url(), Endpoint{ID: "flaky", Protocol: "http", Addr: service.URL}))
	waitRegistered(t, a)
	require.Equal(t, 4, server.attemptsFor("flaky"))
	require.Equal(t, 1, a.logs.Count(`"cannot connect to the server; retrying"`, "401 test refusal of flaky", "connect.token"))
}

func TestShutdownFinishesInFlightRequests(t *testing.T) {
	inFlight := make(chan struct{})
	release := make(chan struct{})
	service := httpService(t, func(w http.ResponseWriter, r *http.Request) {
		close(inFlight)
		<-release
		io.WriteString(w, "finished")
	})
	server, a := serveEndpoint(t, Endpoint{ID: "graceful", Protocol: "http", Addr: service.URL})
	sess := server.session("graceful", 1)

	result := getInBackground(sess, "http://graceful.example.com/")
	<-inFlight
	a.Cancel() // SIGTERM

	// The agent refuses new streams at once...
	require.Eventually(t, func() bool {
		s, err := sess.OpenStream()
		if err == nil {
			s.Close()
		}
		return errors.Is(err, yamux.ErrRemoteGoAway)
	}, waitFor, tick)
	select {
	case <-a.Done():
		t.Fatal("Run returned while a request was in flight")
	default:
	}
	// ...finishes the in-flight one, then exits cleanly.
	close(release)
	require.Equal(t, "finished", <-result)
	require.NoError(t, a.Wait(t))
	requireClosed(t, sess, "the agent closes its drained connection")
}

func TestGracePeriodBoundsShutdown(t *testing.T) {
	inFlight := make(chan struct{})
	release := make(chan struct{})
	service := httpService(t, func(w http.ResponseWriter, r *http.Request) {
		close(inFlight)
		<-release
	})
	t.Cleanup(func() { close(release) }) // runs before service.Close
	server := newUpstreamServer(t)
	cfg := agentConfig(server.url(), Endpoint{ID: "stuck", Protocol: "http", Addr: service.URL})
	cfg.GracePeriod = 50 * time.Millisecond
	a := startAgent(t, cfg)
	waitRegistered(t, a)
	sess := server.session("stuck", 1)

	errCh := make(chan error, 1)
	go func() {
		resp, err := client(sess).Get("http://stuck.example.com/")
		if err == nil {
			resp.Body.Close()
		}
		errCh <- err
	}()
	<-inFlight
	require.NoError(t, a.Stop(t), "Run returns once the grace period is over")
	require.Error(t, <-errCh, "the request still in flight is cut off")
	require.Equal(t, 1, a.logs.Count("grace period over"))
}

func TestSeveralEndpointsFromYAML(t *testing.T) {
	service := echoService(t)
	echo := testutil.ServeTCP(t, func(c net.Conn) { io.Copy(c, c) })
	server := newUpstreamServer(t)
	path := filepath.Join(t.TempDir(), "agent.yaml")
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(service.URL, "http://"))
	require.NoError(t, os.WriteFile(path, []byte(`
connect:
  url: `+server.url()+`
  timeout: 5s
endpoints:
  - id: web
    protocol: http
    addr: `+port+`
  - id: raw
    protocol: tcp
    addr: `+echo.Addr().String()+`
grace_period: 2s
log:
  level: debug
`), 0o644))
	cfg, _, err := config.Load("agent", []string{"--config.path", path}, config.DefaultAgent, io.Discard)
	require.NoError(t, err)
	require.Len(t, cfg.Endpoints, 2)
	a := startAgent(t, *cfg)
	waitRegistered(t, a)

	resp, err := client(server.session("web", 1)).Get("http://web.example.com/hi")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode)

	stream, err := server.session("raw", 1).OpenStream()
	require.NoError(t, err)
	defer stream.Close()
	testutil.RequireEcho(t, stream, "raw bytes")
}

func TestNewRejectsBadConfiguration(t *testing.T) {
	logger := slog.New(slog.DiscardHandler)
	_, err := New(agentConfig("http://localhost:8001"), logger)
	require.ErrorContains(t, err, "no endpoints")

	_, err = New(agentConfig("http://localhost:8001", Endpoint{ID: "bad id", Protocol: "http", Addr: "3000"}), logger)
	require.ErrorContains(t, err, "endpoints[0].id")

	_, err = New(agentConfig("localhost:8001", Endpoint{ID: "ok", Protocol: "http", Addr: "3000"}), logger)
	require.ErrorContains(t, err, "connect.url")
}

func TestWaitRegisteredHonoursTheContext(t *testing.T) {
	server := newUpstreamServer(t)
	server.refuseWith("later", http.StatusServiceUnavailable, http.StatusServiceUnavailable, http.StatusServiceUnavailable, http.StatusServiceUnavailable)
	a := startAgent(t, agentConfig(server.url(), Endpoint{ID: "later", Protocol: "tcp", Addr: "1"}))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, a.WaitRegistered(ctx), context.Canceled)
}
