// Package servertest runs real Pico servers in tests of other packages: members of a
// memberlist cluster on loopback ports the kernel chooses.
package servertest

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pico-proxy/pico/internal/config"
	"github.com/pico-proxy/pico/internal/server"
)

// StartMember runs a server on loopback ports as a member of a memberlist cluster (the
// real membership `pico server` uses), with no drain grace and no wait for a missing
// upstream; edits change its configuration first (e.g. cluster.join to join another
// member). It shuts down when the test ends.
func StartMember(t testing.TB, edits ...func(*config.Server)) *server.Server {
	t.Helper()
	cfg := config.DefaultServer()
	cfg.Proxy.BindAddr, cfg.Upstream.BindAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Admin.BindAddr, cfg.Gossip.BindAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Cluster.JoinTimeout, cfg.Cluster.RejoinInterval = 20*time.Second, 0
	cfg.Server.DrainDelay, cfg.Proxy.UpstreamWait = 0, 0
	for _, edit := range edits {
		edit(cfg)
	}
	require.NoError(t, cfg.Validate())
	logger := slog.New(slog.DiscardHandler)
	srv, err := server.New(cfg, logger, server.WithMembership(server.ClusterMembership(cfg, logger)))
	require.NoError(t, err)
	require.NoError(t, srv.Start(context.Background()))
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	return srv
}
