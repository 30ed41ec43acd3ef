package protocol

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pico-proxy/pico/internal/testutil"
	"github.com/pico-proxy/pico/internal/yamux"
)

const pipeWait = 10 * time.Second

// wsPair returns both ends of a WebSocket byte stream over loopback.
func wsPair(t *testing.T) (dialed, accepted net.Conn) {
	t.Helper()
	acceptedCh := make(chan net.Conn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := AcceptWebSocket(w, r)
		if err != nil {
			close(acceptedCh)
			return
		}
		acceptedCh <- c
	}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), pipeWait)
	defer cancel()
	d, err := DialWebSocket(ctx, srv.URL, nil, nil)
	require.NoError(t, err)
	a := <-acceptedCh
	require.NotNil(t, a)
	t.Cleanup(func() { d.Close(); a.Close() })
	return d, a
}

func runPipe(a, b net.Conn, linger time.Duration) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		Pipe(a, b, linger)
	}()
	return done
}

func waitDone(t *testing.T, done <-chan struct{}) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(pipeWait):
		t.Fatal("Pipe did not return")
	}
}

func TestPipePassesHalfClosesBetweenTCPConnections(t *testing.T) {
	left, leftEnd := testutil.TCPPair(t)
	right, rightEnd := testutil.TCPPair(t)
	done := runPipe(leftEnd, rightEnd, 0)

	_, err := left.Write([]byte("question"))
	require.NoError(t, err)
	require.NoError(t, left.CloseWrite())
	got, err := io.ReadAll(right)
	require.NoError(t, err, "the right side sees the left side's EOF")
	require.Equal(t, "question", string(got))

	_, err = right.Write([]byte("answer after EOF"))
	require.NoError(t, err)
	require.NoError(t, right.CloseWrite())
	got, err = io.ReadAll(left)
	require.NoError(t, err)
	require.Equal(t, "answer after EOF", string(got))
	waitDone(t, done)
}

func TestPipeEndsWhenTheWebSocketCloses(t *testing.T) {
	client, clientEnd := testutil.TCPPair(t)
	peer, wsEnd := wsPair(t)
	done := runPipe(clientEnd, wsEnd, time.Hour)

	_, err := peer.Write([]byte("bye"))
	require.NoError(t, err)
	require.NoError(t, peer.Close())
	got, err := io.ReadAll(client)
	require.NoError(t, err, "the TCP client sees a clean EOF")
	require.Equal(t, "bye", string(got))
	waitDone(t, done)
}

func TestPipeLingersAfterAHalfCloseTowardsAWebSocket(t *testing.T) {
	client, clientEnd := testutil.TCPPair(t)
	peer, wsEnd := wsPair(t)
	done := runPipe(clientEnd, wsEnd, 200*time.Millisecond)

	_, err := client.Write([]byte("q"))
	require.NoError(t, err)
	require.NoError(t, client.CloseWrite())
	buf := make([]byte, 1)
	_, err = io.ReadFull(peer, buf)
	require.NoError(t, err)
	for _, part := range []string{"the ", "answer"} {
		_, err = peer.Write([]byte(part))
		require.NoError(t, err)
	}
	got := make([]byte, len("the answer"))
	_, err = io.ReadFull(client, got)
	require.NoError(t, err, "the answer still reaches a client that half-closed")
	require.Equal(t, "the answer", string(got))

	waitDone(t, done) // idle for the linger time: the pipe ends
	_, err = io.ReadAll(client)
	require.NoError(t, err)
}

func TestPipeWithoutLingerEndsAtTheClientsEOF(t *testing.T) {
	client, clientEnd := testutil.TCPPair(t)
	peer, wsEnd := wsPair(t)
	done := runPipe(clientEnd, wsEnd, 0)
	require.NoError(t, client.CloseWrite())
	waitDone(t, done)
	_, err := peer.Read(make([]byte, 1))
	require.Error(t, err)
}

// The proxy's TCP route: a WebSocket client and a yamux stream whose agent
// stays silent. When the client goes away the pipe ends at once, although
// closing a yamux stream only ends its write half (the read waiting on it
// is cut through its deadline), and the agent sees the stream's end.
func TestPipeEndsWhenTheWebSocketLeavesASilentYamuxStream(t *testing.T) {
	serverSide, agentSide := net.Pipe()
	session, err := yamux.Server(serverSide, nil)
	require.NoError(t, err)
	agent, err := yamux.Client(agentSide, nil)
	require.NoError(t, err)
	t.Cleanup(func() { session.Close(); agent.Close() })
	accepted := make(chan net.Conn, 1)
	go func() {
		s, _ := agent.Accept()
		accepted <- s
	}()
	stream, err := session.OpenStream()
	require.NoError(t, err)
	_, err = stream.Write([]byte("hi"))
	require.NoError(t, err)
	agentStream := <-accepted
	require.NotNil(t, agentStream)

	peer, wsEnd := wsPair(t)
	done := runPipe(wsEnd, stream, 0)
	require.NoError(t, peer.Close())
	waitDone(t, done)

	got, err := io.ReadAll(agentStream)
	require.NoError(t, err, "the agent sees a clean end of the stream")
	require.Equal(t, "hi", string(got))
}
