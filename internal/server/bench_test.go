package server

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pico-proxy/pico/internal/logging"
	"github.com/pico-proxy/pico/internal/upstream/upstreamtest"
)

// BenchmarkProxyHTTP compares 1 KiB GETs sent directly to an upstream
// with the same GETs sent through Pico (proxy port -> yamux stream over
// WebSocket -> in-test agent -> pooled keep-alive transport -> upstream),
// with 50 concurrent clients on keep-alive connections. Everything runs
// in this process, the load generator included, so compare the two
// results with each other, not with an external load generator's.
//
//	go test -run '^$' -bench BenchmarkProxyHTTP -benchtime 5s ./internal/server/
func BenchmarkProxyHTTP(b *testing.B) {
	payload := bytes.Repeat([]byte("x"), 1024)
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(payload)
	}))
	defer target.Close()

	b.Run("direct", func(b *testing.B) {
		runLoad(b, target.URL+"/bench", "")
	})
	b.Run("pico", func(b *testing.B) {
		cfg := testConfig()
		// The access log is formatted as in production, then discarded.
		if err := cfg.Validate(); err != nil {
			b.Fatal(err)
		}
		srv, err := New(cfg, logging.New(io.Discard, slog.LevelInfo, nil))
		if err != nil {
			b.Fatal(err)
		}
		if err := srv.Start(context.Background()); err != nil {
			b.Fatal(err)
		}
		defer srv.Shutdown(context.Background())
		agent, err := upstreamtest.ServeHTTP(context.Background(), upstreamtest.URL(srv.Addrs().Upstream, "bench"), agentProxy(b, target.URL))
		if err != nil {
			b.Fatal(err)
		}
		defer agent.Close()
		runLoad(b, "http://"+srv.Addrs().Proxy+"/bench", "bench")
	})
}

// agentProxy is what an agent does with each stream: reverse proxy to the
// local service over pooled keep-alive connections.
func agentProxy(b testing.TB, target string) http.Handler {
	u, err := url.Parse(target)
	if err != nil {
		b.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: time.Minute}
	return rp
}

const benchClients = 50

// runLoad sends GETs from benchClients goroutines and reports requests/s
// and latency percentiles.
func runLoad(b *testing.B, url, endpoint string) {
	client := &http.Client{Transport: &http.Transport{
		MaxIdleConns:        benchClients,
		MaxIdleConnsPerHost: benchClients,
		DisableCompression:  true,
	}}
	defer client.CloseIdleConnections()

	var (
		mu        sync.Mutex
		latencies []time.Duration
	)
	b.ResetTimer()
	cpuBefore := processCPU()
	start := time.Now()
	var wg sync.WaitGroup
	var next sync.Mutex
	remaining := b.N
	for range benchClients {
		wg.Go(func() {
			var mine []time.Duration
			req, _ := http.NewRequest(http.MethodGet, url, nil)
			if endpoint != "" {
				req.Header.Set("X-Pico-Endpoint", endpoint)
			}
			for {
				next.Lock()
				if remaining == 0 {
					next.Unlock()
					break
				}
				remaining--
				next.Unlock()
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Errorf("status %d", resp.StatusCode)
					return
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			latencies = append(latencies, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := processCPU() - cpuBefore
	b.StopTimer()
	if len(latencies) == 0 {
		return
	}
	slices.Sort(latencies)
	pct := func(p float64) float64 {
		return float64(latencies[int(p*float64(len(latencies)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(float64(len(latencies))/elapsed.Seconds(), "req/s")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	// CPU per request (this whole process: load generator, upstream and,
	// through Pico, server and agent) is steadier than req/s on a busy
	// machine.
	b.ReportMetric(float64(cpu.Microseconds())/float64(len(latencies)), "cpu-us/req")
	b.ReportMetric(0, "ns/op")
}

// processCPU returns the user and system CPU time this process used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
