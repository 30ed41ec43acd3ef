package main

import (
	"context"
	"fmt"
	"io"
	"os/signal"
	"syscall"

	"github.com/pico-proxy/pico/internal/coalesce"
	"github.com/pico-proxy/pico/internal/config"
	"github.com/pico-proxy/pico/internal/logging"
	"github.com/pico-proxy/pico/internal/server"
)

const serverUsage = `Usage: pico server [flags]

Runs a Pico server node: the proxy port (HTTP from proxy clients), the
upstream port (agents' WebSocket connections), the admin port (health,
readiness, metrics, status) and the gossip port (cluster membership).
SIGTERM or SIGINT drains the node gracefully and exits 0.

Flags (every YAML key a.b_c has the flag --a.b-c):
`

// runServer runs `pico server` until SIGTERM or SIGINT.
func runServer(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return serverCommand(ctx, args, stdout, stderr, func(server.Addrs) {})
}

// serverCommand runs the server until ctx ends (the signal), then drains
// it and returns the exit code. started is called once the node is ready.
func serverCommand(ctx context.Context, args []string, stdout, stderr io.Writer, started func(server.Addrs)) int {
	cmd := newConfigCommand("server", serverUsage, config.DefaultServer, stdout, stderr)
	cfg, fs, code, ok := cmd.load(args)
	if !ok {
		return code
	}
	if fs.NArg() > 0 {
		return cmd.usageError(fmt.Sprintf("unexpected argument %q", fs.Arg(0)))
	}
	// Log lines (one per proxied request at info) go out in batches,
	// written by one goroutine, instead of one system call each.
	logOut := coalesce.NewWriter(stderr)
	defer logOut.Close()
	logger := logging.New(logOut, cfg.Log.SlogLevel(), cfg.Log.Subsystems)
	fail := func(err error) int {
		_ = logOut.Close() // what was logged comes first
		return cmd.fail(err)
	}

	srv, err := server.New(cfg, logger, server.WithMembership(server.ClusterMembership(cfg, logger)))
	if err != nil {
		return fail(err)
	}
	if err := srv.Start(ctx); err != nil {
		if ctx.Err() != nil {
			// Signalled while starting (e.g. during the join).
			_ = srv.Shutdown(context.Background())
			return 0
		}
		return fail(err)
	}
	started(srv.Addrs())
	<-ctx.Done()
	logger.Info("signal received: draining", "subsystem", "server")
	// Errors are logged by Shutdown; a drain cut short by the timeout is
	// still the requested exit.
	_ = srv.Shutdown(context.Background())
	return 0
}
