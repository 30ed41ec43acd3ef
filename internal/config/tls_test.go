package config

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestProxyPeerCAs: proxy.tls.peer_cas is read from YAML and its flag like
// the other TLS files, needs TLS on the proxy port, and exists for the
// proxy port only (members forward to each other's proxy ports).
func TestProxyPeerCAs(t *testing.T) {
	path := writeFile(t, `
proxy:
  tls:
    cert: /etc/pico-tls/tls.crt
    key: /etc/pico-tls/tls.key
    client_cas: /etc/pico-tls/clients.crt
    peer_cas: /etc/pico-tls/ca.crt
`)
	cfg, err := loadServer(t, "--config.path", path)
	require.NoError(t, err)
	require.Equal(t, TLS{Cert: "/etc/pico-tls/tls.crt", Key: "/etc/pico-tls/tls.key", ClientCAs: "/etc/pico-tls/clients.crt", PeerCAs: "/etc/pico-tls/ca.crt"}, cfg.Proxy.TLS)

	cfg, err = loadServer(t, "--config.path", path, "--proxy.tls.peer-cas", "/other/ca.crt")
	require.NoError(t, err)
	require.Equal(t, "/other/ca.crt", cfg.Proxy.TLS.PeerCAs, "the flag overrides the file")

	cfg, err = loadServer(t)
	require.NoError(t, err)
	require.Empty(t, cfg.Proxy.TLS.PeerCAs, "off by default")

	for _, tc := range []struct {
		args []string
		yaml string
		want string
	}{
		{args: []string{"--proxy.tls.peer-cas", "/etc/pico-tls/ca.crt"},
			want: "proxy.tls.peer_cas (--proxy.tls.peer-cas) needs TLS; set proxy.tls.cert (--proxy.tls.cert) and proxy.tls.key (--proxy.tls.key) too"},
		{args: []string{"--upstream.tls.peer-cas", "/etc/pico-tls/ca.crt"},
			want: "unknown flag: --upstream.tls.peer-cas"},
		{args: []string{"--admin.tls.peer-cas", "/etc/pico-tls/ca.crt"},
			want: "unknown flag: --admin.tls.peer-cas"},
		{yaml: "upstream: {tls: {cert: c, key: k, peer_cas: /etc/pico-tls/ca.crt}}",
			want: "upstream.tls.peer_cas is not a setting: members forward to each other's proxy ports only; set proxy.tls.peer_cas (--proxy.tls.peer-cas) instead"},
		{yaml: "admin: {tls: {peer_cas: /etc/pico-tls/ca.crt}}",
			want: "admin.tls.peer_cas is not a setting"},
	} {
		args := tc.args
		if tc.yaml != "" {
			args = append(args, "--config.path", writeFile(t, tc.yaml))
		}
		_, err := loadServer(t, args...)
		require.ErrorContains(t, err, tc.want, "args %v, yaml %q", tc.args, tc.yaml)
	}

	// Every problem at once.
	_, err = loadServer(t, "--config.path", writeFile(t, "admin: {tls: {peer_cas: x}}"), "--proxy.tls.peer-cas", "y", "--proxy.tls.client-cas", "z")
	for _, want := range []string{"admin.tls.peer_cas is not a setting", "proxy.tls.peer_cas (--proxy.tls.peer-cas) needs TLS", "proxy.tls.client_cas (--proxy.tls.client-cas) needs TLS"} {
		require.ErrorContains(t, err, want)
	}
}
