package protocol

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/pico-proxy/pico/internal/yamux"
)

// sessionPair returns both ends of an upstream connection over a real
// WebSocket on loopback.
func sessionPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	accepted := make(chan net.Conn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := AcceptSession(w, r)
		require.NoError(t, err)
		accepted <- c
		<-r.Context().Done() // the handler's return would not end a hijacked connection anyway
	}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	client, err := DialSession(ctx, srv.URL, nil, nil)
	require.NoError(t, err)
	server = <-accepted
	t.Cleanup(func() {
		go client.Close() // each side's close handshake needs the other reading
		server.Close()
	})
	return server, client
}

func TestSessionConnCarriesYamux(t *testing.T) {
	serverConn, clientConn := sessionPair(t)
	cfg := YamuxConfig(slog.New(slog.DiscardHandler))
	server, err := yamux.Server(serverConn, cfg)
	require.NoError(t, err)
	client, err := yamux.Client(clientConn, cfg)
	require.NoError(t, err)
	go func() {
		for {
			s, err := client.AcceptStream()
			if err != nil {
				return
			}
			go func() { io.Copy(s, s); s.Close() }()
		}
	}()
	payload := strings.Repeat("0123456789abcdef", 64<<10) // 1 MiB: many frames, several windows
	for range 3 {
		s, err := server.OpenStream()
		require.NoError(t, err)
		go func() { io.WriteString(s, payload); s.Close() }()
		got, err := io.ReadAll(s)
		require.NoError(t, err)
		require.Equal(t, len(payload), len(got))
		require.Equal(t, payload, string(got))
	}
}

func TestSessionConnEndsCleanlyAndRejectsTextAndDeadlines(t *testing.T) {
	serverConn, clientConn := sessionPair(t)
	require.Error(t, clientConn.SetDeadline(time.Now()), "deadlines are refused, not ignored")
	require.Error(t, clientConn.SetReadDeadline(time.Now()))
	require.Error(t, clientConn.SetWriteDeadline(time.Now()))

	_, err := clientConn.Write([]byte("hello"))
	require.NoError(t, err)
	buf := make([]byte, 5)
	_, err = io.ReadFull(serverConn, buf)
	require.NoError(t, err)
	require.Equal(t, "hello", string(buf))

	readErr := make(chan error, 1)
	go func() { _, err := serverConn.Read(buf); readErr <- err }() // reading answers the close handshake
	require.NoError(t, clientConn.Close())                         // a normal closure
	require.ErrorIs(t, <-readErr, io.EOF)

	// A text message is a protocol error.
	serverConn2, clientConn2 := sessionPair(t)
	go io.Copy(io.Discard, clientConn2) // reading answers the close that follows
	sc := clientConn2.(*sessionConn)
	require.NoError(t, sc.ws.Write(context.Background(), websocket.MessageText, []byte("text")))
	_, err = serverConn2.Read(buf)
	require.ErrorContains(t, err, "only binary messages")
}
