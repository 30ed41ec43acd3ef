package peerfinder_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/pico-proxy/pico/peerfinder"
)

var resolvConfCases = []struct {
	name      string
	content   string
	namespace string
	want      string // "" means not found
}{
	{
		name:      "kubernetes",
		content:   "search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n",
		namespace: "default",
		want:      "cluster.local",
	},
	{
		name:    "kubernetes without namespace",
		content: "search kube-system.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\n",
		want:    "cluster.local",
	},
	{
		name:      "custom domain",
		content:   "nameserver 10.0.0.10\nsearch prod.svc.k8s.example.com svc.k8s.example.com k8s.example.com\n",
		namespace: "prod",
		want:      "k8s.example.com",
	},
	{
		name:      "custom domain containing svc",
		content:   "search team.svc.svc.corp svc.svc.corp svc.corp\n",
		namespace: "team",
		want:      "svc.corp",
	},
	{
		name:    "custom domain containing svc, namespace unknown",
		content: "search team.svc.svc.corp svc.svc.corp svc.corp\n",
		want:    "svc.corp",
	},
	{
		name:      "trailing dots and upper case",
		content:   "search Default.SVC.Cluster.Local. svc.cluster.local. cluster.local.\n",
		namespace: "default",
		want:      "cluster.local",
	},
	{
		name:      "host search domains appended by the node",
		content:   "search default.svc.cluster.local svc.cluster.local cluster.local eu-west-1.compute.internal\n",
		namespace: "default",
		want:      "cluster.local",
	},
	{
		name:      "several search lines, the last wins",
		content:   "search old.svc.stale.local\nsearch default.svc.cluster.local svc.cluster.local\n",
		namespace: "default",
		want:      "cluster.local",
	},
	{
		name:      "several search lines, only an earlier one is a cluster's",
		content:   "search default.svc.cluster.local svc.cluster.local cluster.local\nsearch example.com\n",
		namespace: "default",
		want:      "cluster.local",
	},
	{
		name:      "namespace match preferred over a bare svc domain",
		content:   "search svc.other.local default.svc.cluster.local\n",
		namespace: "default",
		want:      "cluster.local",
	},
	{
		name:      "tabs, CRLF, comments",
		content:   "# generated\r\n; another comment\r\nsearch\tdefault.svc.cluster.local\t svc.cluster.local # trailing comment\r\n",
		namespace: "default",
		want:      "cluster.local",
	},
	{
		name:    "commented-out search line",
		content: "#search default.svc.cluster.local\nsearch example.com\n",
	},
	{
		name:    "domain line",
		content: "domain svc.cluster.local\n",
		want:    "cluster.local",
	},
	{
		name:    "no search line",
		content: "nameserver 8.8.8.8\noptions ndots:1\n",
	},
	{
		name:    "not in kubernetes",
		content: "search lan home.arpa\nnameserver 192.168.1.1\n",
	},
	{
		name:    "search keyword only",
		content: "search\n",
	},
	{
		name:    "empty",
		content: "",
	},
	{
		name:    "svc alone",
		content: "search svc. svc\n",
	},
	{
		name:    "invalid names skipped",
		content: "search default.svc.bad_domain svc..cluster.local svc.cluster.local\n",
		want:    "cluster.local",
	},
	{
		name:    "keyword must be first",
		content: "nameserver 10.0.0.1 search svc.cluster.local\n",
	},
}

func TestClusterDomainFromResolvConf(t *testing.T) {
	for _, tc := range resolvConfCases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := peerfinder.ClusterDomainFromResolvConf([]byte(tc.content), tc.namespace)
			assert.Equal(t, tc.want, got)
			assert.Equal(t, tc.want != "", ok)
		})
	}
}

func FuzzClusterDomainFromResolvConf(f *testing.F) {
	for _, tc := range resolvConfCases {
		f.Add([]byte(tc.content), tc.namespace)
	}
	f.Add([]byte("search a.svc.b\x00c\n"), "a")
	f.Fuzz(func(t *testing.T, content []byte, namespace string) {
		domain, ok := peerfinder.ClusterDomainFromResolvConf(content, namespace)
		if !ok {
			if domain != "" {
				t.Fatalf("not found but returned %q", domain)
			}
			return
		}
		if err := peerfinder.ValidateName(domain); err != nil {
			t.Fatalf("returned an invalid domain: %v", err)
		}
		if !strings.Contains(strings.ToLower(string(content)), "svc."+domain) {
			t.Fatalf("domain %q does not follow a svc label in the file", domain)
		}
	})
}

func TestValidateLabel(t *testing.T) {
	for _, ok := range []string{"a", "pico-0", "0", "a-b-c", strings.Repeat("a", 63)} {
		assert.NoError(t, peerfinder.ValidateLabel(ok), ok)
	}
	for _, bad := range []string{"", "-a", "a-", "Pico-0", "a_b", "a.b", "a b", "ä", strings.Repeat("a", 64)} {
		assert.Error(t, peerfinder.ValidateLabel(bad), bad)
	}
}

func TestValidateName(t *testing.T) {
	for _, ok := range []string{"a", "a.b", "cluster.local", "cluster.local.", service} {
		assert.NoError(t, peerfinder.ValidateName(ok), ok)
	}
	for _, bad := range []string{"", ".", "a..b", ".a", "a_b.c", "a.-b", "A.b", strings.Repeat("a.", 127) + "aa", strings.Repeat("a", 64) + ".svc"} {
		assert.Error(t, peerfinder.ValidateName(bad), bad)
	}
	assert.NoError(t, peerfinder.ValidateHost("10.0.0.1"))
	assert.NoError(t, peerfinder.ValidateHost("fd00::1"))
	assert.Error(t, peerfinder.ValidateHost("10.0.0.1:80"))
}

func TestNames(t *testing.T) {
	assert.Equal(t, service, peerfinder.ServiceFQDN("pico-headless", "default", "cluster.local."))
	assert.Equal(t, "pico-0."+service, peerfinder.PodFQDN("pico-0", service+"."))
}
