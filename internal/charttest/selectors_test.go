package charttest

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"helm.sh/helm/v3/pkg/chart/loader"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// previousChart is the chart as released before this one (0.1.0), packaged from the commit
// before the selectors gained the component label (`git archive --format=tar.gz --prefix=pico/
// <commit>:charts/pico`). When the chart's version is bumped again, replace it with the
// release before.
var previousChart = filepath.Join("testdata", "previous", "pico-0.1.0.tgz")

// memberSelector is one selector of the chart that must pick the server pods, and only them.
type memberSelector struct {
	what     string
	selector *metav1.LabelSelector
}

// memberSelectors lists every selector of a render that stands for "the members": the
// Services', the PodDisruptionBudget's, the members' NetworkPolicy (its podSelector and the
// peers that name the members) and the chart's own topology spread constraints.
func memberSelectors(t *testing.T, r *Rendered, fullname string) []memberSelector {
	t.Helper()
	var out []memberSelector
	for _, o := range r.Objects {
		switch v := o.Value.(type) {
		case *corev1.Service:
			out = append(out, memberSelector{"Service/" + v.Name, &metav1.LabelSelector{MatchLabels: v.Spec.Selector}})
		case *policyv1.PodDisruptionBudget:
			out = append(out, memberSelector{"PodDisruptionBudget/" + v.Name, v.Spec.Selector})
		case *networkingv1.NetworkPolicy:
			if v.Name != fullname {
				continue // the test pod's own policy
			}
			out = append(out, memberSelector{"NetworkPolicy/" + v.Name + " podSelector", &v.Spec.PodSelector})
			for _, rule := range v.Spec.Ingress {
				for _, peer := range rule.From {
					if peer.PodSelector != nil && peer.NamespaceSelector == nil && peer.PodSelector.MatchLabels["app.kubernetes.io/component"] != "test" {
						out = append(out, memberSelector{"NetworkPolicy/" + v.Name + " ingress peer", peer.PodSelector})
					}
				}
			}
			for _, rule := range v.Spec.Egress {
				for _, peer := range rule.To {
					if peer.PodSelector != nil {
						out = append(out, memberSelector{"NetworkPolicy/" + v.Name + " egress peer", peer.PodSelector})
					}
				}
			}
		case *appsv1.StatefulSet:
			for _, c := range v.Spec.Template.Spec.TopologySpreadConstraints {
				if c.TopologyKey == "topology.kubernetes.io/zone" || c.TopologyKey == "kubernetes.io/hostname" {
					out = append(out, memberSelector{"StatefulSet/" + v.Name + " spread over " + c.TopologyKey, c.LabelSelector})
				}
			}
		}
	}
	return out
}

// TestMemberSelectorsLeaveOutTheTestPod: the `helm test` pod carries the chart's name and
// instance labels too, so every selector meant for the members must also require
// app.kubernetes.io/component: server, or the test pod becomes a Service endpoint, a pod the
// PodDisruptionBudget counts (an unmanaged one, which breaks its arithmetic) and a member the
// spread constraints balance.
func TestMemberSelectorsLeaveOutTheTestPod(t *testing.T) {
	for name, tc := range map[string]struct{ release, fullname, values string }{
		"defaults": {"pico", "pico", "networkPolicy: {enabled: true}\nadminService: {enabled: true}"},
		"full":     {"edge", "edge-pico", fullValues},
	} {
		t.Run(name, func(t *testing.T) {
			r := render(t, tc.release, "apps", values(t, tc.values))
			sts := get[appsv1.StatefulSet](t, r, "StatefulSet", tc.fullname)
			testPod := get[corev1.Pod](t, r, "Pod", tc.fullname+"-test")
			sels := memberSelectors(t, r, tc.fullname)
			require.GreaterOrEqual(t, len(sels), 6, "Services, PDB, spread constraints, NetworkPolicy")
			for _, s := range sels {
				assert.True(t, matches(t, s.selector, sts.Spec.Template.Labels), "%s must select the members", s.what)
				assert.False(t, matches(t, s.selector, testPod.Labels), "%s selects the helm test pod too", s.what)
			}
			assert.Equal(t, map[string]string{"app.kubernetes.io/name": "pico", "app.kubernetes.io/instance": tc.release},
				sts.Spec.Selector.MatchLabels, "the StatefulSet's selector is immutable: it must not change")
		})
	}
}

// TestUpgradeFromPreviousChartKeepsEveryMemberSelected renders the previous release of the
// chart and this one with the same values, as `helm upgrade` from one to the other applies
// them: the StatefulSet's (immutable) selector is unchanged, and every new member selector
// already matches the pods of the previous release — they carried the component label — so
// while the pods roll, the old ones stay endpoints and the PodDisruptionBudget keeps counting
// them.
func TestUpgradeFromPreviousChartKeepsEveryMemberSelected(t *testing.T) {
	prev, err := loader.Load(previousChart)
	require.NoError(t, err)
	cur, err := loader.Load(chartDir)
	require.NoError(t, err)
	require.NotEqual(t, prev.Metadata.Version, cur.Metadata.Version, "the chart's version must change with its selectors")

	vals := "networkPolicy: {enabled: true}\nadminService: {enabled: true}"
	old, err := RenderChart(prev, "pico", "apps", values(t, vals))
	require.NoError(t, err)
	now := render(t, "pico", "apps", values(t, vals))
	oldSTS := get[appsv1.StatefulSet](t, old, "StatefulSet", "pico")
	newSTS := get[appsv1.StatefulSet](t, now, "StatefulSet", "pico")
	assert.Equal(t, oldSTS.Spec.Selector, newSTS.Spec.Selector, "a changed StatefulSet selector makes helm upgrade fail")
	assert.Equal(t, oldSTS.Spec.ServiceName, newSTS.Spec.ServiceName, "serviceName is immutable too")
	for _, s := range memberSelectors(t, now, "pico") {
		assert.True(t, matches(t, s.selector, oldSTS.Spec.Template.Labels), "%s must keep selecting the previous release's pods during the roll", s.what)
	}
	// Every object of the previous release is still rendered (nothing is dropped by the upgrade).
	for _, k := range old.Kinds() {
		assert.Contains(t, now.Kinds(), k)
	}
}
