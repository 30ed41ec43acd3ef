package yamux_test

// The fork's frames against upstream hashicorp/yamux (what Piko's agents
// and servers run), in both roles, over TCP: deferred SYNs, lazy ACKs
// and FINs, data and FIN in one write, many streams at once, keepalive
// pings, GoAway.

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	upstream "github.com/hashicorp/yamux"
	"github.com/stretchr/testify/require"

	"github.com/pico-proxy/pico/internal/testutil"
	"github.com/pico-proxy/pico/internal/yamux"
)

func forkConfig() *yamux.Config {
	cfg := yamux.DefaultConfig()
	cfg.KeepAliveInterval = 50 * time.Millisecond
	cfg.LazyControlFrames = true // as Pico runs it
	cfg.LogOutput = io.Discard
	return cfg
}

func upstreamConfig() *upstream.Config {
	cfg := upstream.DefaultConfig()
	cfg.KeepAliveInterval = 50 * time.Millisecond
	cfg.LogOutput = io.Discard
	return cfg
}

// exchanges runs n concurrent request/response exchanges: open (deferred
// on the fork) and write a request, read the response to EOF, close.
func exchanges(t *testing.T, n int, open func() (net.Conn, error)) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Go(func() {
			c, err := open()
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			req := fmt.Sprintf("request %d %s\n", i, bytes.Repeat([]byte("x"), i*37))
			if _, err := io.WriteString(c, req); err != nil {
				errs <- err
				return
			}
			got, err := io.ReadAll(c)
			if err != nil {
				errs <- err
				return
			}
			if want := "response to " + req; string(got) != want {
				errs <- fmt.Errorf("stream %d: got %d bytes, want %d", i, len(got), len(want))
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

// answer reads one line from c and answers it, in one write when the
// fork is answering (WriteClose).
func answer(c net.Conn) {
	defer c.Close()
	var line []byte
	b := make([]byte, 1)
	for {
		if _, err := c.Read(b); err != nil {
			return
		}
		line = append(line, b[0])
		if b[0] == '\n' {
			break
		}
	}
	resp := append([]byte("response to "), line...)
	if s, ok := c.(*yamux.Stream); ok {
		_, _ = s.WriteClose(resp)
		return
	}
	_, _ = c.Write(resp)
}

func serveAll(accept func() (net.Conn, error)) {
	for {
		c, err := accept()
		if err != nil {
			return
		}
		go answer(c)
	}
}

func TestForkOpensStreamsToUpstream(t *testing.T) {
	c, s := testutil.TCPPair(t)
	client, err := yamux.Client(c, forkConfig())
	require.NoError(t, err)
	defer client.Close()
	server, err := upstream.Server(s, upstreamConfig())
	require.NoError(t, err)
	defer server.Close()
	go serveAll(server.Accept)

	exchanges(t, 200, func() (net.Conn, error) { return client.OpenStreamDeferred() })
	exchanges(t, 50, func() (net.Conn, error) { return client.OpenStream() })
	time.Sleep(150 * time.Millisecond) // keepalives both ways
	require.False(t, client.IsClosed())
	require.Eventually(t, func() bool { return server.NumStreams() == 0 && client.NumStreams() == 0 },
		time.Second, time.Millisecond, "every stream completed its close on both sides (lazy FINs sent)")

	require.NoError(t, client.GoAway())
	require.Eventually(t, func() bool {
		_, err := server.OpenStream()
		return err == upstream.ErrRemoteGoAway
	}, time.Second, 5*time.Millisecond)
}

func TestUpstreamOpensStreamsToFork(t *testing.T) {
	c, s := testutil.TCPPair(t)
	client, err := upstream.Client(c, upstreamConfig())
	require.NoError(t, err)
	defer client.Close()
	server, err := yamux.Server(s, forkConfig())
	require.NoError(t, err)
	defer server.Close()
	go serveAll(server.Accept)

	exchanges(t, 200, func() (net.Conn, error) { return client.OpenStream() })
	time.Sleep(150 * time.Millisecond)
	require.False(t, server.IsClosed())
	require.Eventually(t, func() bool { return server.NumStreams() == 0 && client.NumStreams() == 0 },
		time.Second, time.Millisecond)

	require.NoError(t, server.GoAway())
	require.Eventually(t, func() bool {
		_, err := client.OpenStream()
		return err == upstream.ErrRemoteGoAway
	}, time.Second, 5*time.Millisecond)
}
