package selftest

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pico-proxy/pico/internal/config"
	"github.com/pico-proxy/pico/internal/server"
	"github.com/pico-proxy/pico/internal/tlsconfig/tlstest"
)

// Token sections of the secured proxy and upstream ports: a secret and an audience each, so a
// token for one port is refused on the other.
const (
	proxySecret      = "proxy-secret-0123456789abcdef0123456789ab"
	proxyAudience    = "pico-proxy"
	upstreamSecret   = "upstream-secret-0123456789abcdef01234567"
	upstreamAudience = "pico-upstream"
	// testEndpoint is the fixed endpoint the tokens list (--endpoint).
	testEndpoint = "pico-selftest"
)

// securedPorts is a real server whose proxy and upstream ports serve TLS (a certificate for
// localhost and 127.0.0.1 from a private CA) and require tokens whose pico.endpoints claim
// lists the endpoint, as a hardened chart configures them. The admin port stays plain.
type securedPorts struct {
	srv                   *server.Server
	adminURL              string // http://
	proxyURL, upstreamURL string // https://
	caFile                string
	proxyToken            string // file with a proxy token for testEndpoint
	upstreamToken         string // file with an upstream token for testEndpoint
	clientCA              *tlstest.CA
	dir                   string
}

// startSecuredPorts starts the node; with mutualUpstream the upstream port also requires a
// client certificate signed by clientCA.
func startSecuredPorts(t *testing.T, mutualUpstream bool) *securedPorts {
	t.Helper()
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "pico CA")
	cert := ca.Server(t, "pico").Write(t, dir, "tls")
	n := &securedPorts{
		dir:           dir,
		caFile:        tlstest.WriteFile(t, dir, "ca.crt", ca.PEM),
		proxyToken:    tlstest.WriteFile(t, dir, "proxy-token", []byte(signEndpointsToken(t, proxySecret, proxyAudience, testEndpoint)+"\n")),
		upstreamToken: tlstest.WriteFile(t, dir, "upstream-token", []byte(signEndpointsToken(t, upstreamSecret, upstreamAudience, testEndpoint)+"\n")),
		clientCA:      tlstest.NewCA(t, "client CA"),
	}
	n.srv = startServer(t, func(c *config.Server) {
		c.Proxy.TLS = config.TLS{Cert: cert.Cert, Key: cert.Key}
		c.Upstream.TLS = config.TLS{Cert: cert.Cert, Key: cert.Key}
		if mutualUpstream {
			c.Upstream.TLS.ClientCAs = tlstest.WriteFile(t, dir, "client-ca.crt", n.clientCA.PEM)
		}
		c.Proxy.Auth.TokenHMACSecretKey = tlstest.WriteFile(t, dir, "proxy-secret", []byte(proxySecret))
		c.Proxy.Auth.TokenAudience = proxyAudience
		c.Proxy.Auth.RequireEndpointsClaim = true
		c.Auth.TokenHMACSecretKey = tlstest.WriteFile(t, dir, "upstream-secret", []byte(upstreamSecret))
		c.Auth.TokenAudience = upstreamAudience
		c.Auth.RequireEndpointsClaim = true
	})
	a := n.srv.Addrs()
	n.adminURL, n.proxyURL, n.upstreamURL = "http://"+a.Admin, "https://"+a.Proxy, "https://"+a.Upstream
	return n
}

// signEndpointsToken signs a token for audience that may use endpoints (its pico.endpoints
// claim).
func signEndpointsToken(t *testing.T, secret, audience string, endpoints ...string) string {
	t.Helper()
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"aud": audience, "exp": time.Now().Add(time.Hour).Unix(),
		"pico": map[string]any{"endpoints": endpoints},
	}).SignedString([]byte(secret))
	require.NoError(t, err)
	return token
}

// good is the configuration that passes: the CA and the tokens for testEndpoint.
func (n *securedPorts) good() Config {
	return Config{
		AdminURLs: []string{n.adminURL}, ExpectMembers: 1,
		ProxyURL: n.proxyURL, Proxy: config.Credentials{TokenFile: n.proxyToken, TLS: config.ClientTLS{CA: n.caFile}},
		UpstreamURL: n.upstreamURL, Upstream: config.Credentials{TokenFile: n.upstreamToken, TLS: config.ClientTLS{CA: n.caFile}},
		Endpoint: testEndpoint, Requests: 3, PollInterval: 50 * time.Millisecond,
	}
}

func runConfig(t *testing.T, cfg Config) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	err := Run(ctx, cfg, &out)
	return out.String(), err
}

func TestRunOverProxyAndUpstreamTLSWithTokens(t *testing.T) {
	n := startSecuredPorts(t, false)

	out, err := runConfig(t, n.good())
	require.NoError(t, err, out)
	assert.Contains(t, out, "routing: agent registered endpoint pico-selftest through "+n.upstreamURL)
	assert.Contains(t, out, "routing: 3 consecutive requests through "+n.proxyURL+" reached the test upstream")

	// wss:// works as for any agent, and --*.tls.server-name verifies the name given
	// (the certificate lists localhost) instead of the dialled IP.
	cfg := n.good()
	cfg.UpstreamURL = strings.Replace(n.upstreamURL, "https://", "wss://", 1)
	cfg.Upstream.TLS.ServerName = "localhost"
	cfg.Proxy.TLS.ServerName = "localhost"
	out, err = runConfig(t, cfg)
	require.NoError(t, err, out)
	assert.Contains(t, out, "routing: agent registered endpoint pico-selftest through wss://")

	assert.Eventually(t, func() bool { return len(n.srv.Registry().Counts()) == 0 },
		10*time.Second, 20*time.Millisecond, "the test agent must disconnect when the check ends")
}

func TestRunOverMutualUpstreamTLS(t *testing.T) {
	n := startSecuredPorts(t, true)
	client := n.clientCA.Client(t, "selftest").Write(t, n.dir, "client")
	cfg := n.good()
	cfg.Upstream.TLS.Cert, cfg.Upstream.TLS.Key = client.Cert, client.Key
	out, err := runConfig(t, cfg)
	require.NoError(t, err, out)
	assert.Contains(t, out, "routing: 3 consecutive requests")

	_, err = runConfig(t, n.good())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "the upstream port requires a client certificate (upstream.tls.client_cas): pass --upstream.tls.cert and --upstream.tls.key")
	assert.NotContains(t, err.Error(), "before the deadline")

	stranger := tlstest.NewCA(t, "stranger CA").Client(t, "stranger").Write(t, n.dir, "stranger")
	cfg.Upstream.TLS.Cert, cfg.Upstream.TLS.Key = stranger.Cert, stranger.Key
	_, err = runConfig(t, cfg)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "the upstream port refused the client certificate of --upstream.tls.cert")
}

// TestRunFailsClearlyWithoutProxyOrUpstreamCredentials checks that each missing or wrong
// credential of the proxy or upstream port ends the check at once (waiting would not help)
// with an error naming the flag to set, and never prints a token.
func TestRunFailsClearlyWithoutProxyOrUpstreamCredentials(t *testing.T) {
	n := startSecuredPorts(t, false)
	tokens := []string{strings.TrimSpace(readFile(t, n.proxyToken)), strings.TrimSpace(readFile(t, n.upstreamToken))}
	otherCA := tlstest.WriteFile(t, n.dir, "other-ca.crt", tlstest.NewCA(t, "other CA").PEM)
	// Right key and audience, but for another endpoint.
	proxyOther := tlstest.WriteFile(t, n.dir, "proxy-other", []byte(signEndpointsToken(t, proxySecret, proxyAudience, "billing")))
	upstreamOther := tlstest.WriteFile(t, n.dir, "upstream-other", []byte(signEndpointsToken(t, upstreamSecret, upstreamAudience, "billing")))
	// The other port's token: another key and audience.
	proxyWrong := n.upstreamToken
	upstreamWrong := n.proxyToken
	plain := func(u string) string { return strings.Replace(u, "https://", "http://", 1) }

	for _, tc := range []struct {
		name string
		edit func(*Config)
		want []string
	}{
		{"upstream: no CA", func(c *Config) { c.Upstream.TLS.CA = "" },
			[]string{"certificate signed by unknown authority", "trust the CA that signed the upstream certificate with --upstream.tls.ca"}},
		{"upstream: another CA", func(c *Config) { c.Upstream.TLS.CA = otherCA },
			[]string{"certificate signed by unknown authority", "--upstream.tls.ca"}},
		{"upstream: wrong server name", func(c *Config) { c.Upstream.TLS.ServerName = "pico.default.svc" },
			[]string{"pico.default.svc", "does not name the host of --upstream-url: give a name it lists with --upstream.tls.server-name"}},
		{"upstream: no token", func(c *Config) { c.Upstream.TokenFile = "" },
			[]string{"status 401", "the upstream port requires a token (auth): pass --upstream.token-file"}},
		{"upstream: the proxy's token", func(c *Config) { c.Upstream.TokenFile = upstreamWrong },
			[]string{"status 401", "the upstream port refused the token of --upstream.token-file or --upstream.token: check its key, audience, issuer and expiry against auth"}},
		{"upstream: token for another endpoint", func(c *Config) { c.Upstream.TokenFile = upstreamOther },
			[]string{"status 403", "for endpoint pico-selftest: its pico.endpoints claim must list that endpoint (choose the selftest's endpoint with --endpoint)"}},
		{"upstream: random endpoint", func(c *Config) { c.Endpoint = "" },
			[]string{"status 403", "the upstream port refused the token", "for endpoint selftest-", "--endpoint"}},
		{"upstream: plain HTTP to the TLS port", func(c *Config) {
			c.UpstreamURL, c.Upstream.TLS = plain(c.UpstreamURL), config.ClientTLS{}
		}, []string{"status 400", "the upstream port serves TLS (upstream.tls): use an https:// --upstream-url"}},
		{"proxy: no CA", func(c *Config) { c.Proxy.TLS.CA = "" },
			[]string{"certificate signed by unknown authority", "trust the CA that signed the proxy certificate with --proxy.tls.ca"}},
		{"proxy: wrong server name", func(c *Config) { c.Proxy.TLS.ServerName = "pico.default.svc" },
			[]string{"give a name it lists with --proxy.tls.server-name"}},
		{"proxy: no token", func(c *Config) { c.Proxy.TokenFile = "" },
			[]string{"status 401", "the proxy port requires a token (proxy.auth): pass --proxy.token-file"}},
		{"proxy: the upstream's token", func(c *Config) { c.Proxy.TokenFile = proxyWrong },
			[]string{"status 401", "the proxy port refused the token of --proxy.token-file or --proxy.token: check its key, audience, issuer and expiry against proxy.auth"}},
		{"proxy: token for another endpoint", func(c *Config) { c.Proxy.TokenFile = proxyOther },
			[]string{"status 403", "the proxy port refused the token of --proxy.token-file or --proxy.token for endpoint pico-selftest"}},
		{"proxy: plain HTTP to the TLS port", func(c *Config) {
			c.ProxyURL, c.Proxy.TLS = plain(c.ProxyURL), config.ClientTLS{}
		}, []string{"status 400", "the proxy port serves TLS (proxy.tls): use an https:// --proxy-url"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := n.good()
			tc.edit(&cfg)
			out, err := runConfig(t, cfg)
			require.Error(t, err, out)
			assert.True(t, strings.HasPrefix(err.Error(), "routing: "), err.Error())
			for _, want := range tc.want {
				assert.Contains(t, err.Error(), want)
			}
			assert.NotContains(t, err.Error(), "before the deadline", "a refused credential ends the check at once")
			for _, token := range tokens {
				assert.NotContains(t, err.Error(), token)
			}
		})
	}
}

func TestRunFailsClearlyWithTLSToPlainPorts(t *testing.T) {
	n := startSecuredPorts(t, false)
	admin, proxy, upstream := urls(startServer(t))
	https := func(u string) string { return strings.Replace(u, "http://", "https://", 1) }

	cfg := n.good()
	cfg.AdminURLs, cfg.UpstreamURL = []string{admin}, https(upstream)
	_, err := runConfig(t, cfg)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "the upstream port does not serve TLS: use an http:// --upstream-url")
	assert.NotContains(t, err.Error(), "before the deadline")

	cfg = n.good()
	cfg.AdminURLs, cfg.UpstreamURL, cfg.Upstream, cfg.ProxyURL = []string{admin}, upstream, config.Credentials{}, https(proxy)
	out, err := runConfig(t, cfg)
	require.Error(t, err)
	assert.Contains(t, out, "routing: agent registered endpoint pico-selftest")
	assert.Contains(t, err.Error(), "the proxy port does not serve TLS: use an http:// --proxy-url")
	assert.NotContains(t, err.Error(), "before the deadline")
}

func TestRunReadsCredentialFilesFirst(t *testing.T) {
	n := startSecuredPorts(t, false)
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"proxy token file", func(c *Config) { c.Proxy.TokenFile = n.dir + "/missing" }, "proxy.token_file (--proxy.token-file)"},
		{"upstream token file", func(c *Config) { c.Upstream.TokenFile = n.dir + "/missing" }, "upstream.token_file (--upstream.token-file)"},
		{"proxy CA", func(c *Config) { c.Proxy.TLS.CA = n.dir + "/missing" }, "proxy.tls.ca (--proxy.tls.ca)"},
		{"upstream CA", func(c *Config) { c.Upstream.TLS.CA = n.proxyToken }, "upstream.tls.ca (--upstream.tls.ca): no PEM certificates"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := n.good()
			tc.edit(&cfg)
			out, err := runConfig(t, cfg)
			require.ErrorContains(t, err, tc.want)
			assert.Empty(t, out, "nothing was checked before the credentials were read")
		})
	}
}

func TestValidateProxyAndUpstreamCredentials(t *testing.T) {
	base := Config{AdminURLs: []string{"http://pico-0.pico-headless:8002"}, ExpectMembers: 1,
		ProxyURL: "https://pico:8000", UpstreamURL: "wss://pico:8001", Requests: 1,
		Proxy:    config.Credentials{TokenFile: "/p", TLS: config.ClientTLS{CA: "/ca.crt"}},
		Upstream: config.Credentials{TokenFile: "/u", TLS: config.ClientTLS{CA: "/ca.crt", ServerName: "pico"}},
		Endpoint: "pico-selftest"}
	require.NoError(t, base.Validate())

	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"proxy TLS options with an http URL", func(c *Config) { c.ProxyURL = "http://pico:8000" },
			`--proxy.tls.* options are set but proxy_url (--proxy-url) "http://pico:8000" is not https://`},
		{"upstream TLS options with a ws URL", func(c *Config) { c.UpstreamURL = "ws://pico:8001" },
			`--upstream.tls.* options are set but upstream_url (--upstream-url) "ws://pico:8001" is not https://`},
		{"proxy URL as ws", func(c *Config) { c.ProxyURL = "wss://pico:8000" }, `--proxy-url "wss://pico:8000": want an http:// or https:// URL`},
		{"upstream URL scheme", func(c *Config) { c.UpstreamURL = "tcp://pico:8001" }, `--upstream-url "tcp://pico:8001": want an http:// or https:// or ws:// or wss:// URL`},
		{"proxy token and token file", func(c *Config) { c.Proxy.Token = "t" },
			"proxy.token (--proxy.token) and proxy.token_file (--proxy.token-file) are both set"},
		{"upstream CA and insecure", func(c *Config) { c.Upstream.TLS.InsecureSkipVerify = true },
			"upstream.tls.ca (--upstream.tls.ca) and upstream.tls.insecure_skip_verify"},
		{"proxy cert without key", func(c *Config) { c.Proxy.TLS.Cert = "/c.crt" },
			"proxy.tls.cert (--proxy.tls.cert) and proxy.tls.key (--proxy.tls.key) must be set together"},
		{"bad endpoint", func(c *Config) { c.Endpoint = "-selftest" }, `--endpoint: endpoint ID "-selftest" is invalid`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			tc.edit(&c)
			assert.ErrorContains(t, c.Validate(), tc.want)
		})
	}
}
