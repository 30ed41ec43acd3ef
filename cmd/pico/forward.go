package main

import (
	"context"
	"fmt"
	"io"
	"os/signal"
	"syscall"

	"github.com/pico-proxy/pico/internal/config"
	"github.com/pico-proxy/pico/internal/forward"
)

const forwardUsage = `Usage: pico forward tcp LOCAL_ADDR ENDPOINT [flags]

Listens on LOCAL_ADDR (a port such as 6000, meaning localhost:6000, or
host:port) and carries every accepted TCP connection to the tcp endpoint
ENDPOINT through a Pico server's proxy port (--connect.url), as a WebSocket
to /_pico/v1/tcp/ENDPOINT.

SIGTERM or SIGINT closes the listener, lets open connections finish
(--grace-period) and exits 0.

Flags:
`

// runForward runs `pico forward`.
func runForward(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return forwardCommand(ctx, args, stdout, stderr, nil)
}

// forwardCommand is `pico forward` until ctx is cancelled; listening, if
// not nil, receives the forwarder once it listens.
func forwardCommand(ctx context.Context, args []string, stdout, stderr io.Writer, listening chan<- *forward.Forwarder) int {
	cmd := newConfigCommand("forward", forwardUsage, config.DefaultForward, stdout, stderr)
	cfg, fs, code, ok := cmd.load(args)
	if !ok {
		return code
	}
	if fs.NArg() != 3 {
		return cmd.usageError(fmt.Sprintf("expected tcp LOCAL_ADDR ENDPOINT, got %d arguments", fs.NArg()))
	}
	if fs.Arg(0) != "tcp" {
		return cmd.usageError(fmt.Sprintf("unknown protocol %q: only tcp can be forwarded", fs.Arg(0)))
	}
	logger := newLogger(cfg.Log, stderr)
	f, err := forward.Listen(*cfg, fs.Arg(1), fs.Arg(2), logger)
	if err != nil {
		return cmd.fail(err)
	}
	if listening != nil {
		listening <- f
	}
	if err := f.Serve(ctx); err != nil {
		return cmd.fail(err)
	}
	return 0
}
