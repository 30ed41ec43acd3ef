package protocol

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/coder/websocket"
)

// errNoDeadlines is returned by a SessionConn's deadline methods.
var errNoDeadlines = errors.New("a session's WebSocket takes no deadlines (yamux bounds its own writes and detects dead peers by keepalive)")

// sessionConn is the WebSocket of an upstream connection as the byte
// stream under a yamux session: every binary message read is appended
// to the stream, every Write is sent as one binary message.
//
// It is websocket.NetConn without deadlines. NetConn honours deadlines
// by watching a cancellable context on every Read and Write, a
// registration and an allocation each; yamux never sets a deadline on
// its connection (it times its own writes and keeps the session alive
// with pings), so a session's reads and writes go to the WebSocket with
// a context that is never done. Reads come from one goroutine (yamux's
// receive loop) and writes from one at a time (the session's frame
// writer).
type sessionConn struct {
	net.Conn // websocket.NetConn: addresses and Close
	ws       *websocket.Conn
	msg      io.Reader // the message being read
	eof      bool
}

func newSessionConn(ws *websocket.Conn) net.Conn {
	return &sessionConn{Conn: websocket.NetConn(context.Background(), ws, websocket.MessageBinary), ws: ws}
}

func (c *sessionConn) Read(p []byte) (int, error) {
	for {
		if c.eof {
			return 0, io.EOF
		}
		if c.msg == nil {
			typ, msg, err := c.ws.Reader(context.Background())
			if err != nil {
				switch websocket.CloseStatus(err) {
				case websocket.StatusNormalClosure, websocket.StatusGoingAway:
					c.eof = true
					return 0, io.EOF
				}
				return 0, err
			}
			if typ != websocket.MessageBinary {
				err := fmt.Errorf("unexpected %v message on an upstream connection; only binary messages carry the session", typ)
				_ = c.ws.Close(websocket.StatusUnsupportedData, err.Error())
				return 0, err
			}
			c.msg = msg
		}
		n, err := c.msg.Read(p)
		if err == io.EOF {
			c.msg, err = nil, nil
		}
		if n > 0 || err != nil {
			return n, err
		}
	}
}

func (c *sessionConn) Write(p []byte) (int, error) {
	if err := c.ws.Write(context.Background(), websocket.MessageBinary, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// CloseNow closes the WebSocket without the close handshake, which waits
// for the peer's answer (seconds, from a peer that stopped answering).
func (c *sessionConn) CloseNow() error { return c.ws.CloseNow() }

func (c *sessionConn) SetDeadline(time.Time) error      { return errNoDeadlines }
func (c *sessionConn) SetReadDeadline(time.Time) error  { return errNoDeadlines }
func (c *sessionConn) SetWriteDeadline(time.Time) error { return errNoDeadlines }

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
