// Package connpool keeps idle keep-alive connections by address, for
// the clients that exchange HTTP/1.1 over connections they manage
// themselves: the proxy forwarding to other nodes and the agent calling
// its local service. It is what http.Transport's idle pool does without
// the transport's reader and writer goroutines: a connection is used by
// one request's goroutine at a time, and one that idled for a while is
// checked (a non-blocking peek) before it is reused, so a peer's close
// is noticed without a goroutine reading every idle connection.
package connpool

import (
	"context"
	"net"
	"sync"
	"time"
)

// DialFunc connects to addr.
type DialFunc func(ctx context.Context, addr string) (net.Conn, error)

// Config configures a Pool. Zero fields take the documented defaults.
type Config struct {
	// Dial connects to an address. Default: TCP with DialTimeout.
	Dial DialFunc
	// DialTimeout bounds the default Dial. Default 10s.
	DialTimeout time.Duration
	// MaxIdlePerAddr caps the idle connections kept per address.
	// Default 256.
	MaxIdlePerAddr int
	// IdleTimeout closes connections idle for longer. Keep it below the
	// peer's own idle timeout, so that it is this side that closes them.
	// Default 30s.
	IdleTimeout time.Duration
	// ProbeAfter: a connection idle for longer is peeked at before it is
	// reused (one system call); one returned more recently is reused as
	// is, which spares the call to nearly every reuse under load. A peer
	// closes a connection it has kept alive only when it shuts down or
	// after its idle timeout, both far longer than this. Default 100ms.
	ProbeAfter time.Duration
}

// Defaults of Config.
const (
	DefaultDialTimeout    = 10 * time.Second
	DefaultMaxIdlePerAddr = 256
	DefaultIdleTimeout    = 30 * time.Second
	DefaultProbeAfter     = 100 * time.Millisecond
)

// Pool keeps idle connections by address. It is safe for concurrent use.
type Pool struct {
	cfg    Config
	mu     sync.Mutex
	idle   map[string][]idleConn
	closed bool
}

type idleConn struct {
	conn  net.Conn
	since time.Time
}

// New returns a pool configured by cfg.
func New(cfg Config) *Pool {
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.MaxIdlePerAddr <= 0 {
		cfg.MaxIdlePerAddr = DefaultMaxIdlePerAddr
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.ProbeAfter <= 0 {
		cfg.ProbeAfter = DefaultProbeAfter
	}
	if cfg.Dial == nil {
		d := &net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}
		cfg.Dial = func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
	}
	return &Pool{cfg: cfg, idle: make(map[string][]idleConn)}
}

// Get returns an idle connection to addr that the peer has not closed,
// or a new one; reused tells which. The most recently returned
// connection comes first.
func (p *Pool) Get(ctx context.Context, addr string) (conn net.Conn, reused bool, err error) {
	for {
		p.mu.Lock()
		conns := p.idle[addr]
		n := len(conns)
		if n == 0 {
			p.mu.Unlock()
			break
		}
		idle := conns[n-1]
		conns[n-1] = idleConn{}
		p.idle[addr] = conns[:n-1]
		p.mu.Unlock()
		switch idleFor := time.Since(idle.since); {
		case idleFor < p.cfg.ProbeAfter:
			return idle.conn, true, nil
		case idleFor < p.cfg.IdleTimeout && peerOpen(idle.conn):
			return idle.conn, true, nil
		}
		_ = idle.conn.Close()
	}
	conn, err = p.cfg.Dial(ctx, addr)
	return conn, false, err
}

// Put keeps conn, which must be ready for another request, for reuse
// with addr, or closes it when the pool is full or closed.
func (p *Pool) Put(addr string, conn net.Conn) {
	now := time.Now()
	p.mu.Lock()
	conns := p.idle[addr]
	// Drop the connections that idled too long (the oldest come first).
	expired := 0
	for expired < len(conns) && now.Sub(conns[expired].since) >= p.cfg.IdleTimeout {
		_ = conns[expired].conn.Close()
		expired++
	}
	if expired > 0 {
		conns = append(conns[:0], conns[expired:]...)
	}
	if p.closed || len(conns) >= p.cfg.MaxIdlePerAddr {
		p.idle[addr] = conns
		p.mu.Unlock()
		_ = conn.Close()
		return
	}
	p.idle[addr] = append(conns, idleConn{conn: conn, since: now})
	p.mu.Unlock()
}

// Close closes every idle connection; connections returned later are
// closed as they come back.
func (p *Pool) Close() {
	p.mu.Lock()
	idle := p.idle
	p.idle = make(map[string][]idleConn)
	p.closed = true
	p.mu.Unlock()
	for _, conns := range idle {
		for _, c := range conns {
			_ = c.conn.Close()
		}
	}
}
