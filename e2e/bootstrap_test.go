//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const headless = "pico-headless.default.svc.cluster.local"

// bootstrapAndStart runs `pico bootstrap` for pod as the init container
// would, then starts `pico server` from the rendered file with the pod's
// DNS view.
func bootstrapAndStart(t *testing.T, dns *ClusterDNS, pod, ip string) *Node {
	t.Helper()
	dir := filepath.Join(t.TempDir(), pod)
	require.NoError(t, os.MkdirAll(dir, 0o755))
	out := filepath.Join(dir, "server.yaml")
	boot := StartProcess(t, "bootstrap:"+pod, []string{"bootstrap",
		"--service", "pico-headless", "--namespace", "default", "--pod-name", pod,
		"--output", out, "--timeout", "20s"}, WithResolvConf(dns.ResolvConf))
	require.Equal(t, 0, boot.Wait(t, 30*time.Second), boot.Log())
	rendered, err := os.ReadFile(out)
	require.NoError(t, err)
	require.Contains(t, string(rendered), `node_id_prefix: "`+pod+`-"`)
	require.Contains(t, string(rendered), headless)
	return StartNode(t, ip, []string{"--config.path", out, "--config.expand-env", "--cluster.rejoin-interval", "1s"},
		WithResolvConf(dns.ResolvConf), WithEnv("POD_NAME="+pod))
}

func TestBootstrappedNodesFormOneCluster(t *testing.T) {
	dns := StartClusterDNS(t)
	var nodes []*Node
	for _, pod := range []string{"pico-0", "pico-1", "pico-2"} {
		ip := nextIP()
		dns.PublishPod(headless, pod, Addr(ip), 8003)
		nodes = append(nodes, bootstrapAndStart(t, dns, pod, ip))
	}
	waitMembers(t, nodes, 3)
	for _, m := range nodes[0].Members(t) {
		require.Regexp(t, `^pico-[0-2]-.+`, m.ID, "node IDs carry the pod name as prefix plus a fresh suffix")
	}
}

func TestSplitBrainIsHealedByRejoin(t *testing.T) {
	dns := StartClusterDNS(t)
	// Two pods start at the same instant: each sees only itself and founds
	// its own cluster.
	ipA, ipB := nextIP(), nextIP()
	dns.SetAddrs("peers-a.test", Addr(ipA))
	dns.SetAddrs("peers-b.test", Addr(ipB))
	a := StartNode(t, ipA, []string{"--cluster.join", "peers-a.test", "--cluster.rejoin-interval", "1s"}, WithResolvConf(dns.ResolvConf))
	b := StartNode(t, ipB, []string{"--cluster.join", "peers-b.test", "--cluster.rejoin-interval", "1s"}, WithResolvConf(dns.ResolvConf))
	require.Len(t, a.ActiveIDs(), 1)
	require.Len(t, b.ActiveIDs(), 1)

	// DNS now publishes both under each name: the periodic re-join merges them.
	healed := time.Now()
	dns.SetAddrs("peers-a.test", Addr(ipA), Addr(ipB))
	dns.SetAddrs("peers-b.test", Addr(ipA), Addr(ipB))
	waitMembers(t, []*Node{a, b}, 2)
	t.Logf("split brain healed %s after DNS changed", time.Since(healed).Round(time.Millisecond))
}
