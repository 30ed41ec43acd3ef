package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pico-proxy/pico/internal/connpool"
	"github.com/pico-proxy/pico/internal/httpwire"
	"github.com/pico-proxy/pico/internal/upstream"
	"github.com/pico-proxy/pico/internal/yamux"
)

// abortDrainTimeout bounds how long an abandoned stream is drained (so the
// agent's blocked writes finish and it notices the close).
const abortDrainTimeout = 5 * time.Second

// keepBufferLimit: an idle stream keeps its receive buffer (saving an
// allocation per response) unless its last exchange received more.
const keepBufferLimit = 16 << 10

// longAgo is a deadline in the past: it unblocks a connection's pending
// reads.
var longAgo = time.Unix(1, 0)

// roundTripLocal sends req over a stream of the leased session s (an idle
// kept-alive one, or a new one) and reads the response head. On success
// the response body owns the stream and the lease. retry reports that
// the failure is safe to retry on another upstream.
func (p *Proxy) roundTripLocal(req *http.Request, ex *exchange, s *upstream.Session) (resp *http.Response, err error, retry bool) {
	stream, reused, err := s.OpenReusable()
	if err != nil {
		s.Release()
		return nil, &upstreamError{err: err}, true
	}
	ex.node = p.localID
	ex.upstream = s.RemoteAddr()
	if ex.attempts > 1 {
		// An earlier attempt went to another node and was signed.
		stripForwardHeaders(req.Header)
	}
	c := &streamConn{conn: stream, session: s, keepAlive: p.reuseStreams}
	return p.exchangeOver(req, ex, c, reused, p.gatewayTimeout)
}

// exchangeOver writes req on c's connection and reads the response head,
// waiting at most timeout for it. On success the response body owns c;
// otherwise c is finished. retry reports that nothing reached the far end
// or that req may be replayed.
func (p *Proxy) exchangeOver(req *http.Request, ex *exchange, c *streamConn, reused bool, timeout time.Duration) (resp *http.Response, err error, retry bool) {
	upgrade := req.Header.Get("Upgrade") != ""
	c.hasBody = req.Body != nil && req.Body != http.NoBody
	chunked := c.hasBody && req.ContentLength < 0
	if upgrade {
		c.keepAlive = false
	}

	bw := httpwire.GetWriter(c.conn)
	// One request per stream: asking the agent to close its side after
	// the response completes the stream's close at once.
	httpwire.WriteRequestHead(bw, req, req.URL.RequestURI(), chunked, !c.keepAlive && !upgrade)
	err = bw.Flush()
	httpwire.PutWriter(bw)
	if err != nil {
		c.finish(false)
		return nil, &upstreamError{err: err}, nothingSent(err) || idempotent(req)
	}
	if c.hasBody {
		go c.writeBody(req, chunked)
	}

	ctx := req.Context()
	c.startHeadTimer(timeout, p.suspectAfter)
	c.br = httpwire.GetReader(c)
	c.headRoom = p.maxRespHead
	resp, err = httpwire.ReadResponse(c.br, req)
	c.headRoom = 0 // the body is not bounded
	timedOut, nodeGone := c.stopHeadTimer()
	if timedOut || nodeGone {
		// even if the head arrived as the wait was cut
		if err == nil {
			_ = resp.Body.Close()
			err = os.ErrDeadlineExceeded
		}
	}
	if err != nil {
		received := c.received
		headTooLarge := c.headTooLarge
		c.finish(false)
		if ctx.Err() != nil {
			return nil, context.Cause(ctx), false
		}
		if bodyErr := c.bodyErr.Load(); bodyErr != nil {
			return nil, &requestBodyError{err: *bodyErr}, false
		}
		if timedOut {
			return nil, &gatewayTimeoutError{timeout: p.gatewayTimeout}, false
		}
		if headTooLarge {
			return nil, &upstreamError{err: fmt.Errorf("the response head exceeds proxy.max_response_header_bytes (%d bytes)", p.maxRespHead)}, false
		}
		if nodeGone {
			err = fmt.Errorf("node %s failed while the request waited for its answer", c.nodeID)
		}
		// The connection failed, or the far end closed a reused one,
		// before any response byte: a replayable request may go
		// elsewhere.
		if reused && received == 0 {
			p.logger.Debug("reused connection closed by the far end", "endpoint", ex.endpoint, "error", err)
		}
		return nil, &upstreamError{err: err}, received == 0 && idempotent(req)
	}
	if resp.Close {
		c.keepAlive = false
	}
	// While the body may still block, a client that goes away ends the
	// wait (a body already buffered cannot block).
	if resp.StatusCode == http.StatusSwitchingProtocols || !bodyBuffered(resp, c.br) {
		c.stopAbort = context.AfterFunc(ctx, c.abort)
	}

	if resp.StatusCode == http.StatusSwitchingProtocols {
		ex.status = http.StatusSwitchingProtocols
		resp.Body = &upgradedConn{Conn: c.conn, c: c}
		return resp, nil, false
	}
	resp.Body = &connBody{body: resp.Body, c: c}
	return resp, nil, false
}

// The wait for a response head, bounded by one timer per request (rather
// than a read deadline: yamux starts a timer for every read that waits
// under a deadline). The timer first fires after suspectAfter and has the
// far end checked: an upstream session is pinged (Suspect); for another
// node, a goroutine watches the routing table until the head arrives and
// aborts the wait if the node is declared failed, so that a replayable
// request goes to another node instead of waiting out the timeout. Then
// the timer is set again for the rest of the timeout. Requests answered
// sooner cost nothing more.
const (
	headWaiting   int32 = iota // before suspectAfter
	headSuspected              // after it (or without it): waiting for the timeout
	headArrived
	headTimedOut
	headNodeGone // aborted: the node failed
)

// startHeadTimer starts the wait: the connection's reads are aborted once
// timeout has passed without stopHeadTimer.
func (c *streamConn) startHeadTimer(timeout, suspectAfter time.Duration) {
	first := timeout
	if suspectAfter > 0 && suspectAfter < timeout && (c.session != nil || c.router != nil) {
		first = suspectAfter
	} else {
		c.head.Store(headSuspected)
	}
	c.headRest = timeout - first
	c.headTimer.Store(time.AfterFunc(first, c.headTimerFired))
}

func (c *streamConn) headTimerFired() {
	if c.head.CompareAndSwap(headWaiting, headSuspected) {
		if c.session != nil {
			c.session.Suspect()
		} else {
			go c.watchNode()
		}
		c.headTimer.Store(time.AfterFunc(c.headRest, c.headTimerFired))
		return
	}
	if c.head.CompareAndSwap(headSuspected, headTimedOut) {
		c.abort()
	}
}

// nodeWatchRecheck bounds how long watchNode outlives the wait it watches.
const nodeWatchRecheck = 250 * time.Millisecond

// watchNode aborts the wait for the head once the node is gone.
func (c *streamConn) watchNode() {
	recheck := time.NewTimer(nodeWatchRecheck)
	defer recheck.Stop()
	for c.head.Load() == headSuspected {
		changed := c.router.Changed()
		if c.router.Gone(c.nodeID) {
			if c.head.CompareAndSwap(headSuspected, headNodeGone) {
				c.abort()
			}
			return
		}
		select {
		case <-changed:
		case <-recheck.C:
			recheck.Reset(nodeWatchRecheck)
		}
	}
}

// stopHeadTimer ends the wait: it reports whether the timeout came first,
// or the node failed. A timer set again meanwhile may still fire: it
// finds the head arrived and does nothing.
func (c *streamConn) stopHeadTimer() (timedOut, nodeGone bool) {
	if c.head.CompareAndSwap(headWaiting, headArrived) || c.head.CompareAndSwap(headSuspected, headArrived) {
		c.headTimer.Load().Stop()
		return false, false
	}
	state := c.head.Load()
	return state == headTimedOut, state == headNodeGone
}

// abort unblocks the connection's pending reads.
func (c *streamConn) abort() { _ = c.conn.SetReadDeadline(longAgo) }

// bodyBuffered reports whether resp's whole body is already in br.
func bodyBuffered(resp *http.Response, br *bufio.Reader) bool {
	return resp.Body == http.NoBody || resp.ContentLength >= 0 && int64(br.Buffered()) >= resp.ContentLength
}

// streamConn is the connection of one HTTP exchange with where it came
// from: a yamux stream of a leased upstream session, or a pooled TCP
// connection to another node.
type streamConn struct {
	conn     net.Conn
	session  *upstream.Session // the lease of a stream, or
	pool     *connpool.Pool    // the pool of a node connection
	addr     string            // the node's address (pool key)
	router   Router            // for a node connection: where to learn
	nodeID   string            // that the node failed
	br       *bufio.Reader
	received int64
	// headRoom, while the response head is read, is the most bytes the
	// connection may deliver until the head is complete; headTooLarge is
	// set once it had to refuse more.
	headRoom     int64
	headTooLarge bool
	// bodyErr is set when the request body could not be read from the
	// client; bodySent once it was written completely.
	bodyErr   atomic.Pointer[error]
	bodySent  atomic.Bool
	hasBody   bool
	keepAlive bool
	stopAbort func() bool
	once      sync.Once
	// The wait for the response head (startHeadTimer).
	head      atomic.Int32
	headTimer atomic.Pointer[time.Timer]
	headRest  time.Duration // from the suspicion to the timeout
}

var errResponseHeadTooLarge = errors.New("response head too large")

// Read reads from the connection, counting bytes (a retry is safe only if
// no response byte arrived).
func (c *streamConn) Read(p []byte) (int, error) {
	if c.headRoom > 0 {
		// Reading the response head: never past its bound.
		room := c.headRoom - c.received
		if room <= 0 {
			c.headTooLarge = true
			return 0, errResponseHeadTooLarge
		}
		if int64(len(p)) > room {
			p = p[:room]
		}
	}
	n, err := c.conn.Read(p)
	c.received += int64(n)
	return n, err
}

// finish ends the exchange on the connection once: after a complete
// exchange the connection is kept for another request (keep-alive) or
// closed; otherwise it is abandoned (a stream is drained in the
// background so the agent's writes do not stall). Then the lease of a
// stream is released.
func (c *streamConn) finish(complete bool) {
	c.once.Do(func() {
		if c.stopAbort != nil && !c.stopAbort() {
			complete = false // the client went away meanwhile
		}
		keep := complete && c.keepAlive && (!c.hasBody || c.bodySent.Load()) && c.br.Buffered() == 0
		switch {
		case keep && c.session != nil:
			stream := c.conn.(*yamux.Stream)
			if c.received > keepBufferLimit {
				stream.Shrink() // do not keep a large receive buffer idle
			}
			c.session.PutIdle(stream)
		case keep:
			c.pool.Put(c.addr, c.conn)
		default:
			_ = c.conn.Close()
			if !complete && c.session != nil && !c.headTooLarge {
				// Not an agent sending an endless head: yamux flow
				// control bounds what it can still send (the stream
				// window) without draining it.
				go drain(c.conn)
			}
		}
		if complete {
			httpwire.PutReader(c.br)
		}
		if c.session != nil {
			c.session.Release()
		}
	})
}

func drain(stream net.Conn) {
	_ = stream.SetReadDeadline(time.Now().Add(abortDrainTimeout))
	_, _ = io.Copy(io.Discard, stream)
}

// writeBody streams the request body to the upstream: each read from the
// client becomes one write (one yamux frame), so uploads stream. Its
// trailer follows a chunked body.
func (c *streamConn) writeBody(req *http.Request, chunked bool) {
	err := httpwire.WriteBody(c.conn, req.Body, chunked, req.Trailer)
	var readErr *httpwire.ReadError
	switch {
	case err == nil:
		c.bodySent.Store(true)
	case errors.As(err, &readErr):
		// The client's body broke: the upstream got a truncated
		// request, so abandon the exchange.
		c.bodyErr.Store(&readErr.Err)
		_ = c.conn.SetReadDeadline(longAgo)
	}
	// A write error means the stream ended; the response side reports it.
}

// connBody is a response body read from a streamConn; at EOF or Close it
// finishes the exchange.
type connBody struct {
	body io.ReadCloser
	c    *streamConn
	done bool
}

func (b *connBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.body.Read(p)
	if err == io.EOF {
		b.done = true
		b.c.finish(true)
	}
	return n, err
}

func (b *connBody) Close() error {
	if !b.done {
		b.done = true
		// Closing the inner body would read the rest of the response;
		// abandon the stream instead.
		b.c.finish(false)
	}
	return nil
}

// upgradedConn is the connection after a 101: buffered bytes first, then
// the connection; closing it abandons the exchange. As a wrapper it hides
// the connection's half close (see protocol.Pipe).
type upgradedConn struct {
	net.Conn // c.conn
	c        *streamConn
}

func (u *upgradedConn) Read(p []byte) (int, error) { return u.c.br.Read(p) }
func (u *upgradedConn) Close() error {
	u.c.finish(false)
	return nil
}
