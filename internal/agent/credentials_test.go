package agent

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestTokenFileIsReadForEveryConnection(t *testing.T) {
	server := newUpstreamServer(t)
	tokenFile := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte("first-token\n"), 0o600))
	cfg := agentConfig(server.url(), Endpoint{ID: "web", Protocol: "http", Addr: echoService(t).URL})
	cfg.Connect.TokenFile = tokenFile
	a := startAgent(t, cfg)
	waitRegistered(t, a)
	require.Equal(t, "Bearer first-token", server.authFor("web"))

	// The token is renewed in place; the server then ends the connection
	// (as it does when the old token expires): the agent reconnects with
	// the new token.
	require.NoError(t, os.WriteFile(tokenFile, []byte("second-token\n"), 0o600))
	require.NoError(t, server.session("web", 1).Close())
	server.session("web", 2)
	require.Equal(t, "Bearer second-token", server.authFor("web"))
	require.Zero(t, a.logs.Count("-token"), "tokens are never logged")
}

func TestMissingTokenFileIsAConfigurationError(t *testing.T) {
	cfg := agentConfig("http://127.0.0.1:1", Endpoint{ID: "web", Protocol: "http", Addr: "3000"})
	cfg.Connect.TokenFile = filepath.Join(t.TempDir(), "missing")
	_, err := New(cfg, slog.New(slog.DiscardHandler))
	require.ErrorContains(t, err, "connect.token_file (--connect.token-file)")
}
