package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pico-proxy/pico/internal/protocol"
	"github.com/pico-proxy/pico/internal/yamux"
)

// memoryResult is a node's memory before and after N idle upstream
// sessions.
type memoryResult struct {
	Sessions         int
	Endpoints        int
	OpenFilesLimit   string // the server's soft RLIMIT_NOFILE
	ConnectTime      time.Duration
	RSSBefore        int64
	RSSAfter         int64
	RSSPeak          int64
	GoBefore         goMemory
	GoAfter          goMemory
	GoroutinesBefore float64
	GoroutinesAfter  float64
}

// goMemory is the Go runtime's view of a node, from its /metrics.
type goMemory struct{ HeapInuse, StackInuse float64 }

func (m memoryResult) perSession() float64 {
	return float64(m.RSSAfter-m.RSSBefore) / float64(m.Sessions)
}

// runMemory opens o.sessions WebSocket + yamux client sessions (the real
// upstream protocol, each registering its own endpoint) to one fresh
// node and measures the node's resident memory before and after.
func (e *env) runMemory() error {
	n, err := startNode(e.o, e.tmp, e.o.addrs.memory, nil)
	if err != nil {
		return err
	}
	defer n.stop()
	res := &memoryResult{Sessions: e.o.sessions, Endpoints: e.o.sessions}
	if res.OpenFilesLimit, err = openFilesLimit(n.pid()); err != nil {
		return err
	}
	ctx := context.Background()
	settle := func() { time.Sleep(3 * time.Second) }
	settle()
	if err := sampleMemory(ctx, n, &res.RSSBefore, &res.GoBefore, &res.GoroutinesBefore); err != nil {
		return err
	}

	start := time.Now()
	sessions, err := openSessions(ctx, n, e.o.sessions, e.o.addrs.sources)
	defer func() {
		for _, s := range sessions {
			_ = s.Close()
		}
	}()
	if err != nil {
		return err
	}
	// Every session is registered when the node counts it.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		v, err := metric(ctx, n.adminURL(), "pico_upstream_connections")
		if err == nil && int(v) == e.o.sessions {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("node counts %v upstream connections (error %v), want %d", v, err, e.o.sessions)
		}
		time.Sleep(100 * time.Millisecond)
	}
	res.ConnectTime = time.Since(start)
	settle()
	if err := sampleMemory(ctx, n, &res.RSSAfter, &res.GoAfter, &res.GoroutinesAfter); err != nil {
		return err
	}
	if res.RSSPeak, err = procStatus(n.pid(), "VmHWM"); err != nil {
		return err
	}
	e.rep.Memory = res
	return nil
}

func sampleMemory(ctx context.Context, n *node, rss *int64, g *goMemory, goroutines *float64) error {
	var err error
	if *rss, err = procStatus(n.pid(), "VmRSS"); err != nil {
		return err
	}
	if g.HeapInuse, err = metric(ctx, n.adminURL(), "go_memstats_heap_inuse_bytes"); err != nil {
		return err
	}
	if g.StackInuse, err = metric(ctx, n.adminURL(), "go_memstats_stack_inuse_bytes"); err != nil {
		return err
	}
	*goroutines, err = metric(ctx, n.adminURL(), "go_goroutines")
	return err
}

// openSessions dials count upstream sessions to n, 64 at a time, spread
// over several source addresses.
func openSessions(ctx context.Context, n *node, count int, sources []string) ([]*yamux.Session, error) {
	clients := make([]*http.Client, len(sources))
	for i, src := range sources {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
		clients[i] = &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
	}
	cfg := protocol.YamuxConfig(slog.New(slog.DiscardHandler))
	sessions := make([]*yamux.Session, count)
	var next atomic.Int64
	var firstErr atomic.Pointer[error]
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= count || firstErr.Load() != nil {
					return
				}
				s, err := openSession(ctx, clients[i%len(clients)], n, fmt.Sprintf("mem-%05d", i), cfg)
				if err != nil {
					err = fmt.Errorf("session %d of %d: %w", i+1, count, err)
					firstErr.CompareAndSwap(nil, &err)
					return
				}
				sessions[i] = s
			}
		})
	}
	wg.Wait()
	opened := sessions[:0]
	for _, s := range sessions {
		if s != nil {
			opened = append(opened, s)
		}
	}
	if p := firstErr.Load(); p != nil {
		return opened, *p
	}
	return opened, nil
}

func openSession(ctx context.Context, client *http.Client, n *node, endpoint string, cfg *yamux.Config) (*yamux.Session, error) {
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		dialCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		var conn net.Conn
		conn, err = protocol.DialWebSocket(dialCtx, n.upstreamURL()+protocol.UpstreamPathPrefix+endpoint, nil, client)
		cancel()
		if err != nil {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		var s *yamux.Session
		if s, err = yamux.Client(conn, cfg); err != nil {
			_ = conn.Close()
			continue
		}
		return s, nil
	}
	return nil, err
}
