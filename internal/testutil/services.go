package testutil

import (
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// ServeTCP listens on a loopback port and runs handle for every accepted
// connection, closing the connection when handle returns. When the test
// ends the listener closes and the test waits (at most StopTimeout) for
// the handlers to return.
func ServeTCP(t testing.TB, handle func(net.Conn)) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		l.Close()
		done := make(chan struct{})
		go func() {
			wg.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(StopTimeout):
			t.Errorf("the connections to %s were still being served", l.Addr())
		}
	})
	wg.Go(func() { // counted, so that no handler starts after Wait
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				handle(c)
			})
		}
	})
	return l
}

// WebSocketEcho accepts a WebSocket and answers every message with
// "echo: " and the message, until the client goes.
func WebSocketEcho(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	for {
		typ, msg, err := c.Read(r.Context())
		if err != nil {
			return
		}
		if err := c.Write(r.Context(), typ, append([]byte("echo: "), msg...)); err != nil {
			return
		}
	}
}
