package peerfinder

import (
	"slices"
	"strings"
)

// ClusterDomainFromResolvConf works out the cluster's DNS domain from the
// content of a pod's /etc/resolv.conf. Kubernetes writes the search line
//
//	search <namespace>.svc.<domain> svc.<domain> <domain>
//
// so the domain is what follows "<namespace>.svc." or "svc." in a search
// domain. The file is read line by line, never with one pattern over the
// whole content: comments ('#' or ';') and unknown keywords are skipped,
// several search lines are all considered (the last one first, as the
// resolver itself lets the last one win), trailing dots and upper case are
// ignored, and a domain other than cluster.local is found as well.
// namespace may be empty; when given, "<namespace>.svc.<domain>" is
// preferred over the other forms. ok is false when no search domain looks
// like a cluster's; callers then use DefaultClusterDomain.
func ClusterDomainFromResolvConf(content []byte, namespace string) (domain string, ok bool) {
	candidates := searchDomains(content)
	namespace = strings.ToLower(namespace)
	// Ordered from most to least specific evidence.
	matchers := []func(labels []string) []string{
		func(labels []string) []string {
			if namespace != "" && len(labels) > 2 && labels[0] == namespace && labels[1] == "svc" {
				return labels[2:]
			}
			return nil
		},
		func(labels []string) []string {
			if len(labels) > 1 && labels[0] == "svc" {
				return labels[1:]
			}
			return nil
		},
		func(labels []string) []string {
			if len(labels) > 2 && labels[1] == "svc" {
				return labels[2:]
			}
			return nil
		},
	}
	for _, match := range matchers {
		for _, candidate := range candidates {
			rest := match(strings.Split(candidate, "."))
			if rest == nil {
				continue
			}
			if d := strings.Join(rest, "."); ValidateName(d) == nil {
				return d, true
			}
		}
	}
	return "", false
}

// searchDomains returns the normalized domains of the search lines of a
// resolv.conf, the last line's first, then those of domain lines.
func searchDomains(content []byte) []string {
	var search [][]string
	var local []string
	for line := range strings.Lines(string(content)) {
		if i := strings.IndexAny(line, "#;"); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		domains := make([]string, 0, len(fields)-1)
		for _, f := range fields[1:] {
			if d := normalizeName(f); ValidateName(d) == nil {
				domains = append(domains, d)
			}
		}
		switch strings.ToLower(fields[0]) {
		case "search":
			search = append(search, domains)
		case "domain":
			local = append(local, domains...)
		}
	}
	slices.Reverse(search)
	return append(slices.Concat(search...), local...)
}
