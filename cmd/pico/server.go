package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/pflag"

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
	return serverCommand(ctx, args, stderr, func(server.Addrs) {})
}

// serverCommand runs the server until ctx ends (the signal), then drains
// it and returns the exit code. started is called once the node is ready.
func serverCommand(ctx context.Context, args []string, stderr io.Writer, started func(server.Addrs)) int {
	cfg, fs, err := config.Load("server", args, config.DefaultServer, stderr)
	switch {
	case errors.Is(err, pflag.ErrHelp):
		return 0
	case err != nil:
		var usage *config.UsageError
		if errors.As(err, &usage) {
			fmt.Fprintf(stderr, "pico server: %v\n\n", err)
			printServerUsage(stderr)
			return 2
		}
		fmt.Fprintf(stderr, "pico server: %s\n", serverErrLine(err))
		return 1
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "pico server: unexpected argument %q\n\n", fs.Arg(0))
		printServerUsage(stderr)
		return 2
	}
	// Log lines (one per proxied request at info) go out in batches,
	// written by one goroutine, instead of one system call each.
	logOut := coalesce.NewWriter(stderr)
	defer logOut.Close()
	logger := logging.New(logOut, cfg.Log.SlogLevel(), cfg.Log.Subsystems)
	fail := func(err error) int {
		_ = logOut.Close() // what was logged comes first
		fmt.Fprintf(stderr, "pico server: %s\n", serverErrLine(err))
		return 1
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

func printServerUsage(w io.Writer) {
	fs := pflag.NewFlagSet("server", pflag.ContinueOnError)
	fs.SortFlags = false
	config.DefaultServer().RegisterFlags(fs)
	(&config.FileFlags{}).RegisterFlags(fs)
	fmt.Fprint(w, serverUsage)
	fmt.Fprint(w, fs.FlagUsages())
}

// serverErrLine joins a multi-line error (errors.Join) into one line.
func serverErrLine(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}
