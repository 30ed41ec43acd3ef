package peerfinder

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
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
// pod, service and namespace names (RFC 1123): 1 to 63 characters, lower
// case letters, digits and '-', starting and ending with a letter or digit.
func ValidateLabel(s string) error {
	if s == "" {
		return errors.New("must not be empty")
	}
	if len(s) > 63 {
		return fmt.Errorf("%q is %d characters long, a DNS label has at most 63", s, len(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '-' && i > 0 && i < len(s)-1:
		default:
			return fmt.Errorf("%q is not a DNS label: use lower case letters, digits and '-', starting and ending with a letter or digit", s)
		}
	}
	return nil
}

// ValidateName reports whether s is a DNS name made of DNS labels (see
// ValidateLabel), at most 253 characters long, with or without one
// trailing dot.
func ValidateName(s string) error {
	name := strings.TrimSuffix(s, ".")
	if name == "" {
		return errors.New("must not be empty")
	}
	if len(name) > 253 {
		return fmt.Errorf("%q is %d characters long, a DNS name has at most 253", s, len(name))
	}
	for label := range strings.SplitSeq(name, ".") {
		if ValidateLabel(label) != nil {
			return fmt.Errorf("%q is not a DNS name: its labels must be lower case letters, digits and '-', starting and ending with a letter or digit", s)
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
