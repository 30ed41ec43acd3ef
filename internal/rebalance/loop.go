package rebalance

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Source is what the loop reads and acts on: the server's cluster view
// and upstream registry.
type Source interface {
	// View returns the cluster as this member sees it now.
	View() View
	// Sessions lists the local upstream connections in routing.
	Sessions() []Session
	// Shed sends a GoAway to the sessions with these IDs that are still
	// in routing (their in-flight streams finish) and returns how many.
	Shed(ids []uint64) int
}

// Options configures a Loop.
type Options struct {
	Policy Policy
	// Interval is how often the loop decides.
	Interval time.Duration
	Source   Source
	// Logger receives the loop's logs (subsystem "rebalance"); nil
	// discards them.
	Logger *slog.Logger
	// Metrics receives pico_upstream_rebalanced_total; nil registers
	// nothing.
	Metrics prometheus.Registerer
}

// maxBackoff is the most intervals the loop skips after shedding that
// did not lower its count (the agents came back: they connect to this
// member's own address, not through a balancer).
const maxBackoff = 3

// Loop decides every Interval and sheds what Policy.Decide says.
type Loop struct {
	opts Options
	log  *slog.Logger
	shed prometheus.Counter

	// State between decisions (only Run's goroutine touches it).
	lastShed, lastLocal int
	backoff, skip       int
}

// NewLoop returns a loop; Run starts it.
func NewLoop(opts Options) *Loop {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	l := &Loop{
		opts: opts,
		log:  logger.With("subsystem", "rebalance"),
		shed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pico_upstream_rebalanced_total",
			Help: "Upstream connections this member told to go away (yamux GoAway; the agent reconnects through the load balancer) because it held more than its fair share.",
		}),
	}
	if opts.Metrics != nil {
		opts.Metrics.MustRegister(l.shed)
	}
	return l
}

// Run decides every Interval until ctx ends.
func (l *Loop) Run(ctx context.Context) {
	t := time.NewTicker(l.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			l.Step()
		}
	}
}

// Step makes one decision and applies it; Run calls it every Interval.
func (l *Loop) Step() Decision {
	if l.skip > 0 {
		l.skip--
		return Decision{Reason: "backoff"}
	}
	view, sessions := l.opts.Source.View(), l.opts.Source.Sessions()
	if l.lastShed > 0 {
		came := len(sessions) >= l.lastLocal
		l.lastShed = 0
		if came {
			l.backoff = min(max(1, 2*l.backoff), maxBackoff)
			l.skip = l.backoff
			l.log.Debug("the connections shed were replaced by as many: backing off", "upstreams", len(sessions), "skip_intervals", l.skip)
			return Decision{Reason: "backoff", Local: len(sessions)}
		}
		l.backoff = 0
	}
	d := l.opts.Policy.Decide(view, sessions)
	if len(d.Shed) == 0 {
		if d.Reason == ReasonNoCandidate {
			l.log.Debug("above the fair share, but every connection is the last of its endpoint", "upstreams", d.Local, "fair_share", d.FairShare)
		}
		return d
	}
	n := l.opts.Source.Shed(d.Shed)
	l.shed.Add(float64(n))
	l.lastShed, l.lastLocal = n, len(sessions)
	l.log.Info("shedding upstream connections above the fair share", "reason", d.Reason, "upstreams", d.Local,
		"fair_share", round1(d.FairShare), "band", round1(d.Band), "members", d.Counted, "shed", n)
	return d
}

func round1(f float64) float64 { return float64(int(f*10+0.5)) / 10 }
