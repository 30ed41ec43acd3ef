package charttest

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// PrometheusRule is monitoring.coreos.com/v1 PrometheusRule: the fields of the Prometheus
// Operator's published schema (v0.8x), so that strict decoding rejects any other.
type PrometheusRule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              PrometheusRuleSpec `json:"spec"`
}

// PrometheusRuleSpec is the spec: rule groups.
type PrometheusRuleSpec struct {
	Groups []RuleGroup `json:"groups,omitempty"`
}

// RuleGroup is one group of rules evaluated together.
type RuleGroup struct {
	Name                    string            `json:"name"`
	Labels                  map[string]string `json:"labels,omitempty"`
	Interval                string            `json:"interval,omitempty"`
	QueryOffset             string            `json:"query_offset,omitempty"`
	Rules                   []Rule            `json:"rules,omitempty"`
	PartialResponseStrategy string            `json:"partial_response_strategy,omitempty"`
	Limit                   *int              `json:"limit,omitempty"`
}

// Rule is an alerting or recording rule.
type Rule struct {
	Record        string              `json:"record,omitempty"`
	Alert         string              `json:"alert,omitempty"`
	Expr          *intstr.IntOrString `json:"expr"`
	For           string              `json:"for,omitempty"`
	KeepFiringFor string              `json:"keep_firing_for,omitempty"`
	Labels        map[string]string   `json:"labels,omitempty"`
	Annotations   map[string]string   `json:"annotations,omitempty"`
}

var (
	// promDuration is the CRD's Duration pattern (Prometheus durations: 1d, 1h30m, not 1.5s).
	promDuration = regexp.MustCompile(`^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$`)
	labelName    = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
	metricName   = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
)

// Validate checks what the CRD's schema requires beyond the field names (required fields,
// duration patterns, unique group names) and what Prometheus refuses when it loads the
// rules (one of alert or record, valid label and record names, no `for` on records).
func (p *PrometheusRule) Validate() error {
	var errs []error
	if len(p.Spec.Groups) == 0 {
		errs = append(errs, errors.New("spec.groups is empty"))
	}
	duration := func(field, v string) {
		if v != "" && !promDuration.MatchString(v) {
			errs = append(errs, fmt.Errorf("%s %q is not a Prometheus duration", field, v))
		}
	}
	names := map[string]bool{}
	for i, g := range p.Spec.Groups {
		at := fmt.Sprintf("spec.groups[%d]", i)
		if g.Name == "" {
			errs = append(errs, fmt.Errorf("%s.name is required", at))
		}
		if names[g.Name] {
			errs = append(errs, fmt.Errorf("%s.name %q is not unique", at, g.Name))
		}
		names[g.Name] = true
		duration(at+".interval", g.Interval)
		duration(at+".query_offset", g.QueryOffset)
		if len(g.Rules) == 0 {
			errs = append(errs, fmt.Errorf("%s.rules is empty", at))
		}
		for j, r := range g.Rules {
			rat := fmt.Sprintf("%s.rules[%d]", at, j)
			if (r.Alert == "") == (r.Record == "") {
				errs = append(errs, fmt.Errorf("%s: exactly one of alert and record must be set", rat))
			}
			if r.Record != "" && !metricName.MatchString(r.Record) {
				errs = append(errs, fmt.Errorf("%s.record %q is not a metric name", rat, r.Record))
			}
			if r.Record != "" && (r.For != "" || r.KeepFiringFor != "" || len(r.Annotations) > 0) {
				errs = append(errs, fmt.Errorf("%s: a recording rule has no for, keep_firing_for or annotations", rat))
			}
			if r.Expr == nil || r.Expr.Type == intstr.String && strings.TrimSpace(r.Expr.StrVal) == "" {
				errs = append(errs, fmt.Errorf("%s.expr is required", rat))
			}
			duration(rat+".for", r.For)
			duration(rat+".keep_firing_for", r.KeepFiringFor)
			for k := range r.Labels {
				if !labelName.MatchString(k) {
					errs = append(errs, fmt.Errorf("%s.labels: %q is not a label name", rat, k))
				}
			}
			for k := range r.Annotations {
				if !labelName.MatchString(k) {
					errs = append(errs, fmt.Errorf("%s.annotations: %q is not a label name", rat, k))
				}
			}
		}
	}
	return errors.Join(errs...)
}
