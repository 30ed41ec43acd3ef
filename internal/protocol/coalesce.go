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
