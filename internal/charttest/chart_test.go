package charttest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	sigsyaml "sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

const chartDir = "../../charts/pico"

func render(t *testing.T, release, namespace string, values map[string]any) *Rendered {
	t.Helper()
	r, err := Render(chartDir, release, namespace, values)
	require.NoError(t, err)
	return r
}

// get returns the typed object of a kind and name, failing the test when it is missing.
func get[T any](t *testing.T, r *Rendered, kind, name string) *T {
	t.Helper()
	o := r.Find(kind, name)
	require.NotNil(t, o, "no %s/%s among %v", kind, name, r.Kinds())
	v, ok := o.Value.(*T)
	require.True(t, ok, "%s/%s decoded as %T", kind, name, o.Value)
	return v
}

// values builds a values map from YAML, as `-f values.yaml` would.
func values(t *testing.T, doc string) map[string]any {
	t.Helper()
	var v map[string]any
	require.NoError(t, yaml.Unmarshal([]byte(doc), &v))
	return v
}

func container(t *testing.T, cs []corev1.Container, name string) corev1.Container {
	t.Helper()
	for _, c := range cs {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %q", name)
	return corev1.Container{}
}

func portOf(t *testing.T, c corev1.Container, name string) corev1.ContainerPort {
	t.Helper()
	for _, p := range c.Ports {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("container %s has no port %q", c.Name, name)
	return corev1.ContainerPort{}
}

func servicePort(t *testing.T, s *corev1.Service, name string) corev1.ServicePort {
	t.Helper()
	for _, p := range s.Spec.Ports {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("service %s has no port %q", s.Name, name)
	return corev1.ServicePort{}
}

func baseConfig(t *testing.T, cm *corev1.ConfigMap) map[string]any {
	t.Helper()
	var cfg map[string]any
	require.NoError(t, yaml.Unmarshal([]byte(cm.Data["server.yaml"]), &cfg), "server.yaml is not YAML")
	return cfg
}

func lookup(t *testing.T, cfg map[string]any, path string) any {
	t.Helper()
	var cur any = cfg
	for _, k := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		require.True(t, ok, "config key %s: %s is not a mapping", path, k)
		cur, ok = m[k]
		require.True(t, ok, "config key %s is missing", path)
	}
	return cur
}

func TestDefaultRenderHasEveryPart(t *testing.T) {
	r := render(t, "pico", "default", nil)
	assert.Equal(t, []string{
		"ConfigMap/pico",
		"Pod/pico-test",
		"PodDisruptionBudget/pico",
		"Service/pico",
		"Service/pico-headless",
		"ServiceAccount/pico",
		"StatefulSet/pico",
	}, r.Kinds(), "optional objects must be off by default")

	selector := map[string]string{"app.kubernetes.io/name": "pico", "app.kubernetes.io/instance": "pico"}
	// Everything but the (immutable) StatefulSet selector picks the server pods only.
	members := map[string]string{"app.kubernetes.io/name": "pico", "app.kubernetes.io/instance": "pico", "app.kubernetes.io/component": "server"}

	headless := get[corev1.Service](t, r, "Service", "pico-headless")
	assert.Equal(t, corev1.ClusterIPNone, headless.Spec.ClusterIP)
	assert.True(t, headless.Spec.PublishNotReadyAddresses, "bootstrap must see members before they are Ready")
	assert.Equal(t, members, headless.Spec.Selector)
	for name, port := range map[string]int32{"proxy": 8000, "upstream": 8001, "admin": 8002, "gossip": 8003, "gossip-udp": 8003} {
		p := servicePort(t, headless, name)
		assert.Equal(t, port, p.Port, name)
		assert.Equal(t, intstr.FromString(name), p.TargetPort, name)
		require.NotNil(t, p.AppProtocol, name)
	}
	assert.Equal(t, corev1.ProtocolUDP, servicePort(t, headless, "gossip-udp").Protocol)
	assert.Contains(t, *servicePort(t, headless, "gossip").AppProtocol, "memberlist")

	client := get[corev1.Service](t, r, "Service", "pico")
	assert.Equal(t, corev1.ServiceTypeClusterIP, client.Spec.Type)
	assert.False(t, client.Spec.PublishNotReadyAddresses, "the client Service must reach Ready members only")
	assert.Equal(t, members, client.Spec.Selector)
	require.Len(t, client.Spec.Ports, 2)
	assert.Equal(t, int32(8000), servicePort(t, client, "proxy").Port)
	assert.Equal(t, int32(8001), servicePort(t, client, "upstream").Port)

	sts := get[appsv1.StatefulSet](t, r, "StatefulSet", "pico")
	assert.Equal(t, "pico-headless", sts.Spec.ServiceName)
	assert.Equal(t, int32(3), *sts.Spec.Replicas)
	assert.Equal(t, appsv1.ParallelPodManagement, sts.Spec.PodManagementPolicy)
	assert.Equal(t, appsv1.RollingUpdateStatefulSetStrategyType, sts.Spec.UpdateStrategy.Type)
	require.NotNil(t, sts.Spec.UpdateStrategy.RollingUpdate)
	assert.Equal(t, int32(0), *sts.Spec.UpdateStrategy.RollingUpdate.Partition)
	assert.Equal(t, selector, sts.Spec.Selector.MatchLabels)
	for k, v := range selector {
		assert.Equal(t, v, sts.Spec.Template.Labels[k])
	}

	pod := sts.Spec.Template.Spec
	require.Len(t, pod.InitContainers, 1)
	boot := pod.InitContainers[0]
	assert.Equal(t, "ghcr.io/pico-proxy/pico:0.1.0", boot.Image, "the image tag defaults to appVersion")
	assert.Empty(t, boot.Command, "the image's entrypoint is pico; the chart passes args only")
	assert.Equal(t, []string{"bootstrap", "--service", "pico-headless", "--base", "/etc/pico-base/server.yaml",
		"--output", "/etc/pico/server.yaml", "--timeout", "5m"}, boot.Args)
	assertDownwardEnv(t, boot)

	require.Len(t, pod.Containers, 1)
	server := container(t, pod.Containers, "server")
	assert.Equal(t, boot.Image, server.Image)
	assert.Empty(t, server.Command)
	assert.Equal(t, []string{"server", "--config.path", "/etc/pico/server.yaml", "--config.expand-env"}, server.Args)
	assertDownwardEnv(t, server)
	for name, port := range map[string]int32{"proxy": 8000, "upstream": 8001, "admin": 8002, "gossip": 8003, "gossip-udp": 8003} {
		assert.Equal(t, port, portOf(t, server, name).ContainerPort, name)
	}
	require.NotNil(t, server.StartupProbe)
	require.NotNil(t, server.ReadinessProbe)
	require.NotNil(t, server.LivenessProbe)
	assert.Equal(t, "/ready", server.ReadinessProbe.HTTPGet.Path)
	assert.Equal(t, intstr.FromString("admin"), server.ReadinessProbe.HTTPGet.Port)
	assert.Equal(t, "/health", server.LivenessProbe.HTTPGet.Path)
	assert.Equal(t, "/health", server.StartupProbe.HTTPGet.Path)

	// The rendered file lives on an emptyDir shared by both containers; the base comes
	// from the ConfigMap.
	mounts := func(c corev1.Container) map[string]string {
		m := map[string]string{}
		for _, vm := range c.VolumeMounts {
			m[vm.MountPath] = vm.Name
		}
		return m
	}
	assert.Equal(t, "base-config", mounts(boot)["/etc/pico-base"])
	assert.Equal(t, "config", mounts(boot)["/etc/pico"])
	assert.Equal(t, "config", mounts(server)["/etc/pico"])
	vols := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		vols[v.Name] = v
	}
	require.NotNil(t, vols["config"].EmptyDir)
	require.NotNil(t, vols["base-config"].ConfigMap)
	assert.Equal(t, "pico", vols["base-config"].ConfigMap.Name)

	assert.Equal(t, int64(60), *pod.TerminationGracePeriodSeconds)
	assert.False(t, *pod.AutomountServiceAccountToken)
	assert.Equal(t, "pico", pod.ServiceAccountName)
	assertRestricted(t, "StatefulSet pod", pod)

	keys := map[string]corev1.TopologySpreadConstraint{}
	for _, c := range pod.TopologySpreadConstraints {
		keys[c.TopologyKey] = c
	}
	for _, key := range []string{"topology.kubernetes.io/zone", "kubernetes.io/hostname"} {
		c, ok := keys[key]
		require.True(t, ok, "no default topology spread across %s", key)
		assert.Equal(t, corev1.ScheduleAnyway, c.WhenUnsatisfiable, "a single-zone or single-node cluster must still schedule every member")
		assert.Equal(t, members, c.LabelSelector.MatchLabels)
	}

	cm := get[corev1.ConfigMap](t, r, "ConfigMap", "pico")
	cfg := baseConfig(t, cm)
	for section, addr := range map[string]string{"proxy": ":8000", "upstream": ":8001", "admin": ":8002", "gossip": ":8003"} {
		assert.Equal(t, addr, lookup(t, cfg, section+".bind_addr"))
	}
	drain, err := time.ParseDuration(lookup(t, cfg, "server.graceful_shutdown_timeout").(string))
	require.NoError(t, err)
	assert.Less(t, drain, time.Duration(*pod.TerminationGracePeriodSeconds)*time.Second,
		"the drain must end before the kubelet kills the pod")
	assert.Equal(t, "1m", lookup(t, cfg, "cluster.join_timeout"))
	sum := sha256.Sum256([]byte(strings.TrimSuffix(cm.Data["server.yaml"], "\n")))
	assert.Equal(t, hex.EncodeToString(sum[:]), sts.Spec.Template.Annotations["checksum/config"],
		"checksum/config must be the hash of the base server.yaml")

	pdb := get[policyv1.PodDisruptionBudget](t, r, "PodDisruptionBudget", "pico")
	assert.Equal(t, intstr.FromInt32(1), *pdb.Spec.MaxUnavailable)
	assert.Equal(t, members, pdb.Spec.Selector.MatchLabels)

	sa := get[corev1.ServiceAccount](t, r, "ServiceAccount", "pico")
	assert.False(t, *sa.AutomountServiceAccountToken)

	test := r.Find("Pod", "pico-test")
	require.True(t, test.Hook)
	testPod := test.Value.(*corev1.Pod)
	assert.Equal(t, "test", testPod.Annotations["helm.sh/hook"])
	assert.Equal(t, corev1.RestartPolicyNever, testPod.Spec.RestartPolicy)
	assertRestricted(t, "test pod", testPod.Spec)
	assert.Equal(t, []string{
		"selftest", "--expect-members", "3",
		"--admin-url", "http://pico-0.pico-headless.default.svc:8002",
		"--admin-url", "http://pico-1.pico-headless.default.svc:8002",
		"--admin-url", "http://pico-2.pico-headless.default.svc:8002",
		"--proxy-url", "http://pico.default.svc:8000",
		"--upstream-url", "http://pico.default.svc:8001",
		"--timeout", "2m",
	}, testPod.Spec.Containers[0].Args)

	assert.Contains(t, r.Notes, "pico agent http my-endpoint 3000")
	assert.Contains(t, r.Notes, "x-pico-endpoint: my-endpoint")
	assert.Contains(t, r.Notes, "kubectl -n default port-forward svc/pico 8000:proxy 8001:upstream")
}

func assertDownwardEnv(t *testing.T, c corev1.Container) {
	t.Helper()
	want := map[string]string{"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace", "POD_IP": "status.podIP"}
	for _, e := range c.Env {
		if path, ok := want[e.Name]; ok {
			require.NotNil(t, e.ValueFrom, "%s of %s", e.Name, c.Name)
			assert.Equal(t, path, e.ValueFrom.FieldRef.FieldPath, "%s of %s", e.Name, c.Name)
			delete(want, e.Name)
		}
	}
	assert.Empty(t, want, "container %s lacks downward API variables", c.Name)
}

// assertRestricted checks the "restricted" Pod Security Standard for every container.
func assertRestricted(t *testing.T, what string, pod corev1.PodSpec) {
	t.Helper()
	psc := pod.SecurityContext
	require.NotNil(t, psc, what)
	require.NotNil(t, psc.SeccompProfile, what)
	assert.Equal(t, corev1.SeccompProfileTypeRuntimeDefault, psc.SeccompProfile.Type, what)
	assert.True(t, *psc.RunAsNonRoot, what)
	assert.NotZero(t, *psc.RunAsUser, what)
	assert.False(t, *pod.AutomountServiceAccountToken, what)
	all := append(append([]corev1.Container{}, pod.InitContainers...), pod.Containers...)
	for _, c := range all {
		sc := c.SecurityContext
		require.NotNil(t, sc, "%s container %s", what, c.Name)
		assert.False(t, *sc.AllowPrivilegeEscalation, "%s container %s", what, c.Name)
		assert.True(t, *sc.ReadOnlyRootFilesystem, "%s container %s", what, c.Name)
		assert.True(t, *sc.RunAsNonRoot, "%s container %s", what, c.Name)
		require.NotNil(t, sc.Capabilities, "%s container %s", what, c.Name)
		assert.Equal(t, []corev1.Capability{"ALL"}, sc.Capabilities.Drop, "%s container %s", what, c.Name)
		assert.Empty(t, sc.Capabilities.Add, "%s container %s", what, c.Name)
		assert.Nil(t, sc.Privileged, "%s container %s", what, c.Name)
		assert.NotNil(t, c.Resources.Requests, "%s container %s has no resource requests", what, c.Name)
	}
}

func TestReplicaCountLeavesPodTemplateIdentical(t *testing.T) {
	three := render(t, "pico", "default", map[string]any{"replicaCount": 3})
	seven := render(t, "pico", "default", map[string]any{"replicaCount": 7})
	s3 := get[appsv1.StatefulSet](t, three, "StatefulSet", "pico")
	s7 := get[appsv1.StatefulSet](t, seven, "StatefulSet", "pico")
	assert.Equal(t, int32(3), *s3.Spec.Replicas)
	assert.Equal(t, int32(7), *s7.Spec.Replicas)
	j3, err := json.Marshal(s3.Spec.Template)
	require.NoError(t, err)
	j7, err := json.Marshal(s7.Spec.Template)
	require.NoError(t, err)
	assert.JSONEq(t, string(j3), string(j7), "scaling must not change the pod template (it would restart every member)")
	assert.Equal(t, get[corev1.ConfigMap](t, three, "ConfigMap", "pico").Data,
		get[corev1.ConfigMap](t, seven, "ConfigMap", "pico").Data)

	// The test pod follows replicaCount: it checks every member.
	args := get[corev1.Pod](t, seven, "Pod", "pico-test").Spec.Containers[0].Args
	assert.Equal(t, 7, strings.Count(strings.Join(args, " "), "--admin-url"))
	assert.Contains(t, args, "http://pico-6.pico-headless.default.svc:8002")
}

func TestConfigChangeRollsPods(t *testing.T) {
	base := render(t, "pico", "default", nil)
	changed := render(t, "pico", "default", values(t, `
config:
  log:
    level: debug
`))
	a := get[appsv1.StatefulSet](t, base, "StatefulSet", "pico").Spec.Template.Annotations["checksum/config"]
	b := get[appsv1.StatefulSet](t, changed, "StatefulSet", "pico").Spec.Template.Annotations["checksum/config"]
	assert.NotEmpty(t, a)
	assert.NotEqual(t, a, b, "a config change must change the pod template so the members roll")
	cfg := baseConfig(t, get[corev1.ConfigMap](t, changed, "ConfigMap", "pico"))
	assert.Equal(t, "debug", lookup(t, cfg, "log.level"))
	assert.Equal(t, "1m", lookup(t, cfg, "cluster.join_timeout"), "values.config merges with the chart defaults")
}

func TestPortsConfigureTheServer(t *testing.T) {
	r := render(t, "pico", "default", values(t, `
ports: {proxy: 9000, upstream: 9001, admin: 9002, gossip: 7946}
service: {proxyPort: 80, upstreamPort: 81}
`))
	cfg := baseConfig(t, get[corev1.ConfigMap](t, r, "ConfigMap", "pico"))
	sts := get[appsv1.StatefulSet](t, r, "StatefulSet", "pico")
	server := container(t, sts.Spec.Template.Spec.Containers, "server")
	headless := get[corev1.Service](t, r, "Service", "pico-headless")
	for section, port := range map[string]int{"proxy": 9000, "upstream": 9001, "admin": 9002, "gossip": 7946} {
		assert.Equal(t, ":"+strconv.Itoa(port), lookup(t, cfg, section+".bind_addr"), "the server must listen where the pod declares")
		assert.Equal(t, int32(port), portOf(t, server, section).ContainerPort)
		assert.Equal(t, int32(port), servicePort(t, headless, section).Port)
	}
	assert.Equal(t, int32(7946), portOf(t, server, "gossip-udp").ContainerPort)
	client := get[corev1.Service](t, r, "Service", "pico")
	assert.Equal(t, int32(80), servicePort(t, client, "proxy").Port)
	assert.Equal(t, intstr.FromString("proxy"), servicePort(t, client, "proxy").TargetPort)
	assert.Equal(t, int32(81), servicePort(t, client, "upstream").Port)
	args := get[corev1.Pod](t, r, "Pod", "pico-test").Spec.Containers[0].Args
	assert.Contains(t, args, "http://pico-0.pico-headless.default.svc:9002")
	assert.Contains(t, args, "http://pico.default.svc:80")
	assert.Contains(t, args, "http://pico.default.svc:81")
}

func TestGracefulShutdownFollowsTerminationGracePeriod(t *testing.T) {
	r := render(t, "pico", "default", map[string]any{"terminationGracePeriodSeconds": 120, "shutdownMarginSeconds": 15})
	assert.Equal(t, int64(120), *get[appsv1.StatefulSet](t, r, "StatefulSet", "pico").Spec.Template.Spec.TerminationGracePeriodSeconds)
	cfg := baseConfig(t, get[corev1.ConfigMap](t, r, "ConfigMap", "pico"))
	assert.Equal(t, "105s", lookup(t, cfg, "server.graceful_shutdown_timeout"))
}

func TestNames(t *testing.T) {
	for _, tc := range []struct{ release, values, want string }{
		{"pico", "", "pico"},
		{"edge", "", "edge-pico"},
		{"my-pico", "", "my-pico"},
		{"edge", "fullnameOverride: gw", "gw"},
		{"edge", "nameOverride: relay", "edge-relay"},
	} {
		t.Run(tc.release+"/"+tc.values, func(t *testing.T) {
			r := render(t, tc.release, "ns1", values(t, tc.values))
			sts := get[appsv1.StatefulSet](t, r, "StatefulSet", tc.want)
			assert.Equal(t, tc.want+"-headless", sts.Spec.ServiceName)
			get[corev1.Service](t, r, "Service", tc.want+"-headless")
			get[corev1.Service](t, r, "Service", tc.want)
			assert.Equal(t, tc.release, sts.Spec.Selector.MatchLabels["app.kubernetes.io/instance"])
			assert.Equal(t, "ns1", sts.Namespace)
		})
	}
}

// fullValues switches on every optional part of the chart.
const fullValues = `
replicaCount: 5
image: {repository: registry.example/pico, tag: "1.2.3", pullPolicy: Always}
imagePullSecrets: [{name: regcred}]
clusterDomain: corp.internal
config:
  log: {level: debug, subsystems: [cluster]}
  proxy: {gateway_timeout: 30s}
bootstrap: {timeout: 2m}
extraArgs: ["--log.level", "debug"]
extraEnv: [{name: TEAM, value: edge}]
extraEnvFrom: [{secretRef: {name: pico-env}}]
extraVolumes: [{name: scratch, emptyDir: {}}]
extraVolumeMounts: [{name: scratch, mountPath: /scratch}]
extraInitContainers: [{name: wait, image: busybox, args: ["true"]}]
extraContainers: [{name: sidecar, image: busybox, args: ["sleep", "1d"]}]
auth: {existingSecret: pico-auth}
tls: {existingSecret: pico-tls, mountPath: /certs}
podManagementPolicy: OrderedReady
updateStrategy: {type: RollingUpdate, partition: 2}
minReadySeconds: 5
commonLabels: {team: edge}
podAnnotations: {example.com/owner: edge}
podLabels: {tier: ingress}
startupProbe: null
livenessProbe:
  httpGet: null
  tcpSocket: {port: admin}
nodeSelector: {kubernetes.io/os: linux}
tolerations: [{key: dedicated, operator: Equal, value: edge, effect: NoSchedule}]
affinity:
  nodeAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      nodeSelectorTerms: [{matchExpressions: [{key: kubernetes.io/arch, operator: In, values: [amd64]}]}]
priorityClassName: high
defaultTopologySpread: {enabled: true, maxSkew: 2, whenUnsatisfiable: DoNotSchedule}
topologySpreadConstraints:
  - {topologyKey: example.com/rack, maxSkew: 1, whenUnsatisfiable: ScheduleAnyway, labelSelector: {matchLabels: {app.kubernetes.io/name: pico}}}
serviceAccount: {create: true, name: pico-sa, annotations: {example.com/role: edge}}
service:
  type: LoadBalancer
  proxyPort: 80
  upstreamPort: 8443
  proxyNodePort: 30080
  annotations: {example.com/lb: external}
  externalTrafficPolicy: Local
  loadBalancerSourceRanges: [10.0.0.0/8]
adminService: {enabled: true}
podDisruptionBudget: {enabled: true, maxUnavailable: 2}
serviceMonitor: {enabled: true, labels: {release: prometheus}}
networkPolicy:
  enabled: true
  ingressFrom: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: ingress}}}]
  adminFrom: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}}]
ingress:
  proxy: {enabled: true, className: nginx, hosts: ["*.tunnel.example.com"], tls: [{hosts: ["*.tunnel.example.com"], secretName: tunnel-tls}]}
  upstream: {enabled: true, className: nginx, hosts: [upstream.example.com], annotations: {example.com/websocket: "true"}}
httpRoute:
  proxy: {enabled: true, parentRefs: [{name: edge-gateway, namespace: gateways}], hostnames: ["*.tunnel.example.com"]}
  upstream: {enabled: true, parentRefs: [{name: edge-gateway, namespace: gateways, sectionName: upstream}]}
`

func TestEveryOptionalPartRenders(t *testing.T) {
	r := render(t, "edge", "apps", values(t, fullValues))
	assert.Equal(t, []string{
		"ConfigMap/edge-pico",
		"HTTPRoute/edge-pico-proxy",
		"HTTPRoute/edge-pico-upstream",
		"Ingress/edge-pico-proxy",
		"Ingress/edge-pico-upstream",
		"NetworkPolicy/edge-pico",
		"NetworkPolicy/edge-pico-test",
		"Pod/edge-pico-test",
		"PodDisruptionBudget/edge-pico",
		"Service/edge-pico",
		"Service/edge-pico-admin",
		"Service/edge-pico-headless",
		"ServiceAccount/pico-sa",
		"ServiceMonitor/edge-pico",
		"StatefulSet/edge-pico",
	}, r.Kinds())

	sts := get[appsv1.StatefulSet](t, r, "StatefulSet", "edge-pico")
	pod := sts.Spec.Template.Spec
	assert.Equal(t, int32(2), *sts.Spec.UpdateStrategy.RollingUpdate.Partition)
	assert.Equal(t, appsv1.OrderedReadyPodManagement, sts.Spec.PodManagementPolicy)
	assert.Equal(t, int32(5), sts.Spec.MinReadySeconds)
	assert.Equal(t, "high", pod.PriorityClassName)
	assert.Equal(t, "pico-sa", pod.ServiceAccountName)
	assert.Equal(t, "linux", pod.NodeSelector["kubernetes.io/os"])
	require.Len(t, pod.Tolerations, 1)
	require.NotNil(t, pod.Affinity.NodeAffinity)
	assert.Len(t, pod.TopologySpreadConstraints, 3)
	assert.Equal(t, corev1.DoNotSchedule, pod.TopologySpreadConstraints[0].WhenUnsatisfiable)
	assert.Equal(t, "ingress", sts.Spec.Template.Labels["tier"])
	assert.Equal(t, "edge", sts.Spec.Template.Labels["team"])
	assert.Equal(t, "edge", sts.Spec.Template.Annotations["example.com/owner"])
	assert.Equal(t, []corev1.LocalObjectReference{{Name: "regcred"}}, pod.ImagePullSecrets)

	require.Len(t, pod.InitContainers, 2)
	assert.Equal(t, "bootstrap", pod.InitContainers[0].Name, "bootstrap runs first")
	assert.Equal(t, []string{"bootstrap", "--service", "edge-pico-headless", "--cluster-domain", "corp.internal",
		"--base", "/etc/pico-base/server.yaml", "--output", "/etc/pico/server.yaml", "--timeout", "2m"}, pod.InitContainers[0].Args)
	assert.Equal(t, "registry.example/pico:1.2.3", pod.InitContainers[0].Image)
	assert.Equal(t, corev1.PullAlways, pod.InitContainers[0].ImagePullPolicy)
	require.Len(t, pod.Containers, 2)
	server := container(t, pod.Containers, "server")
	assert.Equal(t, []string{"server", "--config.path", "/etc/pico/server.yaml", "--config.expand-env", "--log.level", "debug"}, server.Args)
	assert.Nil(t, server.StartupProbe, "a probe set to null is removed")
	require.NotNil(t, server.LivenessProbe.TCPSocket, "a probe can be replaced")
	assert.Nil(t, server.LivenessProbe.HTTPGet)
	assert.Equal(t, "pico-env", server.EnvFrom[0].SecretRef.Name)
	env := map[string]string{}
	for _, e := range server.Env {
		env[e.Name] = e.Value
	}
	assert.Equal(t, "edge", env["TEAM"])

	mounts := map[string]corev1.VolumeMount{}
	for _, m := range server.VolumeMounts {
		mounts[m.Name] = m
	}
	assert.Equal(t, "/etc/pico-auth", mounts["auth"].MountPath)
	assert.True(t, mounts["auth"].ReadOnly)
	assert.Equal(t, "/certs", mounts["tls"].MountPath)
	assert.Equal(t, "/scratch", mounts["scratch"].MountPath)
	vols := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		vols[v.Name] = v
	}
	assert.Equal(t, "pico-auth", vols["auth"].Secret.SecretName)
	assert.Equal(t, "pico-tls", vols["tls"].Secret.SecretName)
	require.NotNil(t, vols["scratch"].EmptyDir)

	cfg := baseConfig(t, get[corev1.ConfigMap](t, r, "ConfigMap", "edge-pico"))
	assert.Equal(t, "30s", lookup(t, cfg, "proxy.gateway_timeout"))
	assert.Equal(t, ":8000", lookup(t, cfg, "proxy.bind_addr"))

	client := get[corev1.Service](t, r, "Service", "edge-pico")
	assert.Equal(t, corev1.ServiceTypeLoadBalancer, client.Spec.Type)
	assert.Equal(t, int32(30080), servicePort(t, client, "proxy").NodePort)
	assert.Equal(t, int32(0), servicePort(t, client, "upstream").NodePort, "an unset node port is assigned by Kubernetes")
	assert.Equal(t, corev1.ServiceExternalTrafficPolicyLocal, client.Spec.ExternalTrafficPolicy)
	assert.Equal(t, []string{"10.0.0.0/8"}, client.Spec.LoadBalancerSourceRanges)
	admin := get[corev1.Service](t, r, "Service", "edge-pico-admin")
	assert.Equal(t, int32(8002), servicePort(t, admin, "admin").Port)

	pdb := get[policyv1.PodDisruptionBudget](t, r, "PodDisruptionBudget", "edge-pico")
	assert.Equal(t, intstr.FromInt32(2), *pdb.Spec.MaxUnavailable)

	sm := get[ServiceMonitor](t, r, "ServiceMonitor", "edge-pico")
	assert.Equal(t, "prometheus", sm.Labels["release"])
	assert.Equal(t, "discovery", sm.Spec.Selector.MatchLabels["app.kubernetes.io/component"])
	assert.Equal(t, "discovery", get[corev1.Service](t, r, "Service", "edge-pico-headless").Labels["app.kubernetes.io/component"],
		"the ServiceMonitor must select the headless Service")
	assert.Equal(t, "admin", sm.Spec.Endpoints[0].Port)
	assert.Equal(t, "/metrics", sm.Spec.Endpoints[0].Path)

	np := get[networkingv1.NetworkPolicy](t, r, "NetworkPolicy", "edge-pico")
	assertNetworkPolicy(t, np)

	ing := get[networkingv1.Ingress](t, r, "Ingress", "edge-pico-proxy")
	assert.Equal(t, "nginx", *ing.Spec.IngressClassName)
	assert.Equal(t, "*.tunnel.example.com", ing.Spec.Rules[0].Host)
	backend := ing.Spec.Rules[0].HTTP.Paths[0].Backend.Service
	assert.Equal(t, "edge-pico", backend.Name)
	assert.Equal(t, "proxy", backend.Port.Name)
	assert.Equal(t, "tunnel-tls", ing.Spec.TLS[0].SecretName)
	up := get[networkingv1.Ingress](t, r, "Ingress", "edge-pico-upstream")
	assert.Equal(t, "upstream", up.Spec.Rules[0].HTTP.Paths[0].Backend.Service.Port.Name)

	route := get[HTTPRoute](t, r, "HTTPRoute", "edge-pico-proxy")
	assert.Equal(t, "edge-gateway", route.Spec.ParentRefs[0].Name)
	assert.Equal(t, int32(80), route.Spec.Rules[0].BackendRefs[0].Port, "routes target the client Service port")
	assert.Equal(t, int32(8443), get[HTTPRoute](t, r, "HTTPRoute", "edge-pico-upstream").Spec.Rules[0].BackendRefs[0].Port)

	testPod := get[corev1.Pod](t, r, "Pod", "edge-pico-test")
	args := testPod.Spec.Containers[0].Args
	assert.Contains(t, args, "http://edge-pico-4.edge-pico-headless.apps.svc.corp.internal:8002")
	assert.Contains(t, args, "http://edge-pico.apps.svc.corp.internal:80")
	assert.Equal(t, "test", testPod.Labels["app.kubernetes.io/component"], "the NetworkPolicy lets the test pod in by this label")

	assert.Contains(t, r.Notes, "curl https://my-endpoint.tunnel.example.com/", "the Ingress terminates TLS for this host")
}

func assertNetworkPolicy(t *testing.T, np *networkingv1.NetworkPolicy) {
	t.Helper()
	assert.ElementsMatch(t, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}, np.Spec.PolicyTypes)
	members := map[string]string{"app.kubernetes.io/name": "pico", "app.kubernetes.io/instance": "edge", "app.kubernetes.io/component": "server"}
	assert.Equal(t, members, np.Spec.PodSelector.MatchLabels)

	ingressPorts := map[string][]networkingv1.NetworkPolicyPeer{}
	for _, rule := range np.Spec.Ingress {
		for _, p := range rule.Ports {
			ingressPorts[p.Port.String()] = rule.From
		}
	}
	gossipFrom := ingressPorts["gossip"]
	require.Len(t, gossipFrom, 1, "gossip only from members")
	assert.Equal(t, members, gossipFrom[0].PodSelector.MatchLabels)
	assert.Contains(t, ingressPorts, "gossip-udp")
	assert.NotEmpty(t, ingressPorts["proxy"], "ingressFrom restricts the proxy port")
	assert.NotEmpty(t, ingressPorts["admin"])

	var dns, gossip bool
	for _, rule := range np.Spec.Egress {
		for _, p := range rule.Ports {
			switch p.Port.IntValue() {
			case 53:
				dns = true
			case 8003:
				gossip = len(rule.To) == 1 && assert.Equal(t, members, rule.To[0].PodSelector.MatchLabels)
			}
		}
	}
	assert.True(t, dns, "DNS egress must be allowed (bootstrap and rejoin resolve the headless Service)")
	assert.True(t, gossip, "gossip egress to members must be allowed")
}

func TestSchemaRejectsBadValues(t *testing.T) {
	for _, tc := range []struct{ name, values, want string }{
		{"negative replicas", "replicaCount: -1", "replicaCount"},
		{"replicas as string", `replicaCount: "3"`, "replicaCount"},
		{"replicas as fraction", "replicaCount: 1.5", "replicaCount"},
		{"unknown top-level key", "replicas: 3", "replicas"},
		{"misspelt nested key", "image: {repositry: x}", "repositry"},
		{"bad pull policy", "image: {pullPolicy: Sometimes}", "pullPolicy"},
		{"port out of range", "ports: {proxy: 70000}", "proxy"},
		{"service type", "service: {type: External}", "type"},
		{"config not a mapping", "config: yes", "config"},
		{"bad duration", "helmTest: {timeout: soon}", "timeout"},
		{"grace period as string", `terminationGracePeriodSeconds: "60"`, "terminationGracePeriodSeconds"},
		{"admin TLS switch as string", `admin: {tls: {enabled: "yes"}}`, "enabled"},
		{"misspelt admin TLS key", "admin: {tls: {servername: x}}", "servername"},
		{"server name with a scheme", "admin: {tls: {serverName: 'https://pico'}}", "serverName"},
		{"token Secret key with a slash", "admin: {auth: {tokenSecret: {name: t, key: a/b}}}", "key"},
		{"token Secret key empty", "admin: {auth: {tokenSecret: {name: t, key: ''}}}", "key"},
		{"proxy TLS switch as string", `proxy: {tls: {enabled: "true"}}`, "enabled"},
		{"misspelt upstream TLS key", "upstream: {tls: {ca: ca.crt}}", "ca"},
		{"upstream token Secret key with a slash", "upstream: {auth: {tokenSecret: {name: t, key: a/b}}}", "key"},
		{"misspelt proxy token key", "proxy: {auth: {token: t}}", "token"},
		{"test endpoint with a dot", "helmTest: {endpoint: a.b}", "endpoint"},
		{"test endpoint starting with a dash", "helmTest: {endpoint: -selftest}", "endpoint"},
		{"client certificate for the admin port", "admin: {tls: {clientSecret: c}}", "clientSecret"},
		{"client Secret not a name", "proxy: {tls: {clientSecret: {name: c}}}", "clientSecret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Render(chartDir, "pico", "default", values(t, tc.values))
			require.Error(t, err)
			assert.Contains(t, err.Error(), "values don't meet the specifications of the schema")
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestTemplateRejectsContradictions(t *testing.T) {
	for _, tc := range []struct{ name, values, want string }{
		{"bind address in config", "config: {proxy: {bind_addr: ':9999'}}", "config.proxy.bind_addr is set by the chart from ports.proxy"},
		{"drain bound in config", "config: {server: {graceful_shutdown_timeout: 5m}}", "set terminationGracePeriodSeconds"},
		{"join in config", "config: {cluster: {join: [x]}}", "config.cluster.join is written by the bootstrap init container"},
		{"grace below margin", "terminationGracePeriodSeconds: 10", "must be greater than shutdownMarginSeconds"},
		{"ingress without hosts", "ingress: {proxy: {enabled: true}}", "ingress.proxy.hosts must list at least one host"},
		{"route without gateway", "httpRoute: {upstream: {enabled: true}}", "httpRoute.upstream.parentRefs must name at least one Gateway"},
		{"admin TLS without a Secret", "admin: {tls: {enabled: true}}", "admin.tls.enabled serves the admin port with the certificate of tls.existingSecret: set tls.existingSecret"},
		{"admin TLS certificate in config", "{tls: {existingSecret: s}, admin: {tls: {enabled: true}}, config: {admin: {tls: {cert: /c.crt}}}}",
			"config.admin.tls.cert is set by the chart when admin.tls.enabled is true (to /etc/pico-tls/tls.crt): remove it"},
		{"admin TLS key in config", "{tls: {existingSecret: s}, admin: {tls: {enabled: true}}, config: {admin: {tls: {key: /c.key}}}}",
			"config.admin.tls.key is set by the chart"},
		{"proxy TLS without a Secret", "proxy: {tls: {enabled: true}}", "proxy.tls.enabled serves the proxy port with the certificate of tls.existingSecret: set tls.existingSecret"},
		{"upstream TLS without a Secret", "upstream: {tls: {enabled: true}}", "upstream.tls.enabled serves the upstream port with the certificate of tls.existingSecret"},
		{"upstream TLS certificate in config", "{tls: {existingSecret: s}, upstream: {tls: {enabled: true}}, config: {upstream: {tls: {cert: /c.crt}}}}",
			"config.upstream.tls.cert is set by the chart when upstream.tls.enabled is true (to /etc/pico-tls/tls.crt): remove it"},
		{"proxy TLS not a mapping", "{tls: {existingSecret: s}, proxy: {tls: {enabled: true}}, config: {proxy: {tls: on}}}", "config.proxy.tls must be a mapping of proxy.tls keys"},
		{"proxy client certificate without TLS", "proxy: {tls: {clientSecret: c}}",
			"proxy.tls.clientSecret gives helm test a client certificate for the proxy port, which does not serve TLS: set proxy.tls.enabled (or config.proxy.tls.cert and key), or remove proxy.tls.clientSecret"},
		{"upstream client certificate without TLS", "{tls: {existingSecret: s}, proxy: {tls: {enabled: true}}, upstream: {tls: {clientSecret: c}}}",
			"upstream.tls.clientSecret gives helm test a client certificate for the upstream port, which does not serve TLS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Render(chartDir, "pico", "default", values(t, tc.values))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestLint(t *testing.T) {
	sets := map[string]string{"defaults": "", "full": fullValues, "admin-tls": adminTLSValues,
		"proxy-upstream-tls": proxyUpstreamTLSValues, "every-port-tls": everyPortTLSValues,
		"proxy-upstream-mtls": proxyUpstreamMTLSValues}
	ciFiles, err := filepath.Glob(filepath.Join(chartDir, "ci", "*-values.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, ciFiles, "chart-testing installs the chart with each ci/*-values.yaml")
	for _, f := range ciFiles {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		sets[filepath.Base(f)] = string(b)
	}
	for name, vals := range sets {
		t.Run(name, func(t *testing.T) {
			linter := lint.All(chartDir, values(t, vals), "default", false)
			for _, m := range linter.Messages {
				assert.Less(t, m.Severity, support.WarningSev, "helm lint: %s", m)
			}
			render(t, "pico", "default", values(t, vals))
		})
	}
}

func TestGolden(t *testing.T) {
	for name, tc := range map[string]struct {
		release, namespace, values string
	}{
		"default":             {"pico", "default", ""},
		"full":                {"edge", "apps", fullValues},
		"admin-tls":           {"pico", "prod", adminTLSValues},
		"proxy-upstream-tls":  {"pico", "prod", proxyUpstreamTLSValues},
		"proxy-upstream-mtls": {"pico", "prod", proxyUpstreamMTLSValues},
	} {
		t.Run(name, func(t *testing.T) {
			r := render(t, tc.release, tc.namespace, values(t, tc.values))
			got := r.Manifest + "---\n# NOTES.txt\n" + commentOut(r.Notes)
			path := filepath.Join("testdata", name+".golden.yaml")
			if *update {
				require.NoError(t, os.MkdirAll("testdata", 0o755))
				require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
			}
			want, err := os.ReadFile(path)
			require.NoError(t, err, "run `go test ./internal/charttest -update` to create the golden files")
			assert.Equal(t, string(want), got, "rendered chart differs from %s; review and run `go test ./internal/charttest -update`", path)
		})
	}
}

func commentOut(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString(strings.TrimRight("# "+line, " ") + "\n")
	}
	return b.String()
}

// TestUpgradeRenderKeepsPodTemplate renders the chart the way `helm upgrade` does (engine
// with IsUpgrade, revision 2, a different replicaCount) and checks the StatefulSet's pod
// template is byte-identical to the install's: an upgrade that only scales restarts nothing.
func TestUpgradeRenderKeepsPodTemplate(t *testing.T) {
	chrt, err := loader.Load(chartDir)
	require.NoError(t, err)
	renderTemplate := func(opts chartutil.ReleaseOptions, vals map[string]any) string {
		t.Helper()
		rv, err := chartutil.ToRenderValues(chrt, vals, opts, chartutil.DefaultCapabilities.Copy())
		require.NoError(t, err)
		out, err := engine.Render(chrt, rv)
		require.NoError(t, err)
		doc := out["pico/templates/statefulset.yaml"]
		require.NotEmpty(t, doc)
		return doc
	}
	install := renderTemplate(chartutil.ReleaseOptions{Name: "pico", Namespace: "default", Revision: 1, IsInstall: true}, nil)
	upgrade := renderTemplate(chartutil.ReleaseOptions{Name: "pico", Namespace: "default", Revision: 2, IsUpgrade: true},
		map[string]any{"replicaCount": 5})
	var a, b appsv1.StatefulSet
	require.NoError(t, sigsyaml.UnmarshalStrict([]byte(install), &a))
	require.NoError(t, sigsyaml.UnmarshalStrict([]byte(upgrade), &b))
	assert.Equal(t, int32(5), *b.Spec.Replicas)
	ja, err := json.Marshal(a.Spec.Template)
	require.NoError(t, err)
	jb, err := json.Marshal(b.Spec.Template)
	require.NoError(t, err)
	assert.Equal(t, string(ja), string(jb))

	// The engine path validates values against the schema too.
	_, err = chartutil.ToRenderValues(chrt, map[string]any{"replicaCount": -2},
		chartutil.ReleaseOptions{Name: "pico", Namespace: "default", IsInstall: true}, chartutil.DefaultCapabilities.Copy())
	assert.ErrorContains(t, err, "replicaCount")
}

// adminTLSValues serves the admin port over TLS from the chart's TLS Secret and requires a
// token there, with a ServiceMonitor: every client of the admin port must follow.
const adminTLSValues = `
tls: {existingSecret: pico-tls}
auth: {existingSecret: pico-auth}
admin:
  tls: {enabled: true}
  auth: {tokenSecret: {name: pico-admin-token}}
serviceMonitor: {enabled: true}
config:
  admin:
    auth: {token_hmac_secret_key: /etc/pico-auth/admin-hmac, token_audience: pico-admin}
`

func volumesByName(vols []corev1.Volume) map[string]corev1.Volume {
	m := map[string]corev1.Volume{}
	for _, v := range vols {
		m[v.Name] = v
	}
	return m
}

func mountsByName(c corev1.Container) map[string]corev1.VolumeMount {
	m := map[string]corev1.VolumeMount{}
	for _, vm := range c.VolumeMounts {
		m[vm.Name] = vm
	}
	return m
}

func TestAdminTLSAndAuth(t *testing.T) {
	r := render(t, "pico", "prod", values(t, adminTLSValues))

	cfg := baseConfig(t, get[corev1.ConfigMap](t, r, "ConfigMap", "pico"))
	assert.Equal(t, "/etc/pico-tls/tls.crt", lookup(t, cfg, "admin.tls.cert"), "the server serves the mounted certificate")
	assert.Equal(t, "/etc/pico-tls/tls.key", lookup(t, cfg, "admin.tls.key"))
	assert.Equal(t, ":8002", lookup(t, cfg, "admin.bind_addr"))
	assert.Equal(t, "pico-admin", lookup(t, cfg, "admin.auth.token_audience"))
	assert.NotContains(t, lookup(t, cfg, "admin.tls"), "client_cas", "the kubelet's probes present no client certificate")

	sts := get[appsv1.StatefulSet](t, r, "StatefulSet", "pico")
	server := container(t, sts.Spec.Template.Spec.Containers, "server")
	for name, p := range map[string]*corev1.Probe{"startup": server.StartupProbe, "readiness": server.ReadinessProbe, "liveness": server.LivenessProbe} {
		require.NotNil(t, p, name)
		require.NotNil(t, p.HTTPGet, name)
		assert.Equal(t, corev1.URISchemeHTTPS, p.HTTPGet.Scheme, "%s probe must speak HTTPS to a TLS admin port", name)
		assert.Equal(t, intstr.FromString("admin"), p.HTTPGet.Port, name)
		assert.Empty(t, p.HTTPGet.HTTPHeaders, "%s probe: /health and /ready need no token", name)
	}
	assert.Equal(t, "/etc/pico-tls", mountsByName(server)["tls"].MountPath)

	sm := get[ServiceMonitor](t, r, "ServiceMonitor", "pico")
	require.Len(t, sm.Spec.Endpoints, 1)
	ep := sm.Spec.Endpoints[0]
	assert.Equal(t, "https", ep.Scheme)
	require.NotNil(t, ep.TLSConfig)
	require.NotNil(t, ep.TLSConfig.CA)
	require.NotNil(t, ep.TLSConfig.CA.Secret)
	assert.Equal(t, "pico-tls", ep.TLSConfig.CA.Secret.Name)
	assert.Equal(t, "ca.crt", ep.TLSConfig.CA.Secret.Key)
	assert.Equal(t, "pico-headless.prod.svc", ep.TLSConfig.ServerName, "Prometheus dials pod IPs: it verifies the headless Service's name")
	assert.False(t, ep.TLSConfig.InsecureSkipVerify)
	require.NotNil(t, ep.Authorization)
	assert.Equal(t, "Bearer", ep.Authorization.Type)
	require.NotNil(t, ep.Authorization.Credentials)
	assert.Equal(t, "pico-admin-token", ep.Authorization.Credentials.Name)
	assert.Equal(t, "token", ep.Authorization.Credentials.Key)

	testPod := get[corev1.Pod](t, r, "Pod", "pico-test")
	selftest := testPod.Spec.Containers[0]
	assert.Equal(t, []string{
		"selftest", "--expect-members", "3",
		"--admin-url", "https://pico-0.pico-headless.prod.svc:8002",
		"--admin-url", "https://pico-1.pico-headless.prod.svc:8002",
		"--admin-url", "https://pico-2.pico-headless.prod.svc:8002",
		"--admin.tls.ca", "/etc/pico-selftest/admin-ca/ca.crt",
		"--admin.token-file", "/etc/pico-selftest/admin-token/token",
		"--proxy-url", "http://pico.prod.svc:8000",
		"--upstream-url", "http://pico.prod.svc:8001",
		"--timeout", "2m",
	}, selftest.Args)
	mounts := mountsByName(selftest)
	assert.Equal(t, corev1.VolumeMount{Name: "admin-ca", MountPath: "/etc/pico-selftest/admin-ca", ReadOnly: true}, mounts["admin-ca"])
	assert.Equal(t, corev1.VolumeMount{Name: "admin-token", MountPath: "/etc/pico-selftest/admin-token", ReadOnly: true}, mounts["admin-token"])
	vols := volumesByName(testPod.Spec.Volumes)
	require.NotNil(t, vols["admin-ca"].Secret)
	assert.Equal(t, "pico-tls", vols["admin-ca"].Secret.SecretName)
	assert.Equal(t, []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}, vols["admin-ca"].Secret.Items,
		"the test pod gets the CA only, never the private key")
	require.NotNil(t, vols["admin-token"].Secret)
	assert.Equal(t, "pico-admin-token", vols["admin-token"].Secret.SecretName)
	assert.Equal(t, []corev1.KeyToPath{{Key: "token", Path: "token"}}, vols["admin-token"].Secret.Items)
	assertRestricted(t, "test pod", testPod.Spec)

	assert.Contains(t, r.Notes, "pico status cluster nodes --server.url https://localhost:8002 --connect.tls.ca admin-ca.crt")
	assert.Contains(t, r.Notes, "--connect.tls.server-name pico-0.pico-headless.prod.svc --connect.token-file admin-token")
	assert.Contains(t, r.Notes, `get secret pico-tls -o jsonpath='{.data.ca\.crt}'`)
	assertNoConfigWarning(t, r.Notes)
}

func TestAdminTLSOptions(t *testing.T) {
	t.Run("server name, custom CA key and domain", func(t *testing.T) {
		r := render(t, "edge", "apps", values(t, `
clusterDomain: corp.internal
tls: {existingSecret: edge-tls, mountPath: /certs/}
admin:
  tls: {enabled: true, caKey: root.pem, serverName: admin.pico.example}
  auth: {tokenSecret: {name: scrape, key: jwt}}
serviceMonitor: {enabled: true}
`))
		cfg := baseConfig(t, get[corev1.ConfigMap](t, r, "ConfigMap", "edge-pico"))
		assert.Equal(t, "/certs/tls.crt", lookup(t, cfg, "admin.tls.cert"))
		ep := get[ServiceMonitor](t, r, "ServiceMonitor", "edge-pico").Spec.Endpoints[0]
		assert.Equal(t, "admin.pico.example", ep.TLSConfig.ServerName)
		assert.Equal(t, "root.pem", ep.TLSConfig.CA.Secret.Key)
		assert.Equal(t, "jwt", ep.Authorization.Credentials.Key)
		pod := get[corev1.Pod](t, r, "Pod", "edge-pico-test")
		args := strings.Join(pod.Spec.Containers[0].Args, " ")
		assert.Contains(t, args, "--admin-url https://edge-pico-0.edge-pico-headless.apps.svc.corp.internal:8002")
		assert.Contains(t, args, "--admin.tls.ca /etc/pico-selftest/admin-ca/ca.crt --admin.tls.server-name admin.pico.example")
		assert.Equal(t, []corev1.KeyToPath{{Key: "root.pem", Path: "ca.crt"}}, volumesByName(pod.Spec.Volumes)["admin-ca"].Secret.Items)
		assert.Equal(t, []corev1.KeyToPath{{Key: "jwt", Path: "token"}}, volumesByName(pod.Spec.Volumes)["admin-token"].Secret.Items)
	})

	t.Run("public CA", func(t *testing.T) {
		r := render(t, "pico", "default", values(t, `
tls: {existingSecret: pico-tls}
admin: {tls: {enabled: true, caKey: ""}}
serviceMonitor: {enabled: true}
`))
		ep := get[ServiceMonitor](t, r, "ServiceMonitor", "pico").Spec.Endpoints[0]
		assert.Nil(t, ep.TLSConfig.CA, "the system roots verify a public certificate")
		assert.Equal(t, "pico-headless.default.svc", ep.TLSConfig.ServerName)
		assert.Nil(t, ep.Authorization, "no token without admin.auth.tokenSecret")
		pod := get[corev1.Pod](t, r, "Pod", "pico-test")
		assert.NotContains(t, pod.Spec.Containers[0].Args, "--admin.tls.ca")
		assert.NotContains(t, pod.Spec.Containers[0].Args, "--admin.token-file")
		assert.Contains(t, pod.Spec.Containers[0].Args, "https://pico-0.pico-headless.default.svc:8002")
		assert.Empty(t, pod.Spec.Volumes)
		assert.Empty(t, pod.Spec.Containers[0].VolumeMounts)
	})

	t.Run("insecure", func(t *testing.T) {
		r := render(t, "pico", "default", values(t, `
tls: {existingSecret: pico-tls}
admin: {tls: {enabled: true, insecureSkipVerify: true, serverName: ignored.example}}
serviceMonitor: {enabled: true}
`))
		ep := get[ServiceMonitor](t, r, "ServiceMonitor", "pico").Spec.Endpoints[0]
		assert.Equal(t, ServiceMonitorTLSConfig{InsecureSkipVerify: true}, *ep.TLSConfig)
		pod := get[corev1.Pod](t, r, "Pod", "pico-test")
		args := pod.Spec.Containers[0].Args
		assert.Contains(t, args, "--admin.tls.insecure-skip-verify")
		assert.NotContains(t, args, "--admin.tls.ca", "selftest refuses a CA together with insecure-skip-verify")
		assert.NotContains(t, args, "--admin.tls.server-name")
		assert.Empty(t, pod.Spec.Volumes)
	})

	t.Run("TLS set in config", func(t *testing.T) {
		// The way before admin.tls.enabled: the server's keys set by hand. The probes and
		// clients follow all the same.
		r := render(t, "pico", "default", values(t, `
tls: {existingSecret: pico-tls}
config: {admin: {tls: {cert: /etc/pico-tls/tls.crt, key: /etc/pico-tls/tls.key}}}
serviceMonitor: {enabled: true}
`))
		server := container(t, get[appsv1.StatefulSet](t, r, "StatefulSet", "pico").Spec.Template.Spec.Containers, "server")
		assert.Equal(t, corev1.URISchemeHTTPS, server.ReadinessProbe.HTTPGet.Scheme)
		assert.Equal(t, "https", get[ServiceMonitor](t, r, "ServiceMonitor", "pico").Spec.Endpoints[0].Scheme)
		assert.Contains(t, get[corev1.Pod](t, r, "Pod", "pico-test").Spec.Containers[0].Args, "--admin.tls.ca")
	})

	t.Run("probes the user set", func(t *testing.T) {
		r := render(t, "pico", "default", values(t, `
tls: {existingSecret: pico-tls}
admin: {tls: {enabled: true}}
ports: {admin: 9443}
startupProbe: {httpGet: {port: 9443}}
readinessProbe: {httpGet: {path: /ready, port: metrics-sidecar, scheme: HTTP}}
livenessProbe: {httpGet: null, tcpSocket: {port: admin}}
`))
		server := container(t, get[appsv1.StatefulSet](t, r, "StatefulSet", "pico").Spec.Template.Spec.Containers, "server")
		assert.Equal(t, corev1.URISchemeHTTPS, server.StartupProbe.HTTPGet.Scheme, "the admin port by number")
		assert.Equal(t, corev1.URISchemeHTTP, server.ReadinessProbe.HTTPGet.Scheme, "an explicit scheme on another port is kept")
		assert.Nil(t, server.LivenessProbe.HTTPGet)
		assert.NotNil(t, server.LivenessProbe.TCPSocket)
	})

	t.Run("plain admin port", func(t *testing.T) {
		r := render(t, "pico", "default", values(t, `
serviceMonitor: {enabled: true}
admin: {auth: {tokenSecret: {name: scrape}}}
config: {admin: {auth: {jwks_url: "https://issuer.example/jwks"}}}
`))
		server := container(t, get[appsv1.StatefulSet](t, r, "StatefulSet", "pico").Spec.Template.Spec.Containers, "server")
		assert.Empty(t, server.ReadinessProbe.HTTPGet.Scheme)
		ep := get[ServiceMonitor](t, r, "ServiceMonitor", "pico").Spec.Endpoints[0]
		assert.Equal(t, "http", ep.Scheme)
		assert.Nil(t, ep.TLSConfig)
		assert.Equal(t, "scrape", ep.Authorization.Credentials.Name, "a token works without TLS too")
		args := get[corev1.Pod](t, r, "Pod", "pico-test").Spec.Containers[0].Args
		assert.Contains(t, args, "http://pico-0.pico-headless.default.svc:8002")
		assert.Contains(t, args, "--admin.token-file")
		assert.NotContains(t, strings.Join(args, " "), "--admin.tls")
	})

	t.Run("admin auth without a token for the clients", func(t *testing.T) {
		r := render(t, "pico", "default", values(t, `
serviceMonitor: {enabled: true}
config: {admin: {auth: {token_ecdsa_public_key: /etc/pico-auth/admin.pem}}}
`))
		assert.Contains(t, r.Notes, "WARNING: config.admin.auth makes the admin API require a token, but admin.auth.tokenSecret.name")
		assert.Contains(t, r.Notes, "`helm test` and Prometheus will be refused (401)")
		assert.Nil(t, get[ServiceMonitor](t, r, "ServiceMonitor", "pico").Spec.Endpoints[0].Authorization)
	})
}
