// Package server assembles a Pico server node: the proxy, upstream and
// admin listeners, the upstream registry, the membership (the cluster, or
// a standalone node that still binds the gossip port), readiness, and the
// graceful drain on shutdown.
//
// Drain order (Shutdown), all within server.graceful_shutdown_timeout:
// /ready answers 503 at once and the node is marked leaving; the upstream
// port refuses new agents (503); every agent session gets a yamux GoAway,
// leaves routing at once (its endpoints disappear from this node's
// published counts, so peers stop forwarding here) and is closed as soon
// as its in-flight streams finish (the agent reconnects elsewhere);
// for server.drain_delay (at most a quarter of the timeout) the proxy
// port still serves new requests (forwarding them to other nodes) without
// keep-alive, so load balancers and peers can notice; then the proxy port
// stops accepting and every in-flight request finishes (tunnels and requests forwarded here
// included); then the node leaves the membership and the remaining
// listeners close.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/pico-proxy/pico/internal/admin"
	"github.com/pico-proxy/pico/internal/config"
	"github.com/pico-proxy/pico/internal/proxy"
	"github.com/pico-proxy/pico/internal/upstream"
)

// Option customises a Server.
type Option func(*options)

type options struct {
	membership MembershipFactory
	// Liveness checks of agents, set only by tests (export_test.go):
	// there is no configuration key for them.
	suspectAfter time.Duration         // 0: the proxy's default
	probe        upstream.ProbeOptions // zero fields: upstream.DefaultProbe
}

// WithMembership plugs in the cluster membership (default: Standalone).
func WithMembership(f MembershipFactory) Option {
	return func(o *options) { o.membership = f }
}

// gossipLookupTimeout bounds resolving names in gossip.bind_addr and
// gossip.advertise_addr.
const gossipLookupTimeout = 10 * time.Second

// Addrs are the bound listener addresses.
type Addrs struct {
	Proxy    string
	Upstream string
	Admin    string
	Gossip   string
}

// Server is one Pico server node.
type Server struct {
	cfg      *config.Server
	base     *slog.Logger // for components, which add their subsystem
	logger   *slog.Logger
	opts     options
	id       string
	metrics  *prometheus.Registry
	registry *upstream.Registry

	proxy      *proxy.Proxy
	membership Membership
	security   *security

	proxyLn, upstreamLn, adminLn    net.Listener
	proxySrv, upstreamSrv, adminSrv *http.Server
	ready, started, shuttingDown    atomic.Bool
	serving                         sync.WaitGroup
	addrs                           Addrs

	syncing  bool
	stopSync chan struct{}
	// stopRebalance stops the cluster.rebalance loop (nil: not running);
	// rebalanceStopped keeps it from starting once the drain began.
	rebalanceMu      sync.Mutex
	stopRebalance    func()
	rebalanceStopped bool
	stopSyncOnce     sync.Once
	syncDone         chan struct{}

	shutdownOnce sync.Once
	shutdownErr  error
}

// New returns a server for cfg (already validated, e.g. by config.Load).
// Nothing is bound before Start.
func New(cfg *config.Server, logger *slog.Logger, opts ...Option) (*Server, error) {
	if cfg == nil {
		return nil, errors.New("server: nil configuration")
	}
	if !cfg.Validated() {
		return nil, errors.New("server: the configuration is not validated; load it with config.Load or call its Validate")
	}
	o := options{
		membership: NewStandalone,
	}
	for _, opt := range opts {
		opt(&o)
	}
	metrics := prometheus.NewRegistry()
	metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	sec, err := newSecurity(cfg, logger)
	if err != nil {
		return nil, err
	}
	id := cfg.Cluster.NewNodeID() // the one choice of the node ID; the membership receives it
	s := &Server{
		security: sec,
		cfg:      cfg,
		base:     logger,
		logger:   logger.With("subsystem", "server", "node", id),
		opts:     o,
		id:       id,
		metrics:  metrics,
		stopSync: make(chan struct{}),
		syncDone: make(chan struct{}),
	}
	s.registry = upstream.NewRegistry(logger, upstream.RegistryOptions{
		MaxStreamsPerConnection: cfg.Upstream.MaxStreamsPerConnection,
		Metrics:                 metrics,
		Probe:                   o.probe,
	})
	return s, nil
}

// ID returns the node ID.
func (s *Server) ID() string { return s.id }

// Addrs returns the bound addresses (valid after Start).
func (s *Server) Addrs() Addrs { return s.addrs }

// Ready reports whether /ready answers 200.
func (s *Server) Ready() bool { return s.ready.Load() }

// Registry returns the local upstream registry.
func (s *Server) Registry() *upstream.Registry { return s.registry }

// Start binds the listeners, starts serving, joins the cluster and then
// reports ready. If it fails, everything it started is stopped.
func (s *Server) Start(ctx context.Context) (err error) {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("server: Start called twice")
	}
	defer func() {
		if err != nil {
			s.closeNow()
		}
	}()
	if s.proxyLn, err = listen("proxy", s.cfg.Proxy.BindAddr); err != nil {
		return err
	}
	if s.upstreamLn, err = listen("upstream", s.cfg.Upstream.BindAddr); err != nil {
		return err
	}
	if s.adminLn, err = listen("admin", s.cfg.Admin.BindAddr); err != nil {
		return err
	}
	local := LocalNode{ID: s.id}
	var errs [4]error
	local.ProxyAddr, errs[0] = advertiseAddr("proxy", s.cfg.Proxy.AdvertiseAddr, s.proxyLn.Addr())
	local.UpstreamAddr, errs[1] = advertiseAddr("upstream", s.cfg.Upstream.AdvertiseAddr, s.upstreamLn.Addr())
	local.AdminAddr, errs[2] = advertiseAddr("admin", s.cfg.Admin.AdvertiseAddr, s.adminLn.Addr())
	lookup, cancel := context.WithTimeout(ctx, gossipLookupTimeout)
	local.GossipBind, local.GossipAdvertise, errs[3] = gossipAddrs(lookup, net.DefaultResolver, s.cfg.Gossip)
	cancel()
	if err := errors.Join(errs[:]...); err != nil {
		return err
	}
	if s.membership, err = s.opts.membership(local, s.metrics); err != nil {
		return fmt.Errorf("starting the membership: %w", err)
	}
	s.addrs = Addrs{
		Proxy:    s.proxyLn.Addr().String(),
		Upstream: s.upstreamLn.Addr().String(),
		Admin:    s.adminLn.Addr().String(),
		Gossip:   s.membership.GossipAddr(),
	}

	s.proxy = proxy.New(proxy.Options{
		Registry:               s.registry,
		Router:                 s.membership,
		LocalID:                s.id,
		GatewayTimeout:         s.cfg.Proxy.GatewayTimeout,
		MaxResponseHeaderBytes: int64(s.cfg.Proxy.MaxResponseHeaderBytes),
		UpstreamWait:           s.cfg.Proxy.UpstreamWait,
		SuspectAfter:           s.opts.suspectAfter,
		Auth:                   s.security.proxyAuth,
		DialNode:               s.security.dialNode(),
		OneRequestPerStream:    !s.cfg.Upstream.ReuseStreams,
		Metrics:                s.metrics,
		Logger:                 s.base,
	})
	s.proxySrv = s.httpServer("proxy", s.proxy)
	s.proxySrv.ConnContext = proxy.ConnContext // closes a client's connection when its token expires
	s.upstreamSrv = s.httpServer("upstream", upstream.NewHandler(s.registry, s.base,
		upstream.WithVerifier(s.security.upstreamAuth, s.cfg.Proxy.GatewayTimeout)))
	s.adminSrv = s.httpServer("admin", s.security.adminAuth.AdminMiddleware(admin.New(admin.Options{
		Ready:     s.ready.Load,
		Gatherer:  s.metrics,
		Cluster:   s.membership,
		Endpoints: s.registry.Counts,
		Logger:    s.base,
	})))
	s.serve(s.proxySrv, wrapListener(s.proxyLn, s.security.proxyTLS))
	s.serve(s.upstreamSrv, wrapListener(s.upstreamLn, s.security.upstreamTLS))
	s.serve(s.adminSrv, wrapListener(s.adminLn, s.security.adminTLS))
	s.syncing = true
	go s.syncEndpoints()

	if err := s.membership.Join(ctx); err != nil {
		return fmt.Errorf("joining the cluster: %w", err)
	}
	if s.shuttingDown.Load() {
		return errors.New("server: shut down while starting")
	}
	s.ready.Store(true)
	s.startRebalancing()
	s.logger.Info("server ready", "proxy", s.addrs.Proxy, "upstream", s.addrs.Upstream, "admin", s.addrs.Admin, "gossip", s.addrs.Gossip)
	return nil
}

func listen(name, addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s.bind_addr %q: %w", name, addr, err)
	}
	return ln, nil
}

func (s *Server) httpServer(name string, h http.Handler) *http.Server {
	logger := s.logger.With("listener", name)
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: s.cfg.Proxy.ReadHeaderTimeout,
		IdleTimeout:       s.cfg.Proxy.IdleTimeout,
		MaxHeaderBytes:    s.cfg.Proxy.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
}

func (s *Server) serve(srv *http.Server, ln net.Listener) {
	s.serving.Go(func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.logger.Error("listener failed", "addr", ln.Addr().String(), "error", err)
		}
	})
}

// syncEndpoints publishes the local endpoint counts on every change.
func (s *Server) syncEndpoints() {
	defer close(s.syncDone)
	for {
		changed := s.registry.Changed()
		s.membership.UpdateLocalEndpoints(s.registry.Counts())
		select {
		case <-changed:
		case <-s.stopSync:
			return
		}
	}
}

// Shutdown drains the node (see the package documentation) within ctx and
// server.graceful_shutdown_timeout, whichever ends first. It returns an
// error if the drain had to cut work short; the node is stopped either
// way. Calling it again returns the first result.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutdownOnce.Do(func() { s.shutdownErr = s.drain(ctx) })
	return s.shutdownErr
}

func (s *Server) drain(ctx context.Context) error {
	s.shuttingDown.Store(true)
	s.ready.Store(false)
	s.stopRebalancing()
	if s.membership == nil || s.proxySrv == nil {
		s.closeNow()
		return nil
	}
	timeout := s.cfg.Server.GracefulShutdownTimeout
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	began := time.Now()
	s.logger.Info("draining", "timeout", timeout.String(), "in_flight", s.proxy.InFlight(), "upstreams", s.registry.Sessions())

	s.membership.SetLeaving()
	drained := make(chan error, 1)
	go func() { drained <- s.registry.Drain(ctx) }()

	// Lame duck: keep serving (without keep-alive) so that load
	// balancers and peers notice the node is leaving.
	s.proxySrv.SetKeepAlivesEnabled(false)
	grace := min(s.cfg.Server.DrainDelay, timeout/4)
	if grace > 0 {
		t := time.NewTimer(grace)
		select {
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}

	var errs []error
	if err := s.proxySrv.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("proxy requests still in flight: %w", err))
	}
	if err := s.proxy.WaitIdle(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := <-drained; err != nil {
		errs = append(errs, fmt.Errorf("upstream connections still busy: %w", err))
	}
	s.stopSyncing()

	leaveTimeout := time.Until(deadlineOf(ctx))
	if leaveTimeout < time.Second {
		leaveTimeout = time.Second
	}
	if err := s.membership.Leave(leaveTimeout); err != nil {
		errs = append(errs, fmt.Errorf("leaving the cluster: %w", err))
	}
	s.closeNow()
	err := errors.Join(errs...)
	if err != nil {
		s.logger.Warn("drain cut short", "after", time.Since(began).Round(time.Millisecond).String(), "error", err)
	} else {
		s.logger.Info("drained", "after", time.Since(began).Round(time.Millisecond).String())
	}
	return err
}

func deadlineOf(ctx context.Context) time.Time {
	d, ok := ctx.Deadline()
	if !ok {
		return time.Now().Add(time.Minute)
	}
	return d
}

func (s *Server) stopRebalancing() {
	s.rebalanceMu.Lock()
	stop := s.stopRebalance
	s.rebalanceStopped = true
	s.rebalanceMu.Unlock()
	if stop != nil {
		stop()
	}
}

func (s *Server) stopSyncing() {
	s.stopSyncOnce.Do(func() { close(s.stopSync) })
	if s.syncing {
		<-s.syncDone
	}
}

// closeNow stops everything at once.
func (s *Server) closeNow() {
	s.ready.Store(false)
	s.stopRebalancing()
	s.stopSyncing()
	s.registry.Close()
	for _, srv := range []*http.Server{s.proxySrv, s.upstreamSrv, s.adminSrv} {
		if srv != nil {
			_ = srv.Close()
		}
	}
	for _, ln := range []net.Listener{s.proxyLn, s.upstreamLn, s.adminLn} {
		if ln != nil {
			_ = ln.Close()
		}
	}
	if s.proxy != nil {
		s.proxy.CloseIdleConnections()
	}
	if s.membership != nil {
		if err := s.membership.Shutdown(); err != nil {
			s.logger.Debug("membership shutdown", "error", err)
		}
	}
	s.serving.Wait()
	s.security.close()
}
