package main

import (
	"context"
	"errors"
	"io"
	"os/signal"
	"syscall"

	"github.com/pico-proxy/pico/internal/adminclient"
	"github.com/pico-proxy/pico/internal/config"
	"github.com/pico-proxy/pico/internal/tlsconfig"
)

const statusUsage = `Usage:
  pico status cluster nodes [ID] [flags]    members of the cluster (or one member)
  pico status upstream endpoints [flags]    the server's endpoints and upstream counts

Queries a Pico server's admin API (--server.url) and prints the answer as
a table, or as JSON with --output json. For an admin API with TLS use an
https:// URL (--connect.tls.ca for a private CA); with admin.auth, pass a
token (--connect.token-file, or --connect.token).

Flags:
`

// runStatus runs `pico status`.
func runStatus(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	cmd := newConfigCommand("status", statusUsage, config.DefaultStatus, stdout, stderr)
	cfg, fs, code, ok := cmd.load(args)
	if !ok {
		return code
	}
	hc, err := tlsconfig.HTTPClient(cfg.Connect.TLS, "connect.tls", cfg.Server.Timeout, nil)
	if err != nil {
		return cmd.fail(err)
	}
	token, err := cfg.Connect.BearerToken("connect")
	if err != nil {
		return cmd.fail(err)
	}
	client := adminclient.New(cfg.Server.URL, cfg.Server.Timeout, adminclient.WithHTTPClient(hc), adminclient.WithToken(token))
	err = client.Query(ctx, fs.Args(), cfg.Output, stdout)
	switch {
	case errors.Is(err, adminclient.ErrUnknownQuery):
		return cmd.usageError(err.Error())
	case err != nil:
		return cmd.fail(err)
	}
	return 0
}
