package proxy

import (
	"context"
	"net"
	"net/http"

	"github.com/pico-proxy/pico/internal/auth"
	"github.com/pico-proxy/pico/internal/protocol"
)

// connKey carries a client's connection in its requests' contexts.
type connKey struct{}

// ConnContext is the proxy port's http.Server.ConnContext: it lets the
// proxy close a client's connection when the token it presented expires.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// authorize checks the client's token for ex.endpoint (proxy.auth) and
// answers the request itself when it is refused; it reports whether the
// request may go on. Pico's credential headers never reach the upstream:
// x-pico-authorization and x-piko-authorization are always removed,
// Authorization when it carried the token. A request forwarded by a
// verified member is not checked again: that member checked it. With
// proxy.auth.disconnect_on_expiry, a request or tunnel still open when
// its token expires has its client connection closed.
func (p *Proxy) authorize(ex *exchange, r *http.Request) bool {
	if ex.forwardedBy != "" || !p.auth.Enabled() {
		r.Header.Del(protocol.AuthorizationHeader)
		r.Header.Del(protocol.PikoAuthorizationHeader)
		return true
	}
	token, err := p.auth.AuthorizeRequest(r, ex.endpoint)
	if err != nil {
		// err never contains the token.
		p.logger.Debug("proxy client refused", "endpoint", ex.endpoint, "remote_addr", r.RemoteAddr, "error", err)
		auth.WriteError(ex, err)
		return false
	}
	if conn, ok := r.Context().Value(connKey{}).(net.Conn); ok {
		stop := p.auth.CloseOnExpiry(token, func() {
			p.logger.Info("proxy client token expired; closing the connection", "endpoint", ex.endpoint, "remote_addr", r.RemoteAddr)
			_ = conn.Close()
		})
		context.AfterFunc(r.Context(), stop)
	}
	return true
}
