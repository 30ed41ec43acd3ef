package main

import (
	"bytes"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pico-proxy/pico/internal/testdns"
)

const bootstrapService = "pico-headless.default.svc.cluster.local"

func startBootstrapDNS(t testing.TB, pods ...string) *testdns.Server {
	t.Helper()
	srv, err := testdns.Start("127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Close() })
	for i, pod := range pods {
		srv.PublishPod(bootstrapService, pod, netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)}), 8003)
	}
	return srv
}

// bootstrapArgs are the flags of a run for pod against srv writing into dir.
func bootstrapArgs(srv *testdns.Server, dir, pod string, extra ...string) []string {
	return append([]string{
		"--service", "pico-headless", "--namespace", "default", "--cluster-domain", "cluster.local",
		"--pod-name", pod, "--output", filepath.Join(dir, "server.yaml"), "--dns-server", srv.Addr(),
	}, extra...)
}

func runBootstrapForTest(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = runBootstrap(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestBootstrapWritesConfig(t *testing.T) {
	srv := startBootstrapDNS(t, "pico-0", "pico-1", "pico-2")
	dir := t.TempDir()
	base := filepath.Join(dir, "base.yaml")
	require.NoError(t, os.WriteFile(base, []byte("log:\n  level: debug # verbose\nupstream:\n  advertise_addr: ${POD_IP}:8001\n"), 0o644))

	code, _, stderr := runBootstrapForTest(t, bootstrapArgs(srv, dir, "pico-1", "--base", base)...)
	require.Equal(t, 0, code, stderr)
	want := `log:
  level: debug # verbose
upstream:
  advertise_addr: ${POD_IP}:8001
cluster:
  node_id_prefix: "pico-1-"
  join:
    - pico-0.pico-headless.default.svc.cluster.local
    - pico-2.pico-headless.default.svc.cluster.local
    - pico-headless.default.svc.cluster.local
`
	got, err := os.ReadFile(filepath.Join(dir, "server.yaml"))
	require.NoError(t, err)
	assert.Equal(t, want, string(got))
	assert.Contains(t, stderr, "subsystem=bootstrap")
	assert.Contains(t, stderr, "3 peers in the SRV records of "+bootstrapService)
	assert.Contains(t, stderr, "msg=\"wrote server config\"")

	// Same DNS answers, same file, byte for byte.
	code, _, stderr = runBootstrapForTest(t, bootstrapArgs(srv, dir, "pico-1", "--base", base)...)
	require.Equal(t, 0, code, stderr)
	again, err := os.ReadFile(filepath.Join(dir, "server.yaml"))
	require.NoError(t, err)
	assert.Equal(t, got, again)
}

func TestBootstrapFirstPod(t *testing.T) {
	srv := startBootstrapDNS(t, "pico-0")
	dir := t.TempDir()
	code, _, stderr := runBootstrapForTest(t, bootstrapArgs(srv, dir, "pico-0")...)
	require.Equal(t, 0, code, stderr)
	got, err := os.ReadFile(filepath.Join(dir, "server.yaml"))
	require.NoError(t, err)
	assert.Equal(t, "cluster:\n  node_id_prefix: \"pico-0-\"\n  join:\n    - "+bootstrapService+"\n", string(got))
}

func TestBootstrapAddressRecordFallback(t *testing.T) {
	srv := startBootstrapDNS(t)
	srv.SetAddrs(bootstrapService, netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"))
	srv.SetAddrs("pico-1."+bootstrapService, netip.MustParseAddr("10.0.0.2"))
	dir := t.TempDir()
	code, _, stderr := runBootstrapForTest(t, bootstrapArgs(srv, dir, "pico-1")...)
	require.Equal(t, 0, code, stderr)
	got, err := os.ReadFile(filepath.Join(dir, "server.yaml"))
	require.NoError(t, err)
	assert.Equal(t, "cluster:\n  node_id_prefix: \"pico-1-\"\n  join:\n    - "+bootstrapService+"\n", string(got))
	assert.Contains(t, stderr, "2 peers in the A/AAAA records")
	assert.Contains(t, stderr, "peers known only by address are joined through the service name")
}

func TestBootstrapWaitsUntilPublished(t *testing.T) {
	srv := startBootstrapDNS(t, "pico-0")
	dir := t.TempDir()
	done := make(chan int, 1)
	var stderr bytes.Buffer
	go func() { done <- runBootstrap(bootstrapArgs(srv, dir, "pico-1"), io.Discard, &stderr) }()

	require.Eventually(t, func() bool { return srv.Queries(bootstrapService) >= 2 }, 10*time.Second, time.Millisecond)
	_, err := os.Stat(filepath.Join(dir, "server.yaml"))
	require.ErrorIs(t, err, os.ErrNotExist, "nothing is written before the pod is published")
	srv.PublishPod(bootstrapService, "pico-1", netip.MustParseAddr("10.0.0.2"), 8003)

	require.Equal(t, 0, <-done, stderr.String())
	got, err := os.ReadFile(filepath.Join(dir, "server.yaml"))
	require.NoError(t, err)
	assert.Contains(t, string(got), "    - pico-0."+bootstrapService+"\n    - "+bootstrapService+"\n")
}

func TestBootstrapTimesOut(t *testing.T) {
	srv := startBootstrapDNS(t) // the service does not exist: NXDOMAIN
	dir := t.TempDir()
	code, _, stderr := runBootstrapForTest(t, bootstrapArgs(srv, dir, "pico-0", "--timeout", "300ms")...)
	assert.Equal(t, 1, code)
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	last := lines[len(lines)-1]
	assert.True(t, strings.HasPrefix(last, "pico bootstrap: pico-0."+bootstrapService+" did not appear among the peers of "+bootstrapService+" within 300ms"), last)
	assert.Contains(t, last, "NXDOMAIN")
	assert.Contains(t, last, "publishNotReadyAddresses: true")
	_, err := os.Stat(filepath.Join(dir, "server.yaml"))
	assert.ErrorIs(t, err, os.ErrNotExist)
}

func TestBootstrapDefaultsFromEnvironment(t *testing.T) {
	const service = "pico-headless.prod.svc.k8s.example"
	srv, err := testdns.Start("127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Close() })
	srv.PublishPod(service, "pico-0", netip.MustParseAddr("10.0.0.1"), 8003)
	srv.PublishPod(service, "pico-3", netip.MustParseAddr("10.0.0.4"), 8003)

	dir := t.TempDir()
	resolvConf := filepath.Join(dir, "resolv.conf")
	require.NoError(t, os.WriteFile(resolvConf, []byte("search prod.svc.k8s.example. svc.k8s.example k8s.example\nnameserver 10.96.0.10\noptions ndots:5\n"), 0o644))
	old := bootstrapResolvConfPath
	bootstrapResolvConfPath = resolvConf
	t.Cleanup(func() { bootstrapResolvConfPath = old })
	t.Setenv("POD_NAMESPACE", "prod")
	t.Setenv("POD_NAME", "pico-3")

	code, _, stderr := runBootstrapForTest(t, "--service", "pico-headless", "--output", filepath.Join(dir, "server.yaml"), "--dns-server", srv.Addr())
	require.Equal(t, 0, code, stderr)
	got, err := os.ReadFile(filepath.Join(dir, "server.yaml"))
	require.NoError(t, err)
	assert.Equal(t, "cluster:\n  node_id_prefix: \"pico-3-\"\n  join:\n    - pico-0."+service+"\n    - "+service+"\n", string(got))
	assert.Contains(t, stderr, "pod_name_from=POD_NAME")
	assert.Contains(t, stderr, "cluster_domain_from="+resolvConf)
}

func TestBootstrapUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", []string{"--service", "s", "--output", "o", "--bogus"}, "unknown flag: --bogus"},
		{"missing service", []string{"--output", "o"}, "--service is required"},
		{"missing output", []string{"--service", "s"}, "--output is required"},
		{"argument", []string{"--service", "s", "--output", "o", "extra"}, `unexpected argument "extra"`},
		{"bad duration", []string{"--service", "s", "--output", "o", "--timeout", "soon"}, `invalid argument "soon" for "--timeout"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runBootstrapForTest(t, tc.args...)
			assert.Equal(t, 2, code)
			assert.Empty(t, stdout)
			assert.True(t, strings.HasPrefix(stderr, "pico bootstrap: "), stderr)
			assert.Contains(t, stderr, tc.want)
			assert.Contains(t, stderr, "Usage: pico bootstrap")
			assert.NotContains(t, stderr, "dns-server", "the testing flag stays hidden")
		})
	}
}

func TestBootstrapHelp(t *testing.T) {
	code, stdout, _ := runBootstrapForTest(t, "--help")
	assert.Equal(t, 0, code)
	assert.Contains(t, stdout, "Usage: pico bootstrap")
	for _, flag := range []string{"--service", "--namespace", "--cluster-domain", "--pod-name", "--base", "--output", "--timeout"} {
		assert.Contains(t, stdout, flag)
	}
}

func TestBootstrapConfigErrors(t *testing.T) {
	dir := t.TempDir()
	invalidBase := filepath.Join(dir, "invalid.yaml")
	require.NoError(t, os.WriteFile(invalidBase, []byte("cluster: [a\n"), 0o644))
	listCluster := filepath.Join(dir, "list.yaml")
	require.NoError(t, os.WriteFile(listCluster, []byte("cluster:\n  - a\n"), 0o644))
	out := filepath.Join(dir, "server.yaml")
	t.Setenv("POD_NAMESPACE", "")
	t.Setenv("POD_NAME", "")

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no namespace", []string{"--pod-name", "pico-0"}, "namespace unknown: set --namespace or the POD_NAMESPACE environment variable"},
		{"bad namespace", []string{"--namespace", "Default", "--pod-name", "pico-0"}, `--namespace: "Default" is not a DNS label`},
		{"bad pod name", []string{"--namespace", "default", "--pod-name", "pico_0"}, `pod name from --pod-name: "pico_0" is not a DNS label`},
		{"bad cluster domain", []string{"--namespace", "default", "--pod-name", "pico-0", "--cluster-domain", "cluster..local"}, `--cluster-domain: "cluster..local" is not a DNS name`},
		{"zero timeout", []string{"--namespace", "default", "--pod-name", "pico-0", "--timeout", "0s"}, "--timeout must be positive, got 0s"},
		{"missing base", []string{"--namespace", "default", "--pod-name", "pico-0", "--base", filepath.Join(dir, "nope.yaml")}, "--base: open " + filepath.Join(dir, "nope.yaml") + ": no such file or directory"},
		{"base is a directory", []string{"--namespace", "default", "--pod-name", "pico-0", "--base", dir}, "--base: read " + dir + ": is a directory"},
		{"invalid base", []string{"--namespace", "default", "--pod-name", "pico-0", "--base", invalidBase}, "--base " + invalidBase + ": invalid YAML: "},
		{"cluster not a mapping", []string{"--namespace", "default", "--pod-name", "pico-0", "--base", listCluster}, "--base " + listCluster + ": cluster must be a mapping of keys, not a list (line 1)"},
		{"missing output directory", []string{"--namespace", "default", "--pod-name", "pico-0", "--output", filepath.Join(dir, "missing", "server.yaml")}, "--output: directory " + filepath.Join(dir, "missing") + ": no such file or directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--service", "pico-headless", "--output", out, "--dns-server", "127.0.0.1:1"}, tc.args...)
			code, _, stderr := runBootstrapForTest(t, args...)
			assert.Equal(t, 1, code)
			assert.True(t, strings.HasPrefix(stderr, "pico bootstrap: "+tc.want), "got %q", stderr)
			assert.Equal(t, 1, strings.Count(stderr, "\n"), "one line: %q", stderr)
			_, err := os.Stat(out)
			assert.ErrorIs(t, err, os.ErrNotExist)
		})
	}
}

// BenchmarkBootstrap measures a whole `pico bootstrap` run when DNS already
// answers: flag parsing, one SRV lookup, rendering and the atomic write.
func BenchmarkBootstrap(b *testing.B) {
	for _, peers := range []int{1, 3, 50} {
		b.Run(fmt.Sprintf("peers=%d", peers), func(b *testing.B) {
			pods := make([]string, peers)
			for i := range pods {
				pods[i] = fmt.Sprintf("pico-%d", i)
			}
			srv := startBootstrapDNS(b, pods...)
			dir := b.TempDir()
			base := filepath.Join(dir, "base.yaml")
			if err := os.WriteFile(base, []byte("log:\n  level: info\nproxy:\n  bind_addr: \":8000\"\n"), 0o644); err != nil {
				b.Fatal(err)
			}
			args := bootstrapArgs(srv, dir, "pico-0", "--base", base)
			for b.Loop() {
				if code := runBootstrap(args, io.Discard, io.Discard); code != 0 {
					b.Fatalf("exit %d", code)
				}
			}
		})
	}
}
