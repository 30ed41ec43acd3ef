// Package coalesce batches writes to a slow writer: Write copies its
// bytes to a pending buffer and returns, and one goroutine sends
// everything pending in a single write whenever the writer is free.
// Nothing is delayed: a write goes out as soon as the previous one
// finished, so a lone write costs what it did, and a burst of writes
// made while one is in progress costs one more.
//
// Pico uses it under the server's log, where every write is a system
// call (one access-log line per request). Yamux sessions batch their
// frames themselves (internal/yamux's frame writer).
package coalesce

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// Bounds of a Writer.
const (
	// MaxPending is how many bytes may wait to be sent before Write
	// blocks.
	MaxPending = 1 << 20
	// keepBuffer is the largest buffer kept for reuse.
	keepBuffer = 256 << 10
	// CloseFlush bounds how long Close tries to send what is pending.
	CloseFlush = time.Second
)

// ErrClosed is returned by writes after Close (net.ErrClosed, so that
// callers of a connection see the usual error).
var ErrClosed = net.ErrClosed

// Writer batches writes to an io.Writer; see the package documentation.
// Write blocks while MaxPending bytes are pending. An error writing to
// the underlying writer is returned by the following Writes.
type Writer struct {
	w       io.Writer
	mu      sync.Mutex
	cond    *sync.Cond // signals changes of pending, err and closed
	pending []byte
	spare   []byte
	err     error
	closed  bool
	done    chan struct{} // closed when sendLoop returns
}

// NewWriter returns a Writer sending to w, and starts its sender.
func NewWriter(w io.Writer) *Writer {
	c := &Writer{w: w, done: make(chan struct{})}
	c.cond = sync.NewCond(&c.mu)
	go c.sendLoop()
	return c
}

// Write queues p for sending and returns.
func (c *Writer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.pending) >= MaxPending && c.err == nil && !c.closed {
		c.cond.Wait()
	}
	switch {
	case c.err != nil:
		return 0, c.err
	case c.closed:
		return 0, ErrClosed
	}
	c.pending = append(c.pending, p...)
	c.cond.Broadcast()
	return len(p), nil
}

func (c *Writer) sendLoop() {
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
		_, err := c.w.Write(buf)
		c.mu.Lock()
		if cap(buf) <= keepBuffer {
			c.spare = buf[:0]
		}
		if err != nil {
			c.err = err
			c.cond.Broadcast()
			return
		}
	}
}

// Close sends what is pending, waiting at most CloseFlush, and stops the
// sender; it does not close the underlying writer. It reports an error
// if not everything could be sent.
func (c *Writer) Close() error {
	c.mu.Lock()
	c.closed = true
	c.cond.Broadcast()
	c.mu.Unlock()
	timer := time.NewTimer(CloseFlush)
	defer timer.Stop()
	select {
	case <-c.done:
	case <-timer.C:
		return errors.New("coalesce: pending writes not sent within the close timeout")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}
