package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/pico-proxy/pico/internal/auth"
	"github.com/pico-proxy/pico/internal/config"
	"github.com/pico-proxy/pico/internal/connpool"
	"github.com/pico-proxy/pico/internal/tlsconfig"
)

// nodeDialTimeout bounds connecting to another node's proxy port,
// including the TLS handshake.
const nodeDialTimeout = 3 * time.Second

// security holds what the configuration's auth and tls sections turn
// into: one token verifier and one TLS server per listener (nil or
// disabled when the section is not set).
type security struct {
	upstreamAuth, proxyAuth, adminAuth *auth.Verifier
	proxyTLS, upstreamTLS, adminTLS    *tlsconfig.Server
}

// newSecurity loads the keys and certificates of cfg. Errors name the
// setting at fault.
func newSecurity(cfg *config.Server, logger *slog.Logger) (_ *security, err error) {
	sec := &security{}
	defer func() {
		if err != nil {
			sec.close()
		}
	}()
	verifiers := []struct {
		section string
		cfg     config.Auth
		v       **auth.Verifier
	}{
		{"auth", cfg.Auth, &sec.upstreamAuth},
		{"proxy.auth", cfg.Proxy.Auth, &sec.proxyAuth},
		{"admin.auth", cfg.Admin.Auth, &sec.adminAuth},
	}
	for _, s := range verifiers {
		if *s.v, err = auth.NewVerifier(s.cfg, auth.WithSection(s.section), auth.WithLogger(logger)); err != nil {
			return nil, err
		}
	}
	listeners := []struct {
		section string
		cfg     config.TLS
		srv     **tlsconfig.Server
	}{
		{"proxy.tls", cfg.Proxy.TLS, &sec.proxyTLS},
		{"upstream.tls", cfg.Upstream.TLS, &sec.upstreamTLS},
		{"admin.tls", cfg.Admin.TLS, &sec.adminTLS},
	}
	for _, l := range listeners {
		if !l.cfg.Enabled() {
			continue
		}
		if *l.srv, err = tlsconfig.NewServer(l.cfg, l.section, logger); err != nil {
			return nil, err
		}
	}
	return sec, nil
}

// close stops refreshing key sets.
func (sec *security) close() {
	for _, v := range []*auth.Verifier{sec.upstreamAuth, sec.proxyAuth, sec.adminAuth} {
		v.Close()
	}
}

// wrapListener serves TLS on ln when srv is set. Every listener speaks
// HTTP/1.1 only: WebSocket upgrades and the proxy's hijacked tunnels need
// it.
func wrapListener(ln net.Listener, srv *tlsconfig.Server) net.Listener {
	if srv == nil {
		return ln
	}
	cfg := srv.Config()
	cfg.NextProtos = []string{"http/1.1"}
	return tls.NewListener(ln, cfg)
}

// dialNode returns how the proxy connects to other nodes' proxy ports:
// over TLS, verifying the peer as a node of this cluster (see
// tlsconfig.Server.PeerClientConfig; proxy.tls.peer_cas adds the members'
// CA), when the proxy port serves TLS; nil (plain TCP) otherwise.
func (sec *security) dialNode() connpool.DialFunc {
	if sec.proxyTLS == nil {
		return nil
	}
	dialer := &net.Dialer{Timeout: nodeDialTimeout, KeepAlive: 30 * time.Second}
	return func(ctx context.Context, addr string) (net.Conn, error) {
		ctx, cancel := context.WithTimeout(ctx, nodeDialTimeout)
		defer cancel()
		raw, err := dialer.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		cfg := sec.proxyTLS.PeerClientConfig()
		cfg.NextProtos = []string{"http/1.1"}
		conn := tls.Client(raw, cfg)
		if err := conn.HandshakeContext(ctx); err != nil {
			_ = raw.Close()
			return nil, fmt.Errorf("TLS handshake with node %s: %w", addr, err)
		}
		return conn, nil
	}
}
