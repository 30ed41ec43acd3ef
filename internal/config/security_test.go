package config

import (
	"encoding/base64"
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

func TestGossipSecretKey(t *testing.T) {
	key32 := make([]byte, 32)
	for i := range key32 {
		key32[i] = byte(i * 7)
	}
	b64 := base64.StdEncoding.EncodeToString(key32)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "gossip.key")
	require.NoError(t, os.WriteFile(keyFile, []byte(b64+"\n"), 0o600))
	badFile := filepath.Join(dir, "bad.key")
	require.NoError(t, os.WriteFile(badFile, []byte("not base64!"), 0o600))

	tests := []struct {
		name    string
		value   string
		wantLen int
		wantErr string
	}{
		{"empty disables encryption", "", 0, ""},
		{"AES-128", base64.StdEncoding.EncodeToString(key32[:16]), 16, ""},
		{"AES-192", base64.StdEncoding.EncodeToString(key32[:24]), 24, ""},
		{"AES-256", b64, 32, ""},
		{"from a file", keyFile, 32, ""},
		{"wrong length", base64.StdEncoding.EncodeToString(key32[:20]), 0, "gossip.secret_key (--gossip.secret-key): the value decodes to 20 bytes; an AES key is 16, 24 or 32 bytes"},
		{"not base64", "hunter2!", 0, "gossip.secret_key (--gossip.secret-key): the value is not base64"},
		{"file that is not base64", badFile, 0, "the file " + badFile + " is not base64"},
		{"missing file", "/etc/pico/no-such-gossip.key", 0, "file /etc/pico/no-such-gossip.key does not exist"},
		{"directory", dir, 0, "is not a regular file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key, err := GossipSecretKey(tc.value)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				require.NotContains(t, err.Error(), b64)
				return
			}
			require.NoError(t, err)
			require.Len(t, key, tc.wantLen)
			if tc.wantLen > 0 {
				require.Equal(t, key32[:tc.wantLen], key)
			}
		})
	}
}
