package charttest

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// proxyUpstreamMTLSValues requires client certificates on the proxy and upstream ports, each
// port trusting its own client CA: `helm test` presents a client certificate of its own to
// each (proxy.tls.clientSecret, upstream.tls.clientSecret).
const proxyUpstreamMTLSValues = `
tls: {existingSecret: pico-tls}
auth: {existingSecret: pico-auth}
proxy:
  tls: {enabled: true, clientSecret: pico-selftest-client}
upstream:
  tls: {enabled: true, clientSecret: pico-selftest-agent}
config:
  proxy: {tls: {client_cas: /etc/pico-tls/ca.crt}}
  upstream: {tls: {client_cas: /etc/pico-auth/agents-ca.crt}}
`

func TestProxyAndUpstreamMutualTLS(t *testing.T) {
	r := render(t, "pico", "prod", values(t, proxyUpstreamMTLSValues))

	cfg := baseConfig(t, get[corev1.ConfigMap](t, r, "ConfigMap", "pico"))
	assert.Equal(t, "/etc/pico-tls/ca.crt", lookup(t, cfg, "proxy.tls.client_cas"))
	assert.Equal(t, "/etc/pico-tls/tls.crt", lookup(t, cfg, "proxy.tls.cert"))
	assert.Equal(t, "/etc/pico-auth/agents-ca.crt", lookup(t, cfg, "upstream.tls.client_cas"))

	testPod := get[corev1.Pod](t, r, "Pod", "pico-test")
	selftest := testPod.Spec.Containers[0]
	assert.Equal(t, []string{
		"selftest", "--expect-members", "3",
		"--admin-url", "http://pico-0.pico-headless.prod.svc:8002",
		"--admin-url", "http://pico-1.pico-headless.prod.svc:8002",
		"--admin-url", "http://pico-2.pico-headless.prod.svc:8002",
		"--proxy-url", "https://pico.prod.svc:8000",
		"--proxy.tls.ca", "/etc/pico-selftest/proxy-ca/ca.crt",
		"--proxy.tls.cert", "/etc/pico-selftest/proxy-client/tls.crt",
		"--proxy.tls.key", "/etc/pico-selftest/proxy-client/tls.key",
		"--upstream-url", "https://pico.prod.svc:8001",
		"--upstream.tls.ca", "/etc/pico-selftest/upstream-ca/ca.crt",
		"--upstream.tls.cert", "/etc/pico-selftest/upstream-client/tls.crt",
		"--upstream.tls.key", "/etc/pico-selftest/upstream-client/tls.key",
		"--timeout", "2m",
	}, selftest.Args)
	assert.Equal(t, []corev1.VolumeMount{
		{Name: "proxy-ca", MountPath: "/etc/pico-selftest/proxy-ca", ReadOnly: true},
		{Name: "proxy-client", MountPath: "/etc/pico-selftest/proxy-client", ReadOnly: true},
		{Name: "upstream-ca", MountPath: "/etc/pico-selftest/upstream-ca", ReadOnly: true},
		{Name: "upstream-client", MountPath: "/etc/pico-selftest/upstream-client", ReadOnly: true},
	}, selftest.VolumeMounts)
	vols := volumesByName(testPod.Spec.Volumes)
	require.Len(t, vols, 4)
	clientKeys := []corev1.KeyToPath{{Key: "tls.crt", Path: "tls.crt"}, {Key: "tls.key", Path: "tls.key"}}
	for name, want := range map[string]struct {
		secret string
		items  []corev1.KeyToPath
	}{
		"proxy-ca":        {"pico-tls", []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}},
		"upstream-ca":     {"pico-tls", []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}},
		"proxy-client":    {"pico-selftest-client", clientKeys},
		"upstream-client": {"pico-selftest-agent", clientKeys},
	} {
		require.NotNil(t, vols[name].Secret, name)
		assert.Equal(t, want.secret, vols[name].Secret.SecretName, name)
		assert.Equal(t, want.items, vols[name].Secret.Items, name)
		require.NotNil(t, vols[name].Secret.DefaultMode, name)
		assert.Equal(t, int32(0o440), *vols[name].Secret.DefaultMode, name)
	}
	assertRestricted(t, "test pod", testPod.Spec)

	sts := get[appsv1.StatefulSet](t, r, "StatefulSet", "pico")
	for _, v := range sts.Spec.Template.Spec.Volumes {
		if v.Secret != nil {
			assert.NotContains(t, []string{"pico-selftest-client", "pico-selftest-agent"}, v.Secret.SecretName,
				"only the test pod mounts its client certificates")
		}
	}
	assertNoConfigWarning(t, r.Notes)
	assert.Contains(t, r.Notes, "port 3000 (with a client certificate that config.upstream.tls.client_cas accepts):")
	assert.Contains(t, r.Notes, "--connect.tls.server-name pico.prod.svc \\\n       --connect.tls.cert client.crt --connect.tls.key client.key\n")
	assert.Contains(t, r.Notes, "proxy port (with a client certificate that config.proxy.tls.client_cas accepts):")
	assert.Contains(t, r.Notes, `curl -H "x-pico-endpoint: my-endpoint" --cert client.crt --key client.key --cacert ca.crt`)
}

func TestMutualTLSOptions(t *testing.T) {
	t.Run("one client Secret for both ports, insecure upstream", func(t *testing.T) {
		r := render(t, "pico", "default", values(t, `
tls: {existingSecret: pico-tls}
proxy: {tls: {enabled: true, clientSecret: selftest-client}}
upstream: {tls: {enabled: true, clientSecret: selftest-client, insecureSkipVerify: true}, auth: {tokenSecret: {name: agent-token}}}
helmTest: {endpoint: helm-selftest}
config:
  auth: {jwks_url: "https://issuer.example/jwks"}
  proxy: {tls: {client_cas: /etc/pico-tls/ca.crt}}
  upstream: {tls: {client_cas: /etc/pico-tls/ca.crt}}
`))
		pod := get[corev1.Pod](t, r, "Pod", "pico-test")
		args := strings.Join(pod.Spec.Containers[0].Args, " ")
		assert.Contains(t, args, "--upstream-url https://pico.default.svc:8001 --upstream.tls.insecure-skip-verify "+
			"--upstream.tls.cert /etc/pico-selftest/upstream-client/tls.crt --upstream.tls.key /etc/pico-selftest/upstream-client/tls.key "+
			"--upstream.token-file /etc/pico-selftest/upstream-token/token --endpoint helm-selftest",
			"a client certificate is presented even when the server's is not verified")
		vols := volumesByName(pod.Spec.Volumes)
		assert.Equal(t, "selftest-client", vols["proxy-client"].Secret.SecretName)
		assert.Equal(t, "selftest-client", vols["upstream-client"].Secret.SecretName)
		assertNoConfigWarning(t, r.Notes)
		assert.Contains(t, r.Notes, "port 3000 (with a token that config.auth accepts for it and a client certificate that config.upstream.tls.client_cas accepts):")
		assert.Contains(t, r.Notes, "--connect.tls.insecure-skip-verify \\\n       --connect.tls.cert client.crt --connect.tls.key client.key --connect.token-file agent-token\n")
		assert.Contains(t, r.Notes, "--cert client.crt --key client.key --cacert proxy-ca.crt")
	})

	t.Run("client certificate for a port with TLS set in config", func(t *testing.T) {
		r := render(t, "pico", "default", values(t, `
tls: {existingSecret: pico-tls}
upstream: {tls: {clientSecret: agent-client}}
config: {upstream: {tls: {cert: /etc/pico-tls/tls.crt, key: /etc/pico-tls/tls.key, client_cas: /etc/pico-tls/ca.crt}}}
`))
		args := strings.Join(get[corev1.Pod](t, r, "Pod", "pico-test").Spec.Containers[0].Args, " ")
		assert.Contains(t, args, "--proxy-url http://pico.default.svc:8000 --upstream-url https://pico.default.svc:8001 "+
			"--upstream.tls.ca /etc/pico-selftest/upstream-ca/ca.crt --upstream.tls.cert /etc/pico-selftest/upstream-client/tls.crt")
		assert.NotContains(t, args, "--proxy.tls")
	})

	t.Run("mutual TLS without a client certificate for helm test", func(t *testing.T) {
		r := render(t, "pico", "default", values(t, `
tls: {existingSecret: pico-tls}
proxy: {tls: {enabled: true}}
upstream: {tls: {enabled: true}}
config:
  proxy: {tls: {client_cas: /etc/pico-tls/ca.crt}}
  upstream: {tls: {client_cas: /etc/pico-tls/ca.crt}}
`))
		assert.Contains(t, r.Notes, "WARNING: config.proxy.tls.client_cas makes the proxy port require a client\n"+
			"certificate, but proxy.tls.clientSecret is empty: `helm test` will be refused.")
		assert.Contains(t, r.Notes, "WARNING: config.upstream.tls.client_cas makes the upstream port require a client\n"+
			"certificate, but upstream.tls.clientSecret is empty")
		args := get[corev1.Pod](t, r, "Pod", "pico-test").Spec.Containers[0].Args
		assert.NotContains(t, args, "--proxy.tls.cert")
		assert.NotContains(t, args, "--upstream.tls.cert")
	})
}
