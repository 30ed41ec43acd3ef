package proxy

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestConnOpenProbe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	accepted := make(chan net.Conn, 3)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	dial := func() (net.Conn, net.Conn) {
		c, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)
		return c, <-accepted
	}

	idle, peer := dial()
	defer idle.Close()
	defer peer.Close()
	require.True(t, connOpen(idle), "an idle connection is reusable")

	closed, peer2 := dial()
	defer closed.Close()
	require.NoError(t, peer2.Close())
	require.Eventually(t, func() bool { return !connOpen(closed) }, 5*time.Second, time.Millisecond, "a connection the peer closed is not")

	chatty, peer3 := dial()
	defer chatty.Close()
	defer peer3.Close()
	_, err = peer3.Write([]byte("unasked"))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return !connOpen(chatty) }, 5*time.Second, time.Millisecond, "nor one with unasked data")
	// The probe only peeks.
	buf := make([]byte, 7)
	_, err = io.ReadFull(chatty, buf)
	require.NoError(t, err)
	require.Equal(t, "unasked", string(buf))
}

func TestNodePoolReusesOpenConnections(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	peers := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			peers <- c
		}
	}()
	np := newNodePool(nil)
	addr := ln.Addr().String()
	c1, reused, err := np.get(context.Background(), addr)
	require.NoError(t, err)
	require.False(t, reused)
	p1 := <-peers
	np.put(addr, c1)
	c2, reused, err := np.get(context.Background(), addr)
	require.NoError(t, err)
	require.True(t, reused)
	require.Same(t, c1, c2)

	np.put(addr, c2)
	require.NoError(t, p1.Close())
	// Probed once it idled past probeAfter.
	np.mu.Lock()
	np.idle[addr][0].since = time.Now().Add(-2 * probeAfter)
	np.mu.Unlock()
	require.Eventually(t, func() bool {
		_, err := c2.Read(make([]byte, 1)) // the peer's close has arrived
		return err != nil
	}, 5*time.Second, time.Millisecond)
	c3, reused, err := np.get(context.Background(), addr)
	require.NoError(t, err)
	require.False(t, reused, "a connection the peer closed is replaced by a new one")
	require.NotSame(t, c2, c3)
	<-peers
	np.put(addr, c3)

	np.closeIdle()
	_, err = c3.Write([]byte("x"))
	require.Error(t, err, "closeIdle closed it")
	c4, _, err := np.get(context.Background(), addr)
	require.NoError(t, err)
	np.put(addr, c4) // closed: the pool is shut
	_, err = c4.Write([]byte("x"))
	require.Error(t, err)
}

func TestGuardedBody(t *testing.T) {
	g := &guardedBody{rc: io.NopCloser(strings.NewReader("data"))}
	require.True(t, g.reusable(), "nothing read yet")
	_, err := g.Read(make([]byte, 1))
	require.ErrorIs(t, err, errBodySealed, "the attempt that held it can no longer read")

	next := g.next()
	b := make([]byte, 2)
	n, err := next.Read(b)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	require.False(t, next.reusable(), "bytes were consumed")
	var nilBody *guardedBody
	require.True(t, nilBody.reusable())
}
