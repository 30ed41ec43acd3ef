package agent

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/pico-proxy/pico/internal/protocol"
)

// localDialTimeout bounds connecting to a local service.
const localDialTimeout = 10 * time.Second

// newTransport returns the pooled transport shared by an agent's HTTP
// endpoints. Responses pass through untouched (no transparent
// decompression) and local services are never reached through an
// environment proxy.
func newTransport() *http.Transport {
	return &http.Transport{
		DialContext: (&net.Dialer{
			Timeout:   localDialTimeout,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
	}
}

// forwardedHeaders are kept as the server set them (the reverse proxy
// would otherwise drop or rewrite them).
var forwardedHeaders = []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "Forwarded"}

// copyBuffers recycles the reverse proxy's body copy buffers.
var copyBuffers = &bufferPool{pool: sync.Pool{New: func() any { return new([32 << 10]byte) }}}

type bufferPool struct{ pool sync.Pool }

func (p *bufferPool) Get() []byte  { return p.pool.Get().(*[32 << 10]byte)[:] }
func (p *bufferPool) Put(b []byte) { p.pool.Put((*[32 << 10]byte)(b)) }

// httpServer serves an HTTP endpoint's streams: each stream carries
// HTTP/1.1 requests that are reverse-proxied to the local service.
type httpServer struct {
	srv *http.Server
}

func newHTTPServer(target *url.URL, transport http.RoundTripper, logger *slog.Logger) *httpServer {
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
			for _, h := range forwardedHeaders {
				if v, ok := pr.In.Header[h]; ok {
					pr.Out.Header[h] = v
				}
			}
		},
		Transport:     transport,
		BufferPool:    copyBuffers,
		FlushInterval: -1, // stream bodies: flush every write
		ErrorLog:      slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if errors.Is(err, context.Canceled) {
				logger.Debug("request cancelled", "method", r.Method, "path", r.URL.Path)
				return
			}
			logger.Warn("local service unavailable", "target", target.String(), "method", r.Method, "path", r.URL.Path, "error", err)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadGateway)
			json.NewEncoder(w).Encode(map[string]string{"error": "the upstream agent cannot reach its local service: " + err.Error()})
		},
	}
	return &httpServer{srv: &http.Server{
		Handler:           proxy,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}}
}

func (h *httpServer) serve(sess *yamux.Session) {
	h.srv.Serve(sess) // returns when the session ends
}

func (h *httpServer) drain() {
	// Finish in-flight requests with "Connection: close" and close idle
	// streams instead of waiting for another request on them.
	h.srv.SetKeepAlivesEnabled(false)
}

func (h *httpServer) close() {
	h.srv.Close()
}

// tcpServer serves a TCP endpoint's streams: each stream is piped to a new
// connection to the local service.
type tcpServer struct {
	addr   string
	dialer net.Dialer
	wg     *sync.WaitGroup
	logger *slog.Logger
}

func newTCPServer(addr string, wg *sync.WaitGroup, logger *slog.Logger) *tcpServer {
	return &tcpServer{addr: addr, dialer: net.Dialer{Timeout: localDialTimeout}, wg: wg, logger: logger}
}

func (t *tcpServer) serve(sess *yamux.Session) {
	for {
		stream, err := sess.AcceptStream()
		if err != nil {
			return
		}
		t.wg.Go(func() { t.handle(stream) })
	}
}

func (t *tcpServer) handle(stream *yamux.Stream) {
	local, err := t.dialer.Dial("tcp", t.addr)
	if err != nil {
		t.logger.Warn("local service unavailable", "target", t.addr, "error", err)
		stream.Close()
		return
	}
	protocol.Pipe(stream, local, 0) // both sides carry half-closes
}

func (t *tcpServer) drain() {}

func (t *tcpServer) close() {}
