package server

import (
	"context"
	"time"

	"github.com/pico-proxy/pico/internal/cluster"
	"github.com/pico-proxy/pico/internal/rebalance"
	"github.com/pico-proxy/pico/internal/upstream"
)

// loadReporter is a Membership that knows every member's upstream count
// (the cluster's): rebalancing runs only with one.
type loadReporter interface {
	Loads() ([]cluster.MemberLoad, map[string]int)
}

// startRebalancing runs the cluster.rebalance loop until drain or
// closeNow, if it is enabled and the membership reports loads.
func (s *Server) startRebalancing() {
	cfg := s.cfg.Cluster.Rebalance
	loads, ok := s.membership.(loadReporter)
	if !cfg.Enabled || !ok {
		return
	}
	s.rebalanceMu.Lock()
	defer s.rebalanceMu.Unlock()
	if s.rebalanceStopped {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	s.stopRebalance = func() {
		cancel()
		<-done
	}
	loop := rebalance.NewLoop(rebalance.Options{
		Policy:   rebalance.Policy{Tolerance: cfg.Tolerance, MinTolerance: cfg.MinTolerance, MaxRate: cfg.MaxRate},
		Interval: cfg.Interval,
		Source:   &rebalanceSource{s: s, loads: loads, newMemberDelay: cfg.NewMemberDelay},
		Logger:   s.base,
		Metrics:  s.metrics,
	})
	go func() {
		defer close(done)
		loop.Run(ctx)
	}()
}

// rebalanceSource is rebalance.Source for the server: the membership's
// loads and the upstream registry.
type rebalanceSource struct {
	s              *Server
	loads          loadReporter
	newMemberDelay time.Duration
}

// View counts this node while it is ready and not draining, and a peer
// once it has been an active member for newMemberDelay.
func (r *rebalanceSource) View() rebalance.View {
	members, elsewhere := r.loads.Loads()
	v := rebalance.View{LocalID: r.s.id, Elsewhere: elsewhere, Members: make([]rebalance.Member, 0, len(members))}
	now := time.Now()
	for _, m := range members {
		counted := m.Active && now.Sub(m.Since) >= r.newMemberDelay
		if m.Local {
			counted = m.Active && r.s.ready.Load()
		}
		v.Members = append(v.Members, rebalance.Member{ID: m.ID, Upstreams: m.Upstreams, Counted: counted})
	}
	return v
}

func (r *rebalanceSource) Sessions() []rebalance.Session {
	routable := r.s.registry.Routable()
	out := make([]rebalance.Session, len(routable))
	for i, s := range routable {
		out[i] = rebalance.Session{ID: s.ID(), Endpoint: s.Endpoint(), ConnectedAt: s.ConnectedAt()}
	}
	return out
}

// Shed retires the sessions: GoAway, out of routing, closed once their
// streams finish (at the latest after server.graceful_shutdown_timeout,
// like a drain).
func (r *rebalanceSource) Shed(ids []uint64) int {
	byID := make(map[uint64]*upstream.Session)
	for _, s := range r.s.registry.Routable() {
		byID[s.ID()] = s
	}
	n := 0
	for _, id := range ids {
		if s, ok := byID[id]; ok {
			s.Retire(r.s.cfg.Server.GracefulShutdownTimeout)
			n++
		}
	}
	return n
}
