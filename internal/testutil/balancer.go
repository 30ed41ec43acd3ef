package testutil

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Balancer is a round-robin TCP load balancer in front of several
// backends, like a Kubernetes Service: a backend that refuses the
// connection is skipped. Backends can be changed while it runs.
type Balancer struct {
	ln       net.Listener
	mu       sync.Mutex
	backends []string
	conns    map[string]int64
	next     atomic.Uint64
}

// StartBalancer listens on a loopback port until the test ends.
func StartBalancer(t testing.TB, backends ...string) *Balancer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lb := &Balancer{ln: ln, backends: backends, conns: map[string]int64{}}
	go lb.serve()
	t.Cleanup(func() { ln.Close() })
	return lb
}

// URL returns http://addr of the balancer.
func (lb *Balancer) URL() string { return "http://" + lb.ln.Addr().String() }

// SetBackends replaces the backend list.
func (lb *Balancer) SetBackends(backends ...string) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	lb.backends = backends
}

func (lb *Balancer) serve() {
	for {
		c, err := lb.ln.Accept()
		if err != nil {
			return
		}
		go lb.handle(c)
	}
}

func (lb *Balancer) handle(client net.Conn) {
	defer client.Close()
	lb.mu.Lock()
	backends := append([]string(nil), lb.backends...)
	lb.mu.Unlock()
	start := lb.next.Add(1)
	for i := range backends {
		addr := backends[(int(start)+i)%len(backends)]
		backend, err := net.Dial("tcp", addr)
		if err != nil {
			continue
		}
		defer backend.Close()
		lb.mu.Lock()
		lb.conns[addr]++
		lb.mu.Unlock()
		done := make(chan struct{}, 2)
		go func() { io.Copy(backend, client); backend.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
		go func() { io.Copy(client, backend); client.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
		<-done
		<-done
		return
	}
}

// Connections returns how many client connections the balancer passed to
// backend so far.
func (lb *Balancer) Connections(backend string) int64 {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	return lb.conns[backend]
}
