package gossipkey

import (
	"encoding/base64"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/stretchr/testify/require"
)

func b64Key(fill byte, n int) string {
	return base64.StdEncoding.EncodeToString([]byte(strings.Repeat(string(rune(fill)), n)))
}

// startNode starts a memberlist node on a random loopback port with the
// given gossip.secret_key value ("" for none).
func startNode(t *testing.T, name, secretKey string) *memberlist.Memberlist {
	t.Helper()
	mc := memberlist.DefaultLocalConfig()
	mc.Name = name
	mc.BindAddr = "127.0.0.1"
	mc.BindPort = 0
	mc.Logger = log.New(io.Discard, "", 0)
	mc.TCPTimeout = 2 * time.Second
	encrypted, err := Apply(mc, secretKey)
	require.NoError(t, err)
	require.Equal(t, secretKey != "", encrypted)
	m, err := memberlist.Create(mc)
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Shutdown() })
	return m
}

func addr(m *memberlist.Memberlist) string {
	n := m.LocalNode()
	return fmt.Sprintf("%s:%d", n.Addr, n.Port)
}

func TestGossipEncryption(t *testing.T) {
	keyA, keyB := b64Key('a', 32), b64Key('b', 32)
	keyFile := filepath.Join(t.TempDir(), "gossip.key")
	require.NoError(t, os.WriteFile(keyFile, []byte(keyA+"\n"), 0o600))

	tests := []struct {
		name         string
		seed, joiner string
		canJoin      bool
	}{
		{"same key", keyA, keyA, true},
		{"same key, one read from a file", keyA, keyFile, true},
		{"same AES-128 key", b64Key('c', 16), b64Key('c', 16), true},
		{"different keys", keyA, keyB, false},
		{"joiner without key", keyA, "", false},
		{"joiner with key, cluster without", "", keyA, false},
		{"no encryption anywhere", "", "", true},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			seed := startNode(t, fmt.Sprintf("seed-%d", i), tc.seed)
			joiner := startNode(t, fmt.Sprintf("joiner-%d", i), tc.joiner)
			n, err := joiner.Join([]string{addr(seed)})
			if tc.canJoin {
				require.NoError(t, err)
				require.Equal(t, 1, n)
				require.Eventually(t, func() bool { return seed.NumMembers() == 2 && joiner.NumMembers() == 2 }, 10*time.Second, 10*time.Millisecond)
				return
			}
			require.Error(t, err, "a node with the wrong key joined")
			require.Zero(t, n)
			require.Equal(t, 1, seed.NumMembers(), "the cluster admitted a stranger")
			require.Equal(t, 1, joiner.NumMembers())
		})
	}
}

func TestApplyRejectsBadKeys(t *testing.T) {
	mc := memberlist.DefaultLocalConfig()
	_, err := Apply(mc, b64Key('x', 20))
	require.ErrorContains(t, err, "gossip.secret_key (--gossip.secret-key): the value decodes to 20 bytes")
	require.Nil(t, mc.SecretKey, "a bad key leaves the config untouched")
}
