package agent

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pico-proxy/pico/internal/connpool"
	"github.com/pico-proxy/pico/internal/httpwire"
	"github.com/pico-proxy/pico/internal/protocol"
	"github.com/pico-proxy/pico/internal/yamux"
)

// Connections to a local HTTP service.
const (
	// localDialTimeout bounds connecting to a local service.
	localDialTimeout = 10 * time.Second
	// localIdleTimeout closes local connections idle for longer. Servers
	// that close idle connections sooner (Node.js after 5 s) are caught
	// by the pool's peek before reuse.
	localIdleTimeout = 90 * time.Second
	// maxIdleLocal caps the idle connections kept per local service.
	maxIdleLocal = 256
)

// bodyLinger is how long a request body may still be arriving after the
// response was sent before the exchange is cut short.
const bodyLinger = time.Second

// maxIdleAcceptors caps the goroutines of a session waiting for its next
// stream; more than that idle exit, and more are started when all are
// busy.
const maxIdleAcceptors = 64

// httpServer serves an HTTP endpoint's streams. A stream carries one
// HTTP/1.1 request (several when the server keeps streams alive); the
// request is sent to the local service over a pooled keep-alive
// connection and the response written back, all by the goroutine that
// accepted the stream: no transport goroutines, no per-request
// connection setup, one write to the stream for a response that arrived
// whole. Streaming bodies, trailers and upgrades (WebSocket) pass
// through; X-Forwarded-* and Host stay as the server set them.
type httpServer struct {
	addr   string // host:port of the local service
	prefix string // path prefix of the target URL, escaped, without a trailing slash
	pool   *connpool.Pool
	// localTLS is the client configuration of an https:// target.
	localTLS *tls.Config
	logger   *slog.Logger

	mu sync.Mutex
	// draining makes every stream close after its current request.
	draining bool
	// idle holds the kept-alive streams waiting for their next request;
	// drain closes them.
	idle map[*yamux.Stream]struct{}
}

func newHTTPServer(target *url.URL, logger *slog.Logger) *httpServer {
	h := &httpServer{
		addr:   target.Host,
		prefix: strings.TrimSuffix(target.EscapedPath(), "/"),
		logger: logger,
		idle:   make(map[*yamux.Stream]struct{}),
	}
	poolCfg := connpool.Config{
		DialTimeout:    localDialTimeout,
		IdleTimeout:    localIdleTimeout,
		MaxIdlePerAddr: maxIdleLocal,
	}
	if target.Scheme == "https" {
		// Verified against the system's roots; HTTP/1.1 only.
		h.localTLS = &tls.Config{ServerName: target.Hostname(), NextProtos: []string{"http/1.1"}}
		dialer := &tls.Dialer{
			NetDialer: &net.Dialer{Timeout: localDialTimeout, KeepAlive: 30 * time.Second},
			Config:    h.localTLS,
		}
		poolCfg.Dial = func(ctx context.Context, addr string) (net.Conn, error) {
			return dialer.DialContext(ctx, "tcp", addr)
		}
	}
	h.pool = connpool.New(poolCfg)
	return h
}

// serve accepts and serves sess's streams until the session ends and
// every stream is done. Goroutines that finished a stream accept the
// next one, so a busy session keeps its goroutines (and their grown
// stacks) instead of starting one per request.
func (h *httpServer) serve(sess *yamux.Session) {
	var wg sync.WaitGroup
	conns := &sessionConns{conns: make(map[net.Conn]struct{})}
	wg.Go(func() {
		<-sess.CloseChan()
		conns.closeAll() // exchanges waiting for the service end now
	})
	var idle atomic.Int32 // acceptors waiting in AcceptStream
	var acceptor func()
	acceptor = func() {
		idle.Add(1)
		for {
			stream, err := sess.AcceptStream()
			if err != nil {
				idle.Add(-1)
				return
			}
			if idle.Add(-1) == 0 {
				wg.Go(acceptor) // nobody waits for the next stream
			}
			h.serveStream(stream, conns)
			if idle.Load() >= maxIdleAcceptors {
				return
			}
			idle.Add(1)
		}
	}
	wg.Go(acceptor)
	wg.Wait()
}

// drain makes streams close after their current request and closes the
// kept-alive ones that wait for another.
func (h *httpServer) drain() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.draining = true
	for stream := range h.idle {
		_ = stream.SetReadDeadline(longAgo)
		_ = stream.Close()
	}
}

// waitForNext records stream as waiting for its next request; false
// means it must close instead (the agent is draining).
func (h *httpServer) waitForNext(stream *yamux.Stream) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.draining {
		return false
	}
	h.idle[stream] = struct{}{}
	return true
}

// busy records that stream is serving a request (it no longer waits for
// one) and reports whether the agent is draining.
func (h *httpServer) busy(stream *yamux.Stream) (draining bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.idle, stream)
	return h.draining
}

// longAgo is a deadline in the past: it ends a connection's pending reads.
var longAgo = time.Unix(1, 0)

func (h *httpServer) close() { h.pool.Close() }

// tunnel is a stream being served, with its buffers and the local
// connections of its session.
type tunnel struct {
	stream *yamux.Stream
	br     *bufio.Reader
	bw     *bufio.Writer // writes to out
	out    *streamWriter
	conns  *sessionConns
	// keepAlive: the stream is to carry another request after this one.
	keepAlive bool
}

// flushLast flushes a response that is complete in t.bw; when the stream
// carries no further request, its FIN goes in the same write.
func (t *tunnel) flushLast() error {
	t.out.closing = !t.keepAlive
	err := t.bw.Flush()
	t.out.closing = false
	return err
}

// streamWriter is what a tunnel's buffered writer writes to: the stream,
// or, with closing, the stream and its FIN in one write (WriteClose).
type streamWriter struct {
	stream  *yamux.Stream
	closing bool
}

func (w *streamWriter) Write(p []byte) (int, error) {
	if w.closing {
		w.closing = false
		return w.stream.WriteClose(p)
	}
	return w.stream.Write(p)
}

// serveStream serves the requests of one stream, then closes it.
func (h *httpServer) serveStream(stream *yamux.Stream, conns *sessionConns) {
	out := &streamWriter{stream: stream}
	t := &tunnel{stream: stream, br: httpwire.GetReader(stream), bw: httpwire.GetWriter(out), out: out, conns: conns}
	defer func() {
		httpwire.PutWriter(t.bw)
		httpwire.PutReader(t.br)
	}()
	for first := true; ; first = false {
		if !first && !h.waitForNext(stream) {
			_ = stream.Close()
			return
		}
		req, err := http.ReadRequest(t.br)
		draining := h.busy(stream)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !errors.Is(err, os.ErrDeadlineExceeded) {
				h.logger.Debug("unreadable request on a stream", "error", err)
			}
			_ = stream.Close()
			return
		}
		t.keepAlive = !req.Close && !draining
		if !h.exchange(t, req) || !t.keepAlive {
			_ = stream.Close()
			return
		}
	}
}

// exchange sends req to the local service and its response to the
// stream. It reports whether the stream can carry another request.
func (h *httpServer) exchange(t *tunnel, req *http.Request) bool {
	if upgrade := httpwire.UpgradeType(req.Header); upgrade != "" {
		h.upgrade(t, req, upgrade)
		return false
	}
	hasBody := req.Body != http.NoBody
	// A request without a body sent on a reused connection that the
	// service closed meanwhile is sent again on a new one, once; one
	// with a body cannot be replayed.
	replayable := !hasBody && (req.Method == http.MethodGet || req.Method == http.MethodHead || req.Method == http.MethodOptions)
	uri := h.requestURI(req)
	httpwire.RemoveHopByHop(req.Header)
	chunked := hasBody && req.ContentLength < 0

	for attempt := 0; ; attempt++ {
		local, reused, err := h.getLocal(t, req)
		if err != nil {
			return h.writeUnavailable(t.bw, req, err, t.keepAlive)
		}
		resp, lbr, body, err := h.roundTrip(local, req, uri, chunked, t.bodyBuffered(req))
		if err != nil {
			t.conns.remove(local)
			_ = local.Close()
			if reused && replayable && attempt == 0 {
				h.logger.Debug("kept-alive local connection failed; retrying on a new one", "error", err)
				continue
			}
			var readErr *httpwire.ReadError
			if errors.As(err, &readErr) {
				return false // the server abandoned the request
			}
			return h.writeUnavailable(t.bw, req, err, t.keepAlive)
		}
		x := &localExchange{h: h, t: t, local: local, lbr: lbr, body: body}
		return h.writeResponse(t, req, resp, x)
	}
}

// localExchange is the local side of an exchange once the response head
// arrived: the connection, its reader and the request body's copy.
type localExchange struct {
	h     *httpServer
	t     *tunnel
	local net.Conn
	lbr   *bufio.Reader
	body  *bodyCopy
	// pending: the body was still being sent when the response ended;
	// reusable is then what release was told.
	pending  bool
	reusable bool
}

// release is called as soon as the response was read from the local
// connection, before the stream's last write, so that the connection is
// back in the pool when the next request follows at once. reusable
// tells whether it can carry another request.
func (x *localExchange) release(reusable bool) {
	reusable = reusable && x.lbr.Buffered() == 0
	httpwire.PutReader(x.lbr)
	x.lbr = nil
	if !x.body.finishing() {
		// The service answered before it got the whole body: finish
		// decides once the response is out.
		x.pending, x.reusable = true, reusable
		return
	}
	x.t.conns.remove(x.local)
	if x.body.waitAtMost(bodyLinger, func() { _ = x.local.Close() }) == nil && reusable {
		x.h.pool.Put(x.h.addr, x.local)
	} else {
		_ = x.local.Close()
	}
}

// finish is called once the response was written; it reports whether
// the request body was sent completely, so that the stream can carry
// another request.
func (x *localExchange) finish() bool {
	if !x.pending {
		return x.body.wait() == nil
	}
	// Usually the copy is just finishing; a service that answered
	// without reading the whole body gets a moment more, then the rest
	// is cut: it is not wanted, and the stream cannot carry more.
	err := x.body.waitAtMost(bodyLinger, func() {
		_ = x.t.stream.SetReadDeadline(longAgo)
		_ = x.local.Close()
	})
	x.t.conns.remove(x.local)
	if err == nil && x.reusable {
		x.h.pool.Put(x.h.addr, x.local)
	} else {
		_ = x.local.Close()
	}
	return err == nil
}

// bodyBuffered reports whether req's whole body (of known length) has
// already arrived in t's buffer.
func (t *tunnel) bodyBuffered(req *http.Request) bool {
	return req.ContentLength > 0 && int64(t.br.Buffered()) >= req.ContentLength
}

// getLocal returns a connection to the local service, tracked as in use
// by t's session.
func (h *httpServer) getLocal(t *tunnel, req *http.Request) (net.Conn, bool, error) {
	local, reused, err := h.pool.Get(req.Context(), h.addr)
	if err != nil {
		return nil, false, err
	}
	if !t.conns.add(local) {
		return nil, false, errors.New("the upstream connection closed")
	}
	return local, reused, nil
}

// sessionConns tracks the local connections in use by a session's
// exchanges, so that the end of the session (the server went away, or
// the agent's grace period ended) ends the exchanges still waiting for
// the local service.
type sessionConns struct {
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// add tracks c; once the session ended it closes c and returns false.
func (s *sessionConns) add(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		_ = c.Close()
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *sessionConns) remove(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

func (s *sessionConns) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for c := range s.conns {
		_ = c.Close()
	}
	clear(s.conns)
}

// bodyCopy is a request body being written by its own goroutine.
type bodyCopy struct {
	done chan struct{}
	err  error // set before done is closed
	// readAll is set once the whole body was read from the stream: only
	// its last write is left.
	readAll atomic.Bool
}

func startBodyCopy(dst io.Writer, req *http.Request, chunked bool) *bodyCopy {
	b := &bodyCopy{done: make(chan struct{})}
	go func() {
		defer close(b.done)
		b.err = httpwire.WriteBody(dst, &eofNotingReader{r: req.Body, eof: &b.readAll}, chunked, req.Trailer)
	}()
	return b
}

// finishing reports whether the copy ended or only its last write is
// left.
func (b *bodyCopy) finishing() bool {
	return b == nil || b.readAll.Load()
}

// eofNotingReader sets eof when r is exhausted.
type eofNotingReader struct {
	r   io.Reader
	eof *atomic.Bool
}

func (e *eofNotingReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err == io.EOF {
		e.eof.Store(true)
	}
	return n, err
}

// wait returns the copy's outcome once it ended. A nil bodyCopy (no
// body, or one written with the head) ended well.
func (b *bodyCopy) wait() error {
	if b == nil {
		return nil
	}
	<-b.done
	return b.err
}

// waitAtMost is wait, calling abort (which must make the copy end) if
// the copy has not ended within d.
func (b *bodyCopy) waitAtMost(d time.Duration, abort func()) error {
	if b == nil {
		return nil
	}
	select {
	case <-b.done:
		return b.err
	default:
	}
	timer := time.AfterFunc(d, abort)
	defer timer.Stop()
	return b.wait()
}

// roundTrip writes req (head and body) on local and reads the response
// head. A small body that already arrived (buffered) goes with the head;
// any other is written by its own goroutine (body), so that it streams
// and a service that answers before it read the whole body is not
// blocked. On error lbr is released.
func (h *httpServer) roundTrip(local net.Conn, req *http.Request, uri string, chunked, buffered bool) (resp *http.Response, lbr *bufio.Reader, body *bodyCopy, err error) {
	lbw := httpwire.GetWriter(local)
	httpwire.WriteRequestHead(lbw, req, uri, chunked, false)
	if req.Body != http.NoBody {
		if buffered && req.ContentLength <= int64(lbw.Available()) {
			// A small body that already arrived goes out with the head
			// (the server writes them in one frame).
			_, err = io.CopyN(lbw, req.Body, req.ContentLength)
			if err != nil {
				httpwire.PutWriter(lbw)
				return nil, nil, nil, &httpwire.ReadError{Err: err}
			}
		} else {
			body = &bodyCopy{} // started once the head is out
		}
	}
	err = lbw.Flush()
	httpwire.PutWriter(lbw)
	if err != nil {
		return nil, nil, nil, err
	}
	if body != nil {
		body = startBodyCopy(local, req, chunked)
	}
	lbr = httpwire.GetReader(local)
	resp, err = httpwire.ReadResponse(lbr, req)
	if err != nil {
		httpwire.PutReader(lbr)
		if body != nil {
			_ = local.Close() // unblocks the body's writer
			var readErr *httpwire.ReadError
			if berr := body.wait(); errors.As(berr, &readErr) {
				return nil, nil, nil, berr
			}
		}
		return nil, nil, nil, err
	}
	return resp, lbr, body, nil
}

// writeResponse writes resp to the stream: its head and, when the body
// is already buffered, the body in the same write; otherwise the body
// streams, one write per read. It releases x's connection as soon as the
// response was read from it and reports whether the stream can carry
// another request.
func (h *httpServer) writeResponse(t *tunnel, req *http.Request, resp *http.Response, x *localExchange) (streamOK bool) {
	bw := t.bw
	httpwire.RemoveHopByHop(resp.Header)
	noBody := resp.Body == http.NoBody || req.Method == http.MethodHead
	// An unknown length is chunked on the stream, so that a body cut
	// short by the service shows as truncated rather than complete.
	chunked := !noBody && (resp.ContentLength < 0 || len(resp.Trailer) > 0)
	// A body delimited by the connection's close leaves nothing to
	// reuse; req.Close is about the stream, not the local connection.
	reusable := !resp.Close && (noBody || resp.ContentLength >= 0 || len(resp.TransferEncoding) > 0)
	httpwire.WriteResponseHead(bw, resp, chunked, !t.keepAlive)
	// resp.Body is never closed: it reads from the local reader, which
	// release recycles; a body read to its end has its trailer already.
	var err error
	switch {
	case noBody:
		x.release(reusable)
		err = t.flushLast()
	case !chunked && int64(x.lbr.Buffered()) >= resp.ContentLength && resp.ContentLength <= int64(bw.Available()):
		_, err = io.CopyN(bw, resp.Body, resp.ContentLength)
		x.release(reusable && err == nil)
		if err == nil {
			err = t.flushLast()
		}
	default:
		if err = bw.Flush(); err == nil {
			err = httpwire.WriteBody(t.stream, resp.Body, chunked, resp.Trailer)
		}
		x.release(reusable && err == nil)
	}
	bodySent := x.finish()
	if err != nil {
		var readErr *httpwire.ReadError
		if errors.As(err, &readErr) {
			h.logger.Debug("local service cut the response body", "method", req.Method, "path", req.URL.Path, "error", err)
		}
		return false
	}
	return bodySent
}

// upgrade passes an upgrade request (WebSocket and the like) to a new
// local connection and, when the service switches protocols, pipes the
// stream and the connection both ways until either ends.
func (h *httpServer) upgrade(t *tunnel, req *http.Request, upgrade string) {
	uri := h.requestURI(req)
	httpwire.RemoveHopByHop(req.Header)
	req.Header["Connection"] = []string{"Upgrade"}
	req.Header["Upgrade"] = []string{upgrade}
	local, _, err := h.getLocal(t, req)
	if err != nil {
		h.writeUnavailable(t.bw, req, err, false)
		return
	}
	defer t.conns.remove(local)
	resp, lbr, body, err := h.roundTrip(local, req, uri, req.Body != http.NoBody && req.ContentLength < 0, t.bodyBuffered(req))
	if err != nil {
		_ = local.Close()
		h.writeUnavailable(t.bw, req, err, false)
		return
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || body.wait() != nil {
		t.keepAlive = false
		h.writeResponse(t, req, resp, &localExchange{h: h, t: t, local: local, lbr: lbr, body: body})
		return
	}
	httpwire.WriteResponseHead(t.bw, resp, false, false)
	// Bytes that followed the heads go first, then the pipe.
	err = flushBuffered(t.bw, lbr)
	httpwire.PutReader(lbr)
	if err != nil {
		_ = local.Close()
		return
	}
	if n := t.br.Buffered(); n > 0 {
		early, _ := t.br.Peek(n)
		if _, err := local.Write(early); err != nil {
			_ = local.Close()
			return
		}
	}
	protocol.Pipe(t.stream, local, 0)
}

// flushBuffered writes what br holds after bw's content, then flushes.
func flushBuffered(bw *bufio.Writer, br *bufio.Reader) error {
	if n := br.Buffered(); n > 0 {
		buffered, _ := br.Peek(n)
		_, _ = bw.Write(buffered)
	}
	return bw.Flush()
}

// requestURI is the request target sent to the local service: the
// request's, after the target URL's path prefix (config.ParseServiceAddr
// allows no query in the target).
func (h *httpServer) requestURI(req *http.Request) string {
	if h.prefix == "" {
		return req.RequestURI
	}
	path := req.URL.EscapedPath()
	if path == "" {
		path = "/"
	}
	uri := h.prefix + path
	if req.URL.RawQuery != "" {
		uri += "?" + req.URL.RawQuery
	}
	return uri
}

// writeUnavailable answers 502 with a JSON error when the local service
// cannot be reached. It reports whether the stream can go on.
func (h *httpServer) writeUnavailable(bw *bufio.Writer, req *http.Request, cause error, keepAlive bool) bool {
	h.logger.Warn("local service unavailable", "target", h.addr, "method", req.Method, "path", req.URL.Path, "error", cause)
	body, _ := json.Marshal(map[string]string{"error": "the upstream agent cannot reach its local service: " + cause.Error()})
	body = append(body, '\n')
	fmt.Fprintf(bw, "HTTP/1.1 502 Bad Gateway\r\nContent-Type: application/json\r\nContent-Length: %d\r\n", len(body))
	if !keepAlive || req.Body != http.NoBody {
		// An unread request body leaves the stream unusable.
		bw.WriteString("Connection: close\r\n")
		keepAlive = false
	}
	bw.WriteString("\r\n")
	bw.Write(body)
	return bw.Flush() == nil && keepAlive
}
