package cluster

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/pico-proxy/pico/internal/adminapi"
)

// membership is what memberlist says about a peer.
type membership int

const (
	memberUnknown membership = iota // heard of through state, not (yet) through memberlist
	memberAlive
	memberDead
	memberLeft
)

// peer is another node as this node knows it.
type peer struct {
	id          string
	member      membership
	since       time.Time       // when member last changed (creation for unknown)
	node        memberlist.Node // address to send messages to (valid once a member)
	meta        nodeMeta
	metaOK      bool // meta parsed: addresses and secret are known
	version     uint64
	leaving     bool
	endpoints   map[string]int // read and written under c.mu only
	upstreams   int
	behindSince time.Time // when meta first announced a version newer than ours
	pullStarted time.Time // when the last pull request went out; zero when none is pending
	// unreachableUntil: a proxy failed to connect to the node; PickRemote
	// avoids it until then if it can.
	unreachableUntil time.Time
}

// routable reports whether new requests may be forwarded to p.
func (p *peer) routable() bool {
	return p.member == memberAlive && p.metaOK && !p.leaving && p.meta.ProxyAddr != ""
}

func (p *peer) status() string {
	switch p.member {
	case memberDead:
		return adminapi.StatusDead
	case memberLeft:
		return adminapi.StatusLeft
	}
	if p.leaving {
		return adminapi.StatusLeaving
	}
	return adminapi.StatusActive
}

func (p *peer) gossipAddr() netip.AddrPort {
	ip, _ := netip.AddrFromSlice(p.node.Addr)
	return netip.AddrPortFrom(ip.Unmap(), p.node.Port)
}

// peerLocked returns the peer with id, creating an unknown one. c.mu is
// held for writing.
func (c *Cluster) peerLocked(id string) *peer {
	p, ok := c.peers[id]
	if !ok {
		p = &peer{id: id, since: time.Now(), endpoints: map[string]int{}}
		c.peers[id] = p
	}
	return p
}

// notifyLocked wakes everyone waiting on Changed. c.mu is held for
// writing.
func (c *Cluster) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// Changed returns a channel that is closed at the next change of the
// routing table or the membership. To wait for an endpoint to become
// routable without missing a change, take the channel before checking:
//
//	for {
//		changed := c.Changed()
//		if n, ok := c.PickRemote(ep); ok { … }
//		select { case <-changed: case <-ctx.Done(): … }
//	}
func (c *Cluster) Changed() <-chan struct{} {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.changed
}

// PickRemote returns another node that holds upstreams for endpoint,
// chosen at random with probability proportional to its upstream count.
// Nodes that are leaving, failed or listed in exclude are skipped; nodes
// recently reported unreachable are picked only when no other node holds
// the endpoint. It returns false when no such node is known.
func (c *Cluster) PickRemote(endpoint string, exclude ...string) (Node, bool) {
	now := time.Now()
	c.mu.RLock()
	defer c.mu.RUnlock()
	var (
		buf                [8]*peer
		preferred, suspect = buf[:0:4], buf[4:4:8]
		preferredTotal     int
		suspectTotal       int
	)
	for _, p := range c.peers {
		n := p.endpoints[endpoint]
		if n <= 0 || !p.routable() || slices.Contains(exclude, p.id) {
			continue
		}
		if now.Before(p.unreachableUntil) {
			suspect = append(suspect, p)
			suspectTotal += n
		} else {
			preferred = append(preferred, p)
			preferredTotal += n
		}
	}
	if preferredTotal == 0 {
		preferred, preferredTotal = suspect, suspectTotal
	}
	if preferredTotal == 0 {
		return Node{}, false
	}
	r := rand.IntN(preferredTotal)
	for _, p := range preferred {
		r -= p.endpoints[endpoint]
		if r < 0 {
			return Node{ID: p.id, ProxyAddr: p.meta.ProxyAddr}, true
		}
	}
	return Node{}, false // unreachable: r < preferredTotal
}

// unreachableFor is how long a node reported unreachable is avoided: the
// time failure detection needs to confirm or clear it.
const unreachableFor = 5 * time.Second

// ReportUnreachable tells the routing table that connecting to the node
// with id just failed (connection refused or timed out). For a few seconds
// PickRemote prefers other nodes that hold the same endpoints, which
// bridges the time memberlist needs to declare a killed node dead.
func (c *Cluster) ReportUnreachable(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.peers[id]; ok && p.member == memberAlive {
		p.unreachableUntil = time.Now().Add(unreachableFor)
	}
}

// Gone reports whether failure detection declared the member with id
// failed (or it is no longer known): proxy.Router. A member that left
// gracefully answered what it held before it left.
func (c *Cluster) Gone(id string) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	p, ok := c.peers[id]
	return !ok || p.member == memberDead
}

// Nodes lists every member, this node included, sorted by ID. Nodes that
// failed or left stay listed (with status dead or left) for a short while.
func (c *Cluster) Nodes() []adminapi.NodeSummary {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := []adminapi.NodeSummary{c.localInfoLocked().Summary(c.local.desired)}
	for _, p := range c.peers {
		if p.member != memberUnknown {
			out = append(out, p.info().Summary(p.endpoints))
		}
	}
	slices.SortFunc(out, func(a, b adminapi.NodeSummary) int { return strings.Compare(a.ID, b.ID) })
	return out
}

func (p *peer) info() adminapi.NodeInfo {
	return adminapi.NodeInfo{
		ID:           p.id,
		Status:       p.status(),
		ProxyAddr:    p.meta.ProxyAddr,
		AdminAddr:    p.meta.AdminAddr,
		UpstreamAddr: p.meta.UpstreamAddr,
		GossipAddr:   p.gossipAddr().String(),
		Upstreams:    p.upstreams,
	}
}

func (c *Cluster) localInfoLocked() adminapi.NodeInfo {
	return adminapi.NodeInfo{
		ID:           c.id,
		Status:       c.local.status,
		ProxyAddr:    c.cfg.ProxyAddr,
		AdminAddr:    c.cfg.AdminAddr,
		UpstreamAddr: c.cfg.UpstreamAddr,
		GossipAddr:   c.gossipAddr.String(),
		Upstreams:    c.local.upstreams,
	}
}

// Node returns the details of the member with id (this node included).
func (c *Cluster) Node(id string) (adminapi.NodeDetail, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if id == c.id {
		return c.localInfoLocked().Detail(c.local.desired), true
	}
	p, ok := c.peers[id]
	if !ok || p.member == memberUnknown {
		return adminapi.NodeDetail{}, false
	}
	return p.info().Detail(p.endpoints), true
}

// UpdateLocalEndpoints replaces the set of endpoints this node holds
// upstreams for (endpoint → number of upstream connections; entries ≤ 0
// are dropped) and spreads it to the other members: a delta straight to
// every member and through gossip, or, when the change is too large for
// one packet, an announcement after which members fetch the full state
// over TCP. Calls that come faster than the publishing are coalesced.
func (c *Cluster) UpdateLocalEndpoints(counts map[string]int) {
	desired := make(map[string]int, len(counts))
	total := 0
	for ep, n := range counts {
		if n > 0 && ep != "" && len(ep) <= maxEndpointLength {
			desired[ep] = n
			total += n
		}
	}
	c.mu.Lock()
	c.local.desired = desired
	c.local.upstreams = total
	c.notifyLocked()
	c.mu.Unlock()
	signal(c.publishCh)
}

// memberAddrs returns the gossip addresses of the live members.
func (c *Cluster) memberAddrs() map[netip.AddrPort]bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make(map[netip.AddrPort]bool, len(c.peers))
	for _, p := range c.peers {
		if p.member == memberAlive {
			out[p.gossipAddr()] = true
		}
	}
	return out
}

// sumCounts returns the total of a count map.
func sumCounts(m map[string]int) int {
	total := 0
	for _, n := range m {
		total += n
	}
	return total
}

// MemberLoad is one member's upstream connections, as Loads reports them
// for rebalancing.
type MemberLoad struct {
	ID        string
	Upstreams int
	// Active: the member is alive and not leaving (routable, for a peer).
	Active bool
	// Since is when the peer became a member (zero for this node).
	Since time.Time
	// Local marks this node.
	Local bool
}

// Loads lists the members that are alive (this node first) with their
// upstream counts, and maps every endpoint that routable peers hold to
// their number of upstream connections for it.
func (c *Cluster) Loads() ([]MemberLoad, map[string]int) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	members := []MemberLoad{{ID: c.id, Upstreams: c.local.upstreams, Active: c.local.status == adminapi.StatusActive, Local: true}}
	elsewhere := map[string]int{}
	for _, p := range c.peers {
		if p.member != memberAlive {
			continue
		}
		members = append(members, MemberLoad{ID: p.id, Upstreams: p.upstreams, Active: p.routable(), Since: p.since})
		if p.routable() {
			for ep, n := range p.endpoints {
				elsewhere[ep] += n
			}
		}
	}
	return members, elsewhere
}
