package charttest

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// podRef is a pod as NetworkPolicies see it: its namespace (and that namespace's labels), its
// labels and its container ports (which named policy ports resolve against).
type podRef struct {
	namespace       string
	namespaceLabels map[string]string
	labels          map[string]string
	ports           []corev1.ContainerPort
}

// connAllowed evaluates NetworkPolicies as the Kubernetes API defines them (and a
// policy-enforcing CNI implements them): a connection from src to dst on port/proto passes
// when no Egress policy selects src or an egress rule of one of those allows it, and no
// Ingress policy selects dst or an ingress rule of one of those allows it. port is the
// destination pod's port (a Service's targetPort, after translation). When it is denied, the
// second result says by which policies.
func connAllowed(t *testing.T, policies []*networkingv1.NetworkPolicy, src, dst podRef, port int32, proto corev1.Protocol) (bool, string) {
	t.Helper()
	selects := func(np *networkingv1.NetworkPolicy, p podRef, kind networkingv1.PolicyType) bool {
		if np.Namespace != p.namespace {
			return false
		}
		has := false
		for _, pt := range np.Spec.PolicyTypes {
			has = has || pt == kind
		}
		return has && matches(t, &np.Spec.PodSelector, p.labels)
	}
	peerMatches := func(np *networkingv1.NetworkPolicy, peer networkingv1.NetworkPolicyPeer, p podRef) bool {
		if peer.IPBlock != nil {
			return false // pods are matched by selectors here; the chart renders no ipBlock of its own
		}
		if peer.NamespaceSelector != nil {
			if !matches(t, peer.NamespaceSelector, p.namespaceLabels) {
				return false
			}
		} else if p.namespace != np.Namespace {
			return false
		}
		return peer.PodSelector == nil || matches(t, peer.PodSelector, p.labels)
	}
	portMatches := func(ports []networkingv1.NetworkPolicyPort) bool {
		if len(ports) == 0 {
			return true
		}
		for _, pp := range ports {
			want := corev1.ProtocolTCP
			if pp.Protocol != nil {
				want = *pp.Protocol
			}
			if want != proto {
				continue
			}
			if pp.Port == nil {
				return true
			}
			if pp.Port.Type == intstr.Int {
				end := pp.Port.IntVal
				if pp.EndPort != nil {
					end = *pp.EndPort
				}
				if port >= pp.Port.IntVal && port <= end {
					return true
				}
				continue
			}
			for _, cp := range dst.ports { // a named port is the destination pod's
				cpProto := cp.Protocol
				if cpProto == "" {
					cpProto = corev1.ProtocolTCP
				}
				if cp.Name == pp.Port.StrVal && cp.ContainerPort == port && cpProto == proto {
					return true
				}
			}
		}
		return false
	}

	// rule is one direction's rule of a policy: the peers on the other end and the ports.
	type rule struct {
		peers []networkingv1.NetworkPolicyPeer
		ports []networkingv1.NetworkPolicyPort
	}
	for _, dir := range []struct {
		name  string
		kind  networkingv1.PolicyType
		self  podRef // the pod the policies must select
		other podRef // the pod their peers must match
		rules func(*networkingv1.NetworkPolicy) []rule
	}{
		{"egress", networkingv1.PolicyTypeEgress, src, dst, func(np *networkingv1.NetworkPolicy) (rs []rule) {
			for _, r := range np.Spec.Egress {
				rs = append(rs, rule{r.To, r.Ports})
			}
			return rs
		}},
		{"ingress", networkingv1.PolicyTypeIngress, dst, src, func(np *networkingv1.NetworkPolicy) (rs []rule) {
			for _, r := range np.Spec.Ingress {
				rs = append(rs, rule{r.From, r.Ports})
			}
			return rs
		}},
	} {
		var selecting []*networkingv1.NetworkPolicy
		ok := false
		for _, np := range policies {
			if !selects(np, dir.self, dir.kind) {
				continue
			}
			selecting = append(selecting, np)
			for _, r := range dir.rules(np) {
				peerOK := len(r.peers) == 0
				for _, peer := range r.peers {
					peerOK = peerOK || peerMatches(np, peer, dir.other)
				}
				ok = ok || (peerOK && portMatches(r.ports))
			}
		}
		if len(selecting) > 0 && !ok {
			return false, fmt.Sprintf("no %s rule of %s allows it", dir.name, policyNames(selecting))
		}
	}
	return true, ""
}

func matches(t *testing.T, sel *metav1.LabelSelector, l map[string]string) bool {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	require.NoError(t, err)
	return s.Matches(labels.Set(l))
}

func policyNames(nps []*networkingv1.NetworkPolicy) string {
	var names []string
	for _, np := range nps {
		names = append(names, "NetworkPolicy/"+np.Name)
	}
	return strings.Join(names, ", ")
}

// policies returns every NetworkPolicy of a render, hooks included.
func policies(r *Rendered) []*networkingv1.NetworkPolicy {
	var out []*networkingv1.NetworkPolicy
	for _, o := range r.Objects {
		if np, ok := o.Value.(*networkingv1.NetworkPolicy); ok {
			out = append(out, np)
		}
	}
	return out
}

// dial is one connection the test pod opens: to a member's container port.
type dial struct {
	url  string
	port int32
}

// testPodDials reads every URL in the `helm test` pod's arguments and resolves it the way the
// cluster does: the host names a Service of the chart (`<svc>.<ns>.svc…`, or a member's
// `<pod>.<headless>.<ns>.svc…`), the URL's port one of its ports, and that port's targetPort
// a container port of the members.
func testPodDials(t *testing.T, r *Rendered, namespace string, server corev1.Container) []dial {
	t.Helper()
	services := map[string]*corev1.Service{}
	for _, o := range r.Objects {
		if s, ok := o.Value.(*corev1.Service); ok {
			services[s.Name] = s
		}
	}
	var test *corev1.Pod
	for _, o := range r.Objects {
		if p, ok := o.Value.(*corev1.Pod); ok && o.Hook {
			test = p
		}
	}
	require.NotNil(t, test, "no helm test pod")
	var dials []dial
	for _, arg := range test.Spec.Containers[0].Args {
		u, err := url.Parse(arg)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
			continue
		}
		labels := strings.Split(u.Hostname(), ".")
		svc, ok := services[labels[0]]
		if !ok && len(labels) > 1 {
			svc, ok = services[labels[1]] // <pod>.<headless Service>
		}
		require.True(t, ok, "the test pod dials %s, which names no Service of the chart", arg)
		require.Contains(t, u.Hostname(), "."+namespace+".svc", arg)
		n, err := strconv.Atoi(u.Port())
		require.NoError(t, err, "%s has no port", arg)
		var target *intstr.IntOrString
		for _, sp := range svc.Spec.Ports {
			if sp.Port == int32(n) && (sp.Protocol == "" || sp.Protocol == corev1.ProtocolTCP) {
				target = &sp.TargetPort
			}
		}
		require.NotNil(t, target, "Service %s has no TCP port %d that %s dials", svc.Name, n, arg)
		port := target.IntVal
		if target.Type == intstr.String {
			port = portOf(t, server, target.StrVal).ContainerPort
		}
		dials = append(dials, dial{url: arg, port: port})
	}
	return dials
}

// TestNetworkPolicyLetsHelmTestReachEveryPortItDials checks, with the policies the chart
// renders, every connection `pico selftest` opens — DNS, each member's admin port, the client
// Service's proxy and upstream ports — and the members' own traffic, on a policy-enforcing CNI.
func TestNetworkPolicyLetsHelmTestReachEveryPortItDials(t *testing.T) {
	for name, vals := range map[string]string{
		"defaults": "networkPolicy: {enabled: true}",
		"ingressFrom and adminFrom set": `
networkPolicy:
  enabled: true
  ingressFrom: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: ingress}}}]
  adminFrom: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}}]
`,
		"other ports": `
networkPolicy: {enabled: true}
ports: {proxy: 9000, upstream: 9001, admin: 9002, gossip: 7946}
service: {proxyPort: 80, upstreamPort: 443}
`,
		"TLS everywhere": "networkPolicy: {enabled: true}\n" + everyPortTLSValues,
	} {
		t.Run(name, func(t *testing.T) {
			r := render(t, "pico", "apps", values(t, vals))
			nps := policies(r)
			require.NotEmpty(t, nps)
			sts := get[appsv1.StatefulSet](t, r, "StatefulSet", "pico")
			server := container(t, sts.Spec.Template.Spec.Containers, "server")
			nsLabels := map[string]string{"kubernetes.io/metadata.name": "apps"}
			member := podRef{namespace: "apps", namespaceLabels: nsLabels, labels: sts.Spec.Template.Labels, ports: server.Ports}
			test := podRef{namespace: "apps", namespaceLabels: nsLabels, labels: get[corev1.Pod](t, r, "Pod", "pico-test").Labels}
			dns := podRef{namespace: "kube-system", namespaceLabels: map[string]string{"kubernetes.io/metadata.name": "kube-system"},
				labels: map[string]string{"k8s-app": "kube-dns"}, ports: []corev1.ContainerPort{
					{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP}, {Name: "dns-tcp", ContainerPort: 53, Protocol: corev1.ProtocolTCP}}}

			dials := testPodDials(t, r, "apps", server)
			var ports []int32
			for _, d := range dials {
				ports = append(ports, d.port)
				ok, why := connAllowed(t, nps, test, member, d.port, corev1.ProtocolTCP)
				assert.True(t, ok, "helm test dials %s (member port %d): %s", d.url, d.port, why)
			}
			assert.ElementsMatch(t, []int32{portOf(t, server, "proxy").ContainerPort, portOf(t, server, "upstream").ContainerPort, portOf(t, server, "admin").ContainerPort},
				uniqPorts(ports), "the test pod dials the proxy, upstream and admin ports")
			for _, proto := range []corev1.Protocol{corev1.ProtocolUDP, corev1.ProtocolTCP} {
				ok, why := connAllowed(t, nps, test, dns, 53, proto)
				assert.True(t, ok, "helm test resolves names (DNS over %s): %s", proto, why)
			}

			// The members still reach each other and DNS, and an unrelated pod stays out of
			// the gossip port.
			gossip := portOf(t, server, "gossip").ContainerPort
			for _, c := range []struct {
				port  int32
				proto corev1.Protocol
			}{{gossip, corev1.ProtocolTCP}, {gossip, corev1.ProtocolUDP}, {portOf(t, server, "proxy").ContainerPort, corev1.ProtocolTCP}, {portOf(t, server, "admin").ContainerPort, corev1.ProtocolTCP}} {
				ok, why := connAllowed(t, nps, member, member, c.port, c.proto)
				assert.True(t, ok, "member to member on %d/%s: %s", c.port, c.proto, why)
			}
			ok, why := connAllowed(t, nps, member, dns, 53, corev1.ProtocolUDP)
			assert.True(t, ok, "members resolve names: %s", why)
			stranger := podRef{namespace: "apps", namespaceLabels: nsLabels, labels: map[string]string{"app": "other"}}
			ok, _ = connAllowed(t, nps, stranger, member, gossip, corev1.ProtocolTCP)
			assert.False(t, ok, "a pod that is no member must not reach the gossip port")
			ok, _ = connAllowed(t, nps, test, member, gossip, corev1.ProtocolTCP)
			assert.False(t, ok, "the test pod needs no gossip")
		})
	}
}

func uniqPorts(ps []int32) []int32 {
	seen := map[int32]bool{}
	var out []int32
	for _, p := range ps {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}
