package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pico-proxy/pico/internal/config"
	"github.com/pico-proxy/pico/internal/protocol"
	"github.com/pico-proxy/pico/internal/yamux"
)

// healthyAfter is how long a connection must have lasted for its end to
// be followed by an immediate reconnect rather than a backoff wait (a
// server that accepts and drops connections at once must not be hammered).
const healthyAfter = time.Second

// refusedMaxAttempt caps the backoff attempt while connections are
// refused or the server answers that it is shutting down (backoff(3) is
// 400 ms), so that an agent is back within a fraction of a second of its
// server listening again, however long the server was draining or gone.
// Other failures back off up to 15 s.
const refusedMaxAttempt = 3

// repeatWarnEvery is how often an unchanged connection failure is logged
// as a warning; repeats in between are logged at debug.
const repeatWarnEvery = 30 * time.Second

// drainPollInterval is how often a draining connection is checked for
// in-flight streams.
const drainPollInterval = 20 * time.Millisecond

// endpoint keeps one endpoint registered and serves its streams.
type endpoint struct {
	agent *Agent
	id    string
	url   string // WebSocket URL of the upstream route
	// protocol is said at registration (protocol.EndpointProtocolHeader).
	protocol string
	logger   *slog.Logger
	server   streamServer
	// registered is set at the first registration (owned by run).
	registered bool

	mu       sync.Mutex
	sessions map[*yamux.Session]struct{} // live connections, including ones the server is draining
	wg       sync.WaitGroup              // goroutines serving sessions and streams
}

// streamServer serves the streams the server opens on a session.
type streamServer interface {
	// serve accepts and serves streams until the session ends.
	serve(sess *yamux.Session)
	// drain makes finished streams close rather than wait for more work.
	drain()
	// close releases what is left once every session is closed.
	close()
}

func newEndpoint(a *Agent, cfg Endpoint) (*endpoint, error) {
	target, err := cfg.Target()
	if err != nil {
		return nil, fmt.Errorf("endpoint %q: %w", cfg.ID, err)
	}
	base, err := url.Parse(a.cfg.Connect.URL)
	if err != nil {
		return nil, fmt.Errorf("connect.url: %w", err)
	}
	base.Path = strings.TrimSuffix(base.Path, "/") + protocol.UpstreamPathPrefix + cfg.ID
	base.RawPath = ""
	e := &endpoint{
		agent:    a,
		id:       cfg.ID,
		protocol: cfg.Protocol,
		url:      base.String(),
		logger:   a.logger.With("endpoint", cfg.ID),
		sessions: make(map[*yamux.Session]struct{}),
	}
	switch cfg.Protocol {
	case config.ProtocolHTTP:
		e.server = newHTTPServer(target, e.logger)
	case config.ProtocolTCP:
		e.server = newTCPServer(target.Host, &e.wg, e.logger)
	}
	return e, nil
}

// run keeps the endpoint registered until ctx is done, then drains. It
// returns an error only when the server refused the endpoint for good.
func (e *endpoint) run(ctx context.Context) error {
	defer e.shutdown()
	failures := 0
	var lastErr string // the last connection failure logged as a warning
	var lastWarned time.Time
	for {
		sess, goingAway, err := e.connect(ctx)
		if ctx.Err() != nil {
			if sess != nil {
				e.start(sess)
			}
			return nil
		}
		if err != nil {
			if isPermanent(err) {
				e.logger.Error("server refused the endpoint; not retrying", "error", err)
				return err
			}
			failures++
			if errors.Is(err, syscall.ECONNREFUSED) || isUnavailable(err) {
				// Nothing listens, or a draining server answers 503 (a
				// server restarting): either costs the server next to
				// nothing, so keep retrying often enough to be back soon
				// after it listens again. Backing off while it drains
				// would leave the agent away for seconds after the new
				// process is up.
				failures = min(failures, refusedMaxAttempt)
			}
			delay := backoff(failures, e.agent.random)
			level := slog.LevelWarn
			if msg := err.Error(); msg == lastErr && time.Since(lastWarned) < repeatWarnEvery {
				level = slog.LevelDebug // the same failure again: keep the log readable
			} else {
				lastErr, lastWarned = msg, time.Now()
			}
			e.logger.Log(ctx, level, "cannot connect to the server; retrying", "url", e.url, "error", err, "attempt", failures, "retry_in", delay.String())
			if !sleep(ctx, delay) {
				return nil
			}
			continue
		}

		connected := time.Now()
		e.start(sess)
		e.logger.Info("endpoint registered", "url", e.url)
		e.markRegistered()

		var reason string
		select {
		case <-ctx.Done():
			return nil
		case <-sess.CloseChan():
			reason = "connection closed"
		case <-goingAway:
			reason = "server is going away"
		}
		if time.Since(connected) >= e.agent.healthyAfter {
			failures = 0
			e.logger.Info("upstream connection ended; reconnecting", "reason", reason)
			continue
		}
		failures++
		delay := backoff(failures, e.agent.random)
		e.logger.Warn("upstream connection ended soon after it was made; reconnecting", "reason", reason, "attempt", failures, "retry_in", delay.String())
		if !sleep(ctx, delay) {
			return nil
		}
	}
}

// markRegistered reports the endpoint's first registration to the agent.
// Only run calls it.
func (e *endpoint) markRegistered() {
	if !e.registered {
		e.registered = true
		e.agent.markRegistered()
	}
}

// connect dials the upstream route and starts a yamux client session over
// it. goingAway is closed when the server sends yamux GoAway.
func (e *endpoint) connect(ctx context.Context) (sess *yamux.Session, goingAway <-chan struct{}, err error) {
	dialCtx, cancel := context.WithTimeout(ctx, e.agent.cfg.Connect.Timeout)
	defer cancel()
	header := http.Header{protocol.EndpointProtocolHeader: {e.protocol}}
	// Read for every connection: a token file may have been renewed.
	token, err := e.agent.cfg.Connect.BearerToken("connect")
	if err != nil {
		return nil, nil, err
	}
	if token != "" {
		header.Set("Authorization", "Bearer "+token)
	}
	conn, err := protocol.DialSession(dialCtx, e.url, header, e.agent.server)
	if err != nil {
		var refused *protocol.DialError
		if errors.As(err, &refused) {
			return nil, nil, &refusedError{endpoint: e.id, url: e.url, status: refused.StatusCode, body: refused.Body}
		}
		var netErr *net.OpError
		if errors.As(err, &netErr) {
			return nil, nil, netErr // "dial tcp host:port: connect: connection refused"
		}
		return nil, nil, err
	}
	watcher := newGoAwayWatcher(conn)
	cfg := protocol.YamuxConfig(e.logger)
	cfg.KeepAliveInterval = e.agent.cfg.KeepaliveInterval
	sess, err = yamux.Client(watcher, cfg)
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("starting the yamux session: %w", err)
	}
	return sess, watcher.goingAway, nil
}

// start tracks sess and serves its streams in the background.
func (e *endpoint) start(sess *yamux.Session) {
	e.mu.Lock()
	e.sessions[sess] = struct{}{}
	e.mu.Unlock()
	e.wg.Go(func() { e.server.serve(sess) })
	e.wg.Go(func() {
		<-sess.CloseChan()
		e.mu.Lock()
		delete(e.sessions, sess)
		e.mu.Unlock()
	})
}

// shutdown drains every live session within the grace period and waits
// for everything serving them to finish.
func (e *endpoint) shutdown() {
	deadline := time.Now().Add(e.agent.cfg.GracePeriod)
	e.server.drain()
	e.mu.Lock()
	live := make([]*yamux.Session, 0, len(e.sessions))
	for sess := range e.sessions {
		live = append(live, sess)
	}
	e.mu.Unlock()
	if len(live) > 0 {
		e.logger.Info("draining: finishing in-flight streams", "connections", len(live), "grace_period", e.agent.cfg.GracePeriod.String())
	}
	var wg sync.WaitGroup
	for _, sess := range live {
		wg.Go(func() {
			if !drainSession(sess, deadline) {
				e.logger.Warn("grace period over; closing the connection with streams still open")
			}
		})
	}
	wg.Wait()
	e.wg.Wait()
	e.server.close()
}

// drainSession tells the server to open no more streams on sess, waits
// until its streams are done or deadline passes, then closes it. It
// reports whether the streams finished in time.
func drainSession(sess *yamux.Session, deadline time.Time) bool {
	defer sess.Close()
	// Streams the server opens after it reads GoAway are refused, and
	// yamux resets any that arrive later, so NumStreams only falls.
	if err := sess.GoAway(); err != nil {
		return sess.NumStreams() == 0
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	ticker := time.NewTicker(drainPollInterval)
	defer ticker.Stop()
	for sess.NumStreams() > 0 {
		select {
		case <-ticker.C:
		case <-sess.CloseChan():
			return true
		case <-timer.C:
			return false
		}
	}
	return true
}

// sleep waits for d or until ctx is done; it reports whether d elapsed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// refusedError is a handshake the server answered with an HTTP error.
type refusedError struct {
	endpoint string
	url      string
	status   int
	body     string
}

func (e *refusedError) Error() string {
	msg := strings.TrimSpace(e.body)
	var jsonErr struct {
		Error string `json:"error"`
	}
	if json.Unmarshal([]byte(msg), &jsonErr) == nil && jsonErr.Error != "" {
		msg = jsonErr.Error
	}
	if msg == "" {
		msg = http.StatusText(e.status)
	}
	var hint string
	switch {
	case e.status == http.StatusBadRequest:
		hint = "check the endpoint ID and that connect.url points at the server's upstream port (8001)"
	case e.status == http.StatusUnauthorized:
		hint = "the server requires a valid token: check connect.token or connect.token_file"
	case e.status == http.StatusForbidden:
		hint = "the token's pico.endpoints claim does not list this endpoint"
	case e.status == http.StatusNotFound:
		hint = "check that connect.url points at the server's upstream port (8001)"
	case e.status >= 500:
		hint = "the server is unavailable or shutting down"
	}
	s := fmt.Sprintf("endpoint %q: the server at %s refused the registration: %d %s", e.endpoint, e.url, e.status, msg)
	if hint != "" {
		s += "; " + hint
	}
	return s
}

// isUnavailable reports whether the server refused the handshake with 503
// Service Unavailable, as a draining server does.
func isUnavailable(err error) bool {
	var refused *refusedError
	return errors.As(err, &refused) && refused.status == http.StatusServiceUnavailable
}

// isPermanent reports whether retrying cannot help: the server rejected
// the request itself (400, for example an invalid endpoint ID).
func isPermanent(err error) bool {
	var refused *refusedError
	return errors.As(err, &refused) && refused.status == http.StatusBadRequest
}
