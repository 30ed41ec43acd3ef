package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pico-proxy/pico/internal/auth"
	"github.com/pico-proxy/pico/internal/connpool"
	"github.com/pico-proxy/pico/internal/protocol"
	"github.com/pico-proxy/pico/internal/upstream"
)

// Options configures a Proxy.
type Options struct {
	// Registry holds this node's upstreams. Required.
	Registry *upstream.Registry
	// Router reaches other nodes; nil means this node is alone.
	Router Router
	// LocalID is this node's ID (access log).
	LocalID string
	// GatewayTimeout bounds the wait for an upstream's response headers;
	// after it the client gets 504.
	GatewayTimeout time.Duration
	// UpstreamWait bounds how long a request for an endpoint with no
	// upstream anywhere waits for one to appear (e.g. an agent
	// reconnecting after its node drained) before 502. Zero answers at
	// once (a pending registration is still waited for).
	UpstreamWait time.Duration
	// Auth, when enabled, requires proxy clients to present a token
	// permitting the endpoint (section proxy.auth), checked before
	// routing; requests forwarded by a verified member are not checked
	// again. Nil means open.
	Auth *auth.Verifier
	// DialNode connects to another node's proxy port for forwarding
	// (e.g. over TLS); nil means plain TCP with a 3 s timeout.
	DialNode connpool.DialFunc
	// SuspectAfter is how long a response head may take on a local
	// upstream before its session is reported to the registry as
	// possibly unresponsive (upstream.Session.Suspect: it is pinged).
	// Zero means one second.
	SuspectAfter time.Duration
	// OneRequestPerStream disables HTTP keep-alive on upstream streams:
	// every request then opens a stream and asks the agent to close it
	// after the response ("Connection: close").
	OneRequestPerStream bool
	// MaxResponseHeaderBytes bounds the response head an upstream (or
	// another node) may send, its informational (1xx) heads included:
	// past it the exchange is abandoned and the client gets 502. Zero
	// means DefaultMaxResponseHeaderBytes.
	MaxResponseHeaderBytes int64
	// Metrics receives the proxy's metrics; nil means none.
	Metrics prometheus.Registerer
	// Logger receives the access log and errors.
	Logger *slog.Logger
}

// DefaultMaxResponseHeaderBytes is the default bound on a response head
// (proxy.max_response_header_bytes).
const DefaultMaxResponseHeaderBytes = 1 << 20

// maxAttempts bounds the upstreams and nodes one request is tried on.
const maxAttempts = 3

// Proxy is the proxy port's http.Handler.
type Proxy struct {
	registry       *upstream.Registry
	router         Router
	localID        string
	auth           *auth.Verifier
	gatewayTimeout time.Duration
	upstreamWait   time.Duration
	suspectAfter   time.Duration
	maxRespHead    int64
	reuseStreams   bool
	logger         *slog.Logger
	metrics        *metrics

	nodes *connpool.Pool

	inFlight atomic.Int64
	draining atomic.Bool
	idle     chan struct{}
}

// New returns a Proxy.
func New(opts Options) *Proxy {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.GatewayTimeout <= 0 {
		opts.GatewayTimeout = 15 * time.Second
	}
	if opts.SuspectAfter <= 0 {
		opts.SuspectAfter = time.Second
	}
	if opts.MaxResponseHeaderBytes <= 0 {
		opts.MaxResponseHeaderBytes = DefaultMaxResponseHeaderBytes
	}
	logger := opts.Logger.With("subsystem", "proxy")
	p := &Proxy{
		registry:       opts.Registry,
		router:         opts.Router,
		localID:        opts.LocalID,
		auth:           opts.Auth,
		gatewayTimeout: opts.GatewayTimeout,
		upstreamWait:   opts.UpstreamWait,
		suspectAfter:   opts.SuspectAfter,
		maxRespHead:    opts.MaxResponseHeaderBytes,
		reuseStreams:   !opts.OneRequestPerStream,
		logger:         logger,
		metrics:        newMetrics(opts.Metrics),
		idle:           make(chan struct{}, 1),
	}
	p.nodes = connpool.New(connpool.Config{
		Dial:        opts.DialNode,
		DialTimeout: forwardDialTimeout,
		// Below the proxy port's idle timeout, so that it is the
		// forwarding side that closes node connections.
		IdleTimeout: nodeIdleTimeout,
	})
	return p
}

// ServeHTTP proxies r to its endpoint's upstream.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	ex := &exchange{ResponseWriter: w}
	p.begin()
	defer func() {
		v := recover()
		if v != nil && ex.status == 0 {
			ex.status = statusClientClosedRequest
		}
		p.end(ex, r, start)
		if v != nil {
			panic(v) // http.ErrAbortHandler: abort the client connection
		}
	}()

	p.acceptForwarding(ex, r)
	if ex.forwardedBy == "" && (len(r.TransferEncoding) > 0 || !r.ProtoAtLeast(1, 1)) {
		// Framing that may be ambiguous (RFC 9112, 6.1): net/http has
		// already removed a Content-Length sent with Transfer-Encoding,
		// and the Transfer-Encoding of an HTTP/1.0 request, so neither
		// case can be told apart from its harmless twin here (wrapping
		// the connection instead would not see through TLS). Every
		// chunked or HTTP/1.0 request therefore closes its connection
		// after the answer: nothing a peer that framed the bytes
		// differently sent after it is read as a request. This also
		// covers a chunked body that breaks after the response head
		// went out. A verified member's request is framed by Pico
		// (HTTP/1.1, one of the two headers): its pooled connection
		// stays open.
		w.Header()["Connection"] = connectionClose
	}

	if isReserved(r.URL.Path) {
		id, ok := protocol.EndpointFromPath(r.URL.Path, protocol.TCPPathPrefix, protocol.PikoTCPPathPrefix)
		if !ok {
			p.fail(ex, http.StatusNotFound, fmt.Sprintf("%s is reserved for Pico (TCP endpoints: GET %s{endpoint} as a WebSocket)", r.URL.Path, protocol.TCPPathPrefix))
			return
		}
		if err := protocol.ValidateEndpointID(id); err != nil {
			p.fail(ex, http.StatusBadRequest, err.Error())
			return
		}
		ex.endpoint = id
		if !p.authorize(ex, r) {
			return
		}
		p.serveTCP(ex, r)
		return
	}

	id, err := protocol.EndpointFromRequest(r)
	if err != nil {
		p.fail(ex, http.StatusBadRequest, err.Error())
		return
	}
	ex.endpoint = id
	if !p.authorize(ex, r) {
		return
	}
	if r.ContentLength != 0 {
		// Stream the response while the request body is still arriving
		// (otherwise net/http consumes the body before the first
		// response byte).
		_ = http.NewResponseController(w).EnableFullDuplex()
	}
	p.serveProxied(ex, r)
}

// connectionClose is the Connection header that makes net/http close the
// client connection after the answer (shared: never modified).
var connectionClose = []string{"close"}

func isReserved(path string) bool {
	return strings.HasPrefix(path, protocol.ReservedPathPrefix) || strings.HasPrefix(path, protocol.PikoReservedPathPrefix)
}

// acceptForwarding verifies a forwarded request and strips every
// forwarding header, so that neither the upstream nor this node's routing
// ever trusts one a client sent.
func (p *Proxy) acceptForwarding(ex *exchange, r *http.Request) {
	found := false
	for k := range r.Header {
		if strings.HasPrefix(k, forwardHeaderPrefix) || k == PikoForwardHeader {
			found = true
			break
		}
	}
	if !found {
		return
	}
	if p.router != nil && r.Header.Get(ForwardedByHeader) != "" {
		from, err := p.router.VerifyForward(r)
		if err == nil {
			ex.forwardedBy = from
			p.metrics.forwarded.WithLabelValues("in").Inc()
		} else {
			p.logger.Warn("rejected forwarding headers", "remote_addr", r.RemoteAddr, "error", err)
		}
	}
	stripForwardHeaders(r.Header)
}

// stripForwardHeaders deletes every forwarding header from h.
func stripForwardHeaders(h http.Header) {
	for k := range h {
		if strings.HasPrefix(k, forwardHeaderPrefix) || k == PikoForwardHeader {
			delete(h, k)
		}
	}
}

// writeError answers err as JSON with the status classify gives it.
func (p *Proxy) writeError(w http.ResponseWriter, ex *exchange, err error) {
	status := classify(err)
	if status == statusClientClosedRequest {
		ex.status = status
		return
	}
	var noUpstream *noUpstreamError
	var busy *busyError
	if ex.forwardedBy != "" && (errors.As(err, &noUpstream) || errors.As(err, &busy)) {
		// Nothing reached an upstream here: the forwarding node may try
		// another node.
		w.Header().Set(NoUpstreamHeader, "1")
	}
	var badBody *requestBodyError
	if errors.As(err, &badBody) {
		// What follows broken framing on the connection is no request.
		w.Header()["Connection"] = connectionClose
	}
	if status == http.StatusBadGateway && noUpstream == nil {
		p.logger.Warn("upstream failed", "endpoint", ex.endpoint, "node", ex.node, "upstream", ex.upstream, "error", err)
	}
	protocol.WriteError(w, status, err.Error())
}

func (p *Proxy) fail(ex *exchange, status int, msg string) {
	protocol.WriteError(ex, status, msg)
}

// route finds where ex's request goes: a leased local session (the caller
// must Release it) or a remote node. It waits for a pending registration,
// and up to UpstreamWait for an upstream to appear anywhere.
func (p *Proxy) route(ctx context.Context, ex *exchange) (*upstream.Session, Node, error) {
	var deadline time.Time
	for {
		localChanged := p.registry.Changed()
		var remoteChanged <-chan struct{}
		if p.router != nil {
			remoteChanged = p.router.Changed()
		}
		avail := upstream.None
		if !ex.remoteOnly {
			var s *upstream.Session
			s, avail = p.registry.Acquire(ex.endpoint, ex.triedSessions...)
			if s != nil {
				ex.routed = true
				return s, Node{}, nil
			}
		}
		switch {
		case avail == upstream.Pending:
			// An agent is being told it is registered: wait for it.
			if err := p.wait(ctx, localChanged, remoteChanged, time.Time{}); err != nil {
				return nil, Node{}, err
			}
			continue
		case ex.forwardedBy != "":
			if avail == upstream.Busy {
				return nil, Node{}, &busyError{endpoint: ex.endpoint}
			}
			return nil, Node{}, &noUpstreamError{endpoint: ex.endpoint}
		}
		if p.router != nil {
			if node, ok := p.router.PickRemote(ex.endpoint, ex.triedNodes...); ok {
				ex.routed = true
				return nil, node, nil
			}
		}
		if avail == upstream.Busy {
			ex.routed = true
			return nil, Node{}, &busyError{endpoint: ex.endpoint}
		}
		if deadline.IsZero() {
			deadline = time.Now().Add(p.upstreamWait)
		}
		if err := p.wait(ctx, localChanged, remoteChanged, deadline); err != nil {
			if errors.Is(err, errWaitExpired) {
				return nil, Node{}, &noUpstreamError{endpoint: ex.endpoint}
			}
			return nil, Node{}, err
		}
	}
}

var errWaitExpired = errors.New("wait expired")

// wait blocks until a routing change, the deadline (if any) or the end of
// ctx.
func (p *Proxy) wait(ctx context.Context, local, remote <-chan struct{}, deadline time.Time) error {
	var expired <-chan time.Time
	if !deadline.IsZero() {
		d := time.Until(deadline)
		if d <= 0 {
			return errWaitExpired
		}
		t := time.NewTimer(d)
		defer t.Stop()
		expired = t.C
	}
	select {
	case <-local:
		return nil
	case <-remote:
		return nil
	case <-expired:
		return errWaitExpired
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

func (p *Proxy) begin() {
	p.inFlight.Add(1)
	p.metrics.inFlight.Inc()
}

// end records the request: metrics, in-flight count and the access log.
func (p *Proxy) end(ex *exchange, r *http.Request, start time.Time) {
	elapsed := time.Since(start)
	status := ex.status
	if status == 0 {
		if r.Context().Err() != nil {
			status = statusClientClosedRequest
		} else {
			status = http.StatusOK
		}
	}
	label := ""
	if ex.routed {
		label = ex.endpoint
	}
	p.metrics.requests.WithLabelValues(label, p.metrics.status(status)).Inc()
	p.metrics.duration.Observe(elapsed.Seconds())
	p.metrics.inFlight.Dec()

	if p.logger.Enabled(r.Context(), slog.LevelInfo) {
		attrs := []slog.Attr{
			slog.String("method", r.Method),
			slog.String("host", r.Host),
			slog.String("path", r.URL.Path),
			slog.Int("status", status),
			slog.Float64("duration_ms", float64(elapsed.Microseconds())/1000),
			slog.String("endpoint", ex.endpoint),
			slog.String("upstream_node", ex.node),
			slog.String("upstream", ex.upstream),
			slog.String("remote_addr", r.RemoteAddr),
		}
		if ex.forwardedBy != "" {
			attrs = append(attrs, slog.String("forwarded_by", ex.forwardedBy))
		}
		p.logger.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
	}

	if p.inFlight.Add(-1) == 0 && p.draining.Load() {
		select {
		case p.idle <- struct{}{}:
		default:
		}
	}
}

// InFlight returns the number of requests and tunnels being served.
func (p *Proxy) InFlight() int64 { return p.inFlight.Load() }

// WaitIdle waits until no request or tunnel is in flight (hijacked
// WebSocket and TCP tunnels included, which http.Server.Shutdown does not
// track) or ctx ends.
func (p *Proxy) WaitIdle(ctx context.Context) error {
	p.draining.Store(true)
	for p.inFlight.Load() > 0 {
		select {
		case <-p.idle:
		case <-ctx.Done():
			return fmt.Errorf("%d requests still in flight: %w", p.inFlight.Load(), ctx.Err())
		}
	}
	return nil
}

// CloseIdleConnections closes idle pooled connections to other nodes.
func (p *Proxy) CloseIdleConnections() { p.nodes.Close() }
