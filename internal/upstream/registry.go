package upstream

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pico-proxy/pico/internal/protocol"
	"github.com/pico-proxy/pico/internal/yamux"
)

// ErrDraining is returned by Reserve once Drain has begun.
var ErrDraining = errors.New("server is shutting down and accepts no new upstream connections")

// Availability says why Acquire found no session.
type Availability int

const (
	// None: no session and no pending registration for the endpoint.
	None Availability = iota
	// Pending: a registration is in progress; a session appears (or the
	// registration fails) within moments, signalled through Changed.
	Pending
	// Busy: every session is at its stream limit.
	Busy
)

// RegistryOptions configures a Registry.
type RegistryOptions struct {
	// MaxStreamsPerConnection caps concurrent proxied streams on one
	// session; 0 means no limit.
	MaxStreamsPerConnection int
	// Metrics receives the registry's metrics; nil means none.
	Metrics prometheus.Registerer
	// Probe tunes the check of sessions the proxy suspects (Suspect).
	Probe ProbeOptions
}

// Registry maps endpoints to the upstream sessions that serve them.
// It is safe for concurrent use.
type Registry struct {
	logger     *slog.Logger
	maxStreams int64
	metrics    *registryMetrics
	probe      ProbeOptions

	nextID atomic.Uint64

	mu        sync.RWMutex
	endpoints map[string]*endpointSessions
	sessions  int
	// served counts the endpoints with at least one session.
	served   int
	changed  chan struct{}
	draining bool
	all      map[*Session]struct{}
}

type endpointSessions struct {
	sessions []*Session // copy on write
	pending  int
	next     atomic.Uint32
}

// NewRegistry returns an empty registry.
func NewRegistry(logger *slog.Logger, opts RegistryOptions) *Registry {
	return &Registry{
		logger:     logger.With("subsystem", "upstream"),
		maxStreams: int64(opts.MaxStreamsPerConnection),
		metrics:    newRegistryMetrics(opts.Metrics),
		probe:      opts.Probe.withDefaults(),
		endpoints:  make(map[string]*endpointSessions),
		changed:    make(chan struct{}),
		all:        make(map[*Session]struct{}),
	}
}

// Session is one agent connection: a yamux server session registered for
// one endpoint.
type Session struct {
	id          uint64
	endpoint    string
	protocol    protocol.EndpointProtocol
	remoteAddr  string
	connectedAt time.Time
	mux         *yamux.Session
	conn        *closeHook // the agent's connection, under mux
	registry    *Registry

	// active counts acquired leases (streams in use or about to be
	// opened); closing is set, under the registry's write lock, when the
	// session left routing; closed once the session is shut.
	active    atomic.Int64
	closing   atomic.Bool
	closeOnce sync.Once
	closed    chan struct{}

	// Liveness (liveness.go), in Unix nanoseconds: when the ping now out
	// was sent (0: none), when the last one was answered.
	pingSent     atomic.Int64
	pingAnswered atomic.Int64

	// Idle streams kept for HTTP keep-alive (pool.go).
	poolMu sync.Mutex
	idle   []idleStream
	sweep  *time.Timer
}

// ID is unique among the registry's sessions.
func (s *Session) ID() uint64 { return s.id }

// Endpoint is the endpoint the session registered.
func (s *Session) Endpoint() string { return s.endpoint }

// Protocol is how the agent said it serves the endpoint's streams
// (protocol.ProtocolUnknown when it did not say).
func (s *Session) Protocol() protocol.EndpointProtocol { return s.protocol }

// RemoteAddr is the agent's address as seen by the upstream listener.
func (s *Session) RemoteAddr() string { return s.remoteAddr }

// ConnectedAt is when the session was registered.
func (s *Session) ConnectedAt() time.Time { return s.connectedAt }

// Open opens a stream to the agent. Call it only on an acquired session
// and call Release once the stream is finished.
func (s *Session) Open() (*yamux.Stream, error) {
	return s.mux.OpenStream()
}

// Release returns a lease taken by Registry.Acquire. Call it exactly once
// per successful Acquire, after the stream (if any) is finished.
func (s *Session) Release() {
	if s.active.Add(-1) == 0 && s.closing.Load() {
		s.shut()
	}
}

// Done is closed once the session has ended.
func (s *Session) Done() <-chan struct{} { return s.closed }

func (s *Session) shut() {
	s.closeOnce.Do(func() {
		// Closing the WebSocket may wait for the peer's close frame;
		// never make the caller (a proxied request) wait for that.
		go s.mux.Close()
	})
}

func (s *Session) tryAcquire(limit int64) bool {
	if n := s.active.Add(1); limit > 0 && n > limit {
		s.active.Add(-1)
		return false
	}
	return true
}

// Changed returns a channel closed at the next change of the registry:
// a session added or removed, a pending registration resolved, or the
// start of the drain. Take it before looking up, then wait on it.
func (r *Registry) Changed() <-chan struct{} {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.changed
}

func (r *Registry) notifyLocked() {
	close(r.changed)
	r.changed = make(chan struct{})
	r.metrics.sessions.Set(float64(r.sessions))
	// Counted as sessions come and go: building the counts on every
	// change would make N registrations allocate O(N²).
	r.metrics.endpoints.Set(float64(r.served))
}

// Acquire picks a session for endpoint round robin, skipping sessions in
// exclude and sessions at the stream limit, and preferring sessions not
// unresponsive to a ping (liveness.go), and leases it: the caller must
// call Release on the returned session. When none is available it says
// why.
func (r *Registry) Acquire(endpoint string, exclude ...*Session) (*Session, Availability) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e := r.endpoints[endpoint]
	if e == nil {
		return nil, None
	}
	n := uint32(len(e.sessions))
	if n == 0 {
		if e.pending > 0 {
			return nil, Pending
		}
		return nil, None
	}
	start := e.next.Add(1)
	skipped, deferred := 0, 0
	var now int64
	for i := range n {
		s := e.sessions[(start+i)%n]
		if excluded(s, exclude) {
			skipped++
			continue
		}
		if s.pingSent.Load() != 0 {
			if now == 0 {
				now = time.Now().UnixNano()
			}
			if s.unresponsive(now) {
				deferred++
				continue
			}
		}
		if s.tryAcquire(r.maxStreams) {
			return s, 0
		}
	}
	// Only unresponsive sessions are left: one may still answer.
	for i := 0; deferred > 0 && i < int(n); i++ {
		s := e.sessions[(start+uint32(i))%n]
		if !excluded(s, exclude) && s.unresponsive(now) && s.tryAcquire(r.maxStreams) {
			return s, 0
		}
	}
	if skipped == int(n) {
		if e.pending > 0 {
			return nil, Pending
		}
		return nil, None
	}
	return nil, Busy
}

func excluded(s *Session, exclude []*Session) bool {
	for _, x := range exclude {
		if x == s {
			return true
		}
	}
	return false
}

// Counts returns the number of sessions per endpoint (endpoints with at
// least one session).
func (r *Registry) Counts() map[string]int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.countsLocked()
}

func (r *Registry) countsLocked() map[string]int {
	counts := make(map[string]int, len(r.endpoints))
	for id, e := range r.endpoints {
		if len(e.sessions) > 0 {
			counts[id] = len(e.sessions)
		}
	}
	return counts
}

// Routable returns the sessions in routing (not retired, not draining),
// in no particular order.
func (r *Registry) Routable() []*Session {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]*Session, 0, r.sessions)
	for _, e := range r.endpoints {
		out = append(out, e.sessions...)
	}
	return out
}

// Sessions returns the number of registered sessions.
func (r *Registry) Sessions() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.sessions
}

// Reservation is a pending registration: while it exists, Acquire reports
// Pending for its endpoint. Exactly one of Activate or Cancel must follow.
type Reservation struct {
	registry *Registry
	endpoint string
	done     atomic.Bool
}

// Reserve records a pending registration for endpoint. Call it before
// answering the agent's handshake.
func (r *Registry) Reserve(endpoint string) (*Reservation, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.draining {
		return nil, ErrDraining
	}
	e := r.endpoints[endpoint]
	if e == nil {
		e = &endpointSessions{}
		r.endpoints[endpoint] = e
	}
	e.pending++
	return &Reservation{registry: r, endpoint: endpoint}, nil
}

// Cancel drops the pending registration (the handshake failed).
func (res *Reservation) Cancel() {
	if !res.done.CompareAndSwap(false, true) {
		return
	}
	r := res.registry
	r.mu.Lock()
	defer r.mu.Unlock()
	r.unpendLocked(res.endpoint)
	r.notifyLocked()
}

func (r *Registry) unpendLocked(endpoint string) {
	e := r.endpoints[endpoint]
	e.pending--
	if e.pending == 0 && len(e.sessions) == 0 {
		delete(r.endpoints, endpoint)
	}
}

// Activate runs a yamux server session over conn (the agent's byte
// stream), whose agent serves the endpoint with proto, and turns the
// reservation into a routable session. The session
// leaves the registry when it ends. If the registry began draining
// meanwhile, the session is told to go away and closed, and nil is
// returned.
func (res *Reservation) Activate(conn net.Conn, remoteAddr string, proto protocol.EndpointProtocol, cfg *yamux.Config) (*Session, error) {
	if !res.done.CompareAndSwap(false, true) {
		panic("upstream: reservation used twice")
	}
	r := res.registry
	// yamux closes its conn whenever the session ends: that is when the
	// session leaves the registry (no goroutine per session to wait).
	hooked := &closeHook{Conn: conn}
	mux, err := yamux.Server(hooked, cfg)
	if err != nil {
		r.mu.Lock()
		r.unpendLocked(res.endpoint)
		r.notifyLocked()
		r.mu.Unlock()
		_ = conn.Close()
		return nil, fmt.Errorf("starting the yamux session: %w", err)
	}
	s := &Session{
		id:          r.nextID.Add(1),
		endpoint:    res.endpoint,
		protocol:    proto,
		remoteAddr:  remoteAddr,
		connectedAt: time.Now(),
		mux:         mux,
		conn:        hooked,
		registry:    r,
		closed:      make(chan struct{}),
	}
	r.mu.Lock()
	r.unpendLocked(res.endpoint)
	if r.draining {
		r.notifyLocked()
		r.mu.Unlock()
		r.metrics.registrations.WithLabelValues("draining").Inc()
		_ = mux.GoAway()
		go mux.Close()
		return nil, nil
	}
	e := r.endpoints[res.endpoint]
	if e == nil {
		e = &endpointSessions{}
		r.endpoints[res.endpoint] = e
	}
	if len(e.sessions) == 0 {
		r.served++
	}
	e.sessions = append(e.sessions[:len(e.sessions):len(e.sessions)], s)
	r.sessions++
	r.all[s] = struct{}{}
	r.notifyLocked()
	r.mu.Unlock()
	r.metrics.registrations.WithLabelValues("accepted").Inc()
	r.logger.Info("upstream connected", "endpoint", s.endpoint, "session", s.id, "remote_addr", remoteAddr, "protocol", cmp.Or(string(proto), "unknown"))

	hooked.onClose(func() { r.ended(s) })
	return s, nil
}

// ended removes s from the registry once its yamux session has ended.
func (r *Registry) ended(s *Session) {
	s.closeIdle()
	r.mu.Lock()
	r.removeLocked(s)
	delete(r.all, s)
	r.notifyLocked()
	r.mu.Unlock()
	close(s.closed)
	r.logger.Info("upstream disconnected", "endpoint", s.endpoint, "session", s.id, "remote_addr", s.remoteAddr,
		"connected_for", time.Since(s.connectedAt).Round(time.Millisecond).String())
}

// closeHook runs a function, once, after the conn is closed.
type closeHook struct {
	net.Conn
	mu     sync.Mutex
	closed bool
	fn     func()
}

func (c *closeHook) Close() error {
	err := c.Conn.Close()
	c.mu.Lock()
	first := !c.closed
	c.closed = true
	fn := c.fn
	c.mu.Unlock()
	if first && fn != nil {
		go fn()
	}
	return err
}

// onClose registers fn; it runs at once if the conn is already closed.
func (c *closeHook) onClose(fn func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		go fn()
		return
	}
	c.fn = fn
}

// removeLocked takes s out of routing; it reports whether s was routable.
func (r *Registry) removeLocked(s *Session) bool {
	e := r.endpoints[s.endpoint]
	if e == nil {
		return false
	}
	i := -1
	for j, x := range e.sessions {
		if x == s {
			i = j
			break
		}
	}
	if i < 0 {
		return false
	}
	sessions := make([]*Session, 0, len(e.sessions)-1)
	sessions = append(sessions, e.sessions[:i]...)
	e.sessions = append(sessions, e.sessions[i+1:]...)
	if len(e.sessions) == 0 {
		r.served--
	}
	if len(e.sessions) == 0 && e.pending == 0 {
		delete(r.endpoints, s.endpoint)
	}
	r.sessions--
	return true
}

// Drain refuses new registrations, tells every agent to go away (yamux
// GoAway), removes all sessions from routing and closes each one once its
// in-flight streams have finished. It returns when every session has
// closed, or when ctx ends, in which case the remaining sessions are
// closed at once and ctx's error is returned.
func (r *Registry) Drain(ctx context.Context) error {
	r.mu.Lock()
	r.draining = true
	sessions := make([]*Session, 0, len(r.all))
	for s := range r.all {
		sessions = append(sessions, s)
		r.removeLocked(s)
		s.closing.Store(true)
	}
	r.notifyLocked()
	r.mu.Unlock()

	r.logger.Info("draining upstream connections", "sessions", len(sessions))
	var goAways sync.WaitGroup
	for _, s := range sessions {
		goAways.Go(s.goAway)
	}
	goAways.Wait()

	for _, s := range sessions {
		select {
		case <-s.closed:
		case <-ctx.Done():
			for _, s := range sessions {
				s.shut()
			}
			return ctx.Err()
		}
	}
	return nil
}

// goAway tells the agent of a session that left routing (closing set) to
// go away and closes the session once it is idle; otherwise the last
// Release closes it.
func (s *Session) goAway() {
	if err := s.mux.GoAway(); err != nil {
		s.registry.logger.Debug("go away failed", "session", s.id, "error", err)
	}
	s.closeIdle()
	if s.active.Load() == 0 {
		s.shut()
	}
}

// Retire takes s out of routing, tells its agent to go away (yamux GoAway:
// the agent reconnects at once) and closes s as soon as its in-flight
// streams finish, at the latest after grace.
func (s *Session) Retire(grace time.Duration) {
	r := s.registry
	r.mu.Lock()
	if r.removeLocked(s) {
		r.notifyLocked()
	}
	s.closing.Store(true)
	r.mu.Unlock()
	s.goAway()
	go func() {
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-t.C:
			s.shut()
		case <-s.closed:
		}
	}()
}

// Close closes every session at once.
func (r *Registry) Close() {
	r.mu.Lock()
	r.draining = true
	sessions := make([]*Session, 0, len(r.all))
	for s := range r.all {
		sessions = append(sessions, s)
	}
	r.mu.Unlock()
	for _, s := range sessions {
		s.closing.Store(true)
		s.shut()
	}
}

// Draining reports whether Drain or Close has begun.
func (r *Registry) Draining() bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.draining
}
