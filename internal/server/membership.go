package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pico-proxy/pico/internal/adminapi"
	"github.com/pico-proxy/pico/internal/proxy"
)

// Membership is the server's view of the cluster. internal/cluster
// implements it with memberlist; Standalone implements it for a node that
// is alone. The server calls, in order: Join (once, from Start, after the
// listeners are up; Start fails if it fails), UpdateLocalEndpoints
// (whenever the local upstreams change, from one goroutine), SetLeaving
// (when the drain begins), Leave (after the in-flight requests finished)
// and Shutdown (last). The Router methods, Nodes and Node are called
// concurrently at any time after the factory returned.
type Membership interface {
	proxy.Router
	// GossipAddr is the bound gossip address (host:port; useful when
	// the configured port is 0).
	GossipAddr() string
	// Join joins the cluster (retrying as configured) and returns once
	// this node is a member; ctx ends the attempt.
	Join(ctx context.Context) error
	// UpdateLocalEndpoints publishes this node's endpoints with their
	// upstream counts (a fresh map the callee may keep).
	UpdateLocalEndpoints(counts map[string]int)
	// SetLeaving shows this node as leaving: peers stop forwarding new
	// requests to it.
	SetLeaving()
	// Nodes lists every known member, this node included.
	Nodes() []adminapi.NodeSummary
	// Node returns one member's details.
	Node(id string) (adminapi.NodeDetail, bool)
	// Leave leaves the cluster gracefully (peers drop the node at once),
	// waiting at most timeout for the leave to propagate.
	Leave(timeout time.Duration) error
	// Shutdown releases the gossip listeners.
	Shutdown() error
}

// LocalNode describes this node to the membership layer: the resolved
// values of the configuration. Addresses are host:port as other nodes
// reach them (advertise addresses, with the bound ports).
type LocalNode struct {
	// ID is the node ID the server chose (config.Cluster.NewNodeID).
	ID           string
	ProxyAddr    string
	UpstreamAddr string
	AdminAddr    string
	// GossipBind is gossip.bind_addr resolved (port 0: a free port).
	GossipBind netip.AddrPort
	// GossipAdvertise is gossip.advertise_addr resolved, or derived from
	// GossipBind like the other advertise addresses (its port is the
	// configured one, 0 included).
	GossipAdvertise netip.AddrPort
}

// MembershipFactory creates the Membership once the server's listeners
// are bound. metrics is the server's Prometheus registry.
type MembershipFactory func(local LocalNode, metrics prometheus.Registerer) (Membership, error)

// Standalone is the Membership of a node that is alone: it knows only
// itself, never routes remotely, and holds the gossip port (TCP and UDP)
// so that the port is bound as configured.
type Standalone struct {
	local LocalNode
	tcp   net.Listener
	udp   net.PacketConn
	never chan struct{}

	mu      sync.Mutex
	counts  map[string]int
	leaving bool
}

// NewStandalone binds local.GossipBind (TCP, and UDP on the same port)
// and returns the single-node Membership.
func NewStandalone(local LocalNode, _ prometheus.Registerer) (Membership, error) {
	tcp, udp, err := bindGossip(local.GossipBind.String())
	if err != nil {
		return nil, err
	}
	s := &Standalone{local: local, tcp: tcp, udp: udp, never: make(chan struct{}), counts: map[string]int{}}
	go s.refuse()
	go s.discard()
	return s, nil
}

// bindGossip binds TCP and UDP on the same port (a free one for port 0).
func bindGossip(addr string) (net.Listener, net.PacketConn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("gossip.bind_addr %q: %w", addr, err)
	}
	for attempt := 0; ; attempt++ {
		tcp, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("gossip.bind_addr %q (TCP): %w", addr, err)
		}
		boundPort := strconv.Itoa(tcp.Addr().(*net.TCPAddr).Port)
		udp, err := net.ListenPacket("udp", net.JoinHostPort(host, boundPort))
		if err == nil {
			return tcp, udp, nil
		}
		_ = tcp.Close()
		if port != "0" || attempt == 10 {
			return nil, nil, fmt.Errorf("gossip.bind_addr %q (UDP): %w", addr, err)
		}
	}
}

func (s *Standalone) refuse() {
	for {
		c, err := s.tcp.Accept()
		if err != nil {
			return
		}
		_ = c.Close()
	}
}

func (s *Standalone) discard() {
	buf := make([]byte, 1500)
	for {
		if _, _, err := s.udp.ReadFrom(buf); err != nil {
			return
		}
	}
}

// PickRemote never finds a remote node.
func (s *Standalone) PickRemote(string, ...string) (proxy.Node, bool) { return proxy.Node{}, false }

// SignForward does nothing: a standalone node never forwards.
func (s *Standalone) SignForward(*http.Request) {}

// VerifyForward rejects every forwarding claim.
func (s *Standalone) VerifyForward(*http.Request) (string, error) {
	return "", errors.New("this node is not part of a cluster")
}

// ReportUnreachable does nothing: a standalone node has no other node.
func (s *Standalone) ReportUnreachable(string) {}

// Gone is proxy.Router: a standalone node knows no other node.
func (s *Standalone) Gone(string) bool { return true }

// Changed never fires.
func (s *Standalone) Changed() <-chan struct{} { return s.never }

// GossipAddr returns the bound gossip address.
func (s *Standalone) GossipAddr() string { return s.tcp.Addr().String() }

// Join has nobody to join.
func (s *Standalone) Join(context.Context) error { return nil }

// UpdateLocalEndpoints records the counts for the status pages.
func (s *Standalone) UpdateLocalEndpoints(counts map[string]int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts = counts
}

// SetLeaving shows the node as leaving.
func (s *Standalone) SetLeaving() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.leaving = true
}

// Nodes lists this node.
func (s *Standalone) Nodes() []adminapi.NodeSummary {
	info, endpoints := s.snapshot()
	return []adminapi.NodeSummary{info.Summary(endpoints)}
}

// Node returns this node's details when id is its ID.
func (s *Standalone) Node(id string) (adminapi.NodeDetail, bool) {
	if id != s.local.ID {
		return adminapi.NodeDetail{}, false
	}
	info, endpoints := s.snapshot()
	return info.Detail(endpoints), true
}

// snapshot returns the node's admin view and its endpoint counts (the
// map UpdateLocalEndpoints handed over, never written afterwards).
func (s *Standalone) snapshot() (adminapi.NodeInfo, map[string]int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	status := adminapi.StatusActive
	if s.leaving {
		status = adminapi.StatusLeaving
	}
	upstreams := 0
	for _, n := range s.counts {
		upstreams += n
	}
	return adminapi.NodeInfo{
		ID:           s.local.ID,
		Status:       status,
		ProxyAddr:    s.local.ProxyAddr,
		AdminAddr:    s.local.AdminAddr,
		UpstreamAddr: s.local.UpstreamAddr,
		GossipAddr:   s.gossipAdvertise().String(),
		Upstreams:    upstreams,
	}, s.counts
}

// gossipAdvertise is the advertised gossip address with the bound port
// filled in when the configured one was 0.
func (s *Standalone) gossipAdvertise() netip.AddrPort {
	if s.local.GossipAdvertise.Port() != 0 {
		return s.local.GossipAdvertise
	}
	return netip.AddrPortFrom(s.local.GossipAdvertise.Addr(), uint16(s.tcp.Addr().(*net.TCPAddr).Port))
}

// Leave has nobody to tell.
func (s *Standalone) Leave(time.Duration) error { return nil }

// Shutdown closes the gossip listeners.
func (s *Standalone) Shutdown() error {
	return errors.Join(s.tcp.Close(), s.udp.Close())
}
