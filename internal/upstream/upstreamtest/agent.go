// Package upstreamtest is a minimal upstream agent for tests and
// benchmarks. It speaks the real protocol — a WebSocket to the upstream
// port carrying a yamux client session whose accepted streams are served
// as HTTP/1.1 (HTTP endpoints) or raw byte streams (TCP endpoints) — but
// none of the real agent's reconnecting or configuration.
//
// It is built from Piko's agent's parts: upstream hashicorp/yamux (not
// Pico's fork) with its default configuration, and net/http's server
// serving the session as a listener. Every server test that uses it
// checks Pico's side of the wire against the yamux Piko's agents run.
package upstreamtest

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/yamux"

	"github.com/pico-proxy/pico/internal/protocol"
)

// URL is the upstream URL an agent dials to register endpoint at the
// upstream listener addr (host:port), with Pico's route.
func URL(addr, endpoint string) string {
	return "ws://" + addr + protocol.UpstreamPathPrefix + endpoint
}

// PikoURL is URL with Piko's route.
func PikoURL(addr, endpoint string) string {
	return "ws://" + addr + protocol.PikoUpstreamPathPrefix + endpoint
}

// Agent is one registered upstream connection.
type Agent struct {
	// Session is the agent's yamux client session.
	Session *yamux.Session
	conn    *freezableConn
	server  *http.Server
	closed  chan struct{}
	once    sync.Once
	streams sync.WaitGroup
}

// ServeHTTP registers at url and serves every stream the server opens as
// one HTTP/1.1 connection handled by h. It returns once the server
// answered 101: the endpoint is then registered.
func ServeHTTP(ctx context.Context, url string, h http.Handler) (*Agent, error) {
	a, err := dial(ctx, url, protocol.ProtocolHTTP)
	if err != nil {
		return nil, err
	}
	a.server = &http.Server{Handler: h, ErrorLog: slog.NewLogLogger(slog.DiscardHandler, slog.LevelError)}
	go func() { _ = a.server.Serve(a.Session) }()
	return a, nil
}

// ServeTCP registers at url as a TCP endpoint and hands every stream the
// server opens to serve (in its own goroutine), as a TCP agent would pipe
// it to its service. serve must close the conn when done.
func ServeTCP(ctx context.Context, url string, serve func(net.Conn)) (*Agent, error) {
	return ServeStreams(ctx, url, protocol.ProtocolTCP, serve)
}

// ServeStreams is ServeTCP for an agent that says it serves the endpoint
// with proto (protocol.ProtocolUnknown: says nothing, as Piko's agents):
// serve gets every stream's raw bytes, e.g. to speak HTTP/1.1 itself.
func ServeStreams(ctx context.Context, url string, proto protocol.EndpointProtocol, serve func(net.Conn)) (*Agent, error) {
	a, err := dial(ctx, url, proto)
	if err != nil {
		return nil, err
	}
	go func() {
		for {
			c, err := a.Session.Accept()
			if err != nil {
				return
			}
			a.streams.Go(func() { serve(c) })
		}
	}()
	return a, nil
}

func dial(ctx context.Context, url string, proto protocol.EndpointProtocol) (*Agent, error) {
	var header http.Header
	if proto != protocol.ProtocolUnknown {
		header = http.Header{protocol.EndpointProtocolHeader: {string(proto)}}
	}
	conn, err := protocol.DialSession(ctx, url, header, nil)
	if err != nil {
		return nil, err
	}
	fc := &freezableConn{Conn: conn}
	cfg := yamux.DefaultConfig()
	cfg.LogOutput = nil
	cfg.Logger = slog.NewLogLogger(slog.DiscardHandler, slog.LevelDebug)
	session, err := yamux.Client(fc, cfg)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	a := &Agent{Session: session, conn: fc, closed: make(chan struct{})}
	go func() {
		<-session.CloseChan()
		a.once.Do(func() { close(a.closed) })
	}()
	return a, nil
}

// Done is closed when the session ends (closed by either side).
func (a *Agent) Done() <-chan struct{} { return a.closed }

// GoAwayReceived reports whether the server sent yamux GoAway: the agent
// may then open no stream.
func (a *Agent) GoAwayReceived() bool {
	s, err := a.Session.OpenStream()
	if err == nil {
		_ = s.Close()
		return false
	}
	return errors.Is(err, yamux.ErrRemoteGoAway)
}

// Freeze makes the agent stop reading its connection, as a hung process
// or a host gone without a reset would: the connection stays open, and
// nothing the server sends (streams, pings) is answered until Thaw.
func (a *Agent) Freeze() { a.conn.freeze() }

// Thaw undoes Freeze.
func (a *Agent) Thaw() { a.conn.thaw() }

// freezableConn holds back what it read while frozen. A read costs an
// atomic load (benchmarks use this agent); only freezing takes the lock.
type freezableConn struct {
	net.Conn
	mu     sync.Mutex                    // serialises freeze and thaw
	thawed atomic.Pointer[chan struct{}] // non-nil while frozen
}

func (c *freezableConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if gate := c.thawed.Load(); gate != nil {
		<-*gate
	}
	return n, err
}

func (c *freezableConn) freeze() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.thawed.Load() == nil {
		gate := make(chan struct{})
		c.thawed.Store(&gate)
	}
}

func (c *freezableConn) thaw() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gate := c.thawed.Swap(nil); gate != nil {
		close(*gate)
	}
}

func (c *freezableConn) Close() error {
	c.thaw()
	return c.Conn.Close()
}

// Close ends the session.
func (a *Agent) Close() error {
	err := a.Session.Close()
	<-a.closed
	return err
}

// Echo serves a TCP stream by echoing it back.
func Echo(c net.Conn) {
	defer c.Close()
	_, _ = io.Copy(c, c)
}
