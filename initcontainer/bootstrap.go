package initcontainer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pico-proxy/pico/peerfinder"
)

// DefaultResolvConf is where the cluster domain is read from when
// Options.ClusterDomain is empty.
const DefaultResolvConf = "/etc/resolv.conf"

// Options are the inputs of one bootstrap, as `pico bootstrap` takes them
// from its flags (errors name those flags). Empty fields take the defaults
// given on each.
type Options struct {
	// Service is the headless service's name (required).
	Service string
	// Namespace is the pod's namespace; default $POD_NAMESPACE.
	Namespace string
	// ClusterDomain is the cluster's DNS domain; default the one the
	// search line of ResolvConf names, else peerfinder.DefaultClusterDomain.
	ClusterDomain string
	// PodName is this pod's name; default $POD_NAME, else the hostname's
	// first label.
	PodName string
	// BasePath is an optional base server YAML file: every key is kept.
	BasePath string
	// Output is the server YAML file to write (required).
	Output string
	// Timeout bounds the wait for this pod to be published in DNS (> 0).
	Timeout time.Duration
	// Resolver answers the DNS questions; nil means the system resolver.
	Resolver peerfinder.Resolver
	// ResolvConf is the resolv.conf read for the cluster domain; empty
	// means DefaultResolvConf.
	ResolvConf string
}

// plan is a bootstrap whose inputs are settled: defaults filled in, names
// validated, the base file parsed and the output directory checked.
type plan struct {
	Options
	podSource, domainSource string // where the defaults came from, for the log
	serviceFQDN             string
	base                    *base
}

// Bootstrap checks o and fails at once on bad input (rather than after
// the timeout), waits until this pod is published under the headless
// service, then atomically writes Output: the base file with
// cluster.node_id_prefix and cluster.join set from what DNS showed.
func Bootstrap(ctx context.Context, o Options, logger *slog.Logger) error {
	p, err := settle(o)
	if err != nil {
		return err
	}
	return p.run(ctx, logger)
}

// settle fills in the defaults of o and checks everything that can be
// checked before asking DNS.
func settle(o Options) (*plan, error) {
	p := &plan{Options: o}
	if p.Service == "" {
		return nil, errors.New("--service is required")
	}
	if err := peerfinder.ValidateLabel(p.Service); err != nil {
		return nil, fmt.Errorf("--service: %w", err)
	}

	nsSource := "--namespace"
	if p.Namespace == "" {
		p.Namespace, nsSource = os.Getenv("POD_NAMESPACE"), "POD_NAMESPACE"
		if p.Namespace == "" {
			return nil, errors.New("namespace unknown: set --namespace or the POD_NAMESPACE environment variable")
		}
	}
	if err := peerfinder.ValidateLabel(p.Namespace); err != nil {
		return nil, fmt.Errorf("%s: %w", nsSource, err)
	}

	p.podSource = "--pod-name"
	if p.PodName == "" {
		p.PodName, p.podSource = os.Getenv("POD_NAME"), "POD_NAME"
	}
	if p.PodName == "" {
		host, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("pod name unknown: set --pod-name or POD_NAME (hostname: %w)", err)
		}
		p.PodName, _, _ = strings.Cut(host, ".")
		p.podSource = "hostname"
	}
	if err := peerfinder.ValidateLabel(p.PodName); err != nil {
		return nil, fmt.Errorf("pod name from %s: %w", p.podSource, err)
	}

	p.domainSource = "--cluster-domain"
	if p.ClusterDomain == "" {
		p.ClusterDomain, p.domainSource = clusterDomain(p.ResolvConf, p.Namespace)
	}
	p.ClusterDomain = strings.ToLower(strings.TrimSuffix(p.ClusterDomain, "."))
	if err := peerfinder.ValidateName(p.ClusterDomain); err != nil {
		return nil, fmt.Errorf("--cluster-domain: %w", err)
	}
	p.serviceFQDN = peerfinder.ServiceFQDN(p.Service, p.Namespace, p.ClusterDomain)

	if p.Timeout <= 0 {
		return nil, fmt.Errorf("--timeout must be positive, got %s", p.Timeout)
	}

	var data []byte
	if p.BasePath != "" {
		var err error
		if data, err = os.ReadFile(p.BasePath); err != nil {
			return nil, fmt.Errorf("--base: %w", err)
		}
	}
	var err error
	if p.base, err = parseBase(data); err != nil {
		if p.BasePath != "" {
			return nil, fmt.Errorf("--base %s: %w", p.BasePath, err)
		}
		return nil, err
	}

	if p.Output == "" {
		return nil, errors.New("--output is required")
	}
	dir := filepath.Dir(p.Output)
	if info, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("--output: directory %s: %w", dir, errors.Unwrap(err))
	} else if !info.IsDir() {
		return nil, fmt.Errorf("--output: %s is not a directory", dir)
	}
	return p, nil
}

// clusterDomain returns the cluster domain the search line of resolvConf
// names, or the default, and where it came from.
func clusterDomain(resolvConf, namespace string) (domain, source string) {
	if resolvConf == "" {
		resolvConf = DefaultResolvConf
	}
	if content, err := os.ReadFile(resolvConf); err == nil {
		if domain, ok := peerfinder.ClusterDomainFromResolvConf(content, namespace); ok {
			return domain, resolvConf
		}
	}
	return peerfinder.DefaultClusterDomain, "default"
}

// run waits until this pod is published and writes the config file.
func (p *plan) run(ctx context.Context, logger *slog.Logger) error {
	start := time.Now()
	log := logger.With("subsystem", "bootstrap")
	selfFQDN := peerfinder.PodFQDN(p.PodName, p.serviceFQDN)
	log.Info("waiting for this pod to be published in DNS",
		"service", p.serviceFQDN, "pod", selfFQDN, "pod_name_from", p.podSource,
		"cluster_domain_from", p.domainSource, "timeout", p.Timeout)

	finder, err := peerfinder.New(peerfinder.Config{
		Service:  p.serviceFQDN,
		Self:     selfFQDN,
		Resolver: p.Resolver,
		Logger:   logger,
		OnChange: func(s peerfinder.Snapshot) { log.Info("DNS answer", "seen", s.String()) },
	})
	if err != nil {
		return err
	}
	waitCtx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	snap, err := finder.WaitPublished(waitCtx)
	if err != nil {
		return err
	}

	params := Params{PodName: p.PodName, ServiceFQDN: p.serviceFQDN}
	unnamed := 0
	for _, peer := range snap.Others() {
		if peer.Name == "" {
			unnamed++
			continue
		}
		params.Peers = append(params.Peers, peer.Name)
	}
	if unnamed > 0 {
		// Pod addresses change when pods move; the service name does not.
		log.Info("peers known only by address are joined through the service name", "peers", unnamed)
	}
	if err := params.Validate(); err != nil {
		return err
	}
	rendered, err := p.base.render(params)
	if err != nil {
		return err
	}
	if err := WriteFileAtomic(p.Output, rendered, 0o644); err != nil {
		return fmt.Errorf("--output: %w", err)
	}
	log.Info("wrote server config", "output", p.Output,
		"node_id_prefix", params.NodeIDPrefix(), "join", strings.Join(params.Join(), ","),
		"took", time.Since(start).Round(time.Millisecond))
	return nil
}
