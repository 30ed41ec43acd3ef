package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
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
var bootstrapResolvConfPath = "/etc/resolv.conf"

// bootstrapOptions are the settled inputs of one bootstrap run.
type bootstrapOptions struct {
	service, namespace, clusterDomain, podName string
	domainSource, podSource                    string // where the defaults came from, for the log
	base                                       []byte
	basePath, output                           string
	timeout                                    time.Duration
	dnsServer                                  string
}

// runBootstrap runs `pico bootstrap`.
func runBootstrap(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("bootstrap", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SortFlags = false
	service := fs.String("service", "", "headless service NAME (required)")
	namespace := fs.String("namespace", "", "namespace NS (default $POD_NAMESPACE)")
	clusterDomain := fs.String("cluster-domain", "", "cluster DNS domain (default from the search line of /etc/resolv.conf, else cluster.local)")
	podName := fs.String("pod-name", "", "this pod's name (default $POD_NAME, else the hostname)")
	basePath := fs.String("base", "", "base server YAML FILE; all its keys are kept")
	output := fs.String("output", "", "server YAML FILE to write (required)")
	timeout := fs.Duration("timeout", 5*time.Minute, "how long to wait for this pod to be published in DNS")
	// Hidden: lets tests send the queries to a test DNS server without
	// changing /etc/resolv.conf.
	dnsServer := fs.String("dns-server", "", "for tests only: send DNS queries to this host:port instead of the system resolver")
	_ = fs.MarkHidden("dns-server")
	cl := &commandLine{name: "bootstrap", usageText: bootstrapUsage, fs: fs, stdout: stdout, stderr: stderr}
	usageError := cl.usageError

	if code, ok := cl.parse(args); !ok {
		return code
	}
	switch {
	case fs.NArg() > 0:
		return usageError(fmt.Sprintf("unexpected argument %q", fs.Arg(0)))
	case *service == "":
		return usageError("--service is required")
	case *output == "":
		return usageError("--output is required")
	}

	opts, err := settleBootstrapOptions(bootstrapOptions{
		service:       *service,
		namespace:     *namespace,
		clusterDomain: *clusterDomain,
		podName:       *podName,
		basePath:      *basePath,
		output:        *output,
		timeout:       *timeout,
		dnsServer:     *dnsServer,
	})
	if err != nil {
		fmt.Fprintf(stderr, "pico bootstrap: %v\n", err)
		return 1
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	if err := discoverAndWrite(ctx, opts, logger); err != nil {
		fmt.Fprintf(stderr, "pico bootstrap: %v\n", err)
		return 1
	}
	return 0
}

// settleBootstrapOptions fills in the defaults of o and checks everything
// that can be checked before asking DNS, so that bad input fails at once
// rather than after the timeout.
func settleBootstrapOptions(o bootstrapOptions) (bootstrapOptions, error) {
	if err := peerfinder.ValidateLabel(o.service); err != nil {
		return o, fmt.Errorf("--service: %w", err)
	}

	if o.namespace == "" {
		o.namespace = os.Getenv("POD_NAMESPACE")
		if o.namespace == "" {
			return o, errors.New("namespace unknown: set --namespace or the POD_NAMESPACE environment variable")
		}
		if err := peerfinder.ValidateLabel(o.namespace); err != nil {
			return o, fmt.Errorf("POD_NAMESPACE: %w", err)
		}
	} else if err := peerfinder.ValidateLabel(o.namespace); err != nil {
		return o, fmt.Errorf("--namespace: %w", err)
	}

	o.podSource = "--pod-name"
	if o.podName == "" {
		o.podName, o.podSource = os.Getenv("POD_NAME"), "POD_NAME"
	}
	if o.podName == "" {
		host, err := os.Hostname()
		if err != nil {
			return o, fmt.Errorf("pod name unknown: set --pod-name or POD_NAME (hostname: %w)", err)
		}
		o.podName, _, _ = strings.Cut(host, ".")
		o.podSource = "hostname"
	}
	if err := peerfinder.ValidateLabel(o.podName); err != nil {
		return o, fmt.Errorf("pod name from %s: %w", o.podSource, err)
	}

	o.domainSource = "--cluster-domain"
	if o.clusterDomain == "" {
		o.clusterDomain, o.domainSource = bootstrapClusterDomain(o.namespace)
	}
	o.clusterDomain = strings.ToLower(strings.TrimSuffix(o.clusterDomain, "."))
	if err := peerfinder.ValidateName(o.clusterDomain); err != nil {
		return o, fmt.Errorf("--cluster-domain: %w", err)
	}

	if o.timeout <= 0 {
		return o, fmt.Errorf("--timeout must be positive, got %s", o.timeout)
	}

	if o.basePath != "" {
		var err error
		if o.base, err = os.ReadFile(o.basePath); err != nil {
			return o, fmt.Errorf("--base: %w", err)
		}
	}
	// Render once without peers: a bad base file fails now.
	if _, err := initcontainer.Render(o.base, initcontainer.Params{
		PodName:     o.podName,
		ServiceFQDN: peerfinder.ServiceFQDN(o.service, o.namespace, o.clusterDomain),
	}); err != nil {
		if o.basePath != "" {
			return o, fmt.Errorf("--base %s: %w", o.basePath, err)
		}
		return o, err
	}

	dir := filepath.Dir(o.output)
	if info, err := os.Stat(dir); err != nil {
		return o, fmt.Errorf("--output: directory %s: %w", dir, errors.Unwrap(err))
	} else if !info.IsDir() {
		return o, fmt.Errorf("--output: %s is not a directory", dir)
	}
	return o, nil
}

// bootstrapClusterDomain returns the cluster domain named by the
// search line of bootstrapResolvConfPath, or the default, and where it came from.
func bootstrapClusterDomain(namespace string) (domain, source string) {
	content, err := os.ReadFile(bootstrapResolvConfPath)
	if err == nil {
		if domain, ok := peerfinder.ClusterDomainFromResolvConf(content, namespace); ok {
			return domain, bootstrapResolvConfPath
		}
	}
	return peerfinder.DefaultClusterDomain, "default"
}

// discoverAndWrite waits until this pod is published and writes the config file.
func discoverAndWrite(ctx context.Context, o bootstrapOptions, logger *slog.Logger) error {
	start := time.Now()
	log := logger.With("subsystem", "bootstrap")
	serviceFQDN := peerfinder.ServiceFQDN(o.service, o.namespace, o.clusterDomain)
	selfFQDN := peerfinder.PodFQDN(o.podName, serviceFQDN)
	log.Info("waiting for this pod to be published in DNS",
		"service", serviceFQDN, "pod", selfFQDN, "pod_name_from", o.podSource,
		"cluster_domain_from", o.domainSource, "timeout", o.timeout)

	cfg := peerfinder.Config{
		Service:  serviceFQDN,
		Self:     selfFQDN,
		Logger:   logger,
		OnChange: func(s peerfinder.Snapshot) { log.Info("DNS answer", "seen", s.String()) },
	}
	if o.dnsServer != "" {
		cfg.Resolver = peerfinder.ResolverAt(o.dnsServer)
	}
	finder, err := peerfinder.New(cfg)
	if err != nil {
		return err
	}
	waitCtx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	snap, err := finder.WaitPublished(waitCtx)
	if err != nil {
		return err
	}

	params := initcontainer.Params{PodName: o.podName, ServiceFQDN: serviceFQDN}
	unnamed := 0
	for _, p := range snap.Others() {
		if p.Name == "" {
			unnamed++
			continue
		}
		params.Peers = append(params.Peers, p.Name)
	}
	if unnamed > 0 {
		// Pod addresses change when pods move; the service name does not.
		log.Info("peers known only by address are joined through the service name", "peers", unnamed)
	}
	rendered, err := initcontainer.Render(o.base, params)
	if err != nil {
		return err
	}
	if err := initcontainer.WriteFileAtomic(o.output, rendered, 0o644); err != nil {
		return fmt.Errorf("--output: %w", err)
	}
	log.Info("wrote server config", "output", o.output,
		"node_id_prefix", params.NodeIDPrefix(), "join", strings.Join(params.Join(), ","),
		"took", time.Since(start).Round(time.Millisecond))
	return nil
}
