package charttest

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
)

// proxyUpstreamTLSValues serves the proxy and upstream ports over TLS from the chart's TLS
// Secret and requires tokens there that list a fixed test endpoint: `helm test` must follow.
const proxyUpstreamTLSValues = `
tls: {existingSecret: pico-tls}
auth: {existingSecret: pico-auth}
proxy:
  tls: {enabled: true}
  auth: {tokenSecret: {name: pico-proxy-token}}
upstream:
  tls: {enabled: true}
  auth: {tokenSecret: {name: pico-agent-token, key: jwt}}
helmTest: {endpoint: helm-selftest}
config:
  auth: {token_hmac_secret_key: /etc/pico-auth/upstream-hmac, token_audience: pico-upstream, require_endpoints_claim: true}
  proxy:
    auth: {token_hmac_secret_key: /etc/pico-auth/proxy-hmac, token_audience: pico-proxy, require_endpoints_claim: true}
`

// everyPortTLSValues adds admin TLS and auth to proxyUpstreamTLSValues.
const everyPortTLSValues = proxyUpstreamTLSValues + `
admin:
  tls: {enabled: true}
  auth: {tokenSecret: {name: pico-admin-token}}
`

func appProtocol(t *testing.T, s *corev1.Service, port string) string {
	t.Helper()
	p := servicePort(t, s, port)
	require.NotNil(t, p.AppProtocol, "%s port %s", s.Name, port)
	return *p.AppProtocol
}

func TestProxyAndUpstreamTLSAndAuth(t *testing.T) {
	r := render(t, "pico", "prod", values(t, proxyUpstreamTLSValues))

	cfg := baseConfig(t, get[corev1.ConfigMap](t, r, "ConfigMap", "pico"))
	for _, port := range []string{"proxy", "upstream"} {
		assert.Equal(t, "/etc/pico-tls/tls.crt", lookup(t, cfg, port+".tls.cert"), "the server serves the mounted certificate")
		assert.Equal(t, "/etc/pico-tls/tls.key", lookup(t, cfg, port+".tls.key"))
		assert.NotContains(t, lookup(t, cfg, port+".tls"), "client_cas", "no mutual TLS unless config sets it")
	}
	assert.Equal(t, ":8000", lookup(t, cfg, "proxy.bind_addr"))
	assert.Equal(t, "pico-proxy", lookup(t, cfg, "proxy.auth.token_audience"))
	assert.Equal(t, ":8001", lookup(t, cfg, "upstream.bind_addr"))
	assert.Equal(t, true, lookup(t, cfg, "auth.require_endpoints_claim"))
	assert.NotContains(t, lookup(t, cfg, "admin"), "tls", "the admin port stays plain")

	client := get[corev1.Service](t, r, "Service", "pico")
	headless := get[corev1.Service](t, r, "Service", "pico-headless")
	for _, s := range []*corev1.Service{client, headless} {
		assert.Equal(t, "https", appProtocol(t, s, "proxy"), "%s: meshes and gateways must not read TLS as plain HTTP", s.Name)
		assert.Equal(t, "https", appProtocol(t, s, "upstream"), s.Name)
	}
	assert.Equal(t, "http", appProtocol(t, headless, "admin"))

	testPod := get[corev1.Pod](t, r, "Pod", "pico-test")
	selftest := testPod.Spec.Containers[0]
	assert.Equal(t, []string{
		"selftest", "--expect-members", "3",
		"--admin-url", "http://pico-0.pico-headless.prod.svc:8002",
		"--admin-url", "http://pico-1.pico-headless.prod.svc:8002",
		"--admin-url", "http://pico-2.pico-headless.prod.svc:8002",
		"--proxy-url", "https://pico.prod.svc:8000",
		"--proxy.tls.ca", "/etc/pico-selftest/proxy-ca/ca.crt",
		"--proxy.token-file", "/etc/pico-selftest/proxy-token/token",
		"--upstream-url", "https://pico.prod.svc:8001",
		"--upstream.tls.ca", "/etc/pico-selftest/upstream-ca/ca.crt",
		"--upstream.token-file", "/etc/pico-selftest/upstream-token/token",
		"--endpoint", "helm-selftest",
		"--timeout", "2m",
	}, selftest.Args)
	assert.Equal(t, []corev1.VolumeMount{
		{Name: "proxy-ca", MountPath: "/etc/pico-selftest/proxy-ca", ReadOnly: true},
		{Name: "proxy-token", MountPath: "/etc/pico-selftest/proxy-token", ReadOnly: true},
		{Name: "upstream-ca", MountPath: "/etc/pico-selftest/upstream-ca", ReadOnly: true},
		{Name: "upstream-token", MountPath: "/etc/pico-selftest/upstream-token", ReadOnly: true},
	}, selftest.VolumeMounts)
	vols := volumesByName(testPod.Spec.Volumes)
	require.Len(t, vols, 4)
	for name, want := range map[string]struct{ secret, key, path string }{
		"proxy-ca":       {"pico-tls", "ca.crt", "ca.crt"},
		"upstream-ca":    {"pico-tls", "ca.crt", "ca.crt"},
		"proxy-token":    {"pico-proxy-token", "token", "token"},
		"upstream-token": {"pico-agent-token", "jwt", "token"},
	} {
		require.NotNil(t, vols[name].Secret, name)
		assert.Equal(t, want.secret, vols[name].Secret.SecretName, name)
		assert.Equal(t, []corev1.KeyToPath{{Key: want.key, Path: want.path}}, vols[name].Secret.Items,
			"%s: the test pod gets one key, never the private key", name)
	}
	assertRestricted(t, "test pod", testPod.Spec)

	assert.Contains(t, r.Notes, "proxy port (clients):     https://pico.prod.svc:8000")
	assert.Contains(t, r.Notes, "upstream port (agents):   https://pico.prod.svc:8001")
	assert.Equal(t, 1, strings.Count(r.Notes, `get secret pico-tls -o jsonpath='{.data.ca\.crt}' | base64 -d > ca.crt`),
		"one CA file when both ports use the same key")
	assert.Contains(t, r.Notes, "--connect.url https://localhost:8001 --connect.tls.ca ca.crt \\\n"+
		"       --connect.tls.server-name pico.prod.svc --connect.token-file agent-token")
	assert.Contains(t, r.Notes, `curl -H "x-pico-endpoint: my-endpoint" -H "Authorization: Bearer $TOKEN" --cacert ca.crt \`+"\n"+
		"       --connect-to ::localhost: https://pico.prod.svc:8000/")
	assertNoConfigWarning(t, r.Notes)
	assert.NotContains(t, r.Notes, "NOTE:")
}

func TestEveryPortTLSMountsEachKeyOnce(t *testing.T) {
	r := render(t, "pico", "prod", values(t, everyPortTLSValues))
	testPod := get[corev1.Pod](t, r, "Pod", "pico-test")
	var names []string
	for _, v := range testPod.Spec.Volumes {
		names = append(names, v.Name)
	}
	assert.Equal(t, []string{"admin-ca", "admin-token", "proxy-ca", "proxy-token", "upstream-ca", "upstream-token"}, names)
	args := strings.Join(testPod.Spec.Containers[0].Args, " ")
	assert.Contains(t, args, "--admin-url https://pico-2.pico-headless.prod.svc:8002 --admin.tls.ca /etc/pico-selftest/admin-ca/ca.crt --admin.token-file /etc/pico-selftest/admin-token/token --proxy-url https://")
	headless := get[corev1.Service](t, r, "Service", "pico-headless")
	for _, port := range []string{"proxy", "upstream", "admin"} {
		assert.Equal(t, "https", appProtocol(t, headless, port), port)
	}
}

func TestProxyAndUpstreamTLSOptions(t *testing.T) {
	t.Run("server names, CA keys and domain", func(t *testing.T) {
		r := render(t, "edge", "apps", values(t, `
clusterDomain: corp.internal
tls: {existingSecret: edge-tls, mountPath: /certs/}
proxy: {tls: {enabled: true, caKey: root.pem, serverName: proxy.pico.example}}
upstream: {tls: {enabled: true, serverName: agents.pico.example}}
`))
		cfg := baseConfig(t, get[corev1.ConfigMap](t, r, "ConfigMap", "edge-pico"))
		assert.Equal(t, "/certs/tls.crt", lookup(t, cfg, "proxy.tls.cert"))
		assert.Equal(t, "/certs/tls.key", lookup(t, cfg, "upstream.tls.key"))
		pod := get[corev1.Pod](t, r, "Pod", "edge-pico-test")
		args := strings.Join(pod.Spec.Containers[0].Args, " ")
		assert.Contains(t, args, "--proxy-url https://edge-pico.apps.svc.corp.internal:8000 --proxy.tls.ca /etc/pico-selftest/proxy-ca/ca.crt --proxy.tls.server-name proxy.pico.example")
		assert.Contains(t, args, "--upstream-url https://edge-pico.apps.svc.corp.internal:8001 --upstream.tls.ca /etc/pico-selftest/upstream-ca/ca.crt --upstream.tls.server-name agents.pico.example")
		assert.NotContains(t, args, "token-file")
		assert.NotContains(t, args, "--endpoint", "a random endpoint without helmTest.endpoint")
		vols := volumesByName(pod.Spec.Volumes)
		assert.Equal(t, []corev1.KeyToPath{{Key: "root.pem", Path: "ca.crt"}}, vols["proxy-ca"].Secret.Items)
		assert.Equal(t, []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}, vols["upstream-ca"].Secret.Items)
		assert.Contains(t, r.Notes, `get secret edge-tls -o jsonpath='{.data.root\.pem}' | base64 -d > proxy-ca.crt`)
		assert.Contains(t, r.Notes, `get secret edge-tls -o jsonpath='{.data.ca\.crt}' | base64 -d > upstream-ca.crt`)
		assert.Contains(t, r.Notes, "--connect.tls.ca upstream-ca.crt \\\n       --connect.tls.server-name agents.pico.example")
		assert.Contains(t, r.Notes, "--cacert proxy-ca.crt \\\n       --connect-to ::localhost: https://proxy.pico.example:8000/")
	})

	t.Run("public CA and insecure", func(t *testing.T) {
		r := render(t, "pico", "default", values(t, `
tls: {existingSecret: pico-tls}
proxy: {tls: {enabled: true, caKey: ""}}
upstream: {tls: {enabled: true, insecureSkipVerify: true, serverName: ignored.example}}
`))
		pod := get[corev1.Pod](t, r, "Pod", "pico-test")
		args := pod.Spec.Containers[0].Args
		assert.Contains(t, args, "https://pico.default.svc:8000")
		assert.NotContains(t, args, "--proxy.tls.ca", "the system roots verify a public certificate")
		assert.Contains(t, args, "--upstream.tls.insecure-skip-verify")
		assert.NotContains(t, args, "--upstream.tls.ca", "selftest refuses a CA together with insecure-skip-verify")
		assert.NotContains(t, args, "--upstream.tls.server-name")
		assert.Empty(t, pod.Spec.Volumes)
		assert.Empty(t, pod.Spec.Containers[0].VolumeMounts)
		assert.Contains(t, r.Notes, "--connect.url https://localhost:8001 --connect.tls.insecure-skip-verify")
	})

	t.Run("TLS set in config", func(t *testing.T) {
		// The server's keys set by hand: helm test follows all the same.
		r := render(t, "pico", "default", values(t, `
tls: {existingSecret: pico-tls}
config: {proxy: {tls: {cert: /etc/pico-tls/tls.crt, key: /etc/pico-tls/tls.key}}}
`))
		args := strings.Join(get[corev1.Pod](t, r, "Pod", "pico-test").Spec.Containers[0].Args, " ")
		assert.Contains(t, args, "--proxy-url https://pico.default.svc:8000 --proxy.tls.ca /etc/pico-selftest/proxy-ca/ca.crt --upstream-url http://pico.default.svc:8001")
		assert.Equal(t, "https", appProtocol(t, get[corev1.Service](t, r, "Service", "pico"), "proxy"))
		assert.Equal(t, "http", appProtocol(t, get[corev1.Service](t, r, "Service", "pico"), "upstream"))
	})

	t.Run("auth without a token for helm test", func(t *testing.T) {
		r := render(t, "pico", "default", values(t, `
config:
  auth: {jwks_url: "https://issuer.example/jwks"}
  proxy: {auth: {token_ecdsa_public_key: /etc/pico-auth/proxy.pem}}
`))
		assert.Contains(t, r.Notes, "WARNING: config.proxy.auth makes the proxy port require a token, but proxy.auth.tokenSecret.name\nis empty: `helm test` will be refused (401).")
		assert.Contains(t, r.Notes, "WARNING: config.auth makes the upstream port require a token, but upstream.auth.tokenSecret.name")
		assert.Contains(t, r.Notes, "(with a token that config.auth accepts for it)")
		assert.Contains(t, r.Notes, "--connect.url http://localhost:8001 --connect.token-file agent-token")
		assert.Contains(t, r.Notes, `curl -H "x-pico-endpoint: my-endpoint" -H "Authorization: Bearer $TOKEN" http://localhost:8000/`)
	})

	t.Run("tokens with a random test endpoint", func(t *testing.T) {
		r := render(t, "pico", "default", values(t, `
upstream: {auth: {tokenSecret: {name: agent-token}}}
config: {auth: {jwks_url: "https://issuer.example/jwks"}}
`))
		assertNoConfigWarning(t, r.Notes)
		assert.Contains(t, r.Notes, "NOTE: `helm test` uses a random endpoint ID, which the token of upstream.auth.tokenSecret\nmust allow")
		args := strings.Join(get[corev1.Pod](t, r, "Pod", "pico-test").Spec.Containers[0].Args, " ")
		assert.Contains(t, args, "--upstream-url http://pico.default.svc:8001 --upstream.token-file /etc/pico-selftest/upstream-token/token --timeout")
	})
}
