package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/pico-proxy/pico/initcontainer"
	"github.com/pico-proxy/pico/peerfinder"
)

const bootstrapUsage = `Usage: pico bootstrap --service NAME --output FILE [flags]

The init container of a Pico StatefulSet. Looks up the pods of the headless
service NAME.NS.svc.DOMAIN (SRV records, A records as fallback), waits until
this pod's own name POD.NAME.NS.svc.DOMAIN is published, then writes FILE
atomically: the --base YAML (if any) with cluster.node_id_prefix "POD-" and
cluster.join set to the other pods' names plus the service name. The first
pod of a new cluster sees only itself and joins just the service name.
Exits 0 after writing, 1 when this pod is not published within --timeout.

Flags:
`

// bootstrapResolvConfPath is where the cluster domain is read from when
// --cluster-domain is not given; tests point it elsewhere.
var bootstrapResolvConfPath = initcontainer.DefaultResolvConf

// runBootstrap runs `pico bootstrap`: its flags become
// initcontainer.Options.
func runBootstrap(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("bootstrap", pflag.ContinueOnError)
	cl := newFlagCommand("bootstrap", bootstrapUsage, fs, stdout, stderr)
	var o initcontainer.Options
	fs.StringVar(&o.Service, "service", "", "headless service NAME (required)")
	fs.StringVar(&o.Namespace, "namespace", "", "namespace NS (default $POD_NAMESPACE)")
	fs.StringVar(&o.ClusterDomain, "cluster-domain", "", "cluster DNS domain (default from the search line of /etc/resolv.conf, else cluster.local)")
	fs.StringVar(&o.PodName, "pod-name", "", "this pod's name (default $POD_NAME, else the hostname)")
	fs.StringVar(&o.BasePath, "base", "", "base server YAML FILE; all its keys are kept")
	fs.StringVar(&o.Output, "output", "", "server YAML FILE to write (required)")
	fs.DurationVar(&o.Timeout, "timeout", 5*time.Minute, "how long to wait for this pod to be published in DNS")
	// Hidden: lets tests send the queries to a test DNS server without
	// changing /etc/resolv.conf.
	dnsServer := fs.String("dns-server", "", "for tests only: send DNS queries to this host:port instead of the system resolver")
	_ = fs.MarkHidden("dns-server")

	if code, ok := cl.parse(fs, args); !ok {
		return code
	}
	switch {
	case fs.NArg() > 0:
		return cl.usageError(fmt.Sprintf("unexpected argument %q", fs.Arg(0)))
	case o.Service == "":
		return cl.usageError("--service is required")
	case o.Output == "":
		return cl.usageError("--output is required")
	}
	if *dnsServer != "" {
		o.Resolver = peerfinder.ResolverAt(*dnsServer)
	}
	o.ResolvConf = bootstrapResolvConfPath

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	if err := initcontainer.Bootstrap(ctx, o, logger); err != nil {
		return cl.fail(err)
	}
	return 0
}
