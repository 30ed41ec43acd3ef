package cluster

import (
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/pico-proxy/pico/internal/adminapi"
)

// How routing state spreads (see also codec.go):
//
//   - Every change of the local state gets the next version number and is
//     sent at once as a delta (from version V-1 to V) in one UDP packet to
//     every member, and queued for memberlist's gossip, which repeats it to
//     random members over the next gossip rounds (lost packets).
//   - A change too large for one packet (many endpoints at once) is sent
//     as an announcement of the new version instead.
//   - A member that receives a delta it cannot apply (it missed the one
//     before) or an announcement of a version it does not have asks the
//     owner for its full state over TCP ("pull"), which has no size limit.
//   - The state version is also in the node's memberlist metadata, which
//     memberlist gossips reliably and exchanges in its periodic push/pull:
//     a member that sees a version newer than its copy for a while pulls.
//   - memberlist's push/pull (at join and every 30 s) carries the full
//     state of every live member, so a joining node knows the whole routing
//     table when Join returns.

const (
	// maxDeltaBytes caps a delta so that it fits in one gossip packet
	// (memberlist's UDPBufferSize of 1400 bytes, less the label,
	// encryption and compound-message overheads).
	maxDeltaBytes = 1024
	// maxQueuedBroadcasts bounds the gossip queue; the oldest deltas are
	// dropped first (members that miss one pull the full state).
	maxQueuedBroadcasts = 128
	// maxLocalStateBytes bounds the push/pull payload (memberlist refuses
	// more than 20 MiB); the states of other nodes are left out beyond it.
	maxLocalStateBytes = 8 << 20
	// pullDelay is how long a member waits after its metadata announced
	// a newer version before pulling: the delta usually arrives first.
	pullDelay = 300 * time.Millisecond
	// pullTimeout is how long a pull may go unanswered before another
	// one is sent.
	pullTimeout = 3 * time.Second
	// metaUpdateTimeout bounds the wait for a metadata broadcast.
	metaUpdateTimeout = time.Second
	// maintenanceInterval paces pulls for stale metadata, forgetting dead
	// nodes and reconnecting to failed ones.
	maintenanceInterval = 250 * time.Millisecond
)

// delegate is memberlist's hook into the cluster.
type delegate struct{ c *Cluster }

func (d *delegate) NodeMeta(limit int) []byte {
	meta := d.c.meta()
	if len(meta) > limit {
		// Impossible: New limits the addresses so that it fits.
		d.c.log.Error("node metadata exceeds memberlist's limit", "size", len(meta), "limit", limit)
		return nil
	}
	return meta
}

func (d *delegate) NotifyMsg(b []byte) {
	msg, err := decodeMessage(b)
	if err != nil {
		d.c.log.Debug("dropping malformed gossip message", "error", err)
		return
	}
	d.c.handleMessage(msg)
}

func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.c.queue.GetBroadcasts(overhead, limit)
}

func (d *delegate) LocalState(bool) []byte {
	return d.c.encodeSnapshot()
}

func (d *delegate) MergeRemoteState(b []byte, _ bool) {
	msg, err := decodeMessage(b)
	if err != nil {
		d.c.log.Debug("dropping malformed push/pull state", "error", err)
		return
	}
	if states, ok := msg.([]nodeState); ok {
		d.c.applyStates(states)
	}
}

// events receives memberlist's membership changes. memberlist calls it
// with its own lock held: it must not call back into memberlist.
type events struct{ c *Cluster }

func (e *events) NotifyJoin(n *memberlist.Node)   { e.c.memberAlive(n) }
func (e *events) NotifyUpdate(n *memberlist.Node) { e.c.memberAlive(n) }
func (e *events) NotifyLeave(n *memberlist.Node)  { e.c.memberGone(n) }

// broadcast is a queued gossip message. Deltas form a chain, so none
// invalidates another.
type broadcast struct{ msg []byte }

func (b *broadcast) Invalidates(memberlist.Broadcast) bool { return false }
func (b *broadcast) Message() []byte                       { return b.msg }
func (b *broadcast) Finished()                             {}

// meta encodes this node's metadata.
func (c *Cluster) meta() []byte {
	c.mu.RLock()
	version := c.local.version
	c.mu.RUnlock()
	return encodeMeta(nodeMeta{
		StateVersion: version,
		Secret:       c.secret,
		ProxyAddr:    c.cfg.ProxyAddr,
		AdminAddr:    c.cfg.AdminAddr,
		UpstreamAddr: c.cfg.UpstreamAddr,
	})
}

func (c *Cluster) memberAlive(n *memberlist.Node) {
	if n.Name == c.id {
		return
	}
	meta, metaErr := decodeMeta(n.Meta)
	c.mu.Lock()
	p := c.peerLocked(n.Name)
	joined := p.member != memberAlive
	if joined {
		p.member = memberAlive
		p.since = time.Now()
		p.unreachableUntil = time.Time{}
		c.members.Add(1)
	}
	p.node = *n
	p.node.Meta = nil
	if metaErr == nil {
		p.meta, p.metaOK = meta, true
		if meta.StateVersion > p.version && p.behindSince.IsZero() {
			p.behindSince = time.Now()
		}
	}
	delete(c.reconnect, p.id)
	c.notifyLocked()
	c.mu.Unlock()
	if metaErr != nil {
		c.log.Warn("member published unreadable metadata; it is not routed to", "node_id", n.Name, "error", metaErr)
	}
	if joined {
		c.log.Info("member joined", "node_id", n.Name, "gossip_addr", p.gossipAddr().String(), "proxy_addr", meta.ProxyAddr)
	}
}

func (c *Cluster) memberGone(n *memberlist.Node) {
	if n.Name == c.id {
		return
	}
	c.mu.Lock()
	p := c.peerLocked(n.Name)
	if p.member == memberAlive {
		c.members.Add(-1)
	}
	p.node = *n
	p.node.Meta = nil
	p.since = time.Now()
	p.pullStarted = time.Time{}
	// memberlist does not say whether a node left or failed (Node.State
	// is not maintained in its notifications), but a node that leaves
	// gracefully has published that it is leaving first.
	p.member = memberDead
	if p.leaving {
		p.member = memberLeft
	} else {
		now := time.Now()
		c.reconnect[p.id] = &reconnectTarget{addr: p.gossipAddr().String(), since: now, lastTry: now}
	}
	c.notifyLocked()
	status := p.status()
	c.mu.Unlock()
	c.log.Info("member removed from routing", "node_id", n.Name, "status", status)
}

func (c *Cluster) handleMessage(msg any) {
	switch m := msg.(type) {
	case deltaMsg:
		c.applyDelta(m)
	case announceMsg:
		c.applyAnnounce(m)
	case pullMsg:
		c.answerPull(m.Node)
	case []nodeState:
		c.applyStates(m)
	}
}

func (c *Cluster) applyDelta(d deltaMsg) {
	if d.Node == c.id {
		return
	}
	c.mu.Lock()
	p := c.peerLocked(d.Node)
	if p.version >= d.To {
		c.mu.Unlock()
		return
	}
	if p.version == d.From {
		// In place: every reader of peer maps holds c.mu.
		for ep, n := range d.Changes {
			if n == 0 {
				delete(p.endpoints, ep)
			} else {
				p.endpoints[ep] = n
			}
		}
		c.setStateLocked(p, d.To, d.Leaving, p.endpoints)
		c.mu.Unlock()
		return
	}
	// A delta was missed: fetch the whole state.
	target := c.startPullLocked(p)
	c.mu.Unlock()
	c.sendPull(target)
}

func (c *Cluster) applyAnnounce(a announceMsg) {
	if a.Node == c.id {
		return
	}
	c.mu.Lock()
	p := c.peerLocked(a.Node)
	var target *memberlist.Node
	if p.version < a.Version {
		target = c.startPullLocked(p)
	}
	c.mu.Unlock()
	c.sendPull(target)
}

func (c *Cluster) applyStates(states []nodeState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range states {
		if s.Node == c.id {
			continue
		}
		p := c.peerLocked(s.Node)
		if s.Version > p.version {
			c.setStateLocked(p, s.Version, s.Leaving, s.Endpoints)
		}
		if p.version >= p.meta.StateVersion {
			p.pullStarted = time.Time{}
		}
	}
}

// setStateLocked installs a new version of p's state. c.mu is held.
func (c *Cluster) setStateLocked(p *peer, version uint64, leaving bool, endpoints map[string]int) {
	p.version = version
	p.leaving = leaving
	p.endpoints = endpoints
	p.upstreams = sumCounts(endpoints)
	if version >= p.meta.StateVersion {
		p.behindSince = time.Time{}
	}
	c.notifyLocked()
}

// startPullLocked marks a pull from p as started and returns where to send
// it, or nil when p cannot be asked now (not a member yet, or a pull is
// already pending). c.mu is held.
func (c *Cluster) startPullLocked(p *peer) *memberlist.Node {
	if p.member != memberAlive {
		return nil // asked once memberlist introduces it
	}
	now := time.Now()
	if !p.pullStarted.IsZero() && now.Sub(p.pullStarted) < pullTimeout {
		return nil
	}
	p.pullStarted = now
	n := p.node
	return &n
}

func (c *Cluster) sendPull(to *memberlist.Node) {
	if to == nil {
		return
	}
	c.metrics.pulls.Inc()
	c.spawn(func() {
		if err := c.ml.SendReliable(to, encodePull(pullMsg{Node: c.id})); err != nil {
			c.log.Debug("asking a member for its routing state failed", "node_id", to.Name, "error", err)
		}
	})
}

// answerPull sends this node's full state to the member that asked.
func (c *Cluster) answerPull(requester string) {
	c.mu.RLock()
	p, ok := c.peers[requester]
	if !ok || p.member != memberAlive {
		c.mu.RUnlock()
		c.log.Debug("ignoring a state request from a node that is not a member", "node_id", requester)
		return
	}
	to := p.node
	state := c.localStateLocked()
	c.mu.RUnlock()
	c.spawn(func() {
		if err := c.ml.SendReliable(&to, encodeStates([]nodeState{state})); err != nil {
			c.log.Debug("sending routing state to a member failed", "node_id", to.Name, "error", err)
		}
	})
}

// localStateLocked is the last published local state. c.mu is held.
func (c *Cluster) localStateLocked() nodeState {
	return nodeState{Node: c.id, Version: c.local.version, Leaving: c.local.publishedLeaving, Endpoints: c.local.published}
}

// encodeSnapshot encodes the published local state and the states of the
// live members, within maxLocalStateBytes.
func (c *Cluster) encodeSnapshot() []byte {
	c.mu.RLock()
	defer c.mu.RUnlock()
	states := []nodeState{c.localStateLocked()}
	size := 0
	for _, p := range c.peers {
		if p.member != memberAlive || p.version == 0 {
			continue
		}
		size += len(p.id) + 16
		for ep := range p.endpoints {
			size += len(ep) + 6
		}
		if size > maxLocalStateBytes {
			break
		}
		states = append(states, nodeState{Node: p.id, Version: p.version, Leaving: p.leaving, Endpoints: p.endpoints})
	}
	return encodeStates(states)
}

func (c *Cluster) publishLoop() {
	defer c.wg.Done()
	for {
		select {
		case <-c.stop:
			return
		case <-c.publishCh:
			c.publish()
		}
	}
}

// publish sends the change between the last published local state and
// the desired one, if any.
func (c *Cluster) publish() {
	c.mu.Lock()
	leaving := c.local.status != adminapi.StatusActive
	changes := diffCounts(c.local.published, c.local.desired)
	if len(changes) == 0 && leaving == c.local.publishedLeaving {
		c.mu.Unlock()
		return
	}
	d := deltaMsg{Node: c.id, From: c.local.version, To: c.local.version + 1, Leaving: leaving, Changes: changes}
	c.local.version = d.To
	c.local.published = c.local.desired
	c.local.publishedLeaving = leaving
	targets := make([]memberlist.Node, 0, len(c.peers))
	for _, p := range c.peers {
		if p.member == memberAlive {
			targets = append(targets, p.node)
		}
	}
	c.mu.Unlock()

	msg := encodeDelta(d)
	if len(msg) > maxDeltaBytes {
		msg = encodeAnnounce(announceMsg{Node: c.id, Version: d.To})
	}
	for i := range targets {
		if err := c.ml.SendBestEffort(&targets[i], msg); err != nil {
			c.log.Debug("sending a routing update failed", "node_id", targets[i].Name, "error", err)
		}
	}
	c.queue.QueueBroadcast(&broadcast{msg: msg})
	if c.queue.NumQueued() > maxQueuedBroadcasts {
		c.queue.Prune(maxQueuedBroadcasts)
	}
	signal(c.metaCh)
}

// diffCounts returns the entries of next that differ from prev, plus a
// zero for every endpoint of prev that next lacks.
func diffCounts(prev, next map[string]int) map[string]int {
	changes := make(map[string]int)
	for ep, n := range next {
		if prev[ep] != n {
			changes[ep] = n
		}
	}
	for ep := range prev {
		if _, ok := next[ep]; !ok {
			changes[ep] = 0
		}
	}
	return changes
}

// metaLoop re-advertises the node's metadata (with the new state version)
// after changes; memberlist gossips it to every member.
func (c *Cluster) metaLoop() {
	defer c.wg.Done()
	for {
		select {
		case <-c.stop:
			return
		case <-c.metaCh:
		}
		c.metaMu.Lock()
		if !c.left && !c.closed {
			if err := c.ml.UpdateNode(metaUpdateTimeout); err != nil {
				c.log.Debug("re-advertising node metadata", "error", err)
			}
		}
		c.metaMu.Unlock()
	}
}

// reconnectTarget is the address of a member that failed, tried every
// ReconnectInterval until ReconnectTimeout: if the failure was a network
// partition, joining it again merges the two sides.
type reconnectTarget struct {
	addr    string
	since   time.Time
	lastTry time.Time
	trying  bool
}

// every runs f every d in the background until Shutdown.
func (c *Cluster) every(d time.Duration, f func()) {
	c.wg.Go(func() {
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-c.stop:
				return
			case <-t.C:
				f()
			}
		}
	})
}

// maintain pulls states that metadata says are stale, forgets nodes that
// are gone and tries to reconnect to failed ones.
func (c *Cluster) maintain(now time.Time) {
	var (
		pulls      []*memberlist.Node
		reconnects []*reconnectTarget
		changed    bool
	)
	c.mu.Lock()
	aliveAddrs := make(map[string]bool, len(c.peers))
	for id, p := range c.peers {
		switch p.member {
		case memberAlive:
			aliveAddrs[p.gossipAddr().String()] = true
			if p.meta.StateVersion > p.version && !p.behindSince.IsZero() && now.Sub(p.behindSince) >= pullDelay {
				if n := c.startPullLocked(p); n != nil {
					pulls = append(pulls, n)
				}
			}
		default:
			if now.Sub(p.since) > c.timing.ForgetAfter {
				delete(c.peers, id)
				changed = changed || p.member != memberUnknown
			}
		}
	}
	for id, r := range c.reconnect {
		switch {
		case now.Sub(r.since) > c.timing.ReconnectTimeout || aliveAddrs[r.addr]:
			// Given up, or another member (a restarted process) lives
			// at the address now.
			delete(c.reconnect, id)
		case !r.trying && now.Sub(r.lastTry) >= c.timing.ReconnectInterval:
			r.trying = true
			reconnects = append(reconnects, r)
		}
	}
	if changed {
		c.notifyLocked()
	}
	c.mu.Unlock()

	for _, n := range pulls {
		c.sendPull(n)
	}
	for _, r := range reconnects {
		c.spawn(func() {
			n, err := c.ml.Join([]string{r.addr})
			c.mu.Lock()
			r.trying = false
			r.lastTry = time.Now()
			c.mu.Unlock()
			if n > 0 {
				c.log.Info("reconnected to the address of a failed member", "gossip_addr", r.addr)
			} else {
				c.log.Debug("reconnecting to the address of a failed member", "gossip_addr", r.addr, "error", err)
			}
		})
	}
}
