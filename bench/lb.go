package main

import (
	"errors"
	"io"
	"net"
	"slices"
	"sync"
)

// balancer is a round-robin TCP load balancer, like a Kubernetes Service:
// each accepted connection is piped to the next backend in the set.
// Removing a backend only stops new connections to it; established ones
// carry on until either side closes them.
type balancer struct {
	ln net.Listener

	mu       sync.Mutex
	backends []string
	next     int
	conns    map[net.Conn]struct{}

	wg sync.WaitGroup
}

func newBalancer(addr string, backends []string) (*balancer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	b := &balancer{ln: ln, backends: slices.Clone(backends), conns: map[net.Conn]struct{}{}}
	b.wg.Go(b.serve)
	return b, nil
}

func (b *balancer) addr() string { return b.ln.Addr().String() }

func (b *balancer) add(backend string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !slices.Contains(b.backends, backend) {
		b.backends = append(b.backends, backend)
	}
}

func (b *balancer) remove(backend string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.backends = slices.DeleteFunc(b.backends, func(s string) bool { return s == backend })
}

func (b *balancer) pick() (string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.backends) == 0 {
		return "", false
	}
	b.next = (b.next + 1) % len(b.backends)
	return b.backends[b.next], true
}

func (b *balancer) serve() {
	for {
		c, err := b.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		b.wg.Go(func() { b.pipe(c) })
	}
}

// pipe connects c to a backend. A failed dial closes c, as a Service
// without a ready endpoint would.
func (b *balancer) pipe(c net.Conn) {
	defer c.Close()
	backend, ok := b.pick()
	if !ok {
		return
	}
	s, err := net.Dial("tcp", backend)
	if err != nil {
		return
	}
	defer s.Close()
	if !b.track(c, s) {
		return
	}
	defer b.untrack(c, s)
	var wg sync.WaitGroup
	wg.Go(func() { copyHalf(s, c) })
	copyHalf(c, s)
	wg.Wait()
}

// copyHalf copies src to dst, then half-closes dst (so a close on one
// side reaches the other).
func copyHalf(dst, src net.Conn) {
	_, err := io.Copy(dst, src)
	if tc, ok := dst.(*net.TCPConn); ok && err == nil {
		_ = tc.CloseWrite()
		return
	}
	// A reset or error: tear down both directions.
	_ = dst.Close()
	_ = src.Close()
}

func (b *balancer) track(cs ...net.Conn) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.conns == nil {
		return false // closed
	}
	for _, c := range cs {
		b.conns[c] = struct{}{}
	}
	return true
}

func (b *balancer) untrack(cs ...net.Conn) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range cs {
		delete(b.conns, c)
	}
}

// close stops the balancer and every connection through it.
func (b *balancer) close() {
	_ = b.ln.Close()
	b.mu.Lock()
	for c := range b.conns {
		_ = c.Close()
	}
	b.conns = nil
	b.mu.Unlock()
	b.wg.Wait()
}
