// Package charttest renders the Pico Helm chart with the Helm SDK (no helm binary involved)
// and decodes every rendered object strictly into its Kubernetes API type, so the chart's
// tests can assert on typed objects and catch misspelt or misplaced fields.
package charttest

import (
	"fmt"
	"sort"
	"strings"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/releaseutil"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

// Object is one rendered Kubernetes object.
type Object struct {
	// Source is the chart template that produced the object.
	Source     string
	APIVersion string
	Kind       string
	Name       string
	// Hook is true for Helm hooks (the `helm test` pod).
	Hook bool
	// Value is a pointer to the typed object, for example *appsv1.StatefulSet.
	Value any
}

// Rendered is the result of a client-only `helm install`.
type Rendered struct {
	// Manifest is the rendered text of every object, hooks last, in a stable order.
	Manifest string
	// Notes is the rendered NOTES.txt.
	Notes   string
	Objects []Object
}

// Render loads the chart at chartDir and renders it as `helm install` would for the release
// name and namespace, validating values against values.schema.json. It then decodes every
// object strictly.
func Render(chartDir, release, namespace string, values map[string]any) (*Rendered, error) {
	chrt, err := loader.Load(chartDir)
	if err != nil {
		return nil, fmt.Errorf("load chart %s: %w", chartDir, err)
	}
	return RenderChart(chrt, release, namespace, values)
}

// RenderChart renders a loaded chart (with its subcharts) as Render does.
func RenderChart(chrt *chart.Chart, release, namespace string, values map[string]any) (*Rendered, error) {
	chartDir := chrt.Name()
	install := action.NewInstall(&action.Configuration{})
	install.ClientOnly = true
	install.DryRun = true
	install.ReleaseName = release
	install.Namespace = namespace
	install.KubeVersion = &chartutil.KubeVersion{Version: "v1.36.0", Major: "1", Minor: "36"}
	if values == nil {
		values = map[string]any{}
	}
	rel, err := install.Run(chrt, values)
	if err != nil {
		return nil, fmt.Errorf("render chart %s: %w", chartDir, err)
	}
	out := &Rendered{Notes: rel.Info.Notes}
	var text strings.Builder
	manifests := releaseutil.SplitManifests(rel.Manifest)
	keys := make([]string, 0, len(manifests))
	for k := range manifests {
		keys = append(keys, k)
	}
	sort.Sort(releaseutil.BySplitManifestsOrder(keys))
	for _, k := range keys {
		doc := manifests[k]
		obj, err := Decode(doc)
		if err != nil {
			return nil, err
		}
		out.Objects = append(out.Objects, obj)
		text.WriteString("---\n" + strings.TrimSpace(doc) + "\n")
	}
	for _, h := range rel.Hooks {
		obj, err := Decode(h.Manifest)
		if err != nil {
			return nil, err
		}
		obj.Hook = true
		out.Objects = append(out.Objects, obj)
		text.WriteString("---\n# Source: " + h.Path + "\n" + strings.TrimSpace(h.Manifest) + "\n")
	}
	out.Manifest = text.String()
	return out, nil
}

// newObject returns a pointer to the Go type of an apiVersion and kind the chart renders.
func newObject(apiVersion, kind string) (any, error) {
	switch apiVersion + "/" + kind {
	case "v1/ConfigMap":
		return &corev1.ConfigMap{}, nil
	case "v1/Service":
		return &corev1.Service{}, nil
	case "v1/ServiceAccount":
		return &corev1.ServiceAccount{}, nil
	case "v1/Pod":
		return &corev1.Pod{}, nil
	case "apps/v1/StatefulSet":
		return &appsv1.StatefulSet{}, nil
	case "policy/v1/PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, nil
	case "networking.k8s.io/v1/NetworkPolicy":
		return &networkingv1.NetworkPolicy{}, nil
	case "networking.k8s.io/v1/Ingress":
		return &networkingv1.Ingress{}, nil
	case "monitoring.coreos.com/v1/ServiceMonitor":
		return &ServiceMonitor{}, nil
	case "monitoring.coreos.com/v1/PrometheusRule":
		return &PrometheusRule{}, nil
	case "gateway.networking.k8s.io/v1/HTTPRoute":
		return &HTTPRoute{}, nil
	case "cert-manager.io/v1/Certificate":
		return &Certificate{}, nil
	}
	return nil, fmt.Errorf("no Go type known for apiVersion %q kind %q: add it to charttest.newObject", apiVersion, kind)
}

// Decode decodes one YAML document into its typed object, rejecting unknown and duplicate
// fields.
func Decode(doc string) (Object, error) {
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	source := sourceOf(doc)
	if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
		return Object{}, fmt.Errorf("%s: not a YAML object: %w", source, err)
	}
	value, err := newObject(head.APIVersion, head.Kind)
	if err != nil {
		return Object{}, fmt.Errorf("%s: %w", source, err)
	}
	if err := yaml.UnmarshalStrict([]byte(doc), value); err != nil {
		return Object{}, fmt.Errorf("%s: %s %s does not decode strictly: %w", source, head.Kind, head.Metadata.Name, err)
	}
	return Object{Source: source, APIVersion: head.APIVersion, Kind: head.Kind, Name: head.Metadata.Name, Value: value}, nil
}

func sourceOf(doc string) string {
	for _, line := range strings.Split(doc, "\n") {
		if s, ok := strings.CutPrefix(line, "# Source: "); ok {
			return s
		}
	}
	return "(unknown template)"
}

// Find returns the object of a kind and name, or nil.
func (r *Rendered) Find(kind, name string) *Object {
	for i := range r.Objects {
		if r.Objects[i].Kind == kind && r.Objects[i].Name == name {
			return &r.Objects[i]
		}
	}
	return nil
}

// Kinds lists "Kind/name" of every object, sorted.
func (r *Rendered) Kinds() []string {
	var out []string
	for _, o := range r.Objects {
		out = append(out, o.Kind+"/"+o.Name)
	}
	sort.Strings(out)
	return out
}
