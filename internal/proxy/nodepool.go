package proxy

import (
	"context"
	"net"
	"sync"
	"time"
)

// Connections to other nodes' proxy ports carry forwarded requests as
// HTTP/1.1 with keep-alive, exchanged by the request's own goroutine
// (exchangeOver) rather than through a transport's reader and writer
// goroutines.
const (
	// forwardDialTimeout bounds connecting to another node.
	forwardDialTimeout = 3 * time.Second
	// maxIdlePerNode caps the idle connections kept per node.
	maxIdlePerNode = 256
	// nodeIdleTimeout closes connections idle for longer (below the
	// proxy port's idle timeout, so that it is the forwarding side that
	// closes them).
	nodeIdleTimeout = 30 * time.Second
	// probeAfter: a connection idle for longer is checked (one
	// non-blocking peek) before it is reused.
	probeAfter = 100 * time.Millisecond
	// forwardTimeoutMargin is added to the gateway timeout when waiting
	// for another node: it answers 504 itself after the gateway timeout.
	forwardTimeoutMargin = 2 * time.Second
)

// DialFunc connects to another node's proxy port.
type DialFunc func(ctx context.Context, addr string) (net.Conn, error)

// nodePool keeps idle keep-alive connections to other nodes by address.
type nodePool struct {
	dial   DialFunc
	mu     sync.Mutex
	idle   map[string][]idleConn
	closed bool
}

type idleConn struct {
	conn  net.Conn
	since time.Time
}

// newNodePool returns a pool dialing with dial (nil: plain TCP).
func newNodePool(dial DialFunc) *nodePool {
	if dial == nil {
		d := &net.Dialer{Timeout: forwardDialTimeout, KeepAlive: 30 * time.Second}
		dial = func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
	}
	return &nodePool{dial: dial, idle: make(map[string][]idleConn)}
}

// get returns an idle connection to addr that the peer has not closed, or
// a new one. reused tells which.
func (np *nodePool) get(ctx context.Context, addr string) (conn net.Conn, reused bool, err error) {
	for {
		np.mu.Lock()
		conns := np.idle[addr]
		n := len(conns)
		if n == 0 {
			np.mu.Unlock()
			break
		}
		idle := conns[n-1]
		conns[n-1] = idleConn{}
		np.idle[addr] = conns[:n-1]
		np.mu.Unlock()
		switch idleFor := time.Since(idle.since); {
		case idleFor < probeAfter:
			// Just returned: under load most reuses, spared a syscall.
			// A peer closes idle connections only when its drain ends
			// (seconds after it stopped keeping connections alive) or
			// after its idle timeout (longer than ours).
			return idle.conn, true, nil
		case idleFor < nodeIdleTimeout && connOpen(idle.conn):
			return idle.conn, true, nil
		}
		_ = idle.conn.Close()
	}
	conn, err = np.dial(ctx, addr)
	return conn, false, err
}

// put keeps conn for another request to addr, or closes it.
func (np *nodePool) put(addr string, conn net.Conn) {
	now := time.Now()
	np.mu.Lock()
	conns := np.idle[addr]
	// Drop the connections that idled too long (the oldest come first).
	expired := 0
	for expired < len(conns) && now.Sub(conns[expired].since) >= nodeIdleTimeout {
		_ = conns[expired].conn.Close()
		expired++
	}
	if expired > 0 {
		conns = append(conns[:0], conns[expired:]...)
	}
	if np.closed || len(conns) >= maxIdlePerNode {
		np.idle[addr] = conns
		np.mu.Unlock()
		_ = conn.Close()
		return
	}
	np.idle[addr] = append(conns, idleConn{conn: conn, since: now})
	np.mu.Unlock()
}

// closeIdle closes every idle connection; later ones are closed when
// returned.
func (np *nodePool) closeIdle() {
	np.mu.Lock()
	idle := np.idle
	np.idle = make(map[string][]idleConn)
	np.closed = true
	np.mu.Unlock()
	for _, conns := range idle {
		for _, c := range conns {
			_ = c.conn.Close()
		}
	}
}
