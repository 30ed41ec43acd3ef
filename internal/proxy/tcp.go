package proxy

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/pico-proxy/pico/internal/httpwire"
	"github.com/pico-proxy/pico/internal/protocol"
)

// serveTCP serves GET /_pico/v1/tcp/{endpoint}: a WebSocket whose byte
// stream is piped to a stream of the endpoint's upstream. Without a local
// upstream the upgrade is forwarded to a node that has one, which pipes
// it in turn (or refuses it: the node holding the upstream knows its
// protocol). An upstream that registered the endpoint as HTTP is refused
// (400); one that did not say (Piko's agents) is served, as Piko does, so
// that `piko forward` keeps working with Piko's TCP agents.
func (p *Proxy) serveTCP(ex *exchange, r *http.Request) {
	if !isWebSocketUpgrade(r) {
		p.fail(ex, http.StatusBadRequest, "the TCP route is a WebSocket: send GET with Connection: Upgrade and Upgrade: websocket")
		return
	}
	ctx := r.Context()
	for {
		session, node, err := p.route(ctx, ex)
		if err != nil {
			p.writeError(ex, ex, err)
			return
		}
		ex.attempts++
		if session == nil {
			ex.firstNode = &node
			ex.remoteOnly = true
			p.serveProxied(ex, r)
			return
		}
		if proto := session.Protocol(); proto != protocol.ProtocolTCP && proto != protocol.ProtocolUnknown {
			// Raw client bytes to an HTTP server would pass by the
			// header handling of the proxy (X-Forwarded-*, hop-by-hop).
			session.Release()
			p.fail(ex, http.StatusBadRequest, fmt.Sprintf("endpoint %q is an %s endpoint (its agent registered it with protocol %s): the TCP route %s{endpoint} is only for TCP endpoints; send it HTTP requests instead", ex.endpoint, strings.ToUpper(string(proto)), proto, protocol.TCPPathPrefix))
			return
		}
		stream, err := session.Open()
		if err != nil {
			session.Release()
			if ex.attempts < maxAttempts {
				ex.triedSessions = append(ex.triedSessions, session)
				continue
			}
			p.writeError(ex, ex, &upstreamError{err: err})
			return
		}
		ex.node = p.localID
		ex.upstream = session.RemoteAddr()
		conn, err := protocol.AcceptWebSocket(ex, r)
		if err != nil {
			// The WebSocket library has answered the client.
			_ = stream.Close()
			session.Release()
			return
		}
		// A WebSocket has no half close: the pipe ends with either side.
		protocol.Pipe(conn, stream, 0)
		go drain(stream) // so that the agent's last writes do not stall
		session.Release()
		return
	}
}

func isWebSocketUpgrade(r *http.Request) bool {
	return r.Method == http.MethodGet &&
		httpwire.HasToken(r.Header["Connection"], "upgrade") &&
		strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}
