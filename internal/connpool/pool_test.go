package connpool

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestPeerOpenProbe(t *testing.T) {
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
	require.True(t, peerOpen(idle), "an idle connection is reusable")

	closed, peer2 := dial()
	defer closed.Close()
	require.NoError(t, peer2.Close())
	require.Eventually(t, func() bool { return !peerOpen(closed) }, 5*time.Second, time.Millisecond, "a connection the peer closed is not")

	chatty, peer3 := dial()
	defer chatty.Close()
	defer peer3.Close()
	_, err = peer3.Write([]byte("unasked"))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return !peerOpen(chatty) }, 5*time.Second, time.Millisecond, "nor one with unasked data")
	// The probe only peeks.
	buf := make([]byte, 7)
	_, err = io.ReadFull(chatty, buf)
	require.NoError(t, err)
	require.Equal(t, "unasked", string(buf))
}

func TestPoolReusesOpenConnections(t *testing.T) {
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
	np := New(Config{})
	addr := ln.Addr().String()
	c1, reused, err := np.Get(context.Background(), addr)
	require.NoError(t, err)
	require.False(t, reused)
	p1 := <-peers
	np.Put(addr, c1)
	c2, reused, err := np.Get(context.Background(), addr)
	require.NoError(t, err)
	require.True(t, reused)
	require.Same(t, c1, c2)

	np.Put(addr, c2)
	require.NoError(t, p1.Close())
	// Probed once it idled past probeAfter.
	np.mu.Lock()
	np.idle[addr][0].since = time.Now().Add(-2 * DefaultProbeAfter)
	np.mu.Unlock()
	require.Eventually(t, func() bool {
		_, err := c2.Read(make([]byte, 1)) // the peer's close has arrived
		return err != nil
	}, 5*time.Second, time.Millisecond)
	c3, reused, err := np.Get(context.Background(), addr)
	require.NoError(t, err)
	require.False(t, reused, "a connection the peer closed is replaced by a new one")
	require.NotSame(t, c2, c3)
	<-peers
	np.Put(addr, c3)

	np.Close()
	_, err = c3.Write([]byte("x"))
	require.Error(t, err, "closeIdle closed it")
	c4, _, err := np.Get(context.Background(), addr)
	require.NoError(t, err)
	np.Put(addr, c4) // closed: the pool is shut
	_, err = c4.Write([]byte("x"))
	require.Error(t, err)
}
