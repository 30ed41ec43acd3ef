package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/hashicorp/yamux"
	"github.com/stretchr/testify/require"

	"github.com/pico-proxy/pico/internal/agent"
	"github.com/pico-proxy/pico/internal/config"
	"github.com/pico-proxy/pico/internal/forward"
	"github.com/pico-proxy/pico/internal/logging"
	"github.com/pico-proxy/pico/internal/protocol"
	"github.com/pico-proxy/pico/internal/proxy"
	"github.com/pico-proxy/pico/internal/testutil"
	"github.com/pico-proxy/pico/internal/tlsconfig/tlstest"
	"github.com/pico-proxy/pico/internal/upstream/upstreamtest"
)

// Secrets of the tests' token sections (at least 32 bytes each).
const (
	upstreamSecret = "upstream-secret-0123456789abcdef0123456789"
	proxySecret    = "proxy-secret-0123456789abcdef0123456789abc"
	adminSecret    = "admin-secret-0123456789abcdef0123456789abc"
)

// mintToken signs an HS256 token with secret, expiring after ttl; a
// non-nil endpoints becomes the pico.endpoints claim.
func mintToken(t *testing.T, secret string, endpoints []string, ttl time.Duration) string {
	t.Helper()
	claims := jwt.MapClaims{"sub": "test-client", "exp": time.Now().Add(ttl).Unix()}
	if endpoints != nil {
		claims["pico"] = map[string]any{"endpoints": endpoints}
	}
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
	require.NoError(t, err)
	return token
}

// realAgent is a running internal/agent.Agent with its logs.
type realAgent struct {
	*agent.Agent
	logs *testutil.LogBuffer
}

// startAgent runs the real agent for the HTTP endpoint (serving h)
// against the upstream URL with the given connect settings; it stops at
// the end of the test.
func startAgent(t *testing.T, upstreamURL, endpoint string, h http.Handler, connect func(*config.Connect)) *realAgent {
	t.Helper()
	service := httptest.NewServer(h)
	t.Cleanup(service.Close)
	return runAgent(t, upstreamURL, config.AgentEndpoint{ID: endpoint, Protocol: config.ProtocolHTTP, Addr: service.URL}, connect)
}

// runAgent runs the real agent for ep; it stops at the end of the test.
func runAgent(t *testing.T, upstreamURL string, ep config.AgentEndpoint, connect func(*config.Connect)) *realAgent {
	t.Helper()
	endpoint := ep.ID
	cfg := config.DefaultAgent()
	cfg.Connect.URL = upstreamURL
	cfg.Connect.Timeout = 5 * time.Second
	cfg.GracePeriod = time.Second
	if connect != nil {
		connect(&cfg.Connect)
	}
	cfg.Endpoints = []config.AgentEndpoint{ep}
	logs := &testutil.LogBuffer{}
	a, err := agent.New(*cfg, logging.New(logs, slog.LevelDebug, nil))
	require.NoError(t, err)
	t.Cleanup(func() { // once the agent stopped
		if t.Failed() {
			t.Logf("agent %s logs:\n%s", endpoint, logs.String())
		}
	})
	testutil.Go(t, "agent "+endpoint, a.Run)
	return &realAgent{Agent: a, logs: logs}
}

// waitRegistered waits for the agent's endpoints to be registered.
func (a *realAgent) waitRegistered(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, a.WaitRegistered(ctx))
}

// waitLog waits until the agent logged a line containing every part.
func (a *realAgent) waitLog(t *testing.T, parts ...string) {
	t.Helper()
	require.Eventually(t, func() bool { return a.logs.Count(parts...) > 0 }, 10*time.Second, 5*time.Millisecond, "agent log with %q", parts)
}

// requireNoSecrets checks that no token appears in the logs.
func requireNoSecrets(t *testing.T, logs string, tokens ...string) {
	t.Helper()
	for _, token := range tokens {
		require.NotContains(t, logs, token)
		// The signature alone is a credential's tail as well.
		require.NotContains(t, logs, token[strings.LastIndex(token, ".")+1:])
	}
}

func upstreamAuthServer(t *testing.T, tweak func(*config.Auth)) *testServer {
	return startServer(t, serverSetup{cfg: func(cfg *config.Server) {
		cfg.Auth.TokenHMACSecretKey = upstreamSecret
		if tweak != nil {
			tweak(&cfg.Auth)
		}
	}})
}

func TestUpstreamTokenAcceptedAndRefused(t *testing.T) {
	srv := upstreamAuthServer(t, nil)
	upstreamURL := "http://" + srv.Addrs().Upstream

	valid := mintToken(t, upstreamSecret, []string{"web"}, time.Hour)
	a := startAgent(t, upstreamURL, "web", echoHandler("web"), func(c *config.Connect) { c.Token = valid })
	a.waitRegistered(t)
	e := decodeEcho(t, srv.get("web", "/hello"))
	require.Equal(t, "web", e.Name)
	require.Equal(t, "/hello", e.Path)

	wrongKey := mintToken(t, proxySecret, []string{"other"}, time.Hour)
	refused := []struct {
		name, endpoint, token string
		want                  []string
	}{
		{"no token", "anon", "", []string{"401", "no token"}},
		{"wrong key", "other", wrongKey, []string{"401", "invalid token", "signature"}},
		{"expired", "old", mintToken(t, upstreamSecret, []string{"old"}, -time.Minute), []string{"401", "expired"}},
		{"endpoint not permitted", "admin", valid, []string{"403", `does not permit this endpoint`, `\"admin\"`}},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			a := startAgent(t, upstreamURL, tc.endpoint, echoHandler(tc.endpoint), func(c *config.Connect) { c.Token = tc.token })
			// The agent says what the server refused and why.
			a.waitLog(t, append([]string{"refused the registration", tc.endpoint}, tc.want...)...)
			require.NotContains(t, srv.Registry().Counts(), tc.endpoint)
			requireJSONError(t, srv.get(tc.endpoint, "/"), http.StatusBadGateway, "")
			requireNoSecrets(t, a.logs.String(), valid, wrongKey)
		})
	}
	requireNoSecrets(t, srv.logs.String(), valid, wrongKey)
	require.NotEmpty(t, srv.logs.Records("upstream refused"))
}

func TestUpstreamRequireEndpointsClaim(t *testing.T) {
	srv := upstreamAuthServer(t, func(a *config.Auth) { a.RequireEndpointsClaim = true })
	upstreamURL := "http://" + srv.Addrs().Upstream
	wildcard := mintToken(t, upstreamSecret, nil, time.Hour)
	a := startAgent(t, upstreamURL, "web", echoHandler("web"), func(c *config.Connect) { c.Token = wildcard })
	a.waitLog(t, "refused the registration", "401", "require_endpoints_claim")
	require.Empty(t, srv.Registry().Counts())
}

func TestUpstreamSessionClosedWhenTokenExpires(t *testing.T) {
	srv := upstreamAuthServer(t, nil)
	short := mintToken(t, upstreamSecret, []string{"web"}, 3*time.Second)
	a := startAgent(t, "http://"+srv.Addrs().Upstream, "web", echoHandler("web"), func(c *config.Connect) { c.Token = short })
	a.waitRegistered(t)
	require.Eventually(t, func() bool { return srv.Registry().Counts()["web"] == 1 }, 10*time.Second, 5*time.Millisecond)

	// At expiry the server retires the connection; the agent reconnects
	// at once with the token it has, which is now refused.
	require.Eventually(t, func() bool { return len(srv.logs.Records("upstream token expired; closing the connection")) == 1 },
		10*time.Second, 5*time.Millisecond)
	require.Eventually(t, func() bool { return len(srv.Registry().Counts()) == 0 }, 10*time.Second, 5*time.Millisecond)
	a.waitLog(t, "refused the registration", "401", "expired")
	requireNoSecrets(t, srv.logs.String()+a.logs.String(), short)
}

func TestAdminAuthKeepsProbesOpen(t *testing.T) {
	srv := startServer(t, serverSetup{cfg: func(cfg *config.Server) {
		cfg.Admin.Auth.TokenHMACSecretKey = adminSecret
		cfg.Admin.Auth.TokenAudience = "pico-admin"
	}})
	admin := func(t *testing.T, path, header, value string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, srv.adminURL(path), nil)
		require.NoError(t, err)
		if header != "" {
			req.Header.Set(header, value)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		t.Cleanup(func() { _ = resp.Body.Close() })
		return resp
	}
	token := func(audience string) string {
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"aud": audience, "exp": time.Now().Add(time.Hour).Unix(),
		}).SignedString([]byte(adminSecret))
		require.NoError(t, err)
		return tok
	}
	good, otherAudience := token("pico-admin"), token("pico-upstream")

	for _, probe := range []string{"/health", "/ready"} {
		require.Equal(t, http.StatusOK, admin(t, probe, "", "").StatusCode, probe)
	}
	for _, path := range []string{"/metrics", "/status/cluster/nodes", "/status/upstream/endpoints", "/status/cluster/nodes/" + srv.ID()} {
		resp := admin(t, path, "", "")
		requireJSONError(t, resp, http.StatusUnauthorized, "no token")
		require.Contains(t, resp.Header.Get("WWW-Authenticate"), "Bearer")
		requireJSONError(t, admin(t, path, "Authorization", "Bearer "+otherAudience), http.StatusUnauthorized, `audience does not include "pico-admin"`)
		require.Equal(t, http.StatusOK, admin(t, path, "Authorization", "Bearer "+good).StatusCode, path)
		require.Equal(t, http.StatusOK, admin(t, path, "X-Pico-Authorization", good).StatusCode, path)
	}
	requireNoSecrets(t, srv.logs.String(), good, otherAudience)
}

// clusterServer starts a server on the real memberlist cluster with the
// gossip key (base64) and join addresses given.
func clusterServer(t *testing.T, key string, join ...string) (*Server, error) {
	t.Helper()
	return clusterServerWith(t, func(cfg *config.Server) { cfg.Gossip.SecretKey = key }, join...)
}

// clusterServerWith starts a server on the real memberlist cluster,
// joining join, with its configuration adjusted by adjust.
func clusterServerWith(t *testing.T, adjust func(*config.Server), join ...string) (*Server, error) {
	t.Helper()
	cfg := testConfig()
	cfg.Cluster.Join = join
	cfg.Cluster.JoinTimeout = 2 * time.Second
	cfg.Cluster.RejoinInterval = 0
	adjust(cfg)
	logs := &testutil.LogBuffer{}
	logger := logging.New(logs, slog.LevelInfo, nil)
	require.NoError(t, cfg.Validate())
	srv, err := New(cfg, logger, WithMembership(ClusterMembership(cfg, logger)))
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = srv.Shutdown(context.Background())
		if t.Failed() {
			t.Logf("server logs:\n%s", logs.String())
		}
	})
	return srv, srv.Start(context.Background())
}

// joinedPair starts a server with keyA and one with keyB that joins it,
// and waits until both see both; joins says why b can join.
func joinedPair(t *testing.T, keyA, keyB, joins string) (a, b *Server) {
	t.Helper()
	a, err := clusterServer(t, keyA)
	require.NoError(t, err)
	b, err = clusterServer(t, keyB, a.Addrs().Gossip)
	require.NoError(t, err, joins)
	require.Eventually(t, func() bool { return len(a.membership.Nodes()) == 2 && len(b.membership.Nodes()) == 2 },
		10*time.Second, 10*time.Millisecond)
	return a, b
}

func TestGossipKeyMismatchCannotJoin(t *testing.T) {
	key := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	otherKey := base64.StdEncoding.EncodeToString([]byte("fedcba9876543210fedcba9876543210"))
	a, _ := joinedPair(t, key, key, "the same key joins")

	for name, k := range map[string]string{"another key": otherKey, "no key": ""} {
		_, err := clusterServer(t, k, a.Addrs().Gossip)
		require.ErrorContains(t, err, "none could be joined", name)
		require.Len(t, a.membership.Nodes(), 2, "%s: the stranger is not a member", name)
	}
}

// testPKI is a server CA with a certificate for localhost/127.0.0.1, and a
// client CA with an agent certificate, written to files.
type testPKI struct {
	serverCA, clientCA string // CA bundle files
	server, agent      tlstest.Files
	serverRoots        *x509.CertPool
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	serverCA := tlstest.NewCA(t, "pico server CA")
	clientCA := tlstest.NewCA(t, "pico agents CA")
	p := &testPKI{
		serverCA:    tlstest.WriteFile(t, dir, "server-ca.crt", serverCA.PEM),
		clientCA:    tlstest.WriteFile(t, dir, "client-ca.crt", clientCA.PEM),
		server:      serverCA.Server(t, "pico").Write(t, dir, "server"),
		agent:       clientCA.Client(t, "agent").Write(t, dir, "agent"),
		serverRoots: x509.NewCertPool(),
	}
	require.True(t, p.serverRoots.AppendCertsFromPEM(serverCA.PEM))
	return p
}

// listenerTLS is the server certificate, with client_cas when mutual.
func (p *testPKI) listenerTLS(mutual bool) config.TLS {
	c := config.TLS{Cert: p.server.Cert, Key: p.server.Key}
	if mutual {
		c.ClientCAs = p.clientCA
	}
	return c
}

// httpsClient trusts the server CA and presents cert when set.
func (p *testPKI) httpsClient(t *testing.T, cert *tlstest.Files) *http.Client {
	t.Helper()
	return httpsClient(t, p.serverRoots, cert)
}

// httpsClient trusts roots (nil: any server certificate, for tests about
// what members accept from each other) and presents cert when set.
func httpsClient(t *testing.T, roots *x509.CertPool, cert *tlstest.Files) *http.Client {
	t.Helper()
	tc := &tls.Config{RootCAs: roots, InsecureSkipVerify: roots == nil, MinVersion: tls.VersionTLS12}
	if cert != nil {
		pair, err := tls.LoadX509KeyPair(cert.Cert, cert.Key)
		require.NoError(t, err)
		tc.Certificates = []tls.Certificate{pair}
	}
	tr := &http.Transport{TLSClientConfig: tc}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func TestTLSAndMutualTLSThroughServerAndAgent(t *testing.T) {
	pki := newTestPKI(t)
	srv := startServer(t, serverSetup{cfg: func(cfg *config.Server) {
		cfg.Proxy.TLS = pki.listenerTLS(false)
		cfg.Admin.TLS = pki.listenerTLS(false)
		cfg.Upstream.TLS = pki.listenerTLS(true)
	}})
	upstreamURL := "wss://" + srv.Addrs().Upstream
	mutual := func(c *config.Connect) {
		c.TLS = config.ClientTLS{CA: pki.serverCA, Cert: pki.agent.Cert, Key: pki.agent.Key}
	}

	// HTTP endpoint: agent --(mTLS)--> upstream port; client --(TLS)--> proxy port.
	startAgent(t, upstreamURL, "web", echoHandler("web"), mutual).waitRegistered(t)
	client := pki.httpsClient(t, nil)
	e := decodeEcho(t, proxyGet(t, client, "https://"+srv.Addrs().Proxy+"/secure", "web", nil))
	require.Equal(t, "/secure", e.Path)
	require.Equal(t, []string{"https"}, e.Header["X-Forwarded-Proto"])

	// TCP endpoint through pico forward over TLS.
	echo := testutil.ServeTCP(t, upstreamtest.Echo).Addr().String()
	runAgent(t, upstreamURL, config.AgentEndpoint{ID: "db", Protocol: config.ProtocolTCP, Addr: echo}, mutual).waitRegistered(t)
	fcfg := config.DefaultForward()
	fcfg.Connect.URL = "https://" + srv.Addrs().Proxy
	fcfg.Connect.TLS.CA = pki.serverCA
	requireTCPEcho(t, startForward(t, fcfg, "db"))

	// Admin API over TLS; plain HTTP is refused.
	resp, err := client.Get("https://" + srv.Addrs().Admin + "/ready")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	_ = resp.Body.Close()
	resp, err = http.Get(srv.adminURL("/ready"))
	require.NoError(t, err)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode, "plain HTTP to a TLS port")
	_ = resp.Body.Close()

	// Agents without a client certificate, or not trusting the server,
	// cannot register, and say why.
	noClientCert := startAgent(t, upstreamURL, "no-cert", echoHandler("x"), func(c *config.Connect) { c.TLS.CA = pki.serverCA })
	noClientCert.waitLog(t, "cannot connect to the server", "certificate required")
	wrongCA := startAgent(t, upstreamURL, "wrong-ca", echoHandler("x"), func(c *config.Connect) {
		c.TLS = config.ClientTLS{Cert: pki.agent.Cert, Key: pki.agent.Key} // system roots
	})
	wrongCA.waitLog(t, "cannot connect to the server", "certificate signed by unknown authority")
	require.Equal(t, map[string]int{"web": 1, "db": 1}, srv.Registry().Counts())
}

func TestForwardingBetweenNodesOverTLS(t *testing.T) {
	pki := newTestPKI(t)
	_, a, b := forwardingPair(t, "far", func(cfg *config.Server) {
		cfg.Proxy.TLS = pki.listenerTLS(true) // clients need a certificate; peers use the node's own
	})

	client := pki.httpsClient(t, &pki.agent)
	e := decodeEcho(t, proxyGet(t, client, "https://"+b.Addrs().Proxy+"/over/tls", "far", nil))
	require.Equal(t, "far", e.Name)
	require.Equal(t, []string{"https"}, e.Header["X-Forwarded-Proto"])
	forwarded := a.logs.Records("request")
	require.NotEmpty(t, forwarded)
	require.Equal(t, "node-b", forwarded[len(forwarded)-1]["forwarded_by"], "served by node-a for node-b, over TLS")

	// Without a client certificate the proxy port refuses the handshake.
	_, err := pki.httpsClient(t, nil).Get("https://" + b.Addrs().Proxy + "/")
	require.Error(t, err)
}

// startForward runs pico forward to endpoint until the test ends and
// returns its local address.
func startForward(t *testing.T, cfg *config.Forward, endpoint string) string {
	t.Helper()
	cfg.GracePeriod = time.Second
	f, err := forward.Listen(*cfg, "127.0.0.1:0", endpoint, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	testutil.Go(t, "forwarder", f.Serve)
	return f.Addr().String()
}

// requireTCPEcho checks one round trip through a TCP echo at addr.
func requireTCPEcho(t *testing.T, addr string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
	testutil.RequireEcho(t, conn, "ping")
}

func proxyAuthConfig(cfg *config.Server) { cfg.Proxy.Auth.TokenHMACSecretKey = proxySecret }

func TestProxyClientAuth(t *testing.T) {
	srv := startServer(t, serverSetup{cfg: proxyAuthConfig})
	srv.agent("web", echoHandler("web"))
	url := srv.proxyURL("/path")
	valid := mintToken(t, proxySecret, []string{"web", "db"}, time.Hour)
	otherEndpoint := mintToken(t, proxySecret, []string{"db"}, time.Hour)
	wrongKey := mintToken(t, upstreamSecret, nil, time.Hour)

	refused := []struct {
		name   string
		header http.Header
		status int
		want   string
	}{
		{"no token", nil, http.StatusUnauthorized, "no token"},
		{"wrong key", http.Header{"Authorization": {"Bearer " + wrongKey}}, http.StatusUnauthorized, "signature"},
		{"not a bearer token", http.Header{"Authorization": {"Basic dXNlcjpwYXNz"}}, http.StatusUnauthorized, "no token"},
		{"endpoint not permitted", http.Header{"X-Pico-Authorization": {otherEndpoint}}, http.StatusForbidden, `"web"`},
		{"expired", http.Header{"Authorization": {"Bearer " + mintToken(t, proxySecret, nil, -time.Minute)}}, http.StatusUnauthorized, "expired"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			resp := proxyGet(t, http.DefaultClient, url, "web", tc.header)
			requireJSONError(t, resp, tc.status, tc.want)
			if tc.status == http.StatusUnauthorized {
				require.Contains(t, resp.Header.Get("WWW-Authenticate"), `Bearer realm="pico"`)
			}
		})
	}
	// Refused before routing: an endpoint nobody serves is still 401, not 502.
	requireJSONError(t, srv.get("nobody", "/path"), http.StatusUnauthorized, "no token")

	accepted := []struct {
		name   string
		header http.Header
		// what the upstream must (not) see
		wantAuthorization string
	}{
		{"Authorization: Bearer", http.Header{"Authorization": {"Bearer " + valid}}, ""},
		{"x-pico-authorization, service's own Authorization kept", http.Header{"X-Pico-Authorization": {"Bearer " + valid}, "Authorization": {"Basic dXNlcjpwYXNz"}}, "Basic dXNlcjpwYXNz"},
		{"Piko's x-piko-authorization", http.Header{"X-Piko-Authorization": {valid}}, ""},
	}
	for _, tc := range accepted {
		t.Run(tc.name, func(t *testing.T) {
			e := decodeEcho(t, proxyGet(t, http.DefaultClient, url, "web", tc.header))
			require.Equal(t, "web", e.Name)
			require.Equal(t, tc.wantAuthorization, strings.Join(e.Header["Authorization"], ","))
			require.NotContains(t, e.Header, "X-Pico-Authorization")
			require.NotContains(t, e.Header, "X-Piko-Authorization")
		})
	}

	// Tokens appear neither in logs nor in metrics.
	resp, err := http.Get(srv.adminURL("/metrics"))
	require.NoError(t, err)
	metrics := readAll(t, resp.Body)
	_ = resp.Body.Close()
	require.Contains(t, metrics, "pico_proxy_requests_total")
	requireNoSecrets(t, metrics+srv.logs.String(), valid, otherEndpoint, wrongKey)
}

func TestProxyClientAuthOnTheTCPRoute(t *testing.T) {
	srv := startServer(t, serverSetup{cfg: proxyAuthConfig})
	a, err := upstreamtest.ServeTCP(context.Background(), upstreamtest.URL(srv.Addrs().Upstream, "db"), upstreamtest.Echo)
	require.NoError(t, err)
	t.Cleanup(func() { _ = a.Close() })
	url := "ws://" + srv.Addrs().Proxy + protocol.TCPPathPrefix + "db"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	_, err = protocol.DialWebSocket(ctx, url, nil, nil)
	var refused *protocol.DialError
	require.ErrorAs(t, err, &refused)
	require.Equal(t, http.StatusUnauthorized, refused.StatusCode)

	_, err = protocol.DialWebSocket(ctx, url, http.Header{"Authorization": {"Bearer " + mintToken(t, proxySecret, []string{"web"}, time.Hour)}}, nil)
	require.ErrorAs(t, err, &refused)
	require.Equal(t, http.StatusForbidden, refused.StatusCode)

	// A token that expires closes the tunnel at expiry.
	short := mintToken(t, proxySecret, []string{"db"}, 3*time.Second)
	conn, err := protocol.DialWebSocket(ctx, url, http.Header{"Authorization": {"Bearer " + short}}, nil)
	require.NoError(t, err)
	defer conn.Close()
	testutil.RequireEcho(t, conn, "ping")
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, err = conn.Read(make([]byte, 4))
	require.Error(t, err, "the tunnel is closed when the token expires")
	var netErr net.Error
	require.False(t, errors.As(err, &netErr) && netErr.Timeout(), "closed by the server, not by the test's deadline: %v", err)
	require.NotEmpty(t, srv.logs.Records("proxy client token expired; closing the connection"))
}

func TestForwardedRequestIsNotReauthenticated(t *testing.T) {
	_, a, b := forwardingPair(t, "ep", proxyAuthConfig)
	valid := mintToken(t, proxySecret, []string{"ep"}, time.Hour)

	// b checks the client's token, removes it and forwards; a trusts b's
	// proof instead of asking for the token it never receives.
	e := decodeEcho(t, b.getWith("ep", "/path", http.Header{"Authorization": {"Bearer " + valid}}))
	require.Equal(t, "ep", e.Name)
	require.NotContains(t, e.Header, "Authorization")
	served := a.logs.Records("request")
	require.Equal(t, "node-b", served[len(served)-1]["forwarded_by"])

	// A client forging the forwarding headers is an ordinary client: no
	// token, no service.
	forged := http.Header{
		proxy.ForwardedByHeader:      {"node-b"},
		proxy.ForwardSignatureHeader: {"t=1,v1=forged"},
	}
	for _, s := range []*testServer{a, b} {
		requireJSONError(t, s.getWith("ep", "/path", forged), http.StatusUnauthorized, "no token")
	}
	require.NotEmpty(t, a.logs.Records("rejected forwarding headers"))
}

// An agent that opens streams of its own to the server (the server only
// opens streams) has each reset as it opens: nothing of them is kept
// waiting for an accept that never comes, and the endpoint keeps
// serving.
func TestAgentOpenedStreamsAreReset(t *testing.T) {
	s := startServer(t, serverSetup{})
	a, err := upstreamtest.ServeHTTP(context.Background(), upstreamtest.URL(s.Addrs().Upstream, "pushy"), echoHandler("pushy"))
	require.NoError(t, err)
	defer a.Close()

	for i := 0; i < 300; i++ { // past yamux's accept backlog of 256
		stream, err := a.Session.OpenStream()
		require.NoError(t, err)
		_, err = stream.Write(bytes.Repeat([]byte("x"), 1<<10))
		if err == nil {
			_, err = stream.Read(make([]byte, 1))
		}
		require.ErrorIs(t, err, yamux.ErrConnectionReset, "stream %d", i)
	}
	require.Equal(t, "pushy", decodeEcho(t, s.get("pushy", "/x")).Name)
}
