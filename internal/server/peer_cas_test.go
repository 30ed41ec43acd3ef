package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pico-proxy/pico/internal/config"
	"github.com/pico-proxy/pico/internal/tlsconfig/tlstest"
)

// renewalPKI is a private CA whose two member certificates differ, as
// while a renewed Secret reaches one pod before the other: each tls.crt
// holds only its leaf (cert-manager's CA Issuer puts the CA into ca.crt).
// A stranger CA issued a certificate with the same names.
type renewalPKI struct {
	ca, clientCAs  string // files
	a, b, stranger tlstest.Files
	client         tlstest.Files // a proxy client's certificate, for client_cas
}

func newRenewalPKI(t *testing.T) *renewalPKI {
	t.Helper()
	dir := t.TempDir()
	ca, clientCA, stranger := tlstest.NewCA(t, "cluster CA"), tlstest.NewCA(t, "proxy clients CA"), tlstest.NewCA(t, "stranger CA")
	p := &renewalPKI{
		ca:        tlstest.WriteFile(t, dir, "ca.crt", ca.PEM),
		clientCAs: tlstest.WriteFile(t, dir, "clients.crt", clientCA.PEM),
		a:         ca.Server(t, "node-a").Write(t, dir, "node-a"),
		b:         ca.Server(t, "node-b").Write(t, dir, "node-b"),
		stranger:  stranger.Server(t, "intruder").Write(t, dir, "intruder"),
		client:    clientCA.Client(t, "client").Write(t, dir, "client"),
	}
	return p
}

// proxyTLS serves leaf on the proxy port, with client_cas when mutual and
// peer_cas when peerCAs is set.
func (p *renewalPKI) proxyTLS(leaf tlstest.Files, mutual bool, peerCAs string) func(*config.Server) {
	return func(cfg *config.Server) {
		cfg.Proxy.TLS = config.TLS{Cert: leaf.Cert, Key: leaf.Key, PeerCAs: peerCAs}
		if mutual {
			cfg.Proxy.TLS.ClientCAs = p.clientCAs
		}
	}
}

// httpsClient accepts any server certificate (the tests are about what
// the members accept from each other) and presents the client
// certificate when mutual.
func (p *renewalPKI) httpsClient(t *testing.T, mutual bool) *http.Client {
	t.Helper()
	if mutual {
		return httpsClient(t, nil, &p.client)
	}
	return httpsClient(t, nil, nil)
}

// TestForwardingBetweenMembersWithDifferentCertificates: two members whose
// proxy certificates are different leaves of one private CA, tls.crt
// holding only the leaf. Without proxy.tls.peer_cas neither can forward to
// the other (the dialler refuses the leaf it does not hold); with it both
// directions work, with and without client_cas.
func TestForwardingBetweenMembersWithDifferentCertificates(t *testing.T) {
	pki := newRenewalPKI(t)
	for _, mutual := range []bool{false, true} {
		for _, peerCAs := range []string{"", pki.ca} {
			t.Run(fmt.Sprintf("client_cas=%v peer_cas=%v", mutual, peerCAs != ""), func(t *testing.T) {
				c := newTestCluster()
				a := startNode(t, c, "node-a", pki.proxyTLS(pki.a, mutual, peerCAs))
				b := startNode(t, c, "node-b", pki.proxyTLS(pki.b, mutual, peerCAs))
				a.agent("on-a", echoHandler("on-a"))
				b.agent("on-b", echoHandler("on-b"))
				routable(t, c, b, "on-a")
				routable(t, c, a, "on-b")

				client := pki.httpsClient(t, mutual)
				for _, hop := range []struct {
					entry, holder *testServer
					endpoint      string
				}{{b, a, "on-a"}, {a, b, "on-b"}} {
					resp := proxyGet(t, client, "https://"+hop.entry.Addrs().Proxy+"/renewal", hop.endpoint, nil)
					if peerCAs == "" {
						// The proxy tells the client only that no member could
						// serve the endpoint; the cause is the dialler's refusal.
						require.Equal(t, http.StatusBadGateway, resp.StatusCode, peek(resp))
						requireDialRefused(t, hop.entry, hop.holder, "peer certificate refused: x509: certificate signed by unknown authority")
						require.Empty(t, served(hop.holder, hop.endpoint), "nothing reached %s", hop.holder.ID())
						continue
					}
					require.Equal(t, hop.endpoint, decodeEcho(t, resp).Name, "%s through %s", hop.endpoint, hop.entry.ID())
					records := served(hop.holder, hop.endpoint)
					require.Len(t, records, 1)
					require.Equal(t, hop.entry.ID(), records[0]["forwarded_by"], "served for the other member, over TLS")
				}
			})
		}
	}
}

// TestPeerCAsStillRefuseAnotherCA: a member whose certificate names the
// cluster's names but comes from another CA is refused by members with
// peer_cas: they do not forward to it, and with client_cas do not take
// its forwarded requests.
func TestPeerCAsStillRefuseAnotherCA(t *testing.T) {
	pki := newRenewalPKI(t)
	for _, mutual := range []bool{false, true} {
		t.Run(fmt.Sprintf("client_cas=%v", mutual), func(t *testing.T) {
			c := newTestCluster()
			a := startNode(t, c, "node-a", pki.proxyTLS(pki.a, mutual, pki.ca))
			intruder := startNode(t, c, "intruder", pki.proxyTLS(pki.stranger, mutual, pki.ca))
			a.agent("on-a", echoHandler("on-a"))
			intruder.agent("on-intruder", echoHandler("on-intruder"))
			routable(t, c, a, "on-intruder")
			routable(t, c, intruder, "on-a")
			client := pki.httpsClient(t, mutual)

			resp := proxyGet(t, client, "https://"+a.Addrs().Proxy+"/", "on-intruder", nil)
			require.Equal(t, http.StatusBadGateway, resp.StatusCode, peek(resp))
			requireDialRefused(t, a, intruder, "peer certificate refused: x509: certificate signed by unknown authority")
			require.Empty(t, served(intruder, "on-intruder"))

			if mutual {
				// The intruder trusts a (its peer_cas is the cluster CA),
				// but a refuses the intruder's client certificate.
				resp = proxyGet(t, client, "https://"+intruder.Addrs().Proxy+"/", "on-a", nil)
				require.Equal(t, http.StatusBadGateway, resp.StatusCode, peek(resp))
				require.Empty(t, served(a, "on-a"), "nothing reached node-a")
			}
		})
	}
}

// requireDialRefused checks that from's connection to to's proxy port, as
// forwarding makes it, fails with want.
func requireDialRefused(t *testing.T, from, to *testServer, want string) {
	t.Helper()
	conn, err := from.security.dialNode()(context.Background(), to.Addrs().Proxy)
	if err == nil {
		_ = conn.Close()
	}
	require.ErrorContains(t, err, want)
}

// served returns the request records s logged for endpoint.
func served(s *testServer, endpoint string) []map[string]any {
	var records []map[string]any
	for _, r := range s.logs.Records("request") {
		if r["endpoint"] == endpoint {
			records = append(records, r)
		}
	}
	return records
}

// TestPeerCAsFileErrorsStopTheServer: a missing or unreadable peer_cas
// file stops the server at start, naming the key and the fix.
func TestPeerCAsFileErrorsStopTheServer(t *testing.T) {
	pki := newRenewalPKI(t)
	dir := t.TempDir()
	for name, tc := range map[string]struct{ file, want string }{
		"missing": {filepath.Join(dir, "ca.crt"), "proxy.tls.peer_cas (--proxy.tls.peer-cas): open " + filepath.Join(dir, "ca.crt") + ": no such file or directory; set it to a PEM file of the CA certificate(s)"},
		"not PEM": {tlstest.WriteFile(t, dir, "garbage.crt", []byte("garbage")), "proxy.tls.peer_cas (--proxy.tls.peer-cas): no PEM certificates found; set it to"},
	} {
		cfg := testConfig()
		pki.proxyTLS(pki.a, false, tc.file)(cfg)
		require.NoError(t, cfg.Validate())
		_, err := New(cfg, slog.New(slog.DiscardHandler))
		require.ErrorContains(t, err, tc.want, name)
		require.ErrorContains(t, err, "proxy.tls.peerCAs=false", name)
	}
}
