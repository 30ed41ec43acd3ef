package cluster

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/pico-proxy/pico/internal/adminapi"
	"github.com/pico-proxy/pico/internal/testutil"
)

// keyCheckInterval is how often the tests' nodes check their key files.
const keyCheckInterval = 20 * time.Millisecond

func newGossipKey(t testing.TB) []byte {
	t.Helper()
	key := make([]byte, 32)
	_, err := rand.Read(key)
	require.NoError(t, err)
	return key
}

// writeKeyFile replaces path with keys, one per line, atomically (as a
// Secret update does), so the node never reads half a file.
func writeKeyFile(t testing.TB, path string, keys ...[]byte) {
	t.Helper()
	var text strings.Builder
	text.WriteString("# pico gossip keys, the primary first\n")
	for _, k := range keys {
		text.WriteString(base64.StdEncoding.EncodeToString(k) + "\n")
	}
	writeFileAtomically(t, path, text.String())
}

func writeFileAtomically(t testing.TB, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	require.NoError(t, os.WriteFile(tmp, []byte(content), 0o600))
	require.NoError(t, os.Rename(tmp, path))
}

// keyNode is a node whose gossip.secret_key is a key file.
type keyNode struct {
	*Cluster
	file string
	reg  *prometheus.Registry
	logs *testutil.LogBuffer
}

// startKeyNode starts a node on a fresh IP with its own key file holding
// keys, joining join.
func startKeyNode(t testing.TB, keys [][]byte, join ...string) *keyNode {
	t.Helper()
	n := &keyNode{file: filepath.Join(t.TempDir(), "gossip.key"), reg: prometheus.NewRegistry(), logs: &testutil.LogBuffer{}}
	writeKeyFile(t, n.file, keys...)
	cfg := testConfig(nextIP(), join...)
	cfg.GossipKeys = loadKeys(t, n.file)
	cfg.Registerer = n.reg
	cfg.Logger = slog.New(slog.NewTextHandler(n.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	cfg.Timing.GossipKeyCheckInterval = keyCheckInterval
	n.Cluster = joinNode(t, cfg)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs of %s:\n%s", n.LocalID(), n.logs.String())
		}
	})
	return n
}

// keyIDs are the IDs of the keys a node's metrics show, primary first.
func (n *keyNode) keyIDs(t testing.TB) []string {
	t.Helper()
	var primary, others []string
	for series := range gathered(t, n.reg) {
		name, labels, ok := strings.Cut(series, "{")
		if !ok || name != "pico_cluster_gossip_keys" {
			continue
		}
		var id, isPrimary string
		_, err := fmt.Sscanf(labels, `key_id=%q,primary=%q}`, &id, &isPrimary)
		require.NoError(t, err, series)
		if isPrimary == "true" {
			primary = append(primary, id)
		} else {
			others = append(others, id)
		}
	}
	slices.Sort(others)
	return append(primary, others...)
}

// wantIDs are the IDs keyIDs shows for keys (primary first).
func wantIDs(keys ...[]byte) []string {
	var others []string
	for _, k := range keys[1:] {
		others = append(others, keyID(k))
	}
	slices.Sort(others)
	return append([]string{keyID(keys[0])}, others...)
}

// waitKeys waits until n's keyring holds keys and returns how long that
// took from since.
func (n *keyNode) waitKeys(t testing.TB, since time.Time, keys ...[]byte) time.Duration {
	t.Helper()
	want := wantIDs(keys...)
	require.Eventually(t, func() bool { return slices.Equal(n.keyIDs(t), want) }, eventually, time.Millisecond,
		"%s never applied the keys %v; it holds %v", n.LocalID(), want, n.keyIDs(t))
	return time.Since(since)
}

// requireGossipFlows publishes a new endpoint on each node and waits until
// every other node routes it: the nodes still read each other's gossip.
func requireGossipFlows(t testing.TB, nodes []*keyNode, tag string) {
	t.Helper()
	for i, n := range nodes {
		endpoint := fmt.Sprintf("%s-%d", tag, i)
		n.UpdateLocalEndpoints(map[string]int{endpoint: 1})
		for _, other := range nodes {
			if other != n {
				require.Equal(t, n.LocalID(), waitRoute(t, other.Cluster, endpoint, eventually).ID)
			}
		}
	}
}

// watchMembership checks, until the test ends, that every node sees all
// of nodes as active all the time: a node declared dead stays listed as
// dead for seconds, far longer than the polling period. It returns a
// function reporting the first violation seen ("" if none).
func watchMembership(t testing.TB, nodes []*keyNode) func() string {
	t.Helper()
	var clusters []*Cluster
	for _, n := range nodes {
		clusters = append(clusters, n.Cluster)
	}
	want := ids(clusters)
	var violation atomic.Pointer[string]
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		ticker := time.NewTicker(tick)
		defer ticker.Stop()
		for {
			select {
			case <-stop:
				return
			case <-ticker.C:
			}
			for _, c := range clusters {
				if !slices.Equal(activeIDs(c), want) && violation.Load() == nil {
					msg := describe(clusters)
					violation.Store(&msg)
				}
			}
		}
	})
	t.Cleanup(func() { close(stop); wg.Wait() })
	return func() string {
		if v := violation.Load(); v != nil {
			return *v
		}
		return ""
	}
}

// TestGossipKeyRollingRotation rotates the key of a three-node cluster in
// the three documented steps, one node at a time, by rewriting each
// node's key file: after every file change the node applies the keys
// without a restart, the nodes keep reading each other's gossip and no
// node ever loses sight of another. At the end the old key no longer
// opens the cluster.
func TestGossipKeyRollingRotation(t *testing.T) {
	oldKey, newKey := newGossipKey(t), newGossipKey(t)
	a := startKeyNode(t, [][]byte{oldKey})
	b := startKeyNode(t, [][]byte{oldKey}, a.GossipAddr())
	c := startKeyNode(t, [][]byte{oldKey}, a.GossipAddr())
	nodes := []*keyNode{a, b, c}
	waitActive(t, []*Cluster{a.Cluster, b.Cluster, c.Cluster}, a.LocalID(), b.LocalID(), c.LocalID())
	violation := watchMembership(t, nodes)

	steps := []struct {
		name string
		keys [][]byte
		log  string // what each node logs for the step
	}{
		{"add", [][]byte{oldKey, newKey}, "gossip key added: gossip encrypted with it is accepted from now on"},
		{"switch", [][]byte{newKey, oldKey}, "gossip primary key switched: gossip is encrypted with it from now on"},
		{"remove", [][]byte{newKey}, "gossip key removed: gossip encrypted with it is refused from now on"},
	}
	var applied []time.Duration
	for _, step := range steps {
		for i, n := range nodes {
			written := time.Now()
			writeKeyFile(t, n.file, step.keys...)
			applied = append(applied, n.waitKeys(t, written, step.keys...))
			require.Empty(t, violation(), "step %s, node %d", step.name, i)
			// Gossip flows between nodes that are one step apart.
			requireGossipFlows(t, nodes, fmt.Sprintf("%s-after-node-%d", step.name, i))
			require.Contains(t, n.logs.String(), step.log)
		}
	}
	require.Empty(t, violation())
	slices.Sort(applied)
	t.Logf("key file change to keyring switched (check interval %v): median %v, max %v over %d changes",
		keyCheckInterval, applied[len(applied)/2], applied[len(applied)-1], len(applied))

	for _, n := range nodes {
		logs := n.logs.String()
		require.Contains(t, logs, "subsystem=cluster")
		require.Contains(t, logs, "key_id="+keyID(newKey))
		require.NotContains(t, logs, "level=WARN", "the documented steps never warn")
		requireNoKeysIn(t, logs, oldKey, newKey)
	}

	// The old key no longer opens the cluster; the new one does.
	stranger := testConfig(nextIP(), a.GossipAddr())
	stranger.GossipKeys = loadKeys(t, base64.StdEncoding.EncodeToString(oldKey))
	stranger.JoinTimeout = 500 * time.Millisecond
	require.ErrorContains(t, startNode(t, stranger).Join(context.Background()), "none could be joined")
	require.Len(t, a.Nodes(), 3, "the node with the old key is no member")
	newcomer := testConfig(nextIP(), a.GossipAddr())
	newcomer.GossipKeys = loadKeys(t, base64.StdEncoding.EncodeToString(newKey))
	joinNode(t, newcomer)
	require.Eventually(t, func() bool { return len(activeIDs(a.Cluster)) == 4 }, eventually, tick)
}

// TestGossipKeyFileRejectedKeepsKeyring: a key file that does not parse,
// or disappears, is logged and ignored; the node keeps its keyring and
// its membership, and applies the next good file.
func TestGossipKeyFileRejectedKeepsKeyring(t *testing.T) {
	key, nextKey := newGossipKey(t), newGossipKey(t)
	a := startKeyNode(t, [][]byte{key})
	b := startKeyNode(t, [][]byte{key}, a.GossipAddr())
	nodes := []*keyNode{a, b}
	waitActive(t, []*Cluster{a.Cluster, b.Cluster}, a.LocalID(), b.LocalID())
	violation := watchMembership(t, nodes)
	b64 := base64.StdEncoding.EncodeToString

	for i, tc := range []struct {
		name, content, logged string
	}{
		{"not base64", b64(nextKey) + "\nnot-a-key!\n", "line 2 is not base64"},
		{"wrong length", b64(nextKey[:20]) + "\n", "line 1 decodes to 20 bytes"},
		{"no key", "# emptied by mistake\n", "holds no key"},
		{"repeated key", b64(nextKey) + "\n" + b64(key) + "\n" + b64(nextKey) + "\n", "line 3 repeats the key of line 1"},
		{"file removed", "", "no such file or directory"},
	} {
		if tc.name == "file removed" {
			require.NoError(t, os.Remove(a.file))
		} else {
			writeFileAtomically(t, a.file, tc.content)
		}
		require.Eventually(t, func() bool { return strings.Contains(a.logs.String(), tc.logged) }, eventually, tick, tc.name)
		require.Contains(t, a.logs.Line(tc.logged), "level=WARN", tc.name)
		require.Contains(t, a.logs.Line(tc.logged), "keeping the previous value", tc.name)
		require.Contains(t, a.logs.Line(tc.logged), "subsystem=cluster", tc.name)
		require.Equal(t, wantIDs(key), a.keyIDs(t), "%s: the keyring stays", tc.name)
		requireGossipFlows(t, nodes, fmt.Sprintf("bad-%d", i))
	}
	require.Empty(t, violation())
	requireNoKeysIn(t, a.logs.String(), key, nextKey)

	// The next good file is applied.
	written := time.Now()
	writeKeyFile(t, a.file, key, nextKey)
	a.waitKeys(t, written, key, nextKey)
	requireGossipFlows(t, nodes, "good")
	require.Empty(t, violation())
}

// TestGossipKeySkippedStepIsWarnedAndCutsTheNodeOff: making a key the
// primary on one node before the others accept it cuts that node off, as
// the warning says; restoring the file lets it back in.
func TestGossipKeySkippedStepIsWarnedAndCutsTheNodeOff(t *testing.T) {
	oldKey, newKey := newGossipKey(t), newGossipKey(t)
	a := startKeyNode(t, [][]byte{oldKey})
	b := startKeyNode(t, [][]byte{oldKey}, a.GossipAddr())
	waitActive(t, []*Cluster{a.Cluster, b.Cluster}, a.LocalID(), b.LocalID())

	writeKeyFile(t, b.file, newKey) // add, switch and remove at once
	b.waitKeys(t, time.Now(), newKey)
	for _, warning := range []string{
		"the new primary gossip key was not accepted before this change",
		"the previous primary gossip key is refused in the same change that retired it",
	} {
		require.Contains(t, b.logs.Line(warning), "level=WARN")
	}
	require.Eventually(t, func() bool { return status(a.Cluster, b.LocalID()) == adminapi.StatusDead }, eventually, tick,
		"a can no longer read b: %s", describe([]*Cluster{a.Cluster, b.Cluster}))

	writeKeyFile(t, b.file, oldKey)
	b.waitKeys(t, time.Now(), oldKey)
	waitActive(t, []*Cluster{a.Cluster, b.Cluster}, a.LocalID(), b.LocalID())
}

// requireNoKeysIn fails if text shows any of keys in base64.
func requireNoKeysIn(t testing.TB, text string, keys ...[]byte) {
	t.Helper()
	for _, k := range keys {
		require.NotContains(t, text, strings.TrimRight(base64.StdEncoding.EncodeToString(k), "="))
	}
}
