package protocol

import (
	"net"
	"sync"
	"time"
)

// Bounds of CoalesceWrites.
const (
	// coalesceMaxPending is how many bytes may wait to be sent before
	// Write blocks.
	coalesceMaxPending = 1 << 20
	// coalesceKeepBuffer is the largest buffer kept for reuse.
	coalesceKeepBuffer = 256 << 10
	// coalesceCloseFlush bounds how long Close tries to send what is
	// pending.
	coalesceCloseFlush = time.Second
)

// CoalesceWrites returns c with its writes batched: Write copies p to a
// pending buffer and returns, and one goroutine sends everything pending
// to c in a single write whenever c is free. yamux writes every frame's
// header and body separately, and a WebSocket byte stream turns every
// write into one message and one system call; batched, a burst of frames
// costs one. Nothing is delayed: a write goes out as soon as the previous
// one finished.
//
// Write blocks while 1 MiB is pending. An error writing to c is returned
// by the following Writes. Close sends what is pending (for at most 1 s)
// and closes c.
func CoalesceWrites(c net.Conn) net.Conn {
	cc := &coalescingConn{Conn: c, done: make(chan struct{})}
	cc.cond = sync.NewCond(&cc.mu)
	go cc.sendLoop()
	return cc
}

type coalescingConn struct {
	net.Conn
	mu      sync.Mutex
	cond    *sync.Cond // signals changes of pending, err and closed
	pending []byte
	spare   []byte
	err     error
	closed  bool
	done    chan struct{} // closed when sendLoop returns
}

func (c *coalescingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.pending) >= coalesceMaxPending && c.err == nil && !c.closed {
		c.cond.Wait()
	}
	switch {
	case c.err != nil:
		return 0, c.err
	case c.closed:
		return 0, net.ErrClosed
	}
	c.pending = append(c.pending, p...)
	c.cond.Broadcast()
	return len(p), nil
}

func (c *coalescingConn) sendLoop() {
	defer close(c.done)
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		for len(c.pending) == 0 && !c.closed {
			c.cond.Wait()
		}
		if len(c.pending) == 0 {
			return // closed and everything sent
		}
		buf := c.pending
		c.pending, c.spare = c.spare[:0], nil
		c.cond.Broadcast() // room for blocked writers
		c.mu.Unlock()
		_, err := c.Conn.Write(buf)
		c.mu.Lock()
		if cap(buf) <= coalesceKeepBuffer {
			c.spare = buf[:0]
		}
		if err != nil {
			c.err = err
			c.cond.Broadcast()
			return
		}
	}
}

// Close sends what is pending, then closes the connection.
func (c *coalescingConn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.cond.Broadcast()
	c.mu.Unlock()
	timer := time.NewTimer(coalesceCloseFlush)
	defer timer.Stop()
	select {
	case <-c.done:
	case <-timer.C:
	}
	return c.Conn.Close()
}
