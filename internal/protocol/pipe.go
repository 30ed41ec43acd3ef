package protocol

import (
	"io"
	"net"
	"sync"

	"github.com/hashicorp/yamux"
)

// Pipe copies bytes between a and b in both directions and returns once
// both directions have ended, with both connections closed.
//
// Half-close is passed through where the connections support it: when one
// side's reads end cleanly, the other side's write half is closed
// (CloseWrite on TCP, Unix and TLS connections; Close on a yamux stream,
// which only closes its write half) and the opposite direction keeps
// flowing. A WebSocket byte stream cannot be half-closed, so a clean end
// of reads from it means it is closed entirely: the other side's write
// half is closed and the pipe ends. A half-close towards a WebSocket byte
// stream is not signalled; that direction just stops. Any error closes
// both connections at once.
func Pipe(a, b net.Conn) {
	var once sync.Once
	abort := func() {
		once.Do(func() {
			a.Close()
			b.Close()
		})
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		pipeOneWay(b, a, abort)
	}()
	pipeOneWay(a, b, abort)
	<-done
	abort()
}

// pipeOneWay copies src to dst until src ends, then half-closes dst or
// aborts the pipe (see Pipe).
func pipeOneWay(dst, src net.Conn, abort func()) {
	if _, err := io.Copy(dst, src); err != nil {
		abort()
		return
	}
	if canHalfClose(src) {
		closeWrite(dst)
		return
	}
	// src is gone entirely: nothing more can flow the other way.
	closeWrite(dst)
	abort()
}

type closeWriter interface{ CloseWrite() error }

func canHalfClose(c net.Conn) bool {
	switch c.(type) {
	case closeWriter, *yamux.Stream:
		return true
	}
	return false
}

func closeWrite(c net.Conn) {
	switch c := c.(type) {
	case closeWriter:
		c.CloseWrite()
	case *yamux.Stream:
		c.Close() // sends FIN; reads continue until the peer's FIN
	}
}
