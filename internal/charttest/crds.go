package charttest

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The chart renders two custom resources whose Go types live outside k8s.io/api. These
// structs mirror the subset of their published schemas (Prometheus Operator
// monitoring.coreos.com/v1 and Gateway API gateway.networking.k8s.io/v1) that the chart may
// set, so strict decoding still rejects a field the chart misspells or misplaces.

// ServiceMonitor is monitoring.coreos.com/v1 ServiceMonitor.
type ServiceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              ServiceMonitorSpec `json:"spec"`
}

// ServiceMonitorSpec is the part of the ServiceMonitor spec the chart may set.
type ServiceMonitorSpec struct {
	Selector          metav1.LabelSelector `json:"selector"`
	NamespaceSelector struct {
		Any        bool     `json:"any,omitempty"`
		MatchNames []string `json:"matchNames,omitempty"`
	} `json:"namespaceSelector"`
	Endpoints []ServiceMonitorEndpoint `json:"endpoints"`
}

// ServiceMonitorEndpoint is one scraped port.
type ServiceMonitorEndpoint struct {
	Port          string `json:"port,omitempty"`
	Path          string `json:"path,omitempty"`
	Scheme        string `json:"scheme,omitempty"`
	Interval      string `json:"interval,omitempty"`
	ScrapeTimeout string `json:"scrapeTimeout,omitempty"`
	// TLSConfig verifies the target's certificate when Scheme is https.
	TLSConfig *ServiceMonitorTLSConfig `json:"tlsConfig,omitempty"`
	// Authorization sends a credential from a Secret with every scrape.
	Authorization *SafeAuthorization `json:"authorization,omitempty"`
}

// ServiceMonitorTLSConfig is the part of an endpoint's tlsConfig the chart may set.
type ServiceMonitorTLSConfig struct {
	CA                 *SecretOrConfigMap `json:"ca,omitempty"`
	ServerName         string             `json:"serverName,omitempty"`
	InsecureSkipVerify bool               `json:"insecureSkipVerify,omitempty"`
}

// SecretOrConfigMap names a key of a Secret (the only source the chart uses).
type SecretOrConfigMap struct {
	Secret *corev1.SecretKeySelector `json:"secret,omitempty"`
}

// SafeAuthorization is an endpoint's authorization: the credentials' type (e.g. Bearer)
// and the Secret key holding them.
type SafeAuthorization struct {
	Type        string                    `json:"type,omitempty"`
	Credentials *corev1.SecretKeySelector `json:"credentials,omitempty"`
}

// HTTPRoute is gateway.networking.k8s.io/v1 HTTPRoute.
type HTTPRoute struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              HTTPRouteSpec `json:"spec"`
}

// HTTPRouteSpec is the part of the HTTPRoute spec the chart may set.
type HTTPRouteSpec struct {
	ParentRefs []ParentReference `json:"parentRefs"`
	Hostnames  []string          `json:"hostnames,omitempty"`
	Rules      []HTTPRouteRule   `json:"rules"`
}

// ParentReference names a Gateway (or listener) the route attaches to.
type ParentReference struct {
	Group       *string `json:"group,omitempty"`
	Kind        *string `json:"kind,omitempty"`
	Namespace   *string `json:"namespace,omitempty"`
	Name        string  `json:"name"`
	SectionName *string `json:"sectionName,omitempty"`
	Port        *int32  `json:"port,omitempty"`
}

// HTTPRouteRule is one rule: request matches and the Services they go to.
type HTTPRouteRule struct {
	Matches []struct {
		Path *struct {
			Type  string `json:"type"`
			Value string `json:"value"`
		} `json:"path,omitempty"`
	} `json:"matches,omitempty"`
	BackendRefs []struct {
		Name string `json:"name"`
		Port int32  `json:"port"`
	} `json:"backendRefs,omitempty"`
}

// Certificate is cert-manager.io/v1 Certificate. Beyond strict decoding into this subset,
// certificate_test.go validates it against the published CRD schema (testdata/crds).
type Certificate struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              CertificateSpec `json:"spec"`
}

// CertificateSpec is the part of the Certificate spec the chart may set.
type CertificateSpec struct {
	SecretName     string `json:"secretName"`
	SecretTemplate *struct {
		Labels      map[string]string `json:"labels,omitempty"`
		Annotations map[string]string `json:"annotations,omitempty"`
	} `json:"secretTemplate,omitempty"`
	IssuerRef struct {
		Name  string `json:"name"`
		Kind  string `json:"kind,omitempty"`
		Group string `json:"group,omitempty"`
	} `json:"issuerRef"`
	Duration    string   `json:"duration,omitempty"`
	RenewBefore string   `json:"renewBefore,omitempty"`
	DNSNames    []string `json:"dnsNames,omitempty"`
}
