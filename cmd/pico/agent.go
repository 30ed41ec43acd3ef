package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/signal"
	"syscall"

	"github.com/pico-proxy/pico/internal/agent"
	"github.com/pico-proxy/pico/internal/config"
	"github.com/pico-proxy/pico/internal/logging"
	"github.com/pico-proxy/pico/internal/protocol"
)

const agentUsage = `Usage:
  pico agent http|tcp ENDPOINT ADDR [flags]
  pico agent --config.path FILE [flags]

Registers ENDPOINT with a Pico server (its upstream port, --connect.url) and
forwards the endpoint's traffic to the local service at ADDR: a port (3000,
meaning localhost:3000), host:port, or a URL (http://localhost:3000/prefix,
https://...). An http endpoint reverse-proxies each request; a tcp endpoint
pipes each connection to a new TCP connection to ADDR. The agent reconnects
whenever its connection ends (backoff 100 ms to 15 s).

Several endpoints come from a YAML file (--config.path):
  connect:
    url: http://pico.example.com:8001
  endpoints:
    - {id: my-endpoint, protocol: http, addr: "3000"}
    - {id: my-db, protocol: tcp, addr: "localhost:5432"}

SIGTERM or SIGINT stops new requests, lets in-flight ones finish
(--grace-period) and exits 0.

Flags:
`

// runAgent runs `pico agent`.
func runAgent(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return agentCommand(ctx, args, stdout, stderr)
}

// agentCommand is `pico agent` until ctx is cancelled.
func agentCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := newConfigCommand("agent", agentUsage, config.DefaultAgent, stdout, stderr)
	cfg, fs, code, ok := cmd.load(args)
	if !ok {
		return code
	}
	switch fs.NArg() {
	case 0:
		if len(cfg.Endpoints) == 0 {
			if !fs.Changed("config.path") {
				return cmd.usageError("missing arguments: give http|tcp ENDPOINT ADDR, or --config.path FILE")
			}
			return cmd.fail(errors.New("the configuration file lists no endpoints; add endpoints: [{id, protocol, addr}]"))
		}
	case 3:
		ep := config.AgentEndpoint{Protocol: fs.Arg(0), ID: fs.Arg(1), Addr: fs.Arg(2)}
		if ep.Protocol != config.ProtocolHTTP && ep.Protocol != config.ProtocolTCP {
			return cmd.usageError(fmt.Sprintf("unknown protocol %q: use http or tcp", ep.Protocol))
		}
		if err := protocol.ValidateEndpointID(ep.ID); err != nil {
			return cmd.fail(fmt.Errorf("ENDPOINT: %w", err))
		}
		if _, err := ep.Target(); err != nil {
			return cmd.fail(fmt.Errorf("ADDR: %w", err))
		}
		cfg.Endpoints = append(cfg.Endpoints, ep)
		if err := cfg.Validate(); err != nil {
			return cmd.fail(err)
		}
	default:
		return cmd.usageError(fmt.Sprintf("expected http|tcp ENDPOINT ADDR, got %d arguments", fs.NArg()))
	}

	logger := newLogger(cfg.Log, stderr)
	a, err := agent.New(*cfg, logger)
	if err != nil {
		return cmd.fail(err)
	}
	if err := a.Run(ctx); err != nil {
		return cmd.fail(err)
	}
	return 0
}

// newLogger builds the JSON logger of a client subcommand from its
// validated log section.
func newLogger(cfg config.Log, w io.Writer) *slog.Logger {
	return logging.New(w, cfg.SlogLevel(), cfg.Subsystems)
}
