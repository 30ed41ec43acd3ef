package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/pico-proxy/pico/internal/config"
	"github.com/pico-proxy/pico/internal/logging"
	"github.com/pico-proxy/pico/internal/selftest"
)

const selftestUsage = `Usage: pico selftest --expect-members N --admin-url URL... --proxy-url URL --upstream-url URL [flags]

Checks a running cluster from the outside (the Helm chart's "helm test" pod runs it):
every --admin-url (one per member) must report exactly N active members, the same
ones everywhere; then a test upstream on 127.0.0.1 registers an endpoint (--endpoint,
else a random one) through --upstream-url and requests sent to --proxy-url with
x-pico-endpoint must reach it. Exits 0 when both pass, 1 with the reason when they do not within --timeout.

Each port takes the credentials of the client commands under its own prefix:
for a port with TLS use https:// URLs (--admin.tls.ca, --proxy.tls.ca,
--upstream.tls.ca for a private CA; --*.tls.server-name when the certificate
does not name the URL's host), and for a port requiring tokens pass one
(--admin.token-file for admin.auth, --proxy.token-file for proxy.auth,
--upstream.token-file for auth). A token whose pico.endpoints claim is required
must list the test endpoint: fix its name with --endpoint. A refused
certificate or token fails at once.

Flags:
`

// runSelftest runs `pico selftest`.
func runSelftest(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("selftest", pflag.ContinueOnError)
	cl := newFlagCommand("selftest", selftestUsage, fs, stdout, stderr)
	var cfg selftest.Config
	fs.StringArrayVar(&cfg.AdminURLs, "admin-url", nil, "admin API URL of a member, e.g. http://pico-0.pico-headless.default.svc:8002 (repeat for every member)")
	cfg.Admin.RegisterFlags(fs, "admin")
	fs.IntVar(&cfg.ExpectMembers, "expect-members", 0, "number of active members every member must report (required)")
	fs.StringVar(&cfg.ProxyURL, "proxy-url", "", "proxy port URL, e.g. http://pico.default.svc:8000 (required)")
	cfg.Proxy.RegisterFlags(fs, "proxy")
	fs.StringVar(&cfg.UpstreamURL, "upstream-url", "", "upstream port URL, e.g. http://pico.default.svc:8001 (required)")
	cfg.Upstream.RegisterFlags(fs, "upstream")
	fs.StringVar(&cfg.Endpoint, "endpoint", "", "endpoint ID the test upstream registers (default: a random selftest-<hex>); tokens must list it in pico.endpoints when that claim is required")
	fs.IntVar(&cfg.Requests, "requests", 10, "consecutive requests through the proxy that must succeed")
	timeout := fs.Duration("timeout", 2*time.Minute, "bound on the whole check")
	logLevel := fs.String("log.level", "warn", "level of the test agent's logs (debug, info, warn, error)")
	usageError := cl.usageError
	if code, ok := cl.parse(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(fmt.Sprintf("unexpected argument %q", fs.Arg(0)))
	}
	for _, required := range []string{"expect-members", "admin-url", "proxy-url", "upstream-url"} {
		if !fs.Changed(required) {
			return usageError("--" + required + " is required")
		}
	}
	if *timeout <= 0 {
		return usageError(fmt.Sprintf("--timeout %s: it must be positive", *timeout))
	}
	level, err := config.ParseLevel(*logLevel)
	if err != nil {
		return usageError(fmt.Sprintf("--log.level: %v", err))
	}
	if err := cfg.Validate(); err != nil {
		return cl.fail(err)
	}
	cfg.Logger = logging.New(stderr, level, nil)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if err := selftest.Run(ctx, cfg, stdout); err != nil {
		fmt.Fprintf(stderr, "pico selftest: FAIL: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, "pico selftest: PASS")
	return 0
}
