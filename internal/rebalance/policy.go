// Package rebalance spreads upstream (agent) connections evenly over the
// members of a cluster. A member holding more than its fair share sheds
// the excess gradually: it sends a yamux GoAway to a few of its agent
// connections, and those agents reconnect at once through the load
// balancer, most of them to other members. Repeated shedding converges
// even through a plain round-robin or random balancer.
//
// Policy.Decide is the pure decision (who sheds how many, which
// connections); Loop applies it periodically.
package rebalance

import (
	"cmp"
	"math"
	"slices"
	"time"
)

// Policy is what a member sheds (config cluster.rebalance).
type Policy struct {
	// Tolerance is the band around the fair share, as a fraction of it.
	Tolerance float64
	// MinTolerance is the least band in connections.
	MinTolerance int
	// MaxRate is the most a member sheds in one decision, as a fraction
	// of its connections (at least one connection).
	MaxRate float64
}

// Member is one cluster member's load as this member sees it.
type Member struct {
	ID string
	// Upstreams is the member's number of upstream connections.
	Upstreams int
	// Counted: the member takes part in the fair share. Members that are
	// draining, not ready or too new to have received agents are left
	// out (they would look under-loaded).
	Counted bool
}

// View is the cluster as the local member sees it.
type View struct {
	// LocalID is this member's ID; it is among Members.
	LocalID string
	Members []Member
	// Elsewhere maps an endpoint to its upstream connections on other
	// members that can serve it (not draining).
	Elsewhere map[string]int
}

// Session is one local upstream connection.
type Session struct {
	ID          uint64
	Endpoint    string
	ConnectedAt time.Time
}

// Reasons of a Decision.
const (
	ReasonNotCounted  = "not_counted"  // this member is draining or not ready
	ReasonAlone       = "alone"        // fewer than two counted members
	ReasonBalanced    = "balanced"     // within the band, and nobody below it
	ReasonOverloaded  = "overloaded"   // above the band
	ReasonUnderloaded = "underloaded"  // another member is below the band, this one above the fair share
	ReasonNoCandidate = "no_candidate" // above, but every connection is an endpoint's last one here
)

// Decision is what the local member does now.
type Decision struct {
	Reason string
	// FairShare is total connections / counted members (0 when not
	// computed); Band is the tolerance in connections around it.
	FairShare, Band float64
	// Local is the local member's connection count; Counted the number
	// of members in the fair share.
	Local, Counted int
	// Shed lists the sessions to send a GoAway, best candidates first.
	Shed []uint64
}

// Decide returns what the local member of v, holding sessions, sheds.
//
// With F the fair share (the counted members' connections divided by
// their number) and B the band (Tolerance × F, at least MinTolerance), a
// member sheds when it holds more than F + B, or more than F while some
// counted member holds less than F − B (only the over-loaded shed, so an
// under-loaded member fills up from the agents that others shed). It sheds
// down towards ⌈F⌉, at most ⌈MaxRate × its connections⌉ (at least 1) at a
// time, choosing connections of the endpoints it holds most often here,
// and never an endpoint's last connection here unless another member also
// holds that endpoint.
func (p Policy) Decide(v View, sessions []Session) Decision {
	d := Decision{Local: len(sessions)}
	total, localCounted := 0, false
	var counted []Member
	for _, m := range v.Members {
		if !m.Counted {
			continue
		}
		if m.ID == v.LocalID {
			// The registry's count is fresher than the one gossiped.
			m.Upstreams = len(sessions)
			localCounted = true
		}
		counted = append(counted, m)
		total += m.Upstreams
	}
	d.Counted = len(counted)
	if !localCounted {
		d.Reason = ReasonNotCounted
		return d
	}
	if len(counted) < 2 {
		d.Reason = ReasonAlone
		return d
	}
	d.FairShare = float64(total) / float64(len(counted))
	d.Band = max(p.Tolerance*d.FairShare, float64(p.MinTolerance))
	target := int(math.Ceil(d.FairShare))
	switch {
	case float64(d.Local) > d.FairShare+d.Band:
		d.Reason = ReasonOverloaded
	case d.Local > target && slices.ContainsFunc(counted, func(m Member) bool { return float64(m.Upstreams) < d.FairShare-d.Band }):
		d.Reason = ReasonUnderloaded
	default:
		d.Reason = ReasonBalanced
		return d
	}
	limit := max(1, int(math.Ceil(p.MaxRate*float64(d.Local))))
	d.Shed = pick(sessions, v.Elsewhere, min(d.Local-target, limit))
	if len(d.Shed) == 0 {
		d.Reason = ReasonNoCandidate
	}
	return d
}

// pick chooses up to n sessions: each time one of the endpoint with the
// most connections left here (then the most elsewhere, then by name), its
// longest-connected session, skipping an endpoint's last connection here
// when no other member holds the endpoint.
func pick(sessions []Session, elsewhere map[string]int, n int) []uint64 {
	byEndpoint := map[string][]Session{}
	for _, s := range sessions {
		byEndpoint[s.Endpoint] = append(byEndpoint[s.Endpoint], s)
	}
	endpoints := make([]string, 0, len(byEndpoint))
	for ep, list := range byEndpoint {
		slices.SortFunc(list, func(a, b Session) int {
			return cmp.Or(a.ConnectedAt.Compare(b.ConnectedAt), cmp.Compare(a.ID, b.ID))
		})
		endpoints = append(endpoints, ep)
	}
	var out []uint64
	for len(out) < n {
		best := ""
		for _, ep := range endpoints {
			left := len(byEndpoint[ep])
			if left == 0 || left == 1 && elsewhere[ep] == 0 {
				continue
			}
			if best == "" || better(ep, best, byEndpoint, elsewhere) {
				best = ep
			}
		}
		if best == "" {
			break
		}
		out = append(out, byEndpoint[best][0].ID)
		byEndpoint[best] = byEndpoint[best][1:]
	}
	return out
}

func better(a, b string, here map[string][]Session, elsewhere map[string]int) bool {
	return cmp.Or(
		cmp.Compare(len(here[b]), len(here[a])),
		cmp.Compare(elsewhere[b], elsewhere[a]),
		cmp.Compare(a, b),
	) < 0
}
