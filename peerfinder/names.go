package peerfinder

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// DefaultClusterDomain is the DNS domain of a Kubernetes cluster unless its
// administrator chose another one.
const DefaultClusterDomain = "cluster.local"

// ServiceFQDN is the fully qualified name of a Kubernetes service,
// "service.namespace.svc.clusterDomain", without trailing dot.
func ServiceFQDN(service, namespace, clusterDomain string) string {
	return service + "." + namespace + ".svc." + normalizeName(clusterDomain)
}

// PodFQDN is the name under which the headless service serviceFQDN
// publishes the StatefulSet pod named pod: "pod.serviceFQDN".
func PodFQDN(pod, serviceFQDN string) string {
	return pod + "." + normalizeName(serviceFQDN)
}

// ValidateLabel reports whether s is a DNS label as Kubernetes requires for
// pod, service and namespace names (RFC 1123: 1 to 63 lower case letters,
// digits and '-', starting and ending with a letter or digit), with
// Kubernetes' own validation.
func ValidateLabel(s string) error {
	if s == "" {
		return errors.New("must not be empty")
	}
	if errs := validation.IsDNS1123Label(s); len(errs) > 0 {
		return fmt.Errorf("%q is not a DNS label: %s", s, strings.Join(errs, "; "))
	}
	return nil
}

// ValidateName reports whether s is a DNS name made of DNS labels (an RFC
// 1123 subdomain of at most 253 characters whose labels pass
// ValidateLabel), with or without one trailing dot.
func ValidateName(s string) error {
	name := strings.TrimSuffix(s, ".")
	if name == "" {
		return errors.New("must not be empty")
	}
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return fmt.Errorf("%q is not a DNS name: %s", s, strings.Join(errs, "; "))
	}
	for label := range strings.SplitSeq(name, ".") {
		if errs := validation.IsDNS1123Label(label); len(errs) > 0 { // the subdomain check does not bound labels
			return fmt.Errorf("%q is not a DNS name: label %q: %s", s, label, strings.Join(errs, "; "))
		}
	}
	return nil
}

// ValidateHost reports whether s is a DNS name (see ValidateName) or an IP
// address.
func ValidateHost(s string) error {
	if _, err := netip.ParseAddr(s); err == nil {
		return nil
	}
	return ValidateName(s)
}

// normalizeName lower-cases a DNS name and drops its trailing dot, so that
// names from different sources compare equal.
func normalizeName(s string) string {
	return strings.ToLower(strings.TrimSuffix(s, "."))
}
