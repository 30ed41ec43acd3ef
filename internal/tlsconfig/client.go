package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/pico-proxy/pico/internal/config"
	"github.com/pico-proxy/pico/internal/filereload"
)

// ClientConfig returns the client configuration for --connect.tls.ca and
// --connect.tls.insecure-skip-verify: the server's certificate is verified
// against the CA bundle in caFile (the system roots when empty), or not
// at all with insecureSkipVerify.
func ClientConfig(caFile string, insecureSkipVerify bool) (*tls.Config, error) {
	return NewClient(config.ClientTLS{CA: caFile, InsecureSkipVerify: insecureSkipVerify}, "connect.tls", nil)
}

// NewClient returns the client configuration of cfg, a section named
// section (e.g. "connect.tls") validated at load (config.ClientTLS.Validate);
// errors reading its files name its keys. The server's
// certificate must name cfg.ServerName when set, else the dialled host.
// With a client
// certificate configured, it is presented when the server asks for one
// and re-read when its files change.
func NewClient(cfg config.ClientTLS, section string, logger *slog.Logger, opts ...Option) (*tls.Config, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("subsystem", "tls", "section", section)
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: cfg.InsecureSkipVerify, ServerName: cfg.ServerName}
	if cfg.InsecureSkipVerify {
		logger.Warn("not verifying the server's certificate: anyone on the network path can read and change the traffic")
	}
	if cfg.CA != "" {
		data, err := os.ReadFile(cfg.CA)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", describe(section+".ca"), err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(data) {
			return nil, fmt.Errorf("%s: no PEM certificates found in %s", describe(section+".ca"), cfg.CA)
		}
	}
	if cfg.Cert != "" {
		var o options
		for _, opt := range opts {
			opt(&o)
		}
		keys := []string{section + ".cert", section + ".key"}
		parse := func(contents [][]byte) (*tls.Certificate, error) {
			return loadKeyPair(keys, contents[0], contents[1])
		}
		cert, err := filereload.New([]string{cfg.Cert, cfg.Key}, o.reloadInterval, parse, logger)
		if err != nil {
			return nil, nameFile(keys, err)
		}
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return cert.Get(), nil
		}
	}
	return tc, nil
}

// HTTPClient returns the HTTP client of a command connecting to a Pico
// server with cfg, a section named section (e.g. "connect.tls"): servers
// are verified as NewClient describes, environment proxies are honoured,
// and only HTTP/1.1 is spoken (WebSocket handshakes need it). timeout
// bounds each request (0: none, e.g. for WebSocket connections, whose
// handshakes the caller bounds).
func HTTPClient(cfg config.ClientTLS, section string, timeout time.Duration, logger *slog.Logger) (*http.Client, error) {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.ForceAttemptHTTP2 = false
	transport.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{} // no HTTP/2
	if cfg.Enabled() {
		tc, err := NewClient(cfg, section, logger)
		if err != nil {
			return nil, err
		}
		transport.TLSClientConfig = tc
	}
	return &http.Client{Transport: transport, Timeout: timeout}, nil
}

// WebSocketClient is HTTPClient for WebSocket handshakes (agent, forward):
// no timeout (the caller bounds each handshake) and no keep-alive, so that
// every attempt after a refused handshake is a new TCP connection that a
// load balancer may send to another node instead of the one that refused.
func WebSocketClient(cfg config.ClientTLS, section string, logger *slog.Logger) (*http.Client, error) {
	c, err := HTTPClient(cfg, section, 0, logger)
	if err != nil {
		return nil, err
	}
	c.Transport.(*http.Transport).DisableKeepAlives = true
	return c, nil
}
