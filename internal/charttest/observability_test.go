package charttest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/pico-proxy/pico/internal/config"
	"github.com/pico-proxy/pico/internal/server"
	"github.com/pico-proxy/pico/internal/server/servertest"
	"github.com/pico-proxy/pico/internal/upstream/upstreamtest"
)

// alerts maps the alert names of the PrometheusRule to their values key.
var alerts = map[string]string{
	"PicoMembersBelowReplicas":        "membersBelowReplicas",
	"PicoForwardVerificationFailures": "forwardVerificationFailures",
	"PicoHighErrorRatio":              "errorRatio",
	"PicoGatewayTimeouts":             "gatewayTimeouts",
	"PicoUnresponsiveUpstreams":       "unresponsiveUpstreams",
}

// rulesByName renders the PrometheusRule, validates it against the CRD's rules and returns
// its rules by alert (or record) name.
func rulesByName(t *testing.T, r *Rendered, name string) (*PrometheusRule, map[string]Rule) {
	t.Helper()
	pr := get[PrometheusRule](t, r, "PrometheusRule", name)
	require.NoError(t, pr.Validate(), "the PrometheusRule breaks the CRD's or Prometheus' rules")
	out := map[string]Rule{}
	for _, g := range pr.Spec.Groups {
		for _, rule := range g.Rules {
			n := rule.Alert + rule.Record
			require.NotContains(t, out, n, "rule %s twice", n)
			out[n] = rule
			_, err := parser.ParseExpr(rule.Expr.String())
			require.NoError(t, err, "rule %s: expr is not PromQL:\n%s", n, rule.Expr.String())
		}
	}
	return pr, out
}

func TestObservabilityIsOffByDefault(t *testing.T) {
	r := render(t, "pico", "default", nil)
	for _, o := range r.Objects {
		assert.NotEqual(t, "PrometheusRule", o.Kind)
		assert.NotEqual(t, "pico-dashboard", o.Name)
	}
}

func TestPrometheusRuleAlerts(t *testing.T) {
	r := render(t, "pico", "edge", values(t, `
replicaCount: 5
prometheusRule:
  enabled: true
  labels: {release: kube-prometheus-stack}
  annotations: {owner: edge-team}
`))
	pr, rules := rulesByName(t, r, "pico")
	assert.Equal(t, "edge", pr.Namespace)
	assert.Equal(t, "kube-prometheus-stack", pr.Labels["release"], "labels for the Prometheus ruleSelector")
	assert.Equal(t, "pico", pr.Labels["app.kubernetes.io/name"])
	assert.Equal(t, "edge-team", pr.Annotations["owner"])
	require.Len(t, pr.Spec.Groups, 1)
	assert.Empty(t, pr.Spec.Groups[0].Interval, "no interval: Prometheus' evaluation_interval")
	names := make([]string, 0, len(rules))
	for n := range rules {
		names = append(names, n)
	}
	sort.Strings(names)
	assert.Equal(t, []string{"PicoForwardVerificationFailures", "PicoGatewayTimeouts", "PicoHighErrorRatio",
		"PicoMembersBelowReplicas", "PicoUnresponsiveUpstreams"}, names)

	// Every expression selects this release's series as the ServiceMonitor's targets label
	// them: the namespace and the scraped (headless) Service as the job.
	for n, rule := range rules {
		for _, sel := range selectors(t, rule.Expr.String()) {
			assert.Contains(t, sel, `namespace="edge"`, n)
			assert.Contains(t, sel, `job="pico-headless"`, n)
		}
		assert.NotEmpty(t, rule.Annotations["summary"], n)
		assert.NotEmpty(t, rule.Annotations["description"], n)
		assert.NotContains(t, rule.Annotations["description"], "%!", "%s: a printf verb without its argument", n)
	}
	members := rules["PicoMembersBelowReplicas"]
	assert.Equal(t, `pico_cluster_members{status="active",namespace="edge",job="pico-headless"} < 5`, members.Expr.String(),
		"the threshold is replicaCount")
	assert.Equal(t, "5m", members.For)
	assert.Equal(t, "critical", members.Labels["severity"])
	assert.Contains(t, members.Annotations["description"], "{{ $labels.pod }}", "Prometheus' template, not Helm's")
	errorRatio := rules["PicoHighErrorRatio"]
	assert.Contains(t, errorRatio.Expr.String(), `status=~"5.."`)
	assert.True(t, strings.HasSuffix(errorRatio.Expr.String(), "> 0.05"), errorRatio.Expr.String())
	assert.Contains(t, errorRatio.Annotations["summary"], "more than 5% of")
	assert.Equal(t, "10m", errorRatio.For)
	assert.Contains(t, rules["PicoGatewayTimeouts"].Expr.String(), `status="504"`)
	assert.Contains(t, rules["PicoGatewayTimeouts"].Annotations["summary"], "more than 1% of")
	assert.Contains(t, rules["PicoForwardVerificationFailures"].Expr.String(), "[5m])) > 0")
	assert.Contains(t, rules["PicoUnresponsiveUpstreams"].Expr.String(), "increase(pico_upstream_unresponsive_total{")
	assert.Equal(t, "0m", rules["PicoUnresponsiveUpstreams"].For)
}

// selectors returns the label matchers of every vector selector of a PromQL expression,
// each as `name="value"` strings.
func selectors(t *testing.T, expr string) [][]string {
	t.Helper()
	e, err := parser.ParseExpr(expr)
	require.NoError(t, err, expr)
	var out [][]string
	for _, ms := range parser.ExtractSelectors(e) {
		var s []string
		for _, m := range ms {
			s = append(s, m.String())
		}
		out = append(out, s)
	}
	return out
}

func TestPrometheusRuleOptions(t *testing.T) {
	r := render(t, "edge", "team", values(t, `
prometheusRule:
  enabled: true
  namespace: monitoring
  selector: 'kubernetes_namespace="team",app="pico"'
  interval: 1m
  window: 10m
  alertLabels: {team: edge, severity: ignored}
  alertAnnotations: {runbook_url: "https://runbooks.example/pico"}
  alerts:
    errorRatio: {threshold: 0.2, for: 1h, severity: critical}
    gatewayTimeouts: {enabled: false}
    unresponsiveUpstreams: {threshold: 3}
  additionalRules:
    - record: pico:requests:rate5m
      expr: sum(rate(pico_proxy_requests_total[5m]))
    - alert: PicoNoUpstreams
      expr: sum(pico_upstream_connections) == 0
      for: 15m
      labels: {severity: info}
`))
	pr, rules := rulesByName(t, r, "edge-pico")
	assert.Equal(t, "monitoring", pr.Namespace)
	assert.Equal(t, "1m", pr.Spec.Groups[0].Interval)
	assert.NotContains(t, rules, "PicoGatewayTimeouts", "disabled")
	for _, n := range []string{"PicoMembersBelowReplicas", "PicoForwardVerificationFailures", "PicoHighErrorRatio", "PicoUnresponsiveUpstreams"} {
		rule := rules[n]
		for _, sel := range selectors(t, rule.Expr.String()) {
			assert.Contains(t, sel, `kubernetes_namespace="team"`, n)
			assert.NotContains(t, sel, `job="edge-pico-headless"`, "%s: the selector replaces the default", n)
		}
		assert.Equal(t, "edge", rule.Labels["team"], n)
		assert.Equal(t, "https://runbooks.example/pico", rule.Annotations["runbook_url"], n)
		if n != "PicoMembersBelowReplicas" {
			assert.Contains(t, rule.Expr.String(), "[10m]", "%s: the window", n)
		}
	}
	assert.Equal(t, "critical", rules["PicoHighErrorRatio"].Labels["severity"], "the alert's severity wins over alertLabels")
	assert.Equal(t, "warning", rules["PicoUnresponsiveUpstreams"].Labels["severity"])
	assert.Equal(t, "1h", rules["PicoHighErrorRatio"].For)
	assert.True(t, strings.HasSuffix(rules["PicoHighErrorRatio"].Expr.String(), "> 0.2"))
	assert.True(t, strings.HasSuffix(rules["PicoUnresponsiveUpstreams"].Expr.String(), "> 3"))
	assert.Contains(t, rules["PicoUnresponsiveUpstreams"].Annotations["description"], "in 10m")
	assert.Equal(t, "sum(rate(pico_proxy_requests_total[5m]))", rules["pico:requests:rate5m"].Expr.String())
	assert.Equal(t, "15m", rules["PicoNoUpstreams"].For)
}

func TestObservabilitySchemaRejectsBadValues(t *testing.T) {
	for _, tc := range []struct {
		name, values, want string
	}{
		{"Go duration", `prometheusRule: {alerts: {errorRatio: {for: 1.5s}}}`, "/prometheusRule/alerts/errorRatio/for"},
		{"ratio above 1", `prometheusRule: {alerts: {gatewayTimeouts: {threshold: 5}}}`, "/prometheusRule/alerts/gatewayTimeouts/threshold"},
		{"negative threshold", `prometheusRule: {alerts: {forwardVerificationFailures: {threshold: -1}}}`, "threshold"},
		{"threshold for members", `prometheusRule: {alerts: {membersBelowReplicas: {threshold: 2}}}`, "threshold"},
		{"unknown alert", `prometheusRule: {alerts: {latency: {enabled: true}}}`, "latency"},
		{"selector in braces", `prometheusRule: {selector: '{job="pico"}'}`, "/prometheusRule/selector"},
		{"empty window", `prometheusRule: {window: ""}`, "/prometheusRule/window"},
		{"bad alert label", `prometheusRule: {alertLabels: {"team-name": edge}}`, "team-name"},
		{"rule without expr", `prometheusRule: {additionalRules: [{alert: X}]}`, "expr"},
		{"rule with alert and record", `prometheusRule: {additionalRules: [{alert: X, record: "y:z", expr: "1"}]}`, "additionalRules"},
		{"rule with unknown field", `prometheusRule: {additionalRules: [{alert: X, expr: "1", severity: page}]}`, "severity"},
		{"unknown dashboard key", `grafanaDashboard: {folder: Pico}`, "folder"},
		{"dashboard label not a string", `grafanaDashboard: {labels: {grafana_dashboard: 1}}`, "/grafanaDashboard/labels"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Render(chartDir, "pico", "default", values(t, tc.values))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestGrafanaDashboardConfigMap(t *testing.T) {
	r := render(t, "pico", "edge", values(t, `
grafanaDashboard:
  enabled: true
  namespace: grafana
  annotations: {grafana_folder: Pico}
`))
	cm := get[corev1.ConfigMap](t, r, "ConfigMap", "pico-dashboard")
	assert.Equal(t, "grafana", cm.Namespace)
	assert.Equal(t, "1", cm.Labels["grafana_dashboard"], "the label Grafana's sidecar looks for")
	assert.Equal(t, "pico", cm.Labels["app.kubernetes.io/instance"])
	assert.Equal(t, "Pico", cm.Annotations["grafana_folder"])
	file, err := os.ReadFile(chartDir + "/dashboards/pico.json")
	require.NoError(t, err)
	assert.JSONEq(t, string(file), cm.Data["pico.json"], "the ConfigMap ships dashboards/pico.json")

	d := dashboard(t, cm)
	assert.Equal(t, "pico-overview", d.UID)
	assert.NotEmpty(t, d.Title)
	ids := map[int]bool{}
	for _, p := range d.Panels {
		assert.False(t, ids[p.ID], "panel id %d twice", p.ID)
		ids[p.ID] = true
		assert.LessOrEqual(t, p.GridPos.X+p.GridPos.W, 24, "panel %q is wider than the grid", p.Title)
		if p.Type == "row" {
			continue
		}
		assert.NotEmpty(t, p.Title)
		assert.Equal(t, "${datasource}", p.Datasource.UID, "panel %q uses the dashboard's data source variable", p.Title)
		require.NotEmpty(t, p.Targets, "panel %q has no query", p.Title)
		for _, target := range p.Targets {
			expr := grafanaToPromQL(target.Expr)
			_, err := parser.ParseExpr(expr)
			require.NoError(t, err, "panel %q: not PromQL: %s", p.Title, target.Expr)
			for _, sel := range selectors(t, expr) {
				assert.Contains(t, sel, `namespace="x"`, "panel %q filters by the namespace variable", p.Title)
			}
		}
	}
	// A sidecar configured with another label: null removes the default one.
	r = render(t, "pico", "edge", values(t, `{grafanaDashboard: {enabled: true, labels: {dashboards: pico, grafana_dashboard: null}}}`))
	cm = get[corev1.ConfigMap](t, r, "ConfigMap", "pico-dashboard")
	assert.Equal(t, "edge", cm.Namespace)
	assert.Equal(t, "pico", cm.Labels["dashboards"])
	assert.NotContains(t, cm.Labels, "grafana_dashboard")
}

// grafanaDashboard is the part of a dashboard's JSON model the tests read.
type grafanaDashboard struct {
	UID        string `json:"uid"`
	Title      string `json:"title"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []struct {
		ID         int    `json:"id"`
		Type       string `json:"type"`
		Title      string `json:"title"`
		Datasource struct {
			UID string `json:"uid"`
		} `json:"datasource"`
		GridPos struct{ X, W int } `json:"gridPos"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

func dashboard(t *testing.T, cm *corev1.ConfigMap) grafanaDashboard {
	t.Helper()
	var d grafanaDashboard
	require.NoError(t, json.Unmarshal([]byte(cm.Data["pico.json"]), &d), "pico.json is not JSON")
	return d
}

// grafanaVariable matches Grafana's variables in a query: $name, ${name} and
// $__rate_interval-style built-ins.
var grafanaVariable = regexp.MustCompile(`\$\{?[A-Za-z_][A-Za-z0-9_]*\}?`)

// grafanaToPromQL replaces Grafana's variables with values PromQL parses: a range where a
// range is expected, a label value everywhere else.
func grafanaToPromQL(expr string) string {
	return grafanaVariable.ReplaceAllStringFunc(expr, func(v string) string {
		if strings.Contains(v, "interval") {
			return "5m"
		}
		return "x"
	})
}

// dashboardQueries returns the PromQL of every panel target and query variable
// (label_values(SELECTOR, label) yields SELECTOR).
func dashboardQueries(t *testing.T, d grafanaDashboard) []string {
	t.Helper()
	var out []string
	for _, p := range d.Panels {
		for _, target := range p.Targets {
			out = append(out, grafanaToPromQL(target.Expr))
		}
	}
	labelValues := regexp.MustCompile(`^label_values\((.+),\s*[A-Za-z_][A-Za-z0-9_]*\)$`)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(map[string]any)["query"].(string)
		m := labelValues.FindStringSubmatch(q)
		require.NotNil(t, m, "variable %s: query %q is not label_values(selector, label)", v.Name, q)
		out = append(out, grafanaToPromQL(m[1]))
	}
	return out
}

// targetLabels are added by Prometheus (and the Prometheus Operator's relabelling) to every
// scraped series, so a running server does not serve them.
var targetLabels = []string{"namespace", "job", "pod", "instance", "service", "endpoint", "container"}

// TestEveryMetricOfTheAlertsAndDashboardIsServed renders the PrometheusRule and the
// dashboard, runs two real members (memberlist, gossip encryption) with an agent, sends a
// request that crosses from one to the other, scrapes /metrics and checks that every metric
// a rule or panel names is served — a histogram's _bucket, _sum and _count included — with
// every label the query matches on.
func TestEveryMetricOfTheAlertsAndDashboardIsServed(t *testing.T) {
	r := render(t, "pico", "default", values(t, `{prometheusRule: {enabled: true}, grafanaDashboard: {enabled: true}}`))
	_, rules := rulesByName(t, r, "pico")
	var queries []string
	for _, rule := range rules {
		queries = append(queries, rule.Expr.String())
	}
	queries = append(queries, dashboardQueries(t, dashboard(t, get[corev1.ConfigMap](t, r, "ConfigMap", "pico-dashboard")))...)

	families := scrapeServingCluster(t)
	used := map[string][]*labels.Matcher{} // metric name -> matchers of one of its selectors
	for _, q := range queries {
		e, err := parser.ParseExpr(q)
		require.NoError(t, err, q)
		parser.Inspect(e, func(node parser.Node, _ []parser.Node) error {
			if vs, ok := node.(*parser.VectorSelector); ok {
				require.NotEmpty(t, vs.Name, "a selector without a metric name in %s", q)
				used[vs.Name] = append(used[vs.Name], vs.LabelMatchers...)
			}
			return nil
		})
	}
	require.NotEmpty(t, used)
	for metric, matchers := range used {
		family, series := servedFamily(families, metric)
		if !assert.NotNil(t, family, "%s is named by a rule or panel but not served at /metrics", metric) {
			continue
		}
		served := map[string]bool{}
		for _, m := range family.GetMetric() {
			for _, l := range m.GetLabel() {
				served[l.GetName()] = true
			}
		}
		for _, m := range matchers {
			if m.Name == model.MetricNameLabel || slices.Contains(targetLabels, m.Name) || m.Name == "le" && series == "_bucket" {
				continue
			}
			assert.True(t, served[m.Name], "%s is matched on label %q, which it does not have (it has %v)", metric, m.Name, served)
		}
	}
	t.Logf("%d metrics named by %d rules and dashboard queries, all served", len(used), len(queries))
}

// servedFamily finds the family serving metric: the family of that name, or the histogram
// or summary whose _bucket, _sum or _count series it is.
func servedFamily(families map[string]*dto.MetricFamily, metric string) (*dto.MetricFamily, string) {
	if f, ok := families[metric]; ok {
		return f, ""
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(metric, suffix)
		if !ok {
			continue
		}
		f, ok := families[base]
		if ok && (f.GetType() == dto.MetricType_HISTOGRAM || f.GetType() == dto.MetricType_SUMMARY && suffix != "_bucket") {
			return f, suffix
		}
	}
	return nil, ""
}

// scrapeServingCluster runs two members with an agent on the first, sends a request through
// the second (forwarded to the first) and returns the second's and the first's metric
// families merged.
func scrapeServingCluster(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	member := func(join ...string) *server.Server {
		return servertest.StartMember(t, func(cfg *config.Server) {
			cfg.Gossip.SecretKey = base64.StdEncoding.EncodeToString(key)
			cfg.Cluster.Join = join
		})
	}
	a := member()
	b := member(a.Addrs().Gossip)
	agent, err := upstreamtest.ServeHTTP(context.Background(), upstreamtest.URL(a.Addrs().Upstream, "metrics-check"),
		http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }))
	require.NoError(t, err)
	t.Cleanup(func() { _ = agent.Close() })
	// Until b has learnt that a holds the endpoint, b answers 502 at once.
	require.Eventually(t, func() bool {
		req, _ := http.NewRequest(http.MethodGet, "http://"+b.Addrs().Proxy+"/", nil)
		req.Header.Set("X-Pico-Endpoint", "metrics-check")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 50*time.Millisecond, "a request through the second member never reached the agent on the first")

	merged := map[string]*dto.MetricFamily{}
	for _, s := range []*server.Server{a, b} {
		resp, err := http.Get("http://" + s.Addrs().Admin + "/metrics")
		require.NoError(t, err)
		parser := expfmt.NewTextParser(model.UTF8Validation)
		families, err := parser.TextToMetricFamilies(resp.Body)
		resp.Body.Close()
		require.NoError(t, err, "/metrics is not Prometheus text")
		for name, f := range families {
			if m, ok := merged[name]; ok {
				m.Metric = append(m.Metric, f.Metric...)
			} else {
				merged[name] = f
			}
		}
	}
	return merged
}

func TestNotesSayHowToGetTheImageAndWhatMonitorsIt(t *testing.T) {
	notes := render(t, "pico", "edge", nil).Notes
	assert.Contains(t, notes, "no image is published at ghcr.io/pico-proxy/pico")
	assert.Contains(t, notes, "make image-push REGISTRY=")
	assert.Contains(t, notes, "--set image.repository=registry.example.com/team/pico")
	assert.NotContains(t, notes, "Monitoring:")

	notes = render(t, "pico", "edge", values(t, `
image: {repository: registry.example.com/team/pico}
prometheusRule: {enabled: true, alerts: {gatewayTimeouts: {enabled: false}}}
grafanaDashboard: {enabled: true, namespace: grafana}
`)).Notes
	assert.NotContains(t, notes, "no image is published", "the image is the operator's own")
	assert.Contains(t, notes, "PrometheusRule edge/pico: alerts PicoForwardVerificationFailures PicoHighErrorRatio PicoMembersBelowReplicas PicoUnresponsiveUpstreams\n")
	assert.Contains(t, notes, "ConfigMap grafana/pico-dashboard")
	assert.Contains(t, notes, "WARNING: serviceMonitor.enabled is false")

	notes = render(t, "pico", "edge", values(t, `{serviceMonitor: {enabled: true}, prometheusRule: {enabled: true}}`)).Notes
	assert.NotContains(t, notes, "WARNING: serviceMonitor.enabled is false")
}

func TestPrometheusRuleValidateCatchesWhatTheCRDRefuses(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{`{spec: {groups: []}}`, "spec.groups is empty"},
		{`{spec: {groups: [{rules: [{alert: A, expr: up}]}]}}`, "spec.groups[0].name is required"},
		{`{spec: {groups: [{name: a, rules: [{alert: A, expr: up}]}, {name: a, rules: [{alert: B, expr: up}]}]}}`, "not unique"},
		{`{spec: {groups: [{name: a, interval: 1.5s, rules: [{alert: A, expr: up}]}]}}`, "interval \"1.5s\" is not a Prometheus duration"},
		{`{spec: {groups: [{name: a, rules: [{alert: A}]}]}}`, "expr is required"},
		{`{spec: {groups: [{name: a, rules: [{alert: A, record: b, expr: up}]}]}}`, "exactly one of alert and record"},
		{`{spec: {groups: [{name: a, rules: [{record: "b-c", expr: up}]}]}}`, "not a metric name"},
		{`{spec: {groups: [{name: a, rules: [{record: b, expr: up, for: 5m}]}]}}`, "a recording rule has no for"},
		{`{spec: {groups: [{name: a, rules: [{alert: A, expr: up, for: 1d12h}]}]}}`, ""},
	} {
		var pr PrometheusRule
		require.NoError(t, sigsyaml.UnmarshalStrict([]byte(tc.doc), &pr), tc.doc)
		err := pr.Validate()
		if tc.want == "" {
			assert.NoError(t, err, tc.doc)
		} else if assert.Error(t, err, tc.doc) {
			assert.Contains(t, err.Error(), tc.want, tc.doc)
		}
	}
}
