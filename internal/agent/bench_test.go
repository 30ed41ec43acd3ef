package agent

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// BenchmarkHTTPThroughAgent measures 1 KiB GETs sent the way Pico's proxy
// sends them (one request per yamux stream over the WebSocket) through
// the agent to a local service, against the same GETs sent directly.
func BenchmarkHTTPThroughAgent(b *testing.B) {
	body := strings.Repeat("x", 1024)
	service := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, body)
	}))
	defer service.Close()

	get := func(b *testing.B, c *http.Client, url string) {
		b.SetParallelism(25) // 50 concurrent requests on 2 cores
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				resp, err := c.Get(url)
				if err != nil {
					b.Error(err)
					return
				}
				n, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if n != int64(len(body)) {
					b.Errorf("got %d bytes", n)
					return
				}
			}
		})
	}

	b.Run("direct", func(b *testing.B) {
		c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 100}}
		get(b, c, service.URL)
	})
	b.Run("agent", func(b *testing.B) {
		server := newUpstreamServer(b)
		startAgent(b, agentConfig(server.url(), Endpoint{ID: "bench", Protocol: "http", Addr: service.URL}))
		get(b, client(server.session("bench", 1)), "http://bench.example.com/")
	})
}
