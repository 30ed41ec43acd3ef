package proxy

import (
	"errors"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/pico-proxy/pico/internal/protocol"
	"github.com/pico-proxy/pico/internal/upstream"
)

// roundTrip routes req to a local upstream stream or another node and
// returns the response, retrying where that is safe.
func (p *Proxy) roundTrip(req *http.Request, ex *exchange) (*http.Response, error) {
	ctx := req.Context()
	var body *guardedBody
	if req.Body != nil && req.Body != http.NoBody {
		body = &guardedBody{rc: req.Body}
		req.Body = body
	}
	for {
		var (
			session *upstream.Session
			node    Node
			err     error
		)
		if ex.firstNode != nil {
			node, ex.firstNode = *ex.firstNode, nil
		} else {
			session, node, err = p.route(ctx, ex)
			if err != nil {
				return nil, err
			}
		}
		ex.attempts++
		canRetry := ex.attempts < maxAttempts

		if session != nil {
			resp, err, retry := p.roundTripLocal(req, ex, session)
			if err == nil {
				return resp, nil
			}
			if retry && canRetry && body.reusable() {
				p.logger.Debug("retrying on another upstream", "endpoint", ex.endpoint, "error", err)
				ex.triedSessions = append(ex.triedSessions, session)
				if body != nil {
					body = body.next()
					req.Body = body
				}
				continue
			}
			return nil, err
		}

		resp, err, retry := p.forward(req, ex, node)
		if retry && canRetry && body.reusable() {
			p.logger.Debug("retrying on another node", "endpoint", ex.endpoint, "node", node.ID, "error", err)
			if resp != nil {
				_ = resp.Body.Close()
			}
			ex.triedNodes = append(ex.triedNodes, node.ID)
			if body != nil {
				body = body.next()
				req.Body = body
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		resp.Header.Del(NoUpstreamHeader)
		return resp, nil
	}
}

// Forwarding to other nodes: HTTP/1.1 with keep-alive over pooled
// connections, exchanged by the request's own goroutine (exchangeOver).
const (
	// forwardDialTimeout bounds connecting to another node.
	forwardDialTimeout = 3 * time.Second
	// nodeIdleTimeout closes node connections idle for longer.
	nodeIdleTimeout = 30 * time.Second
	// forwardTimeoutMargin is added to the gateway timeout when waiting
	// for another node: it answers 504 itself after the gateway timeout.
	forwardTimeoutMargin = 2 * time.Second
)

// forward sends req to node over a pooled keep-alive connection. retry
// reports that nothing reached the node's upstream (the connection was
// refused, or the node answered that it has no upstream for the
// endpoint) or that req may be replayed, so that another node may be
// tried.
func (p *Proxy) forward(req *http.Request, ex *exchange, node Node) (resp *http.Response, err error, retry bool) {
	req.URL.Scheme = "http"
	req.URL.Host = node.ProxyAddr
	// The receiving node finds the endpoint the same way for every route
	// (the TCP route names it in the path, not in a header).
	req.Header.Set(protocol.EndpointHeader, ex.endpoint)
	p.router.SignForward(req)
	p.metrics.forwarded.WithLabelValues("out").Inc()
	ex.node = node.ID
	ex.upstream = node.ProxyAddr

	conn, reused, err := p.nodes.Get(req.Context(), node.ProxyAddr)
	if err != nil {
		if ctxErr := req.Context().Err(); ctxErr != nil {
			return nil, ctxErr, false
		}
		// A refused or timed-out connection, or a failed TLS handshake
		// (e.g. members holding certificates that do not trust each
		// other): say so, as the retry hides it from the client.
		p.logger.Warn("cannot reach node", "endpoint", ex.endpoint, "node", node.ID, "addr", node.ProxyAddr, "error", err)
		p.router.ReportUnreachable(node.ID)
		return nil, &upstreamError{err: err}, true // nothing sent
	}
	c := &streamConn{conn: conn, pool: p.nodes, addr: node.ProxyAddr, keepAlive: true, router: p.router, nodeID: node.ID}
	resp, err, retry = p.exchangeOver(req, ex, c, reused, p.gatewayTimeout+forwardTimeoutMargin)
	if err != nil {
		return nil, err, retry
	}
	if resp.StatusCode == http.StatusBadGateway && resp.Header.Get(NoUpstreamHeader) != "" {
		return resp, nil, true
	}
	return resp, nil, false
}

// guardedBody wraps a request body so that a retry can prove no byte of
// it was consumed by the failed attempt, and so that the failed attempt
// (whose transport may still hold the body) can no longer read it.
// Close is a no-op: the server closes the real body.
type guardedBody struct {
	mu     sync.Mutex
	rc     io.ReadCloser
	read   int64
	sealed bool
}

var errBodySealed = errors.New("request body handed to a later attempt")

func (g *guardedBody) Read(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.sealed {
		return 0, errBodySealed
	}
	n, err := g.rc.Read(p)
	g.read += int64(n)
	return n, err
}

func (g *guardedBody) Close() error { return nil }

// reusable reports whether no byte was read, sealing the body against
// further reads by the attempt that held it. A nil body is reusable.
func (g *guardedBody) reusable() bool {
	if g == nil {
		return true
	}
	if !g.mu.TryLock() {
		return false // a read is in progress
	}
	defer g.mu.Unlock()
	if g.read > 0 {
		return false
	}
	g.sealed = true
	return true
}

// next returns the body for the following attempt.
func (g *guardedBody) next() *guardedBody {
	return &guardedBody{rc: g.rc}
}
