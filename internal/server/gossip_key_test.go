package server

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestGossipKeyFileWithSeveralKeys: `pico server` hands a gossip.secret_key
// file to the cluster, which accepts every key in it and encrypts with the
// first. Two nodes whose files list the same two keys in opposite orders
// (the middle of a rotation) read each other's gossip, which needs both
// keys on both nodes; the admin API shows the keyring by key ID.
func TestGossipKeyFileWithSeveralKeys(t *testing.T) {
	k1 := []byte("0123456789abcdef0123456789abcdef")
	k2 := []byte("fedcba9876543210fedcba9876543210")
	b64 := base64.StdEncoding.EncodeToString
	dir := t.TempDir()
	fileA, fileB := filepath.Join(dir, "a.key"), filepath.Join(dir, "b.key")
	require.NoError(t, os.WriteFile(fileA, []byte(b64(k1)+"\n"+b64(k2)+"\n"), 0o600))
	require.NoError(t, os.WriteFile(fileB, []byte("# rotation step 2 done here\n"+b64(k2)+"\n"+b64(k1)+"  # old\n"), 0o600))

	a, _ := joinedPair(t, fileA, fileB, "each node holds the other's primary key")

	resp, err := http.Get("http://" + a.Addrs().Admin + "/metrics")
	require.NoError(t, err)
	metrics := readAll(t, resp.Body)
	_ = resp.Body.Close()
	require.Contains(t, metrics, fmt.Sprintf("pico_cluster_gossip_keys{key_id=%q,primary=\"true\"} 1", gossipKeyID(k1)))
	require.Contains(t, metrics, fmt.Sprintf("pico_cluster_gossip_keys{key_id=%q,primary=\"false\"} 1", gossipKeyID(k2)))
	require.NotContains(t, metrics, b64(k1)[:20])
}

// gossipKeyID is how the cluster names a key in logs and metrics: the
// first 8 hex digits of its SHA-256.
func gossipKeyID(key []byte) string {
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:4])
}
