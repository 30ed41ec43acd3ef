package protocol

import (
	"net"

	"github.com/pico-proxy/pico/internal/coalesce"
)

// CoalesceWrites returns c with its writes batched by a coalesce.Writer:
// yamux writes every frame's header and body separately, and a WebSocket
// byte stream turns every write into one message and one system call;
// batched, a burst of frames costs one. Nothing is delayed.
//
// Close sends what is pending (for at most coalesce.CloseFlush) and
// closes c.
func CoalesceWrites(c net.Conn) net.Conn {
	return &coalescingConn{Conn: c, w: coalesce.NewWriter(c)}
}

type coalescingConn struct {
	net.Conn
	w *coalesce.Writer
}

func (c *coalescingConn) Write(p []byte) (int, error) { return c.w.Write(p) }

// Close sends what is pending, then closes the connection.
func (c *coalescingConn) Close() error {
	_ = c.w.Close()
	return c.Conn.Close()
}

// CloseNow closes the connection at once, dropping what is pending.
func (c *coalescingConn) CloseNow() error {
	err := CloseNow(c.Conn)
	_ = c.w.Close() // fails at once on the closed connection
	return err
}

// CloseNow closes c without waiting on its peer: without a close
// handshake and without sending pending writes, where c (an upstream
// connection from AcceptSession or DialSession) offers that; otherwise
// with Close.
func CloseNow(c net.Conn) error {
	if now, ok := c.(interface{ CloseNow() error }); ok {
		return now.CloseNow()
	}
	return c.Close()
}
