package charttest

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"

	"github.com/pico-proxy/pico/internal/config"
)

// serverConfig decodes the rendered base server.yaml as `pico server` does (strictly: an
// unknown key fails) and validates it.
func serverConfig(t *testing.T, r *Rendered, configMap string) *config.Server {
	t.Helper()
	cm := get[corev1.ConfigMap](t, r, "ConfigMap", configMap)
	cfg := config.DefaultServer()
	require.NoError(t, config.Decode([]byte(cm.Data["server.yaml"]), true, cfg), "pico server reads the rendered server.yaml")
	require.NoError(t, cfg.Validate())
	return cfg
}

// TestProxyPeerCAs: with proxy TLS from the chart's Secret, members trust the Secret's CA
// (proxy.tls.caKey) for each other's certificates, so forwarding survives a renewal reaching
// the pods at different moments; proxy.tls.peerCAs, caKey and config decide.
func TestProxyPeerCAs(t *testing.T) {
	for _, tc := range []struct {
		name, values string
		want         string // proxy.tls.peer_cas; "" when not set
	}{
		{"default: the Secret's ca.crt", proxyUpstreamTLSValues, "/etc/pico-tls/ca.crt"},
		{"with client_cas", proxyUpstreamMTLSValues, "/etc/pico-tls/ca.crt"},
		{"another key and mount path", `
tls: {existingSecret: edge-tls, mountPath: /certs/}
proxy: {tls: {enabled: true, caKey: root.pem}}
`, "/certs/root.pem"},
		{"public CA: no caKey", `
tls: {existingSecret: pico-tls}
proxy: {tls: {enabled: true, caKey: ""}}
`, ""},
		{"turned off", `
tls: {existingSecret: pico-tls}
proxy: {tls: {enabled: true, peerCAs: false}}
`, ""},
		{"set in config", `
tls: {existingSecret: pico-tls}
auth: {existingSecret: pico-auth}
proxy: {tls: {enabled: true}}
config: {proxy: {tls: {peer_cas: /etc/pico-auth/members-ca.crt}}}
`, "/etc/pico-auth/members-ca.crt"},
		{"proxy TLS set in config, not by the chart", `
tls: {existingSecret: pico-tls}
config: {proxy: {tls: {cert: /etc/pico-tls/tls.crt, key: /etc/pico-tls/tls.key}}}
`, ""},
		{"no proxy TLS", `
tls: {existingSecret: pico-tls}
upstream: {tls: {enabled: true}}
admin: {tls: {enabled: true}}
`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := render(t, "pico", "prod", values(t, tc.values))
			cfg := serverConfig(t, r, "pico")
			assert.Equal(t, tc.want, cfg.Proxy.TLS.PeerCAs)
			assert.Empty(t, cfg.Upstream.TLS.PeerCAs, "the proxy port only: members forward through it")
			assert.Empty(t, cfg.Admin.TLS.PeerCAs)
		})
	}

	_, err := Render(chartDir, "pico", "default", values(t, "proxy: {tls: {peerCAs: ca.crt}}"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "values don't meet the specifications of the schema")
	assert.Contains(t, err.Error(), "peerCAs")
}
