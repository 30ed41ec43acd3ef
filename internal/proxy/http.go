package proxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/pico-proxy/pico/internal/httpwire"
	"github.com/pico-proxy/pico/internal/protocol"
)

// serveProxied proxies r (already routed to ex.endpoint) and answers the
// client: the request is rewritten in place (the handler owns it), sent
// by roundTrip, and the response head and body are passed back, streamed.
func (p *Proxy) serveProxied(ex *exchange, r *http.Request) {
	p.prepareRequest(ex, r)
	resp, err := p.roundTrip(r, ex)
	if err != nil {
		p.writeError(ex, ex, err)
		return
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		p.switchProtocols(ex, r, resp)
		return
	}
	defer resp.Body.Close()

	httpwire.RemoveHopByHop(resp.Header)
	resp.Header.Del(NoUpstreamHeader)
	h := ex.Header()
	for k, v := range resp.Header {
		h[k] = v
	}
	if len(resp.Trailer) > 0 {
		names := make([]string, 0, len(resp.Trailer))
		for k := range resp.Trailer {
			names = append(names, k)
		}
		h["Trailer"] = []string{strings.Join(names, ", ")}
	}
	ex.WriteHeader(resp.StatusCode)

	if err := copyBody(ex, resp.Body, streaming(resp)); err != nil {
		// Headers are out: abort the client connection so that a
		// truncated body cannot look complete.
		p.logger.Debug("response body cut", "endpoint", ex.endpoint, "error", err)
		panic(http.ErrAbortHandler)
	}
	_ = resp.Body.Close() // now, so that resp.Trailer is complete
	for k, v := range resp.Trailer {
		h[http.TrailerPrefix+k] = v
	}
}

// prepareRequest turns the client's request into the upstream request:
// hop-by-hop headers removed (an upgrade's kept), X-Forwarded-* set, no
// Expect (the body is read, and 100 Continue sent, as soon as it is
// proxied).
func (p *Proxy) prepareRequest(ex *exchange, r *http.Request) {
	upgrade := httpwire.UpgradeType(r.Header)
	te := r.Header["Te"]
	httpwire.RemoveHopByHop(r.Header)
	delete(r.Header, "Expect")
	if httpwire.HasToken(te, "trailers") {
		r.Header["Te"] = []string{"trailers"}
	}
	if upgrade != "" {
		r.Header["Connection"] = []string{"Upgrade"}
		r.Header["Upgrade"] = []string{upgrade}
	}
	if r.ContentLength == 0 {
		r.Body = nil
	}
	if ex.forwardedBy != "" {
		return // the member that forwarded it set X-Forwarded-*
	}
	clientIP, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		clientIP = r.RemoteAddr
	}
	if prior := r.Header["X-Forwarded-For"]; len(prior) > 0 {
		clientIP = strings.Join(prior, ", ") + ", " + clientIP
	}
	proto := forwardedProtoHTTP
	if r.TLS != nil {
		proto = forwardedProtoHTTPS
	}
	r.Header["X-Forwarded-For"] = []string{clientIP}
	r.Header["X-Forwarded-Proto"] = proto
	r.Header["X-Forwarded-Host"] = []string{r.Host}
	delete(r.Header, "Forwarded")
}

// X-Forwarded-Proto values, shared (full slices: an append copies).
var (
	forwardedProtoHTTP  = []string{"http"}
	forwardedProtoHTTPS = []string{"https"}
)

// streaming reports whether a response must reach the client as it comes
// (unknown length, or server-sent events), flushing every write.
func streaming(resp *http.Response) bool {
	if resp.ContentLength == -1 {
		return true
	}
	ct, _, _ := strings.Cut(resp.Header.Get("Content-Type"), ";")
	return strings.EqualFold(strings.TrimSpace(ct), "text/event-stream")
}

// copyBody copies body to the client with a pooled buffer, flushing after
// every write when flush is set.
func copyBody(ex *exchange, body io.Reader, flush bool) error {
	buf := httpwire.Buffers.Get()
	defer httpwire.Buffers.Put(buf)
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			if _, werr := ex.Write(buf[:n]); werr != nil {
				return werr
			}
			if flush {
				ex.Flush()
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// switchProtocols completes an upgrade (WebSocket and the like): the 101
// goes to the client, then bytes are piped both ways until either side
// ends.
func (p *Proxy) switchProtocols(ex *exchange, r *http.Request, resp *http.Response) {
	backend := resp.Body.(*upgradedConn)
	defer backend.Close()
	if up := httpwire.UpgradeType(resp.Header); up == "" || !strings.EqualFold(up, r.Header.Get("Upgrade")) {
		p.writeError(ex, ex, &upstreamError{err: errors.New("the upstream switched to a protocol the client did not ask for")})
		return
	}
	client, brw, err := http.NewResponseController(ex.ResponseWriter).Hijack()
	if err != nil {
		p.writeError(ex, ex, &upstreamError{err: err})
		return
	}
	defer client.Close()
	ex.status = http.StatusSwitchingProtocols
	resp.Body = nil
	if err := resp.Write(brw); err != nil {
		return
	}
	if err := brw.Flush(); err != nil {
		return
	}
	protocol.Pipe(&bufferedConn{Conn: client, br: brw.Reader}, backend, 0)
}

// bufferedConn is a connection whose first bytes were already read into
// br. As a wrapper it hides the connection's half close, so a pipe
// through it ends with either direction, as an upgraded connection should.
type bufferedConn struct {
	net.Conn
	br *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.br.Read(p) }
