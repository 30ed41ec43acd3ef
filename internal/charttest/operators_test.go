package charttest

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"helm.sh/helm/v3/pkg/chart/loader"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

const umbrellaDir = "../../e2e/k8s/umbrella"

// renderUmbrella renders e2e/k8s/umbrella with this chart as its subchart, as `helm install`
// does after `helm dependency update`: Helm hands the subchart the parent's `global`.
func renderUmbrella(t *testing.T, vals map[string]any) (*Rendered, error) {
	t.Helper()
	umbrella, err := loader.Load(umbrellaDir)
	require.NoError(t, err)
	pico, err := loader.Load(chartDir)
	require.NoError(t, err)
	umbrella.SetDependencies(pico)
	return RenderChart(umbrella, "umbrella", "apps", vals)
}

func TestChartWorksAsASubchart(t *testing.T) {
	r, err := renderUmbrella(t, values(t, `
global:
  imageRegistry: mirror.corp:5000
  imagePullSecrets: [mirror-pull]
  anotherChartsGlobal: {kept: true}
pico:
  image: {tag: "1.2.3"}
  podDisruptionBudget: {maxUnavailable: null, minAvailable: 1}
`))
	require.NoError(t, err, "Helm passes global to every subchart: the schema must accept it")
	sts := get[appsv1.StatefulSet](t, r, "StatefulSet", "umbrella-pico")
	pod := sts.Spec.Template.Spec
	assert.Equal(t, int32(2), *sts.Spec.Replicas, "the umbrella's pico values reach the subchart")
	for _, c := range append(pod.InitContainers, pod.Containers...) {
		assert.Equal(t, "mirror.corp:5000/pico-proxy/pico:1.2.3", c.Image, c.Name)
	}
	assert.Equal(t, []corev1.LocalObjectReference{{Name: "mirror-pull"}}, pod.ImagePullSecrets)
	test := get[corev1.Pod](t, r, "Pod", "umbrella-pico-test")
	assert.Equal(t, "mirror.corp:5000/pico-proxy/pico:1.2.3", test.Spec.Containers[0].Image)
	assert.Equal(t, []corev1.LocalObjectReference{{Name: "mirror-pull"}}, test.Spec.ImagePullSecrets)
	assert.Equal(t, "pico-umbrella", get[corev1.Service](t, r, "Service", "umbrella-pico").Annotations["example.com/installed-by"])
	pdb := get[policyv1.PodDisruptionBudget](t, r, "PodDisruptionBudget", "umbrella-pico")
	assert.Equal(t, intstr.FromInt32(1), *pdb.Spec.MinAvailable)
	assert.Nil(t, pdb.Spec.MaxUnavailable)

	// Standalone, `--set global.imageRegistry=…` works the same way.
	r = render(t, "pico", "default", values(t, "global: {imageRegistry: registry.local}"))
	assert.Equal(t, "registry.local/pico-proxy/pico:0.1.0", get[appsv1.StatefulSet](t, r, "StatefulSet", "pico").Spec.Template.Spec.Containers[0].Image)
}

func TestImageReference(t *testing.T) {
	const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, tc := range []struct{ name, values, want string }{
		{"default", "", "ghcr.io/pico-proxy/pico:0.1.0"},
		{"tag", "image: {tag: '2.0'}", "ghcr.io/pico-proxy/pico:2.0"},
		{"digest pins the image", "image: {tag: '2.0', digest: " + digest + "}", "ghcr.io/pico-proxy/pico@" + digest},
		{"registry replaces the host", "global: {imageRegistry: mirror.corp}", "mirror.corp/pico-proxy/pico:0.1.0"},
		{"registry with a path", "global: {imageRegistry: mirror.corp/ghcr}", "mirror.corp/ghcr/pico-proxy/pico:0.1.0"},
		{"registry prefixes a repository without a host", "{global: {imageRegistry: 'localhost:5000'}, image: {repository: team/pico}}", "localhost:5000/team/pico:0.1.0"},
		{"registry and digest", "{global: {imageRegistry: mirror.corp}, image: {digest: " + digest + "}}", "mirror.corp/pico-proxy/pico@" + digest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := render(t, "pico", "default", values(t, tc.values))
			pod := get[appsv1.StatefulSet](t, r, "StatefulSet", "pico").Spec.Template.Spec
			assert.Equal(t, tc.want, pod.InitContainers[0].Image)
			assert.Equal(t, tc.want, pod.Containers[0].Image)
			assert.Equal(t, tc.want, get[corev1.Pod](t, r, "Pod", "pico-test").Spec.Containers[0].Image)
		})
	}
	r := render(t, "pico", "default", values(t, "{imagePullSecrets: [{name: a}, {name: b}], global: {imagePullSecrets: [b, {name: c}]}}"))
	assert.Equal(t, []corev1.LocalObjectReference{{Name: "a"}, {Name: "b"}, {Name: "c"}},
		get[appsv1.StatefulSet](t, r, "StatefulSet", "pico").Spec.Template.Spec.ImagePullSecrets, "each pull secret once")
}

// TestCommonAnnotationsOnEveryObject switches every optional object on and checks each one
// carries commonAnnotations, with an object's own annotations winning on a clash and the
// hooks' helm.sh annotations intact.
func TestCommonAnnotationsOnEveryObject(t *testing.T) {
	vals := values(t, fullValues)
	vals["commonAnnotations"] = map[string]any{"example.com/team": "edge", "example.com/lb": "common"}
	vals["tls"].(map[string]any)["certManager"] = map[string]any{"issuerRef": map[string]any{"name": "ca"}}
	vals["prometheusRule"] = map[string]any{"enabled": true, "annotations": map[string]any{"example.com/rule": "own"}}
	vals["grafanaDashboard"] = map[string]any{"enabled": true}
	r := render(t, "edge", "apps", vals)
	require.GreaterOrEqual(t, len(r.Objects), 18)
	kinds := map[string]bool{}
	for _, o := range r.Objects {
		kinds[o.Kind] = true
	}
	require.True(t, kinds["PrometheusRule"] && kinds["ConfigMap"], "the rule and the dashboard are rendered too")
	for _, o := range r.Objects {
		meta := objectMeta(t, o)
		assert.Equal(t, "edge", meta.Annotations["example.com/team"], "%s/%s", o.Kind, o.Name)
		if o.Hook {
			assert.Equal(t, "test", meta.Annotations["helm.sh/hook"], "%s/%s", o.Kind, o.Name)
		}
	}
	assert.Equal(t, "external", get[corev1.Service](t, r, "Service", "edge-pico").Annotations["example.com/lb"], "service.annotations win")
	assert.Equal(t, "edge", get[corev1.ServiceAccount](t, r, "ServiceAccount", "pico-sa").Annotations["example.com/role"])
	assert.NotContains(t, get[appsv1.StatefulSet](t, r, "StatefulSet", "edge-pico").Spec.Template.Annotations, "example.com/team",
		"pods take podAnnotations: a commonAnnotations change must not roll them")
}

func objectMeta(t *testing.T, o Object) metav1.ObjectMeta {
	t.Helper()
	b, err := yaml.Marshal(o.Value)
	require.NoError(t, err)
	var m struct {
		Metadata metav1.ObjectMeta `json:"metadata"`
	}
	require.NoError(t, yaml.Unmarshal(b, &m))
	return m.Metadata
}

func TestServiceOptions(t *testing.T) {
	r := render(t, "pico", "default", values(t, `
service:
  type: LoadBalancer
  loadBalancerClass: example.com/internal-lb
  loadBalancerSourceRanges: [10.0.0.0/8, 192.168.0.0/16]
  internalTrafficPolicy: Local
  labels: {exposure: internal}
`))
	svc := get[corev1.Service](t, r, "Service", "pico")
	require.NotNil(t, svc.Spec.LoadBalancerClass)
	assert.Equal(t, "example.com/internal-lb", *svc.Spec.LoadBalancerClass)
	assert.Equal(t, []string{"10.0.0.0/8", "192.168.0.0/16"}, svc.Spec.LoadBalancerSourceRanges)
	require.NotNil(t, svc.Spec.InternalTrafficPolicy)
	assert.Equal(t, corev1.ServiceInternalTrafficPolicyLocal, *svc.Spec.InternalTrafficPolicy)
	assert.Equal(t, "internal", svc.Labels["exposure"])
	assert.Equal(t, "pico", svc.Labels["app.kubernetes.io/name"])
	assert.NotContains(t, get[corev1.Service](t, r, "Service", "pico-headless").Labels, "exposure", "service.labels are the client Service's")
	assert.Contains(t, r.Notes, "kubectl -n default get service pico -o jsonpath='{.status.loadBalancer.ingress[0].ip}{.status.loadBalancer.ingress[0].hostname}'")
	assert.Contains(t, r.Notes, "proxy port:    http://$ADDRESS:8000")

	// A ClusterIP Service gets no load balancer fields; internalTrafficPolicy applies to any type.
	r = render(t, "pico", "default", values(t, "service: {loadBalancerClass: x, internalTrafficPolicy: Cluster}"))
	svc = get[corev1.Service](t, r, "Service", "pico")
	assert.Nil(t, svc.Spec.LoadBalancerClass)
	assert.Equal(t, corev1.ServiceInternalTrafficPolicyCluster, *svc.Spec.InternalTrafficPolicy)
	assert.NotContains(t, r.Notes, "LoadBalancer")

	r = render(t, "pico", "default", values(t, "service: {type: NodePort, upstreamNodePort: 30801}"))
	assert.Contains(t, r.Notes, "upstream port: http://$NODE:30801")
	assert.Contains(t, r.Notes, `proxy port:    http://$NODE:$(kubectl -n default get service pico -o jsonpath='{.spec.ports[?(@.name=="proxy")].nodePort}')`)
}

func TestPodDisruptionBudgetMinAvailable(t *testing.T) {
	r := render(t, "pico", "default", values(t, "podDisruptionBudget: {minAvailable: 2, maxUnavailable: null}"))
	pdb := get[policyv1.PodDisruptionBudget](t, r, "PodDisruptionBudget", "pico")
	assert.Equal(t, intstr.FromInt32(2), *pdb.Spec.MinAvailable)
	assert.Nil(t, pdb.Spec.MaxUnavailable)

	r = render(t, "pico", "default", values(t, "podDisruptionBudget: {minAvailable: 60%, maxUnavailable: null}"))
	assert.Equal(t, intstr.FromString("60%"), *get[policyv1.PodDisruptionBudget](t, r, "PodDisruptionBudget", "pico").Spec.MinAvailable)

	r = render(t, "pico", "default", values(t, "podDisruptionBudget: {maxUnavailable: 34%}"))
	pdb = get[policyv1.PodDisruptionBudget](t, r, "PodDisruptionBudget", "pico")
	assert.Equal(t, intstr.FromString("34%"), *pdb.Spec.MaxUnavailable)
	assert.Nil(t, pdb.Spec.MinAvailable)

	_, err := Render(chartDir, "pico", "default", values(t, "podDisruptionBudget: {minAvailable: 2}"))
	require.Error(t, err, "minAvailable next to the default maxUnavailable must be refused")
	assert.Contains(t, err.Error(), "values don't meet the specifications of the schema")
	assert.Contains(t, err.Error(), "maxUnavailable")

	_, err = Render(chartDir, "pico", "default", values(t, "podDisruptionBudget: {maxUnavailable: null}"))
	assert.ErrorContains(t, err, "podDisruptionBudget.enabled needs podDisruptionBudget.maxUnavailable or podDisruptionBudget.minAvailable")
	r = render(t, "pico", "default", values(t, "podDisruptionBudget: {enabled: false, maxUnavailable: null}"))
	assert.Nil(t, r.Find("PodDisruptionBudget", "pico"))
}

func TestServiceMonitorDurationsArePrometheusDurations(t *testing.T) {
	for _, d := range []string{"1d", "1m30s", "500ms", "2w", "1h", "0"} {
		r := render(t, "pico", "default", values(t, "serviceMonitor: {enabled: true, interval: '"+d+"', scrapeTimeout: '"+d+"'}"))
		ep := get[ServiceMonitor](t, r, "ServiceMonitor", "pico").Spec.Endpoints[0]
		assert.Equal(t, d, ep.Interval)
		assert.Equal(t, d, ep.ScrapeTimeout)
	}
	for _, tc := range []struct{ value, field string }{
		{"interval: 1.5s", "interval"},
		{"interval: 1m30", "interval"},
		{"interval: 10us", "interval"},
		{"interval: ''", "interval"},
		{"scrapeTimeout: 0.5m", "scrapeTimeout"},
		{"scrapeTimeout: 1s1m", "scrapeTimeout"},
	} {
		_, err := Render(chartDir, "pico", "default", values(t, "serviceMonitor: {enabled: true, "+tc.value+"}"))
		require.Error(t, err, "%s must be refused: the Prometheus Operator's CRD would reject it", tc.value)
		assert.Contains(t, err.Error(), "values don't meet the specifications of the schema")
		assert.Contains(t, err.Error(), tc.field)
	}
}

func TestNotesSayTheInsecureDefaultsOutLoud(t *testing.T) {
	r := render(t, "pico", "default", nil)
	for _, want := range []string{
		"SECURITY: this release runs with insecure defaults.",
		"any pod that can reach port 8001 can\n    register any endpoint ID and receive the traffic sent to it",
		"can join the cluster, claim any endpoint and receive its traffic",
		"Without networkPolicy.enabled that is\n    every pod of the cluster.",
		"secret_key: /etc/pico-auth/gossip-key",
		"token_hmac_secret_key: /etc/pico-auth/upstream-hmac",
		"kubectl -n default create secret generic pico-auth",
		"enabled: true   # gossip only between members",
		"WARNING: gossip encryption is off",
	} {
		assert.Contains(t, r.Notes, want)
	}

	// Gossip encrypted, agents authenticated, NetworkPolicy on: nothing to warn about.
	r = render(t, "pico", "default", values(t, `
auth: {existingSecret: keys}
networkPolicy: {enabled: true}
config:
  gossip: {secret_key: /etc/pico-auth/gossip-key}
  auth: {token_hmac_secret_key: /etc/pico-auth/upstream-hmac}
`))
	assert.NotContains(t, r.Notes, "SECURITY")
	assert.NotContains(t, r.Notes, "gossip encryption is off")

	// Only gossip encrypted: the upstream port is still open to any registration.
	r = render(t, "pico", "default", values(t, "{auth: {existingSecret: keys}, config: {gossip: {secret_key: /etc/pico-auth/g}}}"))
	assert.Contains(t, r.Notes, "No auth on the upstream port")
	assert.NotContains(t, r.Notes, "No gossip encryption")
	assert.NotContains(t, r.Notes, "WARNING: gossip encryption is off")
	assert.Contains(t, r.Notes, "create secret generic keys")
	assert.NotContains(t, r.Notes, "secret_key: /etc/pico-auth/gossip-key")
}

func TestNotesFollowTheIngressTLS(t *testing.T) {
	r := render(t, "pico", "default", values(t, `
ingress:
  proxy:
    enabled: true
    hosts: ["*.tunnel.example.com", plain.example.com]
    tls: [{hosts: ["*.tunnel.example.com"], secretName: tunnel-tls}]
  upstream:
    enabled: true
    hosts: [agents.example.com]
    tls: [{secretName: agents-tls}]
`))
	assert.Contains(t, r.Notes, "curl https://my-endpoint.tunnel.example.com/")
	assert.Contains(t, r.Notes, "curl http://plain.example.com/", "a host no TLS entry lists is plain HTTP")
	assert.Contains(t, r.Notes, "--connect.url https://agents.example.com", "a TLS entry without hosts covers every host")
}

func TestChartMetadata(t *testing.T) {
	c, err := loader.Load(chartDir)
	require.NoError(t, err)
	md := c.Metadata
	require.NotEmpty(t, md.Maintainers)
	for _, m := range md.Maintainers {
		assert.NotEmpty(t, m.Name)
		assert.True(t, m.URL != "" || m.Email != "", "maintainer %s needs a way to be reached", m.Name)
	}
	assert.True(t, strings.HasPrefix(md.Icon, "https://"), "icon must be a URL")
	assert.FileExists(t, chartDir+"/icon.svg", "the icon the URL points at lives in the chart's directory")
	for _, k := range []string{"artifacthub.io/category", "artifacthub.io/links", "artifacthub.io/changes", "artifacthub.io/images"} {
		assert.NotEmpty(t, md.Annotations[k], k)
	}
	var images []struct{ Name, Image string }
	require.NoError(t, yaml.Unmarshal([]byte(md.Annotations["artifacthub.io/images"]), &images))
	require.Len(t, images, 1)
	assert.Equal(t, "ghcr.io/pico-proxy/pico:"+md.AppVersion, images[0].Image, "artifacthub.io/images must follow appVersion and the default repository")
	var changes []struct{ Kind, Description string }
	require.NoError(t, yaml.Unmarshal([]byte(md.Annotations["artifacthub.io/changes"]), &changes))
	for _, ch := range changes {
		assert.Contains(t, []string{"added", "changed", "deprecated", "removed", "fixed", "security"}, ch.Kind, ch.Description)
	}
}

// assertNoConfigWarning checks NOTES warn about no setting that breaks `helm test` or
// Prometheus (the insecure-defaults warnings aside).
func assertNoConfigWarning(t *testing.T, notes string) {
	t.Helper()
	for _, line := range strings.Split(notes, "\n") {
		if strings.HasPrefix(line, "WARNING:") && !strings.HasPrefix(line, "WARNING: gossip encryption is off") {
			t.Errorf("NOTES warn: %s", line)
		}
	}
}
