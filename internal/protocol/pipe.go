package protocol

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pico-proxy/pico/internal/httpwire"
	"github.com/pico-proxy/pico/internal/yamux"
)

// Pipe copies bytes between a and b in both directions and returns once
// both directions have ended, with both connections closed. It is the one
// bidirectional copy of Pico: the agent's and the forwarder's TCP tunnels,
// the proxy's TCP route and its WebSocket (upgrade) pass-through.
//
// Half-close is passed through where the connections support it: when one
// side's reads end cleanly, the other side's write half is closed
// (CloseWrite on TCP, Unix and TLS connections; Close on a yamux stream,
// which only closes its write half) and the opposite direction keeps
// flowing.
//
// A WebSocket byte stream cannot be half-closed. A clean end of reads from
// one means it is closed entirely, so the other side's write half is
// closed and the pipe ends. When the other side ends its writes, the
// WebSocket cannot be told; the opposite direction keeps flowing as long
// as it is never idle for longer than linger (so a client that
// half-closes still gets its answer), then the pipe ends. A linger of 0
// ends the pipe at once. Any error closes both connections at once, and a
// read still waiting on either is cut short through its read deadline
// (closing a yamux stream only ends its write half).
//
// A connection type that wraps another (to read buffered bytes first, say)
// hides its half-close: the pipe then ends when either direction ends.
func Pipe(a, b net.Conn, linger time.Duration) {
	var once sync.Once
	abort := func() {
		once.Do(func() {
			_ = a.SetReadDeadline(longAgo)
			_ = b.SetReadDeadline(longAgo)
			a.Close()
			b.Close()
		})
	}
	ra, rb := &lingerReader{conn: a}, &lingerReader{conn: b}
	done := make(chan struct{})
	go func() {
		defer close(done)
		pipeOneWay(b, ra, rb, linger, abort)
	}()
	pipeOneWay(a, rb, ra, linger, abort)
	<-done
	abort()
}

// pipeOneWay copies src to dst until src ends, then half-closes dst,
// bounds the other direction (dstReader) by linger, or aborts the pipe
// (see Pipe).
func pipeOneWay(dst net.Conn, src, dstReader *lingerReader, linger time.Duration, abort func()) {
	buf := httpwire.Buffers.Get()
	_, err := io.CopyBuffer(dst, src, buf)
	httpwire.Buffers.Put(buf)
	if err != nil {
		abort()
		return
	}
	switch {
	case canHalfClose(src.conn) && canHalfClose(dst):
		closeWrite(dst)
	case canHalfClose(src.conn) && linger > 0:
		dstReader.startLinger(linger)
	default:
		// src is gone entirely, or dst cannot learn that src ended and
		// may not linger: nothing more is to flow.
		closeWrite(dst)
		abort()
	}
}

// longAgo is a read deadline in the past: it ends a waiting read at once.
var longAgo = time.Unix(1, 0)

// lingerReader reads from conn; once lingering, every read must complete
// within the linger time of the previous one.
type lingerReader struct {
	conn   net.Conn
	linger atomic.Int64 // time.Duration; 0 while not lingering
}

func (r *lingerReader) Read(p []byte) (int, error) {
	n, err := r.conn.Read(p)
	if l := time.Duration(r.linger.Load()); l > 0 && n > 0 {
		r.conn.SetReadDeadline(time.Now().Add(l))
	}
	return n, err
}

func (r *lingerReader) startLinger(l time.Duration) {
	r.linger.Store(int64(l))
	r.conn.SetReadDeadline(time.Now().Add(l))
}

type closeWriter interface{ CloseWrite() error }

func canHalfClose(c net.Conn) bool {
	switch c.(type) {
	case closeWriter, *yamux.Stream:
		return true
	}
	return false
}

func closeWrite(c net.Conn) {
	switch c := c.(type) {
	case closeWriter:
		c.CloseWrite()
	case *yamux.Stream:
		c.Close() // sends FIN; reads continue until the peer's FIN
	}
}
