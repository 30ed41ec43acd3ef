package selftest

import (
	"bytes"
	"context"
	"os"
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

const (
	adminSecret   = "admin-secret-0123456789abcdef0123456789"
	adminAudience = "pico-admin"
)

// securedNode is a real server whose admin port serves TLS (a certificate for localhost and
// 127.0.0.1 from a private CA) and requires a token, as the chart's admin.tls.enabled and
// config.admin.auth make it.
type securedNode struct {
	srv        *server.Server
	adminURL   string // https://127.0.0.1:port
	proxyURL   string
	upstream   string
	caFile     string
	tokenFile  string
	clientCA   *tlstest.CA
	clientCert tlstest.Files // signed by clientCA
	dir        string
}

// startSecuredNode starts the node; with mutual, the admin port also requires a client
// certificate signed by clientCA.
func startSecuredNode(t *testing.T, mutual bool) *securedNode {
	t.Helper()
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "admin CA")
	cert := ca.Server(t, "pico-admin").Write(t, dir, "tls")
	n := &securedNode{
		dir:       dir,
		caFile:    tlstest.WriteFile(t, dir, "ca.crt", ca.PEM),
		tokenFile: tlstest.WriteFile(t, dir, "token", []byte(signToken(t, adminSecret, adminAudience)+"\n")),
		clientCA:  tlstest.NewCA(t, "client CA"),
	}
	n.clientCert = n.clientCA.Client(t, "selftest").Write(t, dir, "client")
	secretFile := tlstest.WriteFile(t, dir, "admin-secret", []byte(adminSecret))
	n.srv = startServer(t, func(c *config.Server) {
		c.Admin.TLS = config.TLS{Cert: cert.Cert, Key: cert.Key}
		if mutual {
			c.Admin.TLS.ClientCAs = tlstest.WriteFile(t, dir, "client-ca.crt", n.clientCA.PEM)
		}
		c.Admin.Auth.TokenHMACSecretKey = secretFile
		c.Admin.Auth.TokenAudience = adminAudience
	})
	a := n.srv.Addrs()
	n.adminURL, n.proxyURL, n.upstream = "https://"+a.Admin, "http://"+a.Proxy, "http://"+a.Upstream
	return n
}

func signToken(t *testing.T, secret, audience string) string {
	t.Helper()
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"aud": audience, "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString([]byte(secret))
	require.NoError(t, err)
	return token
}

// run runs the selftest against n's admin URL (or adminURL when given) with admin
// credentials.
func (n *securedNode) run(t *testing.T, admin config.Credentials, adminURL string) (string, error) {
	t.Helper()
	if adminURL == "" {
		adminURL = n.adminURL
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	err := Run(ctx, Config{AdminURLs: []string{adminURL}, Admin: admin, ExpectMembers: 1,
		ProxyURL: n.proxyURL, UpstreamURL: n.upstream, Requests: 3, PollInterval: 50 * time.Millisecond}, &out)
	return out.String(), err
}

func TestRunOverAdminTLSWithToken(t *testing.T) {
	n := startSecuredNode(t, false)

	out, err := n.run(t, config.Credentials{TokenFile: n.tokenFile, TLS: config.ClientTLS{CA: n.caFile}}, "")
	require.NoError(t, err, out)
	assert.Contains(t, out, "membership: all 1 members report the same 1 active members")
	assert.Contains(t, out, n.srv.ID())
	assert.Contains(t, out, "routing: 3 consecutive requests")

	// The certificate names localhost, not the IP's host name: --admin.tls.server-name
	// verifies the name given instead of the dialled host.
	out, err = n.run(t, config.Credentials{TokenFile: n.tokenFile, TLS: config.ClientTLS{CA: n.caFile, ServerName: "localhost"}}, "")
	require.NoError(t, err, out)

	token := strings.TrimSpace(readFile(t, n.tokenFile))
	out, err = n.run(t, config.Credentials{Token: token, TLS: config.ClientTLS{InsecureSkipVerify: true}}, "")
	require.NoError(t, err, out)
}

func TestRunOverMutualAdminTLS(t *testing.T) {
	n := startSecuredNode(t, true)
	out, err := n.run(t, config.Credentials{TokenFile: n.tokenFile,
		TLS: config.ClientTLS{CA: n.caFile, Cert: n.clientCert.Cert, Key: n.clientCert.Key}}, "")
	require.NoError(t, err, out)
	assert.Contains(t, out, "membership: all 1 members report the same 1 active members")

	_, err = n.run(t, config.Credentials{TokenFile: n.tokenFile, TLS: config.ClientTLS{CA: n.caFile}}, "")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "the admin port requires a client certificate (admin.tls.client_cas): pass --admin.tls.cert and --admin.tls.key")

	stranger := tlstest.NewCA(t, "stranger CA").Client(t, "stranger").Write(t, n.dir, "stranger")
	_, err = n.run(t, config.Credentials{TokenFile: n.tokenFile,
		TLS: config.ClientTLS{CA: n.caFile, Cert: stranger.Cert, Key: stranger.Key}}, "")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "the admin port refused the client certificate of --admin.tls.cert")
}

// TestRunFailsClearlyWithoutAdminCredentials checks that each missing or wrong credential
// ends the check at once (waiting would not help) with an error naming the flag to set, and
// never prints the token.
func TestRunFailsClearlyWithoutAdminCredentials(t *testing.T) {
	n := startSecuredNode(t, false)
	token := strings.TrimSpace(readFile(t, n.tokenFile))
	wrongToken := tlstest.WriteFile(t, n.dir, "wrong-token", []byte(signToken(t, "another-secret-0123456789abcdef012345", adminAudience)))
	otherCA := tlstest.WriteFile(t, n.dir, "other-ca.crt", tlstest.NewCA(t, "other CA").PEM)
	for _, tc := range []struct {
		name     string
		admin    config.Credentials
		adminURL string
		want     []string
	}{
		{"no CA", config.Credentials{TokenFile: n.tokenFile}, "",
			[]string{"certificate signed by unknown authority", "trust the CA that signed the admin certificate with --admin.tls.ca"}},
		{"another CA", config.Credentials{TokenFile: n.tokenFile, TLS: config.ClientTLS{CA: otherCA}}, "",
			[]string{"certificate signed by unknown authority", "--admin.tls.ca"}},
		{"wrong server name", config.Credentials{TokenFile: n.tokenFile, TLS: config.ClientTLS{CA: n.caFile, ServerName: "pico-0.pico-headless.default.svc"}}, "",
			[]string{"pico-0.pico-headless.default.svc", "give a name it lists with --admin.tls.server-name"}},
		{"no token", config.Credentials{TLS: config.ClientTLS{CA: n.caFile}}, "",
			[]string{"status 401", "the admin API requires a token (admin.auth): pass --admin.token-file"}},
		{"token signed with another key", config.Credentials{TokenFile: wrongToken, TLS: config.ClientTLS{CA: n.caFile}}, "",
			[]string{"status 401", "the admin API refused the token of --admin.token-file"}},
		{"plain HTTP to the TLS port", config.Credentials{}, strings.Replace(n.adminURL, "https://", "http://", 1),
			[]string{"status 400", "the admin port serves TLS (admin.tls): use https:// admin URLs"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := n.run(t, tc.admin, tc.adminURL)
			require.Error(t, err)
			assert.True(t, strings.HasPrefix(err.Error(), "membership: "), err.Error())
			for _, want := range tc.want {
				assert.Contains(t, err.Error(), want)
			}
			assert.NotContains(t, err.Error(), "did not agree", "a refused credential ends the check at once")
			assert.NotContains(t, err.Error(), token)
		})
	}

	_, err := n.run(t, config.Credentials{TokenFile: n.dir + "/missing-token", TLS: config.ClientTLS{CA: n.caFile}}, "")
	require.ErrorContains(t, err, "admin.token_file (--admin.token-file)")

	plain := startServer(t)
	_, err = n.run(t, config.Credentials{TLS: config.ClientTLS{CA: n.caFile}}, "https://"+plain.Addrs().Admin)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "the admin port does not serve TLS: use http:// admin URLs")
	assert.NotContains(t, err.Error(), "did not agree")
}

func TestValidateAdminCredentials(t *testing.T) {
	base := Config{AdminURLs: []string{"https://pico-0.pico-headless:8002"}, ExpectMembers: 1,
		ProxyURL: "http://pico:8000", UpstreamURL: "http://pico:8001", Requests: 1}
	good := base
	good.Admin = config.Credentials{TokenFile: "/t", TLS: config.ClientTLS{CA: "/ca.crt", ServerName: "pico"}}
	require.NoError(t, good.Validate())

	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"TLS options with an http URL", func(c *Config) {
			c.AdminURLs = []string{"https://pico-0:8002", "http://pico-1:8002"}
			c.Admin.TLS.CA = "/ca.crt"
		}, `--admin.tls.* options are set but admin_url (--admin-url) "http://pico-1:8002" is not https://`},
		{"token and token file", func(c *Config) { c.Admin.Token, c.Admin.TokenFile = "t", "/t" },
			"admin.token (--admin.token) and admin.token_file (--admin.token-file) are both set"},
		{"CA and insecure", func(c *Config) { c.Admin.TLS = config.ClientTLS{CA: "/ca.crt", InsecureSkipVerify: true} },
			"admin.tls.ca (--admin.tls.ca) and admin.tls.insecure_skip_verify"},
		{"cert without key", func(c *Config) { c.Admin.TLS.Cert = "/c.crt" },
			"admin.tls.cert (--admin.tls.cert) and admin.tls.key (--admin.tls.key) must be set together"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			tc.edit(&c)
			assert.ErrorContains(t, c.Validate(), tc.want)
		})
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}
