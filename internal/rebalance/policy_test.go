package rebalance

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var defaultPolicy = Policy{Tolerance: 0.1, MinTolerance: 2, MaxRate: 0.1}

// sessionsOf makes local sessions: endpoint → count, IDs in order of
// connection (the first endpoint's first).
func sessionsOf(counts ...any) []Session {
	var out []Session
	t0 := time.Unix(1000, 0)
	for i := 0; i < len(counts); i += 2 {
		ep, n := counts[i].(string), counts[i+1].(int)
		for range n {
			id := uint64(len(out) + 1)
			out = append(out, Session{ID: id, Endpoint: ep, ConnectedAt: t0.Add(time.Duration(id) * time.Second)})
		}
	}
	return out
}

// spread makes n sessions, one endpoint each, every endpoint also held
// elsewhere.
func spread(n int) ([]Session, map[string]int) {
	var s []Session
	elsewhere := map[string]int{}
	for i := range n {
		ep := fmt.Sprintf("ep%03d", i)
		s = append(s, Session{ID: uint64(i + 1), Endpoint: ep})
		elsewhere[ep] = 1
	}
	return s, elsewhere
}

func view(upstreams ...int) View {
	v := View{LocalID: "m0"}
	for i, n := range upstreams {
		v.Members = append(v.Members, Member{ID: fmt.Sprintf("m%d", i), Upstreams: n, Counted: true})
	}
	return v
}

func TestDecideSingleMemberNeverSheds(t *testing.T) {
	sessions, elsewhere := spread(40)
	v := view(40)
	v.Elsewhere = elsewhere
	d := defaultPolicy.Decide(v, sessions)
	require.Equal(t, ReasonAlone, d.Reason)
	require.Empty(t, d.Shed)
}

func TestDecideExcludesMembersNotCounted(t *testing.T) {
	sessions, elsewhere := spread(20)

	// Two peers draining or too new: the local member is alone in the
	// fair share, however little they hold.
	v := view(20, 0, 0)
	v.Elsewhere = elsewhere
	v.Members[1].Counted, v.Members[2].Counted = false, false
	d := defaultPolicy.Decide(v, sessions)
	require.Equal(t, ReasonAlone, d.Reason)
	require.Empty(t, d.Shed)

	// Three members at 20 and a new one at 0 not counted yet: balanced.
	v = view(20, 20, 20, 0)
	v.Elsewhere = elsewhere
	v.Members[3].Counted = false
	d = defaultPolicy.Decide(v, sessions)
	require.Equal(t, ReasonBalanced, d.Reason)
	require.Equal(t, 20.0, d.FairShare)
	require.Equal(t, 3, d.Counted)

	// The same member once counted makes the others shed.
	v.Members[3].Counted = true
	d = defaultPolicy.Decide(v, sessions)
	require.Equal(t, ReasonOverloaded, d.Reason)
	require.Equal(t, 15.0, d.FairShare)
	require.Len(t, d.Shed, 2)
}

func TestDecideLocalMemberDrainingShedsNothing(t *testing.T) {
	sessions, elsewhere := spread(30)
	v := view(30, 0, 0)
	v.Elsewhere = elsewhere
	v.Members[0].Counted = false // draining or not ready: the drain handles it
	d := defaultPolicy.Decide(v, sessions)
	require.Equal(t, ReasonNotCounted, d.Reason)
	require.Empty(t, d.Shed)

	// Every member draining.
	for i := range v.Members {
		v.Members[i].Counted = false
	}
	require.Equal(t, ReasonNotCounted, defaultPolicy.Decide(v, sessions).Reason)
}

func TestDecideUsesTheLocalRegistryCount(t *testing.T) {
	// The gossiped count of the local member (0) is stale; the sessions
	// say 30.
	sessions, elsewhere := spread(30)
	v := view(0, 15, 15)
	v.Elsewhere = elsewhere
	d := defaultPolicy.Decide(v, sessions)
	require.Equal(t, 20.0, d.FairShare)
	require.Equal(t, ReasonOverloaded, d.Reason)
}

func TestDecideToleranceMinimum(t *testing.T) {
	// 6 connections over 3 members: fair share 2, 10% would be 0.2 but
	// the band is at least 2 connections, so 4 is within it and a
	// member at 0 is not below it.
	sessions, elsewhere := spread(4)
	v := view(4, 2, 0)
	v.Elsewhere = elsewhere
	d := defaultPolicy.Decide(v, sessions)
	require.Equal(t, ReasonBalanced, d.Reason)
	require.Equal(t, 2.0, d.Band)

	// One more is above it.
	sessions, elsewhere = spread(5)
	v = view(5, 1, 0)
	v.Elsewhere = elsewhere
	d = defaultPolicy.Decide(v, sessions)
	require.Equal(t, ReasonOverloaded, d.Reason)
	require.Len(t, d.Shed, 1)

	// Without a minimum, 10% of 2 is the band: 4 is far above.
	sessions, elsewhere = spread(4)
	v = view(4, 2, 0)
	v.Elsewhere = elsewhere
	d = Policy{Tolerance: 0.1, MaxRate: 1}.Decide(v, sessions)
	require.Equal(t, ReasonOverloaded, d.Reason)
	require.Len(t, d.Shed, 2, "down to the fair share")

	// With many connections the fraction is the band: fair share 100,
	// band 10.
	sessions, elsewhere = spread(110)
	v = view(110, 100, 90)
	v.Elsewhere = elsewhere
	d = defaultPolicy.Decide(v, sessions)
	require.Equal(t, 10.0, d.Band)
	require.Equal(t, ReasonBalanced, d.Reason)
}

func TestDecideRateLimit(t *testing.T) {
	// 3 → 5 members with 60 agents: 20 each on the old ones, fair share
	// 12, excess 8, but at most ⌈10% × 20⌉ = 2 at a time.
	sessions, elsewhere := spread(20)
	v := view(20, 20, 20, 0, 0)
	v.Elsewhere = elsewhere
	d := defaultPolicy.Decide(v, sessions)
	require.Equal(t, ReasonOverloaded, d.Reason)
	require.Equal(t, 12.0, d.FairShare)
	require.Len(t, d.Shed, 2)

	// At least one connection per decision, however small the rate.
	d = Policy{Tolerance: 0.1, MinTolerance: 2, MaxRate: 0.001}.Decide(v, sessions)
	require.Len(t, d.Shed, 1)

	// A rate of 1 sheds the whole excess, never more: down to ⌈F⌉.
	d = Policy{Tolerance: 0.1, MinTolerance: 2, MaxRate: 1}.Decide(v, sessions)
	require.Len(t, d.Shed, 8)
}

func TestDecideUnderloadedMemberMakesThoseAboveTheFairShareShed(t *testing.T) {
	// Everyone within F + band (12 + 2), but one member far below F −
	// band: those above ⌈F⌉ shed, down to it.
	sessions, elsewhere := spread(14)
	v := view(14, 14, 14, 14, 4)
	v.Elsewhere = elsewhere
	d := defaultPolicy.Decide(v, sessions)
	require.Equal(t, ReasonUnderloaded, d.Reason)
	require.Len(t, d.Shed, 2)

	// A member at the fair share does not shed for it.
	sessions, elsewhere = spread(12)
	v = view(12, 15, 15, 14, 4)
	v.Elsewhere = elsewhere
	d = defaultPolicy.Decide(v, sessions)
	require.Equal(t, ReasonBalanced, d.Reason)

	// Nobody below the band: a member at 14 stays.
	sessions, elsewhere = spread(14)
	v = view(14, 14, 12, 10, 10)
	v.Elsewhere = elsewhere
	require.Equal(t, ReasonBalanced, defaultPolicy.Decide(v, sessions).Reason)
}

func TestDecideNeverShedsAnEndpointsLastConnectionHeldNowhereElse(t *testing.T) {
	// 20 endpoints with one connection each here, none elsewhere: nothing
	// to shed although far above the fair share.
	sessions := sessionsOf()
	for i := range 20 {
		sessions = append(sessions, Session{ID: uint64(i + 1), Endpoint: fmt.Sprintf("only%d", i)})
	}
	v := view(20, 0, 0)
	d := defaultPolicy.Decide(v, sessions)
	require.Equal(t, ReasonNoCandidate, d.Reason)
	require.Empty(t, d.Shed)

	// An endpoint with two connections here gives up one, never both.
	sessions = append(sessions, Session{ID: 100, Endpoint: "pair"}, Session{ID: 101, Endpoint: "pair"})
	v = view(22, 0, 0)
	d = Policy{Tolerance: 0.1, MinTolerance: 2, MaxRate: 1}.Decide(v, sessions)
	require.Equal(t, ReasonOverloaded, d.Reason)
	require.Equal(t, []uint64{100}, d.Shed)

	// The last connection here may go if another member holds the
	// endpoint.
	v.Elsewhere = map[string]int{"only3": 1}
	d = Policy{Tolerance: 0.1, MinTolerance: 2, MaxRate: 1}.Decide(v, sessions)
	require.ElementsMatch(t, []uint64{100, 4}, d.Shed)
}

func TestDecidePrefersEndpointsWithSeveralConnections(t *testing.T) {
	// Here: a×4, b×1 (also elsewhere), c×2, d×2 (d also elsewhere).
	sessions := sessionsOf("a", 4, "b", 1, "c", 2, "d", 2)
	v := view(9, 0, 0)
	v.Elsewhere = map[string]int{"b": 3, "d": 1}
	d := Policy{Tolerance: 0.1, MinTolerance: 0, MaxRate: 1}.Decide(v, sessions)
	// Fair share 3: shed 6. a (4 here) first, its longest-connected
	// session; then a (3) again; then a, d, c tie at 2 here: d is also
	// elsewhere, then a and c by name; then b, c, d with 1 here: b and d
	// are held elsewhere (b by more), c's last one stays.
	require.Equal(t, []uint64{1, 2, 8, 3, 6, 5}, d.Shed)
}

func TestDecideConvergesThroughRoundRobin(t *testing.T) {
	// A simulation: 60 agents on 3 members, 2 members added; every
	// decision round each member decides on its own count and the shed
	// agents reconnect round robin over all 5 members. Within 9 rounds
	// (27 s at the default interval of 3 s; the e2e test allows 60 s
	// with the new members' delay), every member holds 0.7–1.3 × the
	// fair share.
	counts := []int{20, 20, 20, 0, 0}
	next := 0
	rounds := 0
	balanced := func() bool {
		for _, c := range counts {
			if float64(c) < 0.7*12 || float64(c) > 1.3*12 {
				return false
			}
		}
		return true
	}
	for ; !balanced() && rounds < 20; rounds++ {
		shed := 0
		for i := range counts {
			sessions, elsewhere := spread(counts[i])
			v := view(counts...)
			v.LocalID = fmt.Sprintf("m%d", i)
			v.Elsewhere = elsewhere
			n := len(defaultPolicy.Decide(v, sessions).Shed)
			counts[i] -= n
			shed += n
		}
		for range shed {
			counts[next%len(counts)]++
			next++
		}
	}
	t.Logf("balanced after %d rounds: %v", rounds, counts)
	require.True(t, balanced(), "not balanced after %d rounds: %v", rounds, counts)
	require.LessOrEqual(t, rounds, 9)
}
