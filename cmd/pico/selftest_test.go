package main

import (
	"bytes"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pico-proxy/pico/internal/tlsconfig/tlstest"
)

func TestSelftestUsageErrors(t *testing.T) {
	full := []string{"--expect-members", "1", "--admin-url", "http://a:8002", "--proxy-url", "http://p:8000", "--upstream-url", "http://u:8001"}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no flags", nil, 2, "--expect-members is required"},
		{"unknown flag", append([]string{"--nope"}, full...), 2, "unknown flag: --nope"},
		{"missing proxy", []string{"--expect-members", "1", "--admin-url", "http://a:8002", "--upstream-url", "http://u:8001"}, 2, "--proxy-url is required"},
		{"extra argument", append(full, "extra"), 2, `unexpected argument "extra"`},
		{"bad timeout", append(full, "--timeout", "0s"), 2, "--timeout 0s: it must be positive"},
		{"bad URL", []string{"--expect-members", "1", "--admin-url", "a:8002", "--proxy-url", "http://p:8000", "--upstream-url", "http://u:8001"}, 1, `--admin-url "a:8002"`},
		{"bad member count", append([]string{"--expect-members", "0"}, full[2:]...), 1, "--expect-members is 0"},
		{"TLS flags with an http admin URL", append(full, "--admin.tls.ca", "/ca.crt"), 1, `--admin.tls.* options are set but admin_url (--admin-url) "http://a:8002" is not https://`},
		{"token and token file", append(full, "--admin.token", "t", "--admin.token-file", "/t"), 1, "admin.token (--admin.token) and admin.token_file (--admin.token-file) are both set"},
		{"proxy TLS flags with an http proxy URL", append(full, "--proxy.tls.ca", "/ca.crt"), 1, `--proxy.tls.* options are set but proxy_url (--proxy-url) "http://p:8000" is not https://`},
		{"upstream TLS flags with an http upstream URL", append(full, "--upstream.tls.insecure-skip-verify"), 1, `--upstream.tls.* options are set but upstream_url (--upstream-url) "http://u:8001" is not https://`},
		{"bad endpoint", append(full, "--endpoint", "a.b."), 1, `--endpoint: endpoint ID "a.b." is invalid`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			assert.Equal(t, tc.code, runSelftest(tc.args, &stdout, &stderr))
			assert.Contains(t, stderr.String(), tc.want)
		})
	}
	var stdout bytes.Buffer
	assert.Equal(t, 0, runSelftest([]string{"--help"}, &stdout, &bytes.Buffer{}))
	assert.Contains(t, stdout.String(), "Usage: pico selftest")
}

// TestSelftestOverAdminTLSWithToken runs `pico selftest` as the chart's test pod does against
// a real `pico server` whose admin port serves TLS and requires a token.
func TestSelftestOverAdminTLSWithToken(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "pico CA")
	cert := ca.Server(t, "pico").Write(t, dir, "tls")
	caFile := tlstest.WriteFile(t, dir, "ca.crt", ca.PEM)
	const secret = "admin-secret-0123456789abcdef0123456789"
	secretFile := tlstest.WriteFile(t, dir, "admin-secret", []byte(secret))
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"aud": "pico-admin", "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString([]byte(secret))
	require.NoError(t, err)
	tokenFile := tlstest.WriteFile(t, dir, "token", []byte(token+"\n"))

	a := startSecuredServer(t,
		"--admin.tls.cert", cert.Cert, "--admin.tls.key", cert.Key,
		"--admin.auth.token-hmac-secret-key", secretFile, "--admin.auth.token-audience", "pico-admin")
	selftest := selftestAgainst("--admin-url", "https://"+a.Admin,
		"--proxy-url", "http://"+a.Proxy, "--upstream-url", "http://"+a.Upstream)

	code, stdout, stderr := selftest("--admin.tls.ca", caFile, "--admin.tls.server-name", "localhost", "--admin.token-file", tokenFile)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "membership: all 1 members report the same 1 active members")
	assert.Contains(t, stdout, "pico selftest: PASS")

	code, _, stderr = selftest("--admin.tls.ca", caFile)
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "pico selftest: FAIL: membership: https://"+a.Admin)
	assert.Contains(t, stderr, "pass --admin.token-file")

	code, _, stderr = selftest("--admin.token-file", tokenFile)
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "certificate signed by unknown authority")
	assert.Contains(t, stderr, "--admin.tls.ca")
	assert.NotContains(t, stderr, token)
	assert.Equal(t, 1, strings.Count(strings.TrimSpace(stderr), "\n")+1, "one line: %q", stderr)

	code, _, stderr = selftest("--admin.tls.ca", caFile, "--admin.token-file", filepath.Join(dir, "missing"))
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "admin.token_file (--admin.token-file)")
}

// TestSelftestOverProxyAndUpstreamTLSWithTokens runs `pico selftest` as the chart's test pod
// does against a real `pico server` whose proxy and upstream ports serve TLS and require
// tokens listing the test endpoint.
func TestSelftestOverProxyAndUpstreamTLSWithTokens(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "pico CA")
	cert := ca.Server(t, "pico").Write(t, dir, "tls")
	caFile := tlstest.WriteFile(t, dir, "ca.crt", ca.PEM)
	sign := func(secret, audience string) string {
		token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"aud": audience, "exp": time.Now().Add(time.Hour).Unix(),
			"pico": map[string]any{"endpoints": []string{"helm-selftest"}},
		}).SignedString([]byte(secret))
		require.NoError(t, err)
		return token
	}
	const proxySecret, upstreamSecret = "proxy-secret-0123456789abcdef0123456789ab", "upstream-secret-0123456789abcdef01234567"
	proxyToken := tlstest.WriteFile(t, dir, "proxy-token", []byte(sign(proxySecret, "pico-proxy")))
	upstreamToken := tlstest.WriteFile(t, dir, "upstream-token", []byte(sign(upstreamSecret, "pico-upstream")))

	a := startSecuredServer(t,
		"--proxy.tls.cert", cert.Cert, "--proxy.tls.key", cert.Key,
		"--upstream.tls.cert", cert.Cert, "--upstream.tls.key", cert.Key,
		"--proxy.auth.token-hmac-secret-key", tlstest.WriteFile(t, dir, "proxy-secret", []byte(proxySecret)),
		"--proxy.auth.token-audience", "pico-proxy", "--proxy.auth.require-endpoints-claim",
		"--auth.token-hmac-secret-key", tlstest.WriteFile(t, dir, "upstream-secret", []byte(upstreamSecret)),
		"--auth.token-audience", "pico-upstream", "--auth.require-endpoints-claim")
	selftest := selftestAgainst("--admin-url", "http://"+a.Admin,
		"--proxy-url", "https://"+a.Proxy, "--upstream-url", "wss://"+a.Upstream)
	creds := []string{"--proxy.tls.ca", caFile, "--proxy.token-file", proxyToken,
		"--upstream.tls.ca", caFile, "--upstream.tls.server-name", "localhost", "--upstream.token-file", upstreamToken}

	code, stdout, stderr := selftest(append(creds, "--endpoint", "helm-selftest")...)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "routing: agent registered endpoint helm-selftest through wss://"+a.Upstream)
	assert.Contains(t, stdout, "pico selftest: PASS")

	code, _, stderr = selftest(creds...)
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "pico selftest: FAIL: routing: registering endpoint selftest-")
	assert.Contains(t, stderr, "its pico.endpoints claim must list that endpoint (choose the selftest's endpoint with --endpoint)")
	assert.Equal(t, 1, strings.Count(strings.TrimSpace(stderr), "\n")+1, "one line: %q", stderr)

	code, _, stderr = selftest("--endpoint", "helm-selftest", "--upstream.tls.ca", caFile, "--upstream.token-file", upstreamToken)
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "certificate signed by unknown authority")
	assert.Contains(t, stderr, "trust the CA that signed the proxy certificate with --proxy.tls.ca")

	code, _, stderr = selftest(append(creds, "--endpoint", "helm-selftest", "--upstream.token-file", filepath.Join(dir, "missing"))...)
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "upstream.token_file (--upstream.token-file)")
}

// TestSelftestOverMutualTLS runs `pico selftest` with the flags the chart's test pod gets from
// proxy.tls.clientSecret and upstream.tls.clientSecret against a real `pico server` whose
// proxy and upstream ports require client certificates.
func TestSelftestOverMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca, clientCA := tlstest.NewCA(t, "pico CA"), tlstest.NewCA(t, "pico clients CA")
	cert := ca.Server(t, "pico").Write(t, dir, "tls")
	client := clientCA.Client(t, "helm-test").Write(t, dir, "client")
	caFile := tlstest.WriteFile(t, dir, "ca.crt", ca.PEM)
	clientCAs := tlstest.WriteFile(t, dir, "client-cas.crt", clientCA.PEM)

	a := startSecuredServer(t,
		"--proxy.tls.cert", cert.Cert, "--proxy.tls.key", cert.Key, "--proxy.tls.client-cas", clientCAs,
		"--upstream.tls.cert", cert.Cert, "--upstream.tls.key", cert.Key, "--upstream.tls.client-cas", clientCAs)
	selftest := selftestAgainst("--admin-url", "http://"+a.Admin,
		"--proxy-url", "https://"+a.Proxy, "--proxy.tls.ca", caFile,
		"--upstream-url", "https://"+a.Upstream, "--upstream.tls.ca", caFile)
	proxyCert := []string{"--proxy.tls.cert", client.Cert, "--proxy.tls.key", client.Key}
	upstreamCert := []string{"--upstream.tls.cert", client.Cert, "--upstream.tls.key", client.Key}

	code, stdout, stderr := selftest(append(proxyCert, upstreamCert...)...)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "routing: 2 consecutive requests through https://"+a.Proxy+" reached the test upstream")
	assert.Contains(t, stdout, "pico selftest: PASS")

	code, _, stderr = selftest(proxyCert...)
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "pico selftest: FAIL: routing: registering endpoint selftest-")
	assert.Contains(t, stderr, "the upstream port requires a client certificate (upstream.tls.client_cas): pass --upstream.tls.cert and --upstream.tls.key")
	assert.Equal(t, 1, strings.Count(strings.TrimSpace(stderr), "\n")+1, "one line: %q", stderr)

	code, stdout, stderr = selftest(upstreamCert...)
	assert.Equal(t, 1, code)
	assert.Contains(t, stdout, "routing: agent registered endpoint selftest-")
	assert.Contains(t, stderr, "the proxy port requires a client certificate (proxy.tls.client_cas): pass --proxy.tls.cert and --proxy.tls.key")

	code, _, stderr = selftest(append(upstreamCert, "--proxy.tls.cert", client.Cert)...)
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "proxy.tls.cert (--proxy.tls.cert) and proxy.tls.key (--proxy.tls.key) must be set together")
}

// selftestAgainst returns a runner of `pico selftest` for one member (2 requests, 30 s) with
// base (its URLs) followed by its own arguments, returning the exit code, stdout and stderr.
func selftestAgainst(base ...string) func(args ...string) (int, string, string) {
	base = append([]string{"--expect-members", "1", "--requests", "2", "--timeout", "30s"}, base...)
	return func(args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		code := runSelftest(append(slices.Clip(base), args...), &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}
}
