package selftest

import (
	"bufio"
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pico-proxy/pico/internal/config"
	"github.com/pico-proxy/pico/internal/server"
	"github.com/pico-proxy/pico/internal/tlsconfig/tlstest"
)

// mutualCluster is two real members whose proxy and upstream ports require client
// certificates, each port from its own CA, as a chart with config.proxy.tls.client_cas and
// config.upstream.tls.client_cas runs them. Both serve one node certificate (the chart mounts
// one Secret into every pod), from a third CA that neither port's client_cas lists.
type mutualCluster struct {
	a, b           *server.Server
	caFile         string        // verifies the members' certificate
	proxyClient    tlstest.Files // signed by the proxy port's client CA
	upstreamClient tlstest.Files // signed by the upstream port's client CA
	dir            string
}

func startMutualCluster(t *testing.T) *mutualCluster {
	t.Helper()
	dir := t.TempDir()
	nodeCA := tlstest.NewCA(t, "pico nodes CA")
	proxyCA, upstreamCA := tlstest.NewCA(t, "proxy clients CA"), tlstest.NewCA(t, "agents CA")
	node := nodeCA.Server(t, "pico").Write(t, dir, "node")
	proxyCAs := tlstest.WriteFile(t, dir, "proxy-client-cas.crt", proxyCA.PEM)
	upstreamCAs := tlstest.WriteFile(t, dir, "upstream-client-cas.crt", upstreamCA.PEM)
	mutual := func(c *config.Server) {
		c.Proxy.TLS = config.TLS{Cert: node.Cert, Key: node.Key, ClientCAs: proxyCAs}
		c.Upstream.TLS = config.TLS{Cert: node.Cert, Key: node.Key, ClientCAs: upstreamCAs}
	}
	m := &mutualCluster{
		dir:            dir,
		caFile:         tlstest.WriteFile(t, dir, "ca.crt", nodeCA.PEM),
		proxyClient:    proxyCA.Client(t, "selftest-proxy").Write(t, dir, "proxy-client"),
		upstreamClient: upstreamCA.Client(t, "selftest-agent").Write(t, dir, "upstream-client"),
	}
	m.a = startMember(t, mutual)
	m.b = startMember(t, mutual, func(c *config.Server) { c.Cluster.Join = []string{m.a.Addrs().Gossip} })
	return m
}

// startMember runs a real server on loopback ports as a member of a memberlist cluster (the
// other tests' servers stand alone); edits change its configuration first.
func startMember(t *testing.T, edits ...func(*config.Server)) *server.Server {
	t.Helper()
	cfg := config.DefaultServer()
	cfg.Proxy.BindAddr, cfg.Upstream.BindAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Admin.BindAddr, cfg.Gossip.BindAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Cluster.JoinTimeout, cfg.Cluster.RejoinInterval = 5*time.Second, 0
	cfg.Server.DrainDelay, cfg.Proxy.UpstreamWait = 0, 0
	for _, edit := range edits {
		edit(cfg)
	}
	logger := slog.New(slog.DiscardHandler)
	require.NoError(t, cfg.Validate())
	srv, err := server.New(cfg, logger, server.WithMembership(server.ClusterMembership(cfg, logger)))
	require.NoError(t, err)
	require.NoError(t, srv.Start(context.Background()))
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	return srv
}

// good registers the test upstream on member a and sends the requests to member b, so every
// request crosses from b to a over b's forwarding connection to a's proxy port.
func (m *mutualCluster) good() Config {
	return Config{
		AdminURLs:     []string{"http://" + m.a.Addrs().Admin, "http://" + m.b.Addrs().Admin},
		ExpectMembers: 2,
		ProxyURL:      "https://" + m.b.Addrs().Proxy,
		Proxy:         config.Credentials{TLS: config.ClientTLS{CA: m.caFile, Cert: m.proxyClient.Cert, Key: m.proxyClient.Key}},
		UpstreamURL:   "https://" + m.a.Addrs().Upstream,
		Upstream:      config.Credentials{TLS: config.ClientTLS{CA: m.caFile, Cert: m.upstreamClient.Cert, Key: m.upstreamClient.Key}},
		Requests:      3, PollInterval: 50 * time.Millisecond,
	}
}

// forwardedIn reads pico_proxy_forwarded_requests_total{direction="in"} from a member's
// metrics: requests it received from another, verified member.
func forwardedIn(t *testing.T, s *server.Server) float64 {
	t.Helper()
	resp, err := http.Get("http://" + s.Addrs().Admin + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), `pico_proxy_forwarded_requests_total{direction="in"} `); ok {
			f, err := strconv.ParseFloat(v, 64)
			require.NoError(t, err)
			return f
		}
	}
	require.NoError(t, sc.Err())
	return 0
}

// TestRunOverMutualTLSAcrossMembers checks that the selftest passes against proxy and upstream
// ports that require client certificates when it is given one for each (--proxy.tls.cert and
// --upstream.tls.cert, what the chart's proxy.tls.clientSecret and upstream.tls.clientSecret
// mount), with the requests forwarded between members, which present their node certificate
// to each other's proxy port.
func TestRunOverMutualTLSAcrossMembers(t *testing.T) {
	m := startMutualCluster(t)

	out, err := runConfig(t, m.good())
	require.NoError(t, err, out)
	assert.Contains(t, out, "membership: all 2 members report the same 2 active members")
	assert.Contains(t, out, "routing: agent registered endpoint selftest-")
	assert.Contains(t, out, "routing: 3 consecutive requests through https://"+m.b.Addrs().Proxy+" reached the test upstream")
	assert.GreaterOrEqual(t, forwardedIn(t, m.a), 3.0, "member b forwarded the requests to member a")
}

// TestRunFailsClearlyWithoutClientCertificates checks that a missing or wrong client
// certificate for the proxy or upstream port ends the check at once with the flag to set.
func TestRunFailsClearlyWithoutClientCertificates(t *testing.T) {
	m := startMutualCluster(t)
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"proxy: no client certificate", func(c *Config) { c.Proxy.TLS.Cert, c.Proxy.TLS.Key = "", "" },
			"the proxy port requires a client certificate (proxy.tls.client_cas): pass --proxy.tls.cert and --proxy.tls.key"},
		{"proxy: the upstream port's client certificate", func(c *Config) {
			c.Proxy.TLS.Cert, c.Proxy.TLS.Key = m.upstreamClient.Cert, m.upstreamClient.Key
		}, "the proxy port refused the client certificate of --proxy.tls.cert: it must be signed by a CA of the server's proxy.tls.client_cas"},
		{"upstream: no client certificate", func(c *Config) { c.Upstream.TLS.Cert, c.Upstream.TLS.Key = "", "" },
			"the upstream port requires a client certificate (upstream.tls.client_cas): pass --upstream.tls.cert and --upstream.tls.key"},
		{"upstream: the proxy port's client certificate", func(c *Config) {
			c.Upstream.TLS.Cert, c.Upstream.TLS.Key = m.proxyClient.Cert, m.proxyClient.Key
		}, "the upstream port refused the client certificate of --upstream.tls.cert: it must be signed by a CA of the server's upstream.tls.client_cas"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := m.good()
			tc.edit(&cfg)
			out, err := runConfig(t, cfg)
			require.Error(t, err, out)
			assert.True(t, strings.HasPrefix(err.Error(), "routing: "), err.Error())
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), "before the deadline", "a refused certificate ends the check at once")
		})
	}
}
