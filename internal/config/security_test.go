package config

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/require"
)

// securedListener is how a listener section embeds the security structs.
type securedListener struct {
	Auth Auth `yaml:"auth"`
	TLS  TLS  `yaml:"tls"`
}

type securedConfig struct {
	Proxy   securedListener `yaml:"proxy"`
	Connect struct {
		TLS ClientTLS `yaml:"tls"`
	} `yaml:"connect"`
}

func (c *securedConfig) RegisterFlags(fs *pflag.FlagSet) {
	c.Proxy.Auth.RegisterFlags(fs, "proxy.auth")
	c.Proxy.TLS.RegisterFlags(fs, "proxy.tls")
	c.Connect.TLS.RegisterFlags(fs, "connect.tls")
}

func (c *securedConfig) Validate() error {
	return errors.Join(c.Proxy.Auth.Validate("proxy.auth"), c.Proxy.TLS.Validate("proxy.tls"), c.Connect.TLS.Validate("connect.tls"))
}

func newSecured() *securedConfig {
	c := &securedConfig{}
	c.Proxy.Auth = DefaultAuth()
	return c
}

func TestSecurityKeysFromFileAndFlags(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	require.NoError(t, os.WriteFile(path, []byte(`
proxy:
  auth:
    token_hmac_secret_key: /run/secrets/hmac
    token_audience: pico
    require_endpoints_claim: true
    disconnect_on_expiry: false
  tls:
    cert: /tls/tls.crt
    key: /tls/tls.key
connect:
  tls:
    ca: /tls/ca.crt
`), 0o600))
	cfg, _, err := Load("test", []string{"--config.path", path, "--proxy.auth.jwks-url", "https://issuer.example/jwks", "--proxy.auth.jwks-refresh-interval", "1m", "--proxy.tls.client-cas", "/tls/clients.crt", "--connect.tls.cert", "/c.crt", "--connect.tls.key", "/c.key"}, newSecured, io.Discard)
	require.NoError(t, err)
	a := cfg.Proxy.Auth
	require.Equal(t, "/run/secrets/hmac", a.TokenHMACSecretKey)
	require.Equal(t, "https://issuer.example/jwks", a.JWKSURL)
	require.Equal(t, time.Minute, a.JWKSRefreshInterval)
	require.Equal(t, "pico", a.TokenAudience)
	require.True(t, a.RequireEndpointsClaim)
	require.False(t, a.DisconnectOnExpiry)
	require.True(t, a.Enabled())
	require.Equal(t, TLS{Cert: "/tls/tls.crt", Key: "/tls/tls.key", ClientCAs: "/tls/clients.crt"}, cfg.Proxy.TLS)
	require.Equal(t, ClientTLS{CA: "/tls/ca.crt", Cert: "/c.crt", Key: "/c.key"}, cfg.Connect.TLS)
}

func TestSecurityDefaults(t *testing.T) {
	cfg, _, err := Load("test", nil, newSecured, io.Discard)
	require.NoError(t, err)
	require.False(t, cfg.Proxy.Auth.Enabled())
	require.True(t, cfg.Proxy.Auth.DisconnectOnExpiry)
	require.Equal(t, 5*time.Minute, cfg.Proxy.Auth.JWKSRefreshInterval)
	require.False(t, cfg.Proxy.TLS.Enabled())
}

func TestSecurityValidation(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--proxy.tls.cert", "c.pem"}, "proxy.tls.cert (--proxy.tls.cert) is set but proxy.tls.key (--proxy.tls.key) is empty"},
		{[]string{"--proxy.tls.key", "k.pem"}, "proxy.tls.key (--proxy.tls.key) is set but proxy.tls.cert (--proxy.tls.cert) is empty"},
		{[]string{"--proxy.tls.client-cas", "ca.pem"}, "proxy.tls.client_cas (--proxy.tls.client-cas) needs TLS"},
		{[]string{"--connect.tls.ca", "ca.pem", "--connect.tls.insecure-skip-verify"}, "connect.tls.ca (--connect.tls.ca) and connect.tls.insecure_skip_verify (--connect.tls.insecure-skip-verify) are both set"},
		{[]string{"--connect.tls.cert", "c.pem"}, "connect.tls.cert (--connect.tls.cert) and connect.tls.key (--connect.tls.key) must be set together"},
		{[]string{"--proxy.auth.jwks-url", "http://issuer/jwks"}, "proxy.auth.jwks_url (--proxy.auth.jwks-url): plain http"},
		{[]string{"--proxy.auth.jwks-url", "ftp://issuer/jwks"}, `scheme "ftp" is not supported`},
		{[]string{"--proxy.auth.jwks-url", "https:///jwks"}, "has no host"},
		{[]string{"--proxy.auth.jwks-url", "file://relative/jwks.json"}, "needs an absolute path"},
		{[]string{"--proxy.auth.jwks-url", "https://issuer/jwks", "--proxy.auth.jwks-refresh-interval", "0s"}, "proxy.auth.jwks_refresh_interval (--proxy.auth.jwks-refresh-interval) is 0s"},
		{[]string{"--proxy.auth.token-issuer", "me"}, "proxy.auth.token_issuer (--proxy.auth.token-issuer) is set but no verification key is, so authentication is off"},
		{[]string{"--proxy.auth.require-endpoints-claim"}, "proxy.auth.require_endpoints_claim (--proxy.auth.require-endpoints-claim) is set but no verification key is"},
	}
	for _, tc := range tests {
		_, _, err := Load("test", tc.args, newSecured, io.Discard)
		require.ErrorContains(t, err, tc.want, "args %v", tc.args)
	}
	_, _, err := Load("test", []string{"--proxy.auth.jwks-url", "file:///etc/pico/jwks.json"}, newSecured, io.Discard)
	require.NoError(t, err)
}

func TestClientCredentials(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte("eyJ.payload.sig\n"), 0o600))

	agent, _, err := Load("agent", []string{"--connect.url", "https://pico:8001", "--connect.token-file", tokenFile, "--connect.tls.ca", "/ca.crt"}, DefaultAgent, io.Discard)
	require.NoError(t, err)
	require.Equal(t, ClientTLS{CA: "/ca.crt"}, agent.Connect.TLS)
	token, err := agent.Connect.BearerToken("connect")
	require.NoError(t, err)
	require.Equal(t, "eyJ.payload.sig", token, "read from the file, trailing newline dropped")

	forward, _, err := Load("forward", []string{"--connect.url", "wss://pico:8000", "--connect.tls.insecure-skip-verify", "--connect.token", "t"}, DefaultForward, io.Discard)
	require.NoError(t, err)
	require.True(t, forward.Connect.TLS.InsecureSkipVerify)
	token, err = forward.Connect.BearerToken("connect")
	require.NoError(t, err)
	require.Equal(t, "t", token)

	path := filepath.Join(dir, "status.yaml")
	require.NoError(t, os.WriteFile(path, []byte("server:\n  url: https://pico:8002\nconnect:\n  token_file: "+tokenFile+"\n  tls:\n    ca: /ca.crt\n"), 0o600))
	status, _, err := Load("status", []string{"--config.path", path}, DefaultStatus, io.Discard)
	require.NoError(t, err)
	require.Equal(t, "/ca.crt", status.Connect.TLS.CA)
	require.Equal(t, tokenFile, status.Connect.TokenFile)

	named, _, err := Load("status", []string{"--server.url", "https://localhost:8002", "--connect.tls.server-name", "pico-0.pico-headless.ns.svc"}, DefaultStatus, io.Discard)
	require.NoError(t, err)
	require.Equal(t, ClientTLS{ServerName: "pico-0.pico-headless.ns.svc"}, named.Connect.TLS)
	_, _, err = Load("status", []string{"--connect.tls.server-name", "pico-0"}, DefaultStatus, io.Discard)
	require.ErrorContains(t, err, `--connect.tls.* options are set but server.url (--server.url) "http://localhost:8002" is not https://`, "a server name needs TLS")

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--connect.token", "a", "--connect.token-file", tokenFile}, "connect.token (--connect.token) and connect.token_file (--connect.token-file) are both set"},
		{[]string{"--connect.tls.ca", "/ca.crt"}, `--connect.tls.* options are set but connect.url (--connect.url) "http://localhost:8001" is not https://`},
		{[]string{"--connect.url", "https://pico", "--connect.tls.ca", "/ca.crt", "--connect.tls.insecure-skip-verify"}, "connect.tls.ca (--connect.tls.ca) and connect.tls.insecure_skip_verify"},
	} {
		_, _, err := Load("agent", tc.args, DefaultAgent, io.Discard)
		require.ErrorContains(t, err, tc.want, "args %v", tc.args)
	}
	_, _, err = Load("status", []string{"--connect.tls.insecure-skip-verify"}, DefaultStatus, io.Discard)
	require.ErrorContains(t, err, `server.url (--server.url) "http://localhost:8002" is not https://`)

	missing := Credentials{TokenFile: filepath.Join(dir, "missing")}
	_, err = missing.BearerToken("connect")
	require.ErrorContains(t, err, "connect.token_file (--connect.token-file)")
	require.NoError(t, os.WriteFile(tokenFile, []byte(" \n"), 0o600))
	_, err = agent.Connect.BearerToken("connect")
	require.ErrorContains(t, err, "is empty")
}

// TestValidatedOnceAtLoad: checks of the configuration that auth.NewVerifier,
// tlsconfig.NewServer and tlsconfig.NewClient used to repeat (their tests'
// cases, moved here) are made once, by Validate at load; the components
// only read files.
func TestValidatedOnceAtLoad(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"http key set", (&Auth{JWKSURL: "http://issuer.example/jwks.json", JWKSRefreshInterval: time.Minute}).Validate("auth"),
			"auth.jwks_url (--auth.jwks-url): plain http would let anyone on the path substitute keys"},
		{"audience without a key", (&Auth{TokenAudience: "pico"}).Validate("proxy.auth"),
			"proxy.auth.token_audience (--proxy.auth.token-audience) is set but no verification key is"},
		{"server cert without key", (&TLS{Cert: "/tls.crt"}).Validate("proxy.tls"),
			"proxy.tls.cert (--proxy.tls.cert) is set but proxy.tls.key (--proxy.tls.key) is empty"},
		{"peer CAs without TLS", (&TLS{PeerCAs: "/ca.crt"}).Validate("proxy.tls"),
			"proxy.tls.peer_cas (--proxy.tls.peer-cas) needs TLS; set proxy.tls.cert (--proxy.tls.cert) and proxy.tls.key (--proxy.tls.key) too"},
		{"peer CAs on another port", (&TLS{Cert: "/tls.crt", Key: "/tls.key", PeerCAs: "/ca.crt"}).Validate("upstream.tls"),
			"upstream.tls.peer_cas is not a setting: members forward to each other's proxy ports only; set proxy.tls.peer_cas (--proxy.tls.peer-cas) instead"},
		{"client CA and insecure", (&ClientTLS{CA: "/ca.crt", InsecureSkipVerify: true}).Validate("connect.tls"), "are both set"},
		{"client cert without key", (&ClientTLS{Cert: "/tls.crt"}).Validate("connect.tls"), "must be set together"},
	} {
		require.ErrorContains(t, tc.err, tc.want, tc.name)
	}
}
