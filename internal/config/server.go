package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/spf13/pflag"
)

// Server is the configuration of `pico server`.
type Server struct {
	// Auth authenticates upstreams (agents) on the upstream port: YAML
	// section `auth`, as Piko names it.
	Auth     Auth      `yaml:"auth"`
	Proxy    Proxy     `yaml:"proxy"`
	Upstream Upstream  `yaml:"upstream"`
	Admin    Admin     `yaml:"admin"`
	Gossip   Gossip    `yaml:"gossip"`
	Cluster  Cluster   `yaml:"cluster"`
	Server   Lifecycle `yaml:"server"`
	Log      Log       `yaml:"log"`

	validated bool // Validate succeeded
}

// DefaultServer returns the documented defaults.
func DefaultServer() *Server {
	return &Server{
		Auth:     DefaultAuth(),
		Proxy:    DefaultProxy(),
		Upstream: DefaultUpstream(),
		Admin:    Admin{Listener: Listener{BindAddr: ":8002"}, Auth: DefaultAuth()},
		Gossip:   Gossip{Listener: Listener{BindAddr: ":8003"}},
		Cluster:  DefaultCluster(),
		Server:   Lifecycle{GracefulShutdownTimeout: time.Minute, DrainDelay: 5 * time.Second},
		Log:      Log{Level: "info"},
	}
}

// RegisterFlags registers one flag per key, bound to s's fields.
func (s *Server) RegisterFlags(fs *pflag.FlagSet) {
	s.Auth.RegisterFlags(fs, "auth")
	s.Proxy.RegisterFlags(fs)
	s.Upstream.RegisterFlags(fs)
	s.Admin.RegisterFlags(fs)
	s.Gossip.RegisterFlags(fs)
	s.Cluster.RegisterFlags(fs)
	s.Server.RegisterFlags(fs)
	s.Log.RegisterFlags(fs)
}

// Validate returns every problem found, joined, and parses what the
// components take parsed (log level, join entries, gossip keys).
func (s *Server) Validate() error {
	err := errors.Join(
		s.Auth.Validate("auth"),
		s.Proxy.Validate(),
		s.Upstream.Validate(),
		s.Admin.Validate(),
		s.Gossip.Validate(),
		s.Cluster.Validate(),
		s.Server.Validate(),
		s.Log.Validate(),
	)
	s.validated = err == nil
	return err
}

// Validated reports whether the last Validate succeeded: the parsed values
// are then in place.
func (s *Server) Validated() bool { return s.validated }

// Listener is a bind address plus the address other nodes use to reach it.
type Listener struct {
	// BindAddr is the host:port to listen on; an empty host means all
	// interfaces.
	BindAddr string `yaml:"bind_addr"`
	// AdvertiseAddr is the host:port other nodes use. Empty means derived:
	// the bind address if it names an IP, otherwise the node's private IP
	// with the bind port.
	AdvertiseAddr string `yaml:"advertise_addr"`
}

func (l *Listener) registerFlags(fs *pflag.FlagSet, section, what string) {
	fs.StringVar(&l.BindAddr, section+".bind-addr", l.BindAddr, "address to listen on for "+what)
	fs.StringVar(&l.AdvertiseAddr, section+".advertise-addr", l.AdvertiseAddr, "address other nodes use to reach the "+section+" listener (default: derived from the bind address)")
}

// Validate checks both addresses of the listener whose YAML section is
// section (e.g. "proxy").
func (l *Listener) Validate(section string) error {
	var errs []error
	if err := validateHostPort(l.BindAddr); err != nil {
		errs = append(errs, fmt.Errorf("%s.bind_addr (--%s.bind-addr) %q: %w; use host:port such as \":8000\" or \"10.0.0.1:8000\"", section, section, l.BindAddr, err))
	}
	if l.AdvertiseAddr != "" {
		if err := validateHostPort(l.AdvertiseAddr); err != nil {
			errs = append(errs, fmt.Errorf("%s.advertise_addr (--%s.advertise-addr) %q: %w; use host:port such as \"10.0.0.1:8000\"", section, section, l.AdvertiseAddr, err))
		}
	}
	return errors.Join(errs...)
}

func validateHostPort(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New("not a host:port address")
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	return nil
}

// Proxy configures the listener for proxy clients.
type Proxy struct {
	Listener `yaml:",inline"`
	// GatewayTimeout bounds the wait for an upstream's response headers;
	// after it the client gets 504.
	GatewayTimeout time.Duration `yaml:"gateway_timeout"`
	// ReadHeaderTimeout bounds how long a client may take to send its
	// request headers (slowloris protection).
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	// IdleTimeout closes idle keep-alive client connections.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxHeaderBytes caps the size of a request's headers.
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// MaxResponseHeaderBytes caps the size of a response head from an
	// upstream or another node, its informational (1xx) heads included;
	// a larger one gets the client 502 (agents are not trusted).
	MaxResponseHeaderBytes int `yaml:"max_response_header_bytes"`
	// UpstreamWait bounds how long a request for an endpoint with no
	// upstream anywhere in the cluster waits for one to appear (an agent
	// reconnecting after its node drained, say) before it gets 502. Zero
	// answers at once.
	UpstreamWait time.Duration `yaml:"upstream_wait"`
	// Auth, when a key is set, requires proxy clients to present a token
	// (requests forwarded by another node are not re-authenticated).
	Auth Auth `yaml:"auth"`
	// TLS, when set, serves the proxy port over TLS; nodes then forward
	// to each other over TLS too.
	TLS TLS `yaml:"tls"`
}

// DefaultProxy returns the proxy defaults.
func DefaultProxy() Proxy {
	return Proxy{
		Listener:               Listener{BindAddr: ":8000"},
		GatewayTimeout:         15 * time.Second,
		ReadHeaderTimeout:      10 * time.Second,
		IdleTimeout:            2 * time.Minute,
		MaxHeaderBytes:         1 << 20,
		MaxResponseHeaderBytes: 1 << 20,
		UpstreamWait:           3 * time.Second,
		Auth:                   DefaultAuth(),
	}
}

// RegisterFlags registers the proxy.* flags.
func (p *Proxy) RegisterFlags(fs *pflag.FlagSet) {
	p.Listener.registerFlags(fs, "proxy", "proxy clients (HTTP)")
	fs.DurationVar(&p.GatewayTimeout, "proxy.gateway-timeout", p.GatewayTimeout, "how long to wait for an upstream's response headers before answering 504")
	fs.DurationVar(&p.ReadHeaderTimeout, "proxy.read-header-timeout", p.ReadHeaderTimeout, "how long a client may take to send request headers")
	fs.DurationVar(&p.IdleTimeout, "proxy.idle-timeout", p.IdleTimeout, "how long an idle keep-alive client connection stays open")
	fs.IntVar(&p.MaxHeaderBytes, "proxy.max-header-bytes", p.MaxHeaderBytes, "maximum size of a request's headers in bytes")
	fs.IntVar(&p.MaxResponseHeaderBytes, "proxy.max-response-header-bytes", p.MaxResponseHeaderBytes, "maximum size of a response head from an upstream or another node in bytes (larger: 502)")
	fs.DurationVar(&p.UpstreamWait, "proxy.upstream-wait", p.UpstreamWait, "how long a request for an endpoint with no upstream waits for one to connect before 502 (0: at once)")
	p.Auth.RegisterFlags(fs, "proxy.auth")
	p.TLS.RegisterFlags(fs, "proxy.tls")
}

// Validate checks the proxy section.
func (p *Proxy) Validate() error {
	return errors.Join(
		p.Listener.Validate("proxy"),
		positiveDuration("proxy.gateway_timeout", p.GatewayTimeout),
		positiveDuration("proxy.read_header_timeout", p.ReadHeaderTimeout),
		positiveDuration("proxy.idle_timeout", p.IdleTimeout),
		positiveInt("proxy.max_header_bytes", p.MaxHeaderBytes),
		positiveInt("proxy.max_response_header_bytes", p.MaxResponseHeaderBytes),
		nonNegativeDuration("proxy.upstream_wait", p.UpstreamWait),
		p.Auth.Validate("proxy.auth"),
		p.TLS.Validate("proxy.tls"),
	)
}

// Upstream configures the listener for upstream (agent) connections.
type Upstream struct {
	Listener `yaml:",inline"`
	// MaxEndpointsPerConnection is not used by the current protocol (one
	// endpoint per connection) but reserved; MaxStreamsPerConnection caps
	// concurrent proxied connections on one upstream session.
	MaxStreamsPerConnection int `yaml:"max_streams_per_connection"`
	// ReuseStreams lets the server send several HTTP/1.1 requests, one
	// after the other, over one yamux stream (keep-alive) instead of
	// opening a stream per request as the protocol specifies. Pico's and
	// Piko's agents serve streams with a keep-alive HTTP server, so this
	// saves a stream open/close per request; leave it off for agents that
	// expect exactly one request per stream.
	ReuseStreams bool `yaml:"reuse_streams"`
	// TLS, when set, serves the upstream port over TLS (agents use
	// https:// or wss://). Agents are authenticated by the top-level
	// `auth` section.
	TLS TLS `yaml:"tls"`
}

// DefaultUpstream returns the upstream defaults.
func DefaultUpstream() Upstream {
	return Upstream{Listener: Listener{BindAddr: ":8001"}, MaxStreamsPerConnection: 4096}
}

// RegisterFlags registers the upstream.* flags.
func (u *Upstream) RegisterFlags(fs *pflag.FlagSet) {
	u.Listener.registerFlags(fs, "upstream", "upstream (agent) connections")
	fs.IntVar(&u.MaxStreamsPerConnection, "upstream.max-streams-per-connection", u.MaxStreamsPerConnection, "maximum concurrent proxied connections through one upstream connection")
	fs.BoolVar(&u.ReuseStreams, "upstream.reuse-streams", u.ReuseStreams, "send several HTTP requests over one yamux stream (keep-alive) instead of one request per stream; only for agents that serve streams with a keep-alive HTTP server (Pico's and Piko's do)")
	u.TLS.RegisterFlags(fs, "upstream.tls")
}

// Validate checks the upstream section.
func (u *Upstream) Validate() error {
	return errors.Join(
		u.Listener.Validate("upstream"),
		positiveInt("upstream.max_streams_per_connection", u.MaxStreamsPerConnection),
		u.TLS.Validate("upstream.tls"),
	)
}

// Admin configures the admin listener (health, readiness, metrics, status).
type Admin struct {
	Listener `yaml:",inline"`
	// Auth, when a key is set, requires a token for every route except
	// /health and /ready, which stay open for Kubernetes probes.
	Auth Auth `yaml:"auth"`
	// TLS, when set, serves the admin API over TLS.
	TLS TLS `yaml:"tls"`
}

// RegisterFlags registers the admin.* flags.
func (a *Admin) RegisterFlags(fs *pflag.FlagSet) {
	a.Listener.registerFlags(fs, "admin", "the admin API (health, readiness, metrics, status)")
	a.Auth.RegisterFlags(fs, "admin.auth")
	a.TLS.RegisterFlags(fs, "admin.tls")
}

// Validate checks the admin section.
func (a *Admin) Validate() error {
	return errors.Join(a.Listener.Validate("admin"), a.Auth.Validate("admin.auth"), a.TLS.Validate("admin.tls"))
}

// Gossip configures memberlist's listener (TCP and UDP).
type Gossip struct {
	Listener `yaml:",inline"`
	// SecretKey, when set, encrypts and authenticates all gossip: the
	// base64 of a 16, 24 or 32-byte AES key, or the path of a file
	// holding one key per line, the first encrypting, all accepted (see
	// LoadGossipKeys); a running node applies changes to the file. Nodes
	// without the keys can neither join nor read the cluster.
	SecretKey string `yaml:"secret_key"`

	keys GossipKeys // SecretKey, read by Validate
}

// RegisterFlags registers the gossip.* flags.
func (g *Gossip) RegisterFlags(fs *pflag.FlagSet) {
	g.Listener.registerFlags(fs, "gossip", "cluster gossip (TCP and UDP)")
	fs.StringVar(&g.SecretKey, "gossip.secret-key", g.SecretKey, "base64 AES key (16, 24 or 32 bytes), or the path of a file holding one key per line (the first encrypts, all are accepted; re-read while running), encrypting all gossip")
}

// Validate checks the gossip section and reads the secret key (or its
// file), which must hold usable keys (Keys).
func (g *Gossip) Validate() error {
	keys, err := LoadGossipKeys(g.SecretKey)
	g.keys = keys
	return errors.Join(g.Listener.Validate("gossip"), g.validateAdvertise(), err)
}

// validateAdvertise refuses an unspecified IP as gossip.advertise_addr:
// memberlist would publish an address nobody can reach.
func (g *Gossip) validateAdvertise() error {
	host, _, err := net.SplitHostPort(g.AdvertiseAddr)
	if ip, perr := netip.ParseAddr(host); err == nil && perr == nil && ip.IsUnspecified() {
		return fmt.Errorf("%s %q: an unspecified address cannot be reached; give this node's IP", describeKey("gossip.advertise_addr"), g.AdvertiseAddr)
	}
	return nil
}

// Keys are the gossip keys Validate read from gossip.secret_key; a key
// file is the set of keys it held then (a running node watches the file).
func (g *Gossip) Keys() GossipKeys { return g.keys }

// Cluster configures membership.
type Cluster struct {
	// NodeID is the node's unique ID; empty means random. A restarted
	// process must not reuse an ID.
	NodeID string `yaml:"node_id"`
	// NodeIDPrefix, when NodeID is empty, is prepended to a random suffix
	// that is new at every start.
	NodeIDPrefix string `yaml:"node_id_prefix"`
	// Join lists addresses or DNS names of members; a name expands to all
	// its A records; the port defaults to the gossip port.
	Join []string `yaml:"join"`
	// AbortIfJoinFails makes the node exit when the join names resolved to
	// other nodes but none could be joined within JoinTimeout.
	AbortIfJoinFails bool `yaml:"abort_if_join_fails"`
	// JoinTimeout bounds the retried initial join.
	JoinTimeout time.Duration `yaml:"join_timeout"`
	// RejoinInterval is how often join names are re-resolved and missing
	// members joined (heals split brains). Zero disables it.
	RejoinInterval time.Duration `yaml:"rejoin_interval"`
	// Rebalance spreads agent connections evenly over the members.
	Rebalance Rebalance `yaml:"rebalance"`

	joinTargets []JoinTarget // Join, parsed by Validate
}

// Rebalance configures how a member holding more than its fair share of
// upstream (agent) connections sheds the excess (YAML section
// cluster.rebalance): it sends a few of its agents a yamux GoAway and they
// reconnect through the load balancer.
type Rebalance struct {
	// Enabled turns shedding on.
	Enabled bool `yaml:"enabled"`
	// Tolerance is how far above the fair share (total connections /
	// counted members), as a fraction of it, a member may be before it
	// sheds; a member below the fair share by as much makes the members
	// above the fair share shed.
	Tolerance float64 `yaml:"tolerance"`
	// MinTolerance is the least tolerance in connections, whatever the
	// fraction gives (small clusters do not shuffle single connections).
	MinTolerance int `yaml:"min_tolerance"`
	// MaxRate bounds shedding to this fraction of the member's
	// connections per Interval (at least one connection).
	MaxRate float64 `yaml:"max_rate"`
	// Interval is how often a member compares its load with the fair
	// share.
	Interval time.Duration `yaml:"interval"`
	// NewMemberDelay is how long a member must have been active before
	// the others count it in the fair share: the time its readiness
	// probe and the load balancer take to send it agents.
	NewMemberDelay time.Duration `yaml:"new_member_delay"`
}

// DefaultRebalance returns the cluster.rebalance defaults.
func DefaultRebalance() Rebalance {
	return Rebalance{Enabled: true, Tolerance: 0.1, MinTolerance: 2, MaxRate: 0.1, Interval: 3 * time.Second, NewMemberDelay: 5 * time.Second}
}

// RegisterFlags registers the cluster.rebalance.* flags.
func (r *Rebalance) RegisterFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&r.Enabled, "cluster.rebalance.enabled", r.Enabled, "shed upstream connections above the fair share so that agents reconnect to less loaded members")
	fs.Float64Var(&r.Tolerance, "cluster.rebalance.tolerance", r.Tolerance, "fraction of the fair share a member may hold above it before it sheds (or below it before others shed)")
	fs.IntVar(&r.MinTolerance, "cluster.rebalance.min-tolerance", r.MinTolerance, "least tolerance, in connections")
	fs.Float64Var(&r.MaxRate, "cluster.rebalance.max-rate", r.MaxRate, "at most this fraction of the member's connections is shed per --cluster.rebalance.interval (at least 1)")
	fs.DurationVar(&r.Interval, "cluster.rebalance.interval", r.Interval, "how often a member compares its upstream connections with the fair share")
	fs.DurationVar(&r.NewMemberDelay, "cluster.rebalance.new-member-delay", r.NewMemberDelay, "how long a new member must be active before it counts in the fair share")
}

// Validate checks the cluster.rebalance section.
func (r *Rebalance) Validate() error {
	var errs []error
	if r.Tolerance < 0 || r.Tolerance > 1 {
		errs = append(errs, fmt.Errorf("cluster.rebalance.tolerance (--cluster.rebalance.tolerance) is %g; use a fraction between 0 and 1 such as 0.1", r.Tolerance))
	}
	if r.MinTolerance < 0 {
		errs = append(errs, fmt.Errorf("cluster.rebalance.min_tolerance (--cluster.rebalance.min-tolerance) is %d; use 0 or a positive number of connections such as 2", r.MinTolerance))
	}
	if r.MaxRate <= 0 || r.MaxRate > 1 {
		errs = append(errs, fmt.Errorf("cluster.rebalance.max_rate (--cluster.rebalance.max-rate) is %g; use a fraction above 0 and at most 1 such as 0.1", r.MaxRate))
	}
	errs = append(errs, positiveDuration("cluster.rebalance.interval", r.Interval),
		nonNegativeDuration("cluster.rebalance.new_member_delay", r.NewMemberDelay))
	return errors.Join(errs...)
}

// DefaultCluster returns the cluster defaults.
func DefaultCluster() Cluster {
	return Cluster{AbortIfJoinFails: true, JoinTimeout: time.Minute, RejoinInterval: 30 * time.Second, Rebalance: DefaultRebalance()}
}

// RegisterFlags registers the cluster.* flags.
func (c *Cluster) RegisterFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.NodeID, "cluster.node-id", c.NodeID, "unique node ID (default: random; never reuse one across restarts)")
	fs.StringVar(&c.NodeIDPrefix, "cluster.node-id-prefix", c.NodeIDPrefix, "prefix of the random node ID")
	fs.StringSliceVar(&c.Join, "cluster.join", c.Join, "addresses or DNS names of members to join (repeat or comma-separate)")
	fs.BoolVar(&c.AbortIfJoinFails, "cluster.abort-if-join-fails", c.AbortIfJoinFails, "exit if other nodes were found but none could be joined within --cluster.join-timeout")
	fs.DurationVar(&c.JoinTimeout, "cluster.join-timeout", c.JoinTimeout, "how long the initial join is retried")
	fs.DurationVar(&c.RejoinInterval, "cluster.rejoin-interval", c.RejoinInterval, "how often join names are re-resolved and missing members joined (0 disables)")
	c.Rebalance.RegisterFlags(fs)
}

// Validate checks the cluster section and parses its join entries
// (JoinTargets).
func (c *Cluster) Validate() error {
	errs := []error{c.validateNodeIDs(), c.validateJoin(), positiveDuration("cluster.join_timeout", c.JoinTimeout)}
	if c.RejoinInterval < 0 {
		errs = append(errs, fmt.Errorf("cluster.rejoin_interval is %s; use a positive duration or 0 to disable", c.RejoinInterval))
	}
	errs = append(errs, c.Rebalance.Validate())
	return errors.Join(errs...)
}

// Lifecycle configures process lifecycle (YAML section `server`).
type Lifecycle struct {
	// GracefulShutdownTimeout bounds the SIGTERM drain.
	GracefulShutdownTimeout time.Duration `yaml:"graceful_shutdown_timeout"`
	// DrainDelay is how long, after SIGTERM, the proxy port keeps
	// accepting new requests while /ready already answers 503, so that
	// load balancers and Kubernetes endpoints stop sending traffic before
	// the listener closes (at most a quarter of GracefulShutdownTimeout).
	DrainDelay time.Duration `yaml:"drain_delay"`
}

// RegisterFlags registers the server.* flags.
func (l *Lifecycle) RegisterFlags(fs *pflag.FlagSet) {
	fs.DurationVar(&l.GracefulShutdownTimeout, "server.graceful-shutdown-timeout", l.GracefulShutdownTimeout, "bound on the SIGTERM drain")
	fs.DurationVar(&l.DrainDelay, "server.drain-delay", l.DrainDelay, "after SIGTERM, how long the proxy port keeps accepting requests while /ready is 503 (load balancers catch up); at most a quarter of --server.graceful-shutdown-timeout")
}

// Validate checks the server section.
func (l *Lifecycle) Validate() error {
	var err error
	if l.DrainDelay < 0 {
		err = fmt.Errorf("server.drain_delay (--server.drain-delay) is %s; use 0 or a positive duration such as \"5s\"", l.DrainDelay)
	}
	return errors.Join(positiveDuration("server.graceful_shutdown_timeout", l.GracefulShutdownTimeout), err)
}

func positiveDuration(key string, d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("%s (%s) is %s; use a positive duration such as \"15s\"", key, FlagName(key), d)
	}
	return nil
}

func nonNegativeDuration(key string, d time.Duration) error {
	if d < 0 {
		return fmt.Errorf("%s (%s) is %s; use 0 or a positive duration such as \"3s\"", key, FlagName(key), d)
	}
	return nil
}

func positiveInt(key string, n int) error {
	if n <= 0 {
		return fmt.Errorf("%s (%s) is %d; use a positive number", key, FlagName(key), n)
	}
	return nil
}
