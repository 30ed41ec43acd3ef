package protocol

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// countingConn counts the writes that reach the connection.
type countingConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

func TestCoalesceWritesBatchesInOrder(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	counted := &countingConn{Conn: a}
	c := CoalesceWrites(counted)

	var want bytes.Buffer
	for i := range 1000 {
		frame := fmt.Sprintf("frame %04d;", i)
		want.WriteString(frame)
		n, err := c.Write([]byte(frame))
		require.NoError(t, err)
		require.Equal(t, len(frame), n)
	}
	// Nothing was read yet: the writes are pending, not lost.
	got := make([]byte, want.Len())
	_, err := io.ReadFull(b, got)
	require.NoError(t, err)
	require.Equal(t, want.String(), string(got))
	require.Less(t, counted.writes.Load(), int64(10), "1000 writes became a few")

	// Close sends what is still pending.
	_, err = c.Write([]byte("last words"))
	require.NoError(t, err)
	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	tail, err := io.ReadAll(b)
	require.NoError(t, err)
	require.Equal(t, "last words", string(tail))
	require.NoError(t, <-closed)
	_, err = c.Write([]byte("x"))
	require.ErrorIs(t, err, net.ErrClosed)
}

func TestCoalesceWritesReportsWriteErrors(t *testing.T) {
	a, b := net.Pipe()
	c := CoalesceWrites(a)
	defer c.Close()
	b.Close() // the peer is gone
	require.Eventually(t, func() bool {
		_, err := c.Write([]byte("lost"))
		return err != nil
	}, pipeWait, 5*time.Millisecond)
}
