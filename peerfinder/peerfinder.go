// Package peerfinder discovers the members of a Kubernetes StatefulSet
// through the DNS records of its headless service, in the manner of
// Kubernetes' peer-finder helper.
//
// A headless service "svc.ns.svc.cluster.local" publishes one SRV record per
// pod, pointing at the pod's own name "pod-N.svc.ns.svc.cluster.local"
// (and, as a fallback for other DNS servers, one A/AAAA record per pod).
// A Finder looks these up (Lookup), tells whether the pod it runs in is
// among them yet (Snapshot.Published) and waits with backoff until it is
// (WaitPublished), calling Config.OnChange whenever the set of peers
// changes.
//
// Pods appear in DNS only once they are ready, unless the service sets
// publishNotReadyAddresses: true; an init container waiting for its own
// pod therefore needs that setting. DNS servers also cache "does not exist"
// answers (CoreDNS for up to 30 s), which is why WaitPublished keeps
// retrying instead of failing on the first empty answer.
//
// ClusterDomainFromResolvConf works out the cluster's DNS domain from a
// pod's /etc/resolv.conf, and ServiceFQDN and PodFQDN build the names to
// look up.
package peerfinder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
)

// Resolver is the part of *net.Resolver a Finder uses. Production code
// passes net.DefaultResolver (the default); tests pass ResolverAt pointed
// at a test DNS server.
type Resolver interface {
	LookupSRV(ctx context.Context, service, proto, name string) (cname string, addrs []*net.SRV, err error)
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// ResolverAt returns a resolver that sends every query to the DNS server at
// addr ("host:port") using Go's own DNS client, whatever /etc/resolv.conf
// names. It is meant for tests and for setups that must bypass the system
// configuration.
func ResolverAt(addr string) *net.Resolver {
	var d net.Dialer
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
	}
}

// The pauses between lookups while waiting: the first is initialPause,
// every further one doubles, up to maxPause, each varied by up to ±20% so
// that pods started together do not query in lockstep. At most 5 s keeps
// the wait short once a cached negative answer (CoreDNS caches them for up
// to 30 s) expires. Tests shorten them (export_test.go).
var (
	initialPause = 250 * time.Millisecond
	maxPause     = 5 * time.Second
)

// Config configures a Finder.
type Config struct {
	// Service is the fully qualified name of the headless service, e.g.
	// "pico-headless.default.svc.cluster.local" (see ServiceFQDN).
	Service string
	// Self is the name this pod is published under, e.g.
	// "pico-0.pico-headless.default.svc.cluster.local" (see PodFQDN).
	Self string
	// Resolver answers the DNS questions; nil means net.DefaultResolver.
	Resolver Resolver
	// OnChange, if set, is called with the first snapshot a Finder sees
	// and then with every snapshot that differs from the one before. It is
	// called synchronously from WaitPublished.
	OnChange func(Snapshot)
	// Logger receives a debug line per lookup and a warning when lookups
	// start failing; nil discards them.
	Logger *slog.Logger
}

// Source tells which kind of DNS record a Snapshot was built from.
type Source int

const (
	// SourceNone means the service name had no records at all (NXDOMAIN or
	// an empty answer).
	SourceNone Source = iota
	// SourceSRV means the peers are the targets of the service's SRV records.
	SourceSRV
	// SourceAddrs means the service had no SRV records and the peers are
	// the addresses of its A/AAAA records.
	SourceAddrs
)

func (s Source) String() string {
	switch s {
	case SourceSRV:
		return "SRV"
	case SourceAddrs:
		return "A/AAAA"
	default:
		return "none"
	}
}

// Peer is one member of the service as DNS publishes it.
type Peer struct {
	// Name is the peer's DNS name (lower case, no trailing dot). Peers
	// found through A/AAAA records have none, except this pod when
	// Config.Self is set.
	Name string
	// Addr is the peer's address when it was found through A/AAAA
	// records; the zero Addr for peers found through SRV records.
	Addr netip.Addr
	// Self reports whether this peer is the pod the Finder runs in.
	Self bool
}

// String is the peer's name, or its address when it has no name.
func (p Peer) String() string {
	if p.Name != "" {
		return p.Name
	}
	return p.Addr.String()
}

// Snapshot is what one lookup of the service saw.
type Snapshot struct {
	// Service is the name that was looked up.
	Service string
	// Source is the kind of record the peers came from.
	Source Source
	// Peers are all peers found, this pod included when published,
	// without duplicates and sorted by their String form.
	Peers []Peer
}

// Published reports whether this pod is among the peers.
func (s Snapshot) Published() bool {
	return slices.ContainsFunc(s.Peers, func(p Peer) bool { return p.Self })
}

// Others returns the peers except this pod, in order.
func (s Snapshot) Others() []Peer {
	return slices.DeleteFunc(slices.Clone(s.Peers), func(p Peer) bool { return p.Self })
}

// Equal reports whether two snapshots saw the same thing.
func (s Snapshot) Equal(o Snapshot) bool {
	return s.Service == o.Service && s.Source == o.Source && slices.Equal(s.Peers, o.Peers)
}

// String describes the snapshot in one line for logs and errors, e.g.
// "2 peers in the SRV records of svc.ns.svc.cluster.local (pod-0…, pod-1…), this pod not among them".
func (s Snapshot) String() string {
	if s.Source == SourceNone {
		return fmt.Sprintf("no SRV or A/AAAA records for %s (NXDOMAIN or an empty answer)", s.Service)
	}
	const maxListed = 10
	names := make([]string, 0, min(len(s.Peers), maxListed+1))
	for i, p := range s.Peers {
		if i == maxListed {
			names = append(names, fmt.Sprintf("and %d more", len(s.Peers)-maxListed))
			break
		}
		names = append(names, p.String())
	}
	self := "this pod not among them"
	if s.Published() {
		self = "this pod among them"
	}
	noun := "peers"
	if len(s.Peers) == 1 {
		noun = "peer"
	}
	return fmt.Sprintf("%d %s in the %s records of %s (%s), %s",
		len(s.Peers), noun, s.Source, s.Service, strings.Join(names, ", "), self)
}

// Finder looks up the peers of one headless service. Its methods may be
// called from several goroutines, though OnChange then sees the changes
// as observed by whichever goroutine looked last.
type Finder struct {
	cfg      Config
	resolver Resolver
	logger   *slog.Logger

	mu       sync.Mutex
	reported *Snapshot // last snapshot passed to OnChange
	failure  string    // last lookup error logged, "" after a success
}

// New checks cfg and returns a Finder.
func New(cfg Config) (*Finder, error) {
	cfg.Service = normalizeName(cfg.Service)
	cfg.Self = normalizeName(cfg.Self)
	if err := ValidateName(cfg.Service); err != nil {
		return nil, fmt.Errorf("peerfinder: service name: %w", err)
	}
	if cfg.Self == "" {
		return nil, errors.New("peerfinder: the pod's own name is not set, so it cannot be recognised among the peers")
	}
	if err := ValidateName(cfg.Self); err != nil {
		return nil, fmt.Errorf("peerfinder: pod name: %w", err)
	}
	f := &Finder{cfg: cfg, resolver: cfg.Resolver, logger: cfg.Logger}
	if f.resolver == nil {
		f.resolver = net.DefaultResolver
	}
	if f.logger == nil {
		f.logger = slog.New(slog.DiscardHandler)
	}
	f.logger = f.logger.With("subsystem", "peerfinder")
	return f, nil
}

// Lookup asks DNS once for the service's peers: its SRV records, or if it
// has none, its A/AAAA records. A service name that does not exist or has
// no records is not an error: the Snapshot then has SourceNone. The error
// is for failed lookups (server failure, timeout, unreachable server).
func (f *Finder) Lookup(ctx context.Context) (Snapshot, error) {
	snap := Snapshot{Service: f.cfg.Service}
	query := f.cfg.Service + "." // absolute: no search domains tried first
	_, srvs, srvErr := f.resolver.LookupSRV(ctx, "", "", query)
	// With some invalid targets, Go returns the valid ones and an error.
	if peers := f.peersFromSRV(srvs); len(peers) > 0 {
		snap.Source = SourceSRV
		snap.Peers = peers
		return snap, nil
	}
	if err := ctx.Err(); err != nil {
		return snap, fmt.Errorf("look up SRV records of %s: %w", f.cfg.Service, err)
	}
	if srvErr != nil && !isNotFound(srvErr) {
		// A failed SRV lookup (timeout, server failure) says nothing about
		// whether the service has SRV records; falling back to A records
		// would report another view of the same service.
		return snap, fmt.Errorf("look up SRV records of %s: %w", f.cfg.Service, srvErr)
	}
	addrs, addrErr := f.resolver.LookupNetIP(ctx, "ip", query)
	if len(addrs) > 0 {
		peers, err := f.peersFromAddrs(ctx, addrs)
		if err != nil {
			return snap, err
		}
		snap.Source = SourceAddrs
		snap.Peers = peers
		return snap, nil
	}
	if !isNotFound(addrErr) {
		return snap, fmt.Errorf("look up A/AAAA records of %s: %w", f.cfg.Service, addrErr)
	}
	return snap, nil
}

func (f *Finder) peersFromSRV(srvs []*net.SRV) []Peer {
	peers := make([]Peer, 0, len(srvs))
	for _, r := range srvs {
		if name := normalizeName(r.Target); name != "" { // "." means "no service here"
			peers = append(peers, Peer{Name: name, Self: name == f.cfg.Self})
		}
	}
	return sortPeers(peers)
}

func (f *Finder) peersFromAddrs(ctx context.Context, addrs []netip.Addr) ([]Peer, error) {
	own, err := f.resolver.LookupNetIP(ctx, "ip", f.cfg.Self+".")
	if !isNotFound(err) {
		return nil, fmt.Errorf("look up A/AAAA records of %s: %w", f.cfg.Self, err)
	}
	peers := make([]Peer, 0, len(addrs))
	for _, a := range addrs {
		a = a.Unmap()
		p := Peer{Addr: a}
		if slices.ContainsFunc(own, func(o netip.Addr) bool { return o.Unmap() == a }) {
			p.Self = true
			p.Name = f.cfg.Self
		}
		peers = append(peers, p)
	}
	return sortPeers(peers), nil
}

// sortPeers orders peers by their String form and drops duplicates (a pod
// has one SRV record per port).
func sortPeers(peers []Peer) []Peer {
	slices.SortFunc(peers, func(a, b Peer) int { return strings.Compare(a.String(), b.String()) })
	return slices.Compact(peers)
}

// isNotFound reports whether a lookup error only says that there are no
// records. Go's resolver reports NXDOMAIN and empty answers alike.
func isNotFound(err error) bool {
	if err == nil {
		return true
	}
	var dnsErr *net.DNSError
	return errors.As(err, &dnsErr) && dnsErr.IsNotFound
}

// WaitPublished looks the service up until this pod is among its peers,
// pausing with backoff in between, and returns the snapshot that shows it.
// Empty answers and failed lookups are retried. When ctx ends first, the
// error is a *NotPublishedError describing what was seen.
func (f *Finder) WaitPublished(ctx context.Context) (Snapshot, error) {
	start := time.Now()
	pause := initialPause
	next := func() time.Duration {
		d := jitter(pause)
		pause = min(2*pause, maxPause)
		return d
	}
	last, lastErr, done := f.poll(ctx, next, Snapshot.Published)
	if done {
		return *last, nil
	}
	e := &NotPublishedError{
		Service: f.cfg.Service,
		Self:    f.cfg.Self,
		Waited:  time.Since(start),
		LastErr: lastErr,
		Cause:   ctx.Err(),
	}
	if deadline, ok := ctx.Deadline(); ok && errors.Is(e.Cause, context.DeadlineExceeded) {
		e.Waited = deadline.Sub(start) // the timeout the caller chose, not timer slack
	}
	if last != nil {
		e.Last = last
		return *last, e
	}
	return Snapshot{Service: f.cfg.Service}, e
}

// poll runs Lookup, reporting each result, until done accepts a snapshot
// or ctx ends, pausing for next() between lookups. It returns the last
// snapshot seen (nil if none), the error of the last lookup if that one
// failed, and whether done was satisfied.
func (f *Finder) poll(ctx context.Context, next func() time.Duration, done func(Snapshot) bool) (last *Snapshot, lastErr error, ok bool) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return last, lastErr, false
		case <-timer.C:
		}
		snap, err := f.Lookup(ctx)
		switch {
		case err == nil:
			last, lastErr = &snap, nil
			f.reportSnapshot(snap)
			if done(snap) {
				return last, nil, true
			}
		case !ending(ctx): // a lookup cut short by ctx says nothing about DNS
			lastErr = err
			f.reportFailure(err)
		}
		timer.Reset(next())
	}
}

// ending reports whether ctx has ended or reached its deadline. The
// resolver applies the deadline to its sockets itself and may fail just
// before ctx notices.
func ending(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	deadline, ok := ctx.Deadline()
	return ok && !time.Now().Before(deadline)
}

func (f *Finder) reportSnapshot(snap Snapshot) {
	f.logger.Debug("looked up peers", "service", snap.Service, "seen", snap.String())
	f.mu.Lock()
	changed := f.reported == nil || !f.reported.Equal(snap)
	if changed {
		f.reported = &snap
	}
	f.failure = ""
	f.mu.Unlock()
	if changed && f.cfg.OnChange != nil {
		f.cfg.OnChange(snap)
	}
}

func (f *Finder) reportFailure(err error) {
	f.mu.Lock()
	repeated := f.failure == err.Error()
	f.failure = err.Error()
	f.mu.Unlock()
	if repeated {
		f.logger.Debug("peer lookup failed again", "err", err)
		return
	}
	f.logger.Warn("peer lookup failed, retrying", "err", err)
}

// jitter varies d by up to ±20%.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// NotPublishedError is returned by WaitPublished when its context ends
// before this pod appears among the service's peers.
type NotPublishedError struct {
	// Service is the headless service's name.
	Service string
	// Self names this pod.
	Self string
	// Waited is how long WaitPublished waited.
	Waited time.Duration
	// Last is the last snapshot seen; nil if no lookup succeeded.
	Last *Snapshot
	// LastErr is the error of the last lookup, if it failed.
	LastErr error
	// Cause is the context's error: context.DeadlineExceeded on timeout,
	// context.Canceled when stopped.
	Cause error
}

func (e *NotPublishedError) Error() string {
	var b strings.Builder
	if errors.Is(e.Cause, context.DeadlineExceeded) {
		fmt.Fprintf(&b, "%s did not appear among the peers of %s within %s", e.Self, e.Service, roundForHumans(e.Waited))
	} else {
		fmt.Fprintf(&b, "stopped after %s of waiting for %s to appear among the peers of %s", roundForHumans(e.Waited), e.Self, e.Service)
	}
	switch {
	case e.LastErr != nil && e.Last != nil:
		fmt.Fprintf(&b, ": the last lookup failed (%v); before that it saw %s", e.LastErr, e.Last)
	case e.LastErr != nil:
		fmt.Fprintf(&b, ": every lookup failed, the last with: %v", e.LastErr)
	case e.Last != nil:
		fmt.Fprintf(&b, ": it saw %s", e.Last)
	default:
		b.WriteString(": no lookup completed")
	}
	if e.LastErr == nil && e.Last != nil && e.Last.Source != SourceNone {
		// The service exists and has peers, just not this pod (yet).
		b.WriteString("; set publishNotReadyAddresses: true on the headless service so that pods are published before they are ready")
	} else {
		b.WriteString("; check the service name, namespace and cluster domain, and set publishNotReadyAddresses: true on the headless service so that pods are published before they are ready")
	}
	return b.String()
}

// Unwrap returns the context's error.
func (e *NotPublishedError) Unwrap() error { return e.Cause }

func roundForHumans(d time.Duration) time.Duration {
	switch {
	case d >= 10*time.Second:
		return d.Round(time.Second)
	case d >= time.Second:
		return d.Round(100 * time.Millisecond)
	default:
		return d.Round(time.Millisecond)
	}
}
