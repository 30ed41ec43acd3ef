package cluster

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pico-proxy/pico/internal/config"
)

// Join backoff between attempts of the initial join.
const (
	joinBackoffMin = 100 * time.Millisecond
	joinBackoffMax = 5 * time.Second
	// lookupTimeout bounds the DNS lookups of one attempt.
	lookupTimeout = 5 * time.Second
)

// Join performs the initial join. It resolves cluster.join (IPs, host:port
// and DNS names, a name standing for all its addresses) and joins every
// address other than this node's own, retrying with backoff until one
// join succeeds or cluster.join_timeout passes.
//
// When the names resolve to nothing but this node (or to nothing at all),
// the node is the first of a new cluster and Join returns nil at once:
// the periodic re-join of Run merges it with any node that appears later.
// When they resolved to other nodes but none could be joined in time, Join
// returns an error if cluster.abort_if_join_fails is set, and otherwise
// logs a warning and returns nil.
func (c *Cluster) Join(ctx context.Context) error {
	if len(c.joins) == 0 {
		c.log.Info("cluster.join is empty: this node starts a new cluster")
		return nil
	}
	timeout := orDefault(c.cfg.JoinTimeout, defaultJoinTimeout)
	deadline, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	backoff := joinBackoffMin
	sawOthers := false
	var lastErr error
	for attempt := 1; ; attempt++ {
		res := c.resolveJoins(deadline)
		others := c.withoutSelf(res.addrs)
		switch {
		case len(others) > 0:
			sawOthers = true
			joined, err := c.joinAddrs(others)
			if joined > 0 {
				c.log.Info("joined the cluster", "contacted", joined, "addresses", len(others), "attempt", attempt, "members", c.members.Load()+1)
				return nil
			}
			lastErr = err
			c.log.Debug("join attempt failed", "attempt", attempt, "error", err)
		case len(res.errs) == 0:
			c.log.Info("cluster.join resolves to no other node: this node starts a new cluster", "addresses", addrStrings(res.addrs))
			return nil
		default:
			lastErr = errors.Join(res.errs...)
			c.log.Debug("join attempt could not resolve cluster.join", "attempt", attempt, "error", lastErr)
		}

		wait := backoff/2 + rand.N(backoff/2+1)
		backoff = min(2*backoff, joinBackoffMax)
		select {
		case <-time.After(wait):
			continue
		case <-deadline.Done():
		}
		break
	}

	if err := ctx.Err(); err != nil {
		return fmt.Errorf("cluster: join interrupted: %w", err)
	}
	if !sawOthers {
		c.log.Warn("cluster.join did not resolve to any other node within cluster.join_timeout: this node starts a new cluster", "timeout", timeout, "error", lastErr)
		return nil
	}
	if c.cfg.AbortIfJoinFails {
		return fmt.Errorf("cluster.join resolved to other nodes but none could be joined within cluster.join_timeout (%s): %w", timeout, lastErr)
	}
	c.log.Warn("could not join any other node within cluster.join_timeout; continuing alone (cluster.abort_if_join_fails is off)", "timeout", timeout, "error", lastErr)
	return nil
}

// Run re-resolves cluster.join every cluster.rejoin_interval and joins
// every address that is not a current member. This merges clusters that
// formed separately (two nodes that started at the same instant, each
// founding its own cluster) and heals partitions after memberlist has
// forgotten the nodes on the other side. It returns when ctx is done or
// the node shuts down.
func (c *Cluster) Run(ctx context.Context) {
	interval := c.cfg.RejoinInterval
	if interval <= 0 || len(c.joins) == 0 {
		select {
		case <-ctx.Done():
		case <-c.stop:
		}
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.stop:
			return
		case <-t.C:
			c.rejoin(ctx)
		}
	}
}

// rejoin joins the addresses of cluster.join that are not members.
func (c *Cluster) rejoin(ctx context.Context) {
	res := c.resolveJoins(ctx)
	if len(res.errs) > 0 {
		c.log.Debug("re-join could not resolve every cluster.join entry", "error", errors.Join(res.errs...))
	}
	members := c.memberAddrs()
	var missing []netip.AddrPort
	for _, a := range c.withoutSelf(res.addrs) {
		if !members[a] {
			missing = append(missing, a)
		}
	}
	if len(missing) == 0 {
		return
	}
	joined, err := c.joinAddrs(missing)
	if joined > 0 {
		c.log.Info("re-joined addresses that were not members", "addresses", addrStrings(missing), "contacted", joined, "members", c.members.Load()+1)
	} else {
		c.log.Debug("re-join found addresses that are not members but could not join them", "addresses", addrStrings(missing), "error", err)
	}
}

func (c *Cluster) resolveJoins(ctx context.Context) resolved {
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	return resolveTargets(ctx, c.resolver, c.network, c.joins)
}

// withoutSelf drops this node's own gossip addresses.
func (c *Cluster) withoutSelf(addrs []netip.AddrPort) []netip.AddrPort {
	var out []netip.AddrPort
	for _, a := range addrs {
		if a == c.gossipAddr || a == c.bindAddr {
			continue
		}
		out = append(out, a)
	}
	return out
}

// joinAddrs joins every address concurrently (memberlist contacts one
// at a time, each up to its TCP timeout) and returns how many answered.
func (c *Cluster) joinAddrs(addrs []netip.AddrPort) (int, error) {
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		joined int
		errs   []error
	)
	for _, a := range addrs {
		wg.Go(func() {
			n, err := c.ml.Join([]string{a.String()})
			mu.Lock()
			defer mu.Unlock()
			joined += n
			if err != nil {
				errs = append(errs, fmt.Errorf("joining %s: %w", a, err))
			}
		})
	}
	wg.Wait()
	return joined, errors.Join(errs...)
}

func addrStrings(addrs []netip.AddrPort) []string {
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = a.String()
	}
	return out
}

// resolved is the outcome of resolving the join entries once.
type resolved struct {
	addrs []netip.AddrPort // every address found, deduplicated, in order
	errs  []error          // lookups that failed for another reason than "no such name"
}

// resolveTargets looks up every target: an IP stands for itself, a name
// expands to all its addresses of the given family ("ip4" or "ip6"). A
// name that does not exist or has no address counts as resolving to
// nothing, not as an error.
func resolveTargets(ctx context.Context, r *net.Resolver, network string, targets []config.JoinTarget) resolved {
	var out resolved
	seen := make(map[netip.AddrPort]bool)
	add := func(ap netip.AddrPort) {
		if !seen[ap] {
			seen[ap] = true
			out.addrs = append(out.addrs, ap)
		}
	}
	for _, t := range targets {
		if t.IP.IsValid() {
			add(netip.AddrPortFrom(t.IP, t.Port))
			continue
		}
		ips, err := r.LookupNetIP(ctx, network, t.Host)
		if err != nil {
			var dnsErr *net.DNSError
			if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
				continue
			}
			out.errs = append(out.errs, fmt.Errorf("resolving cluster.join entry %q: %w", t.Entry, err))
			continue
		}
		for _, ip := range ips {
			add(netip.AddrPortFrom(ip.Unmap(), t.Port))
		}
	}
	return out
}
