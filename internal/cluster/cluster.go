package cluster

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pico-proxy/pico/internal/adminapi"
	"github.com/pico-proxy/pico/internal/config"
	"github.com/pico-proxy/pico/internal/filereload"
)

// Memberlist timings. Pico runs on a LAN (usually a Kubernetes pod
// network), so it probes faster than memberlist's LAN defaults to meet
// its failure-detection target: a killed node is out of routing within
// 5 s.
//
// A failed node is first suspected when a probe gets no direct UDP ack
// within ProbeTimeout, no indirect ack through other members and no TCP
// fallback ack before the end of its ProbeInterval. Every member probes
// one member per interval in a shuffled round-robin, so with 3 nodes each
// survivor probes the failed node at least every 2–3 intervals: suspicion
// starts 0.4–1.2 s after the failure. The suspect is declared dead after
// SuspicionMult × ProbeInterval × max(1, log10(N)) = 1.2 s (N < 10) once
// another member confirms the suspicion, and after SuspicionMaxTimeoutMult
// times that (2.4 s) without confirmation. The dead message then gossips
// every GossipInterval. Worst case ≈ 1.2 + 2.4 + 0.2 ≈ 3.8 s; measured
// 2.2–2.4 s on average, worst 3.5 s, on loopback (BenchmarkFailureDetection).
// memberlist's Lifeguard stretches the probe interval of a node that is
// itself unhealthy (starved of CPU), which can lengthen detection. A live node that is wrongly
// suspected has 1.2 s or more to refute, which tolerates GC pauses and
// CPU starvation far longer than any seen on a LAN.
const (
	probeInterval           = 400 * time.Millisecond
	probeTimeout            = 200 * time.Millisecond
	suspicionMult           = 3
	suspicionMaxTimeoutMult = 2
	gossipInterval          = 100 * time.Millisecond
)

// memberlistLabel keeps Pico's gossip apart from other memberlist users
// (Piko, Consul, …) that might be reachable on the same port: packets
// with another label are dropped.
const memberlistLabel = "pico"

// Defaults of Timing.
const (
	defaultForgetAfter       = 10 * time.Second
	defaultReconnectInterval = 5 * time.Second
	defaultReconnectTimeout  = 5 * time.Minute
	defaultJoinTimeout       = time.Minute
)

// Config configures a cluster node with resolved values: the caller
// (internal/server) has chosen the node ID, resolved the gossip addresses
// and parsed the configuration (config.Server.Validate).
type Config struct {
	// NodeID is this node's ID (config.Cluster.NewNodeID), required.
	NodeID string
	// BindAddr is where memberlist listens (TCP and UDP); port 0 picks a
	// free port, which is then advertised too.
	BindAddr netip.AddrPort
	// AdvertiseAddr is the address the other members reach this node's
	// memberlist on (see internal/server's advertise rule).
	AdvertiseAddr netip.AddrPort
	// Join are the parsed cluster.join entries; a target without a port
	// means this node's gossip port.
	Join []config.JoinTarget
	// JoinTimeout bounds the retried initial join (cluster.join_timeout,
	// default 1 min); AbortIfJoinFails makes Join fail when other nodes
	// were found but none could be joined in time
	// (cluster.abort_if_join_fails).
	JoinTimeout      time.Duration
	AbortIfJoinFails bool
	// RejoinInterval is how often Run re-resolves Join and joins missing
	// members (cluster.rejoin_interval); 0 disables it.
	RejoinInterval time.Duration
	// GossipKeys are the keys gossip.secret_key held at load: when set,
	// all gossip is encrypted and authenticated with AES-GCM, so a node
	// without the keys can neither join nor read the cluster, nor learn
	// forwarding secrets. A key file is re-read every
	// Timing.GossipKeyCheckInterval and its changes applied to the
	// running keyring (see "Gossip keys" in the package documentation).
	GossipKeys config.GossipKeys
	// ProxyAddr, AdminAddr and UpstreamAddr are the node's advertised
	// addresses (host:port), published to the other members. ProxyAddr is
	// where they forward requests and is required.
	ProxyAddr, AdminAddr, UpstreamAddr string
	// Logger receives the package's logs (subsystem "cluster") and
	// memberlist's (subsystem "cluster.memberlist", at debug). Nil
	// discards them.
	Logger *slog.Logger
	// Registerer receives the package's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Resolver resolves cluster.join names and address names; nil means
	// net.DefaultResolver.
	Resolver *net.Resolver
	// Timing adjusts internal timings; the zero value uses the defaults.
	Timing Timing
}

// Timing holds timings that operators rarely need to change and tests do.
type Timing struct {
	// ForgetAfter is how long a dead or departed node stays listed by
	// Nodes (never routed to). Default 10 s.
	ForgetAfter time.Duration
	// ReconnectInterval is how often the node tries to join the address
	// of a member that failed (not one that left), which heals network
	// partitions even after memberlist stopped gossiping to the dead.
	// Default 5 s.
	ReconnectInterval time.Duration
	// ReconnectTimeout is how long after its failure a member's address
	// keeps being tried. Default 5 min.
	ReconnectTimeout time.Duration
	// GossipKeyCheckInterval is how often a gossip.secret_key file is
	// checked for changes. Default 10 s (filereload.DefaultInterval).
	GossipKeyCheckInterval time.Duration
	// Memberlist, when set, may adjust memberlist's configuration last.
	Memberlist func(*memberlist.Config)
}

// Cluster is this node's view of the cluster: membership, the routing
// table of which node holds upstreams for which endpoint, and the
// forwarding secrets of the members. Its methods are safe for concurrent
// use.
type Cluster struct {
	cfg      Config
	log      *slog.Logger
	id       string
	secret   []byte
	timing   Timing
	resolver *net.Resolver
	metrics  *metrics
	keys     *gossipKeys

	ml         *memberlist.Memberlist
	queue      *memberlist.TransmitLimitedQueue
	gossipAddr netip.AddrPort // advertised
	bindAddr   netip.AddrPort
	joins      []config.JoinTarget // cfg.Join with the gossip port filled in
	network    string              // "ip4" or "ip6": the family of join lookups
	members    atomic.Int32

	mu        sync.RWMutex
	peers     map[string]*peer
	local     localState
	changed   chan struct{}
	reconnect map[string]*reconnectTarget

	publishCh chan struct{}
	metaCh    chan struct{}
	// metaMu orders metadata updates with Leave and Shutdown: memberlist
	// must not re-announce a node that has left, nor be used after its
	// shutdown.
	metaMu sync.Mutex
	left   bool
	closed bool

	stop     chan struct{}
	stopOnce sync.Once
	// wg counts the background goroutines; spawnMu and stopped keep new
	// ones from starting once Shutdown waits for them.
	wg      sync.WaitGroup
	spawnMu sync.Mutex
	stopped bool
}

// localState is what this node publishes about itself.
type localState struct {
	status    string         // adminapi.StatusActive, adminapi.StatusLeaving or adminapi.StatusLeft
	desired   map[string]int // latest UpdateLocalEndpoints (never mutated)
	upstreams int            // sum of desired
	// The last published state and its version.
	version          uint64
	published        map[string]int // a former desired: never mutated, read without c.mu
	publishedLeaving bool
}

// New creates the node's memberlist (listening on gossip.bind_addr, TCP
// and UDP) without joining anyone; call Join, then Run.
func New(cfg Config) (*Cluster, error) {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.NodeID == "" {
		return nil, errors.New("cluster: the node ID is empty")
	}
	id := cfg.NodeID
	if cfg.ProxyAddr == "" {
		return nil, errors.New("cluster: the node's advertised proxy address is empty")
	}
	c := &Cluster{
		cfg:       cfg,
		log:       logger.With("subsystem", "cluster"),
		id:        id,
		secret:    make([]byte, secretSize),
		timing:    cfg.Timing,
		resolver:  cfg.Resolver,
		peers:     make(map[string]*peer),
		changed:   make(chan struct{}),
		reconnect: make(map[string]*reconnectTarget),
		publishCh: make(chan struct{}, 1),
		metaCh:    make(chan struct{}, 1),
		stop:      make(chan struct{}),
		local:     localState{status: adminapi.StatusActive, desired: map[string]int{}, published: map[string]int{}},
	}
	if c.resolver == nil {
		c.resolver = net.DefaultResolver
	}
	c.timing.ForgetAfter = orDefault(c.timing.ForgetAfter, defaultForgetAfter)
	c.timing.ReconnectInterval = orDefault(c.timing.ReconnectInterval, defaultReconnectInterval)
	c.timing.ReconnectTimeout = orDefault(c.timing.ReconnectTimeout, defaultReconnectTimeout)
	if _, err := rand.Read(c.secret); err != nil {
		return nil, fmt.Errorf("cluster: generating the forwarding secret: %w", err)
	}
	// With addresses of at most maxAddrLength, the metadata stays within
	// memberlist's 512 bytes whatever the state version.
	for _, a := range []struct{ name, addr string }{{"proxy", cfg.ProxyAddr}, {"admin", cfg.AdminAddr}, {"upstream", cfg.UpstreamAddr}} {
		if len(a.addr) > maxAddrLength {
			return nil, fmt.Errorf("%s.advertise_addr %q is longer than %d characters", a.name, a.addr, maxAddrLength)
		}
	}

	c.timing.GossipKeyCheckInterval = orDefault(c.timing.GossipKeyCheckInterval, filereload.DefaultInterval)
	c.metrics = newMetrics(c)
	var err error
	c.keys, err = newGossipKeys(cfg.GossipKeys, c.log, c.metrics.setGossipKeys)
	if err != nil {
		return nil, err
	}

	if err := c.metrics.register(cfg.Registerer); err != nil {
		return nil, err
	}

	mc := memberlist.DefaultLANConfig()
	mc.Name = id
	mc.BindAddr = cfg.BindAddr.Addr().String()
	mc.BindPort = int(cfg.BindAddr.Port())
	mc.AdvertiseAddr = cfg.AdvertiseAddr.Addr().String()
	mc.AdvertisePort = int(cfg.AdvertiseAddr.Port())
	mc.ProbeInterval = probeInterval
	mc.ProbeTimeout = probeTimeout
	mc.SuspicionMult = suspicionMult
	mc.SuspicionMaxTimeoutMult = suspicionMaxTimeoutMult
	mc.GossipInterval = gossipInterval
	mc.Label = memberlistLabel
	mc.Keyring = c.keys.ring
	mc.Delegate = &delegate{c: c}
	mc.Events = &events{c: c}
	mc.Logger = log.New(&memberlistLogWriter{log: logger.With("subsystem", "cluster.memberlist")}, "", 0)
	if c.timing.Memberlist != nil {
		c.timing.Memberlist(mc)
	}
	c.queue = &memberlist.TransmitLimitedQueue{
		NumNodes:       func() int { return int(c.members.Load()) + 1 },
		RetransmitMult: mc.RetransmitMult,
	}
	c.ml, err = memberlist.Create(mc)
	if err != nil {
		c.metrics.unregister(cfg.Registerer)
		return nil, fmt.Errorf("cluster: starting memberlist on gossip.bind_addr %s: %w", cfg.BindAddr, err)
	}
	self := c.ml.LocalNode()
	selfIP, _ := netip.AddrFromSlice(self.Addr)
	c.gossipAddr = netip.AddrPortFrom(selfIP.Unmap(), self.Port)
	c.bindAddr = netip.AddrPortFrom(cfg.BindAddr.Addr(), self.Port)
	c.network = "ip4"
	if c.gossipAddr.Addr().Is6() {
		c.network = "ip6"
	}
	for _, t := range cfg.Join {
		if t.Port == 0 {
			t.Port = c.gossipAddr.Port()
		}
		c.joins = append(c.joins, t)
	}

	c.wg.Add(2)
	go c.publishLoop()
	go c.metaLoop()
	c.every(maintenanceInterval, func() { c.maintain(time.Now()) })
	if c.keys.file != nil {
		// Applies changes of the gossip key file.
		c.every(c.timing.GossipKeyCheckInterval, c.keys.reload)
	}
	attrs := []any{"node_id", id, "gossip_addr", c.gossipAddr.String(), "encrypted", c.keys.ring != nil}
	if c.keys.ring != nil {
		attrs = append(attrs, "gossip_keys", len(c.keys.applied), "gossip_primary_key_id", keyID(c.keys.applied[0]))
	}
	c.log.Info("cluster node started", attrs...)
	return c, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// LocalID is this node's ID.
func (c *Cluster) LocalID() string { return c.id }

// GossipAddr is the address (ip:port) other members reach this node's
// memberlist on.
func (c *Cluster) GossipAddr() string { return c.gossipAddr.String() }

// SetLeaving marks the node as leaving: the other members stop routing new
// requests to it as soon as they hear it (a direct message to each, then
// gossip), while it keeps serving. Call it first when draining.
func (c *Cluster) SetLeaving() {
	c.mu.Lock()
	if c.local.status == adminapi.StatusActive {
		c.local.status = adminapi.StatusLeaving
	}
	c.notifyLocked()
	c.mu.Unlock()
	signal(c.publishCh)
	c.log.Info("node is leaving: peers stop routing to it")
}

// Leave announces that the node leaves the cluster so that the other
// members drop it at once instead of after failure detection. It waits up
// to timeout for the announcement to go out, or until no other member is
// alive to hear it (the whole cluster stopping at once: memberlist would
// otherwise hold the last nodes until the timeout). The node keeps
// answering gossip until Shutdown.
func (c *Cluster) Leave(timeout time.Duration) error {
	c.metaMu.Lock()
	defer c.metaMu.Unlock()
	if c.closed {
		return errors.New("cluster: Leave after Shutdown")
	}
	c.left = true
	c.mu.Lock()
	c.local.status = adminapi.StatusLeft
	c.notifyLocked()
	c.mu.Unlock()
	// Tell every member directly that this node is leaving (if SetLeaving
	// did not already), so that they record a departure, not a failure.
	c.publish()
	announced := make(chan error, 1)
	go func() { announced <- c.ml.Leave(timeout) }()
	poll := time.NewTicker(leavePollInterval)
	defer poll.Stop()
	for {
		select {
		case err := <-announced:
			if err != nil {
				return fmt.Errorf("cluster: announcing the leave: %w", err)
			}
			c.log.Info("left the cluster")
			return nil
		case <-poll.C:
			// Members lists the nodes neither dead nor left. Once this
			// node is not among them, memberlist's Leave has marked it
			// left (so Shutdown may follow); once nobody else is either,
			// the announcement has no one to reach. The goroutine ends at
			// its timeout.
			if len(c.ml.Members()) == 0 {
				c.log.Info("left the cluster; no other member was left to tell")
				return nil
			}
		}
	}
}

// leavePollInterval is how often Leave checks whether any member is still
// there to hear the announcement.
const leavePollInterval = 50 * time.Millisecond

// Shutdown stops gossip and the background work. Without Leave before it,
// the other members detect the node as failed.
func (c *Cluster) Shutdown() error {
	c.stopOnce.Do(func() { close(c.stop) })
	c.spawnMu.Lock()
	c.stopped = true
	c.spawnMu.Unlock()
	c.metaMu.Lock()
	alreadyClosed := c.closed
	c.closed = true
	c.metaMu.Unlock()
	if alreadyClosed {
		return nil
	}
	err := c.ml.Shutdown()
	c.wg.Wait()
	c.metrics.unregister(c.cfg.Registerer)
	if err != nil {
		return fmt.Errorf("cluster: stopping memberlist: %w", err)
	}
	return nil
}

// spawn runs f in a goroutine that Shutdown waits for, unless the node is
// shutting down.
func (c *Cluster) spawn(f func()) {
	c.spawnMu.Lock()
	defer c.spawnMu.Unlock()
	if c.stopped {
		return
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		f()
	}()
}

// signal wakes the goroutine waiting on ch without blocking; several
// signals before it runs count as one.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// memberlistLogWriter turns memberlist's log lines ("[DEBUG] memberlist:
// …") into debug records.
type memberlistLogWriter struct {
	log *slog.Logger
}

func (w *memberlistLogWriter) Write(p []byte) (int, error) {
	if !w.log.Enabled(context.Background(), slog.LevelDebug) {
		return len(p), nil
	}
	line := string(p)
	for len(line) > 0 && (line[len(line)-1] == '\n' || line[len(line)-1] == '\r') {
		line = line[:len(line)-1]
	}
	level := ""
	if len(line) > 2 && line[0] == '[' {
		for i := 1; i < len(line) && i < 10; i++ {
			if line[i] == ']' {
				level, line = line[1:i], line[i+1:]
				break
			}
		}
	}
	if len(line) > 0 && line[0] == ' ' {
		line = line[1:]
	}
	w.log.Debug(line, "memberlist_level", level)
	return len(p), nil
}
