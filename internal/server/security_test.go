package server

import (
	"context"
	"encoding/base64"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/pico-proxy/pico/internal/agent"
	"github.com/pico-proxy/pico/internal/config"
	"github.com/pico-proxy/pico/internal/logging"
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
	logs *syncBuffer
}

// startAgent runs the real agent for endpoint (serving h) against the
// upstream URL with the given connect settings; it stops at the end of
// the test.
func startAgent(t *testing.T, upstreamURL, endpoint string, h http.Handler, connect func(*config.Connect)) *realAgent {
	t.Helper()
	service := httptest.NewServer(h)
	t.Cleanup(service.Close)
	cfg := config.DefaultAgent()
	cfg.Connect.URL = upstreamURL
	cfg.Connect.Timeout = 5 * time.Second
	cfg.GracePeriod = time.Second
	if connect != nil {
		connect(&cfg.Connect)
	}
	cfg.Endpoints = []config.AgentEndpoint{{ID: endpoint, Protocol: config.ProtocolHTTP, Addr: service.URL}}
	logs := &syncBuffer{}
	a, err := agent.New(*cfg, logging.New(logs, slog.LevelDebug, nil))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = a.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		if t.Failed() {
			t.Logf("agent %s logs:\n%s", endpoint, logs.String())
		}
	})
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
	require.Eventually(t, func() bool {
		for _, line := range strings.Split(a.logs.String(), "\n") {
			if containsAll(line, parts...) {
				return true
			}
		}
		return false
	}, 10*time.Second, 5*time.Millisecond, "agent log with %q", parts)
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
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
	require.NotEmpty(t, srv.logs.records("upstream refused"))
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
	require.Eventually(t, func() bool { return len(srv.logs.records("upstream token expired; closing the connection")) == 1 },
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
	cfg := testConfig()
	cfg.Gossip.SecretKey = key
	cfg.Cluster.Join = join
	cfg.Cluster.JoinTimeout = 2 * time.Second
	cfg.Cluster.RejoinInterval = 0
	logs := &syncBuffer{}
	logger := logging.New(logs, slog.LevelInfo, nil)
	srv, err := New(cfg, logger, WithMembership(ClusterMembership(cfg, logger)), WithShutdownGrace(0))
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = srv.Shutdown(context.Background())
		if t.Failed() {
			t.Logf("server logs:\n%s", logs.String())
		}
	})
	return srv, srv.Start(context.Background())
}

func TestGossipKeyMismatchCannotJoin(t *testing.T) {
	key := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	otherKey := base64.StdEncoding.EncodeToString([]byte("fedcba9876543210fedcba9876543210"))
	a, err := clusterServer(t, key)
	require.NoError(t, err)
	b, err := clusterServer(t, key, a.Addrs().Gossip)
	require.NoError(t, err, "the same key joins")
	require.Eventually(t, func() bool { return len(a.membership.Nodes()) == 2 && len(b.membership.Nodes()) == 2 },
		10*time.Second, 10*time.Millisecond)

	for name, k := range map[string]string{"another key": otherKey, "no key": ""} {
		_, err := clusterServer(t, k, a.Addrs().Gossip)
		require.ErrorContains(t, err, "none could be joined", name)
		require.Len(t, a.membership.Nodes(), 2, "%s: the stranger is not a member", name)
	}
}
