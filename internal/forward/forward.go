// Package forward is `pico forward`: it listens on a local TCP address
// and carries every accepted connection to a TCP endpoint through a Pico
// server's proxy port, as a WebSocket to
// <connect.url>/_pico/v1/tcp/<endpoint> whose byte stream is the TCP
// connection.
//
// When Serve's context is cancelled (SIGTERM) the listener closes at once;
// open connections get the grace period to finish, then are closed.
package forward

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pico-proxy/pico/internal/config"
	"github.com/pico-proxy/pico/internal/protocol"
	"github.com/pico-proxy/pico/internal/tlsconfig"
)

// halfCloseLinger is how long the answer to a client that ended its side of
// the connection may stay idle before the connection closes: a WebSocket
// cannot carry a half-close, so the forwarder cannot tell the endpoint
// that the client finished, nor tell a half-close (the client still
// reads) from a full close.
const halfCloseLinger = 5 * time.Second

// Forwarder forwards the connections accepted on one local address to one
// endpoint.
type Forwarder struct {
	cfg      config.Forward
	endpoint string
	url      string
	server   *http.Client // dials the server (connect.tls.*)
	listener net.Listener
	logger   *slog.Logger
	linger   time.Duration // halfCloseLinger; tests shorten it

	// stop is cancelled when the grace period is over: it aborts pending
	// handshakes; open connections are closed through conns.
	stop    context.Context
	stopNow context.CancelFunc
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   map[net.Conn]struct{}
}

// Listen validates its arguments and starts listening on localAddr (see
// ParseLocalAddr) for connections to forward to endpoint.
func Listen(cfg config.Forward, localAddr, endpoint string, logger *slog.Logger) (*Forwarder, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("forward configuration: %w", err)
	}
	if err := protocol.ValidateEndpointID(endpoint); err != nil {
		return nil, fmt.Errorf("ENDPOINT: %w", err)
	}
	addr, err := ParseLocalAddr(localAddr)
	if err != nil {
		return nil, fmt.Errorf("LOCAL_ADDR: %w", err)
	}
	base, err := url.Parse(cfg.Connect.URL)
	if err != nil {
		return nil, fmt.Errorf("connect.url: %w", err)
	}
	base.Path = strings.TrimSuffix(base.Path, "/") + protocol.TCPPathPrefix + endpoint
	base.RawPath = ""
	server, err := tlsconfig.WebSocketClient(cfg.Connect.TLS, "connect.tls", logger)
	if err != nil {
		return nil, fmt.Errorf("forward configuration: %w", err)
	}
	if _, err := cfg.Connect.BearerToken("connect"); err != nil {
		return nil, fmt.Errorf("forward configuration: %w", err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("LOCAL_ADDR: listening on %s: %w", addr, err)
	}
	stop, stopNow := context.WithCancel(context.Background())
	return &Forwarder{
		cfg:      cfg,
		endpoint: endpoint,
		url:      base.String(),
		server:   server,
		listener: l,
		logger:   logger.With("subsystem", "forward", "endpoint", endpoint),
		linger:   halfCloseLinger,
		stop:     stop,
		stopNow:  stopNow,
		conns:    make(map[net.Conn]struct{}),
	}, nil
}

// ParseLocalAddr turns LOCAL_ADDR into a listen address: a port ("6000")
// listens on localhost only, host:port as given (":6000" on every
// interface). Port 0 picks a free port.
func ParseLocalAddr(addr string) (string, error) {
	const forms = "use a port (6000) or host:port (127.0.0.1:6000)"
	if addr == "" {
		return "", errors.New("empty address; " + forms)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		addr = net.JoinHostPort("localhost", addr)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || strings.ContainsAny(host, "/ ") {
		return "", fmt.Errorf("%q is not a port or host:port; %s", addr, forms)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 || strings.ContainsAny(port, "+-") {
		return "", fmt.Errorf("port %q is not a number from 0 to 65535; %s", port, forms)
	}
	return addr, nil
}

// Addr is the address the forwarder listens on.
func (f *Forwarder) Addr() net.Addr { return f.listener.Addr() }

// Serve forwards connections until ctx is cancelled, then stops accepting,
// gives open connections the grace period to finish, closes what is left
// and returns nil.
func (f *Forwarder) Serve(ctx context.Context) error {
	f.logger.Info("forwarding", "listen", f.Addr().String(), "url", f.url)
	go func() {
		<-ctx.Done()
		f.listener.Close()
	}()
	for {
		local, err := f.listener.Accept()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			f.listener.Close()
			f.shutdown()
			return fmt.Errorf("accepting on %s: %w", f.Addr(), err)
		}
		if !f.track(local) {
			local.Close()
			continue
		}
		f.wg.Go(func() {
			defer f.untrack(local)
			f.forward(local)
		})
	}
	f.shutdown()
	return nil
}

// shutdown waits for open connections for the grace period, then closes
// them.
func (f *Forwarder) shutdown() {
	f.mu.Lock()
	open := len(f.conns)
	f.mu.Unlock()
	if open > 0 {
		f.logger.Info("draining: waiting for open connections", "connections", open, "grace_period", f.cfg.GracePeriod.String())
	}
	finished := make(chan struct{})
	go func() {
		f.wg.Wait()
		close(finished)
	}()
	timer := time.NewTimer(f.cfg.GracePeriod)
	defer timer.Stop()
	select {
	case <-finished:
	case <-timer.C:
		f.logger.Warn("grace period over; closing open connections")
		f.stopNow()
		f.mu.Lock()
		for c := range f.conns {
			c.Close()
		}
		f.mu.Unlock()
		<-finished
	}
	f.stopNow()
	f.logger.Info("forwarder stopped")
}

// forward carries one local connection to the endpoint.
func (f *Forwarder) forward(local net.Conn) {
	ctx, cancel := context.WithTimeout(f.stop, f.cfg.Connect.Timeout)
	defer cancel()
	header := http.Header{}
	// Read for every connection: a token file may have been renewed.
	token, err := f.cfg.Connect.BearerToken("connect")
	if err != nil {
		f.logger.Warn("cannot read the token", "error", err)
		local.Close()
		return
	}
	if token != "" {
		header.Set("Authorization", "Bearer "+token)
	}
	remote, err := protocol.DialWebSocket(ctx, f.url, header, f.server)
	if err != nil {
		var refused *protocol.DialError
		if errors.As(err, &refused) {
			f.logger.Warn("the server refused the connection", "url", f.url, "status", refused.StatusCode, "error", strings.TrimSpace(refused.Body))
		} else {
			f.logger.Warn("cannot reach the server", "url", f.url, "error", err)
		}
		local.Close()
		return
	}
	if !f.track(remote) {
		remote.Close()
		local.Close()
		return
	}
	defer f.untrack(remote)
	f.logger.Debug("connection opened", "client", local.RemoteAddr().String())
	protocol.Pipe(local, remote, f.linger)
	f.logger.Debug("connection closed", "client", local.RemoteAddr().String())
}

// track records c so the end of the grace period can close it; it
// reports false once that has happened.
func (f *Forwarder) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stop.Err() != nil {
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *Forwarder) untrack(c net.Conn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.conns, c)
}
