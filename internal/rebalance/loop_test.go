package rebalance

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

// fakeSource is a member with sessions whose shed agents come back to
// it (comeBack) or go elsewhere.
type fakeSource struct {
	view     View
	sessions []Session
	comeBack bool
	shed     []uint64
	nextID   uint64
}

func (f *fakeSource) View() View          { return f.view }
func (f *fakeSource) Sessions() []Session { return f.sessions }

func (f *fakeSource) Shed(ids []uint64) int {
	f.shed = append(f.shed, ids...)
	kept := f.sessions[:0]
	for _, s := range f.sessions {
		if !contains(ids, s.ID) {
			kept = append(kept, s)
		}
	}
	f.sessions = kept
	if f.comeBack {
		for range ids {
			f.nextID++
			f.sessions = append(f.sessions, Session{ID: f.nextID, Endpoint: "ep000"})
		}
	}
	return len(ids)
}

func contains(ids []uint64, id uint64) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

func newFake(comeBack bool) *fakeSource {
	sessions, elsewhere := spread(20)
	v := view(20, 20, 20, 0, 0)
	v.Elsewhere = elsewhere
	return &fakeSource{view: v, sessions: sessions, comeBack: comeBack, nextID: 1000}
}

func TestLoopShedsAndCounts(t *testing.T) {
	src := newFake(false)
	reg := prometheus.NewRegistry()
	l := NewLoop(Options{Policy: defaultPolicy, Source: src, Metrics: reg})
	for range 3 {
		d := l.Step()
		require.Equal(t, ReasonOverloaded, d.Reason)
	}
	require.Len(t, src.shed, 6)
	require.Len(t, src.sessions, 14)
	families, err := reg.Gather()
	require.NoError(t, err)
	require.Len(t, families, 1)
	require.Equal(t, "pico_upstream_rebalanced_total", families[0].GetName())
	require.Equal(t, 6.0, families[0].GetMetric()[0].GetCounter().GetValue())
}

func TestLoopBacksOffWhenShedAgentsComeBack(t *testing.T) {
	// Agents that connect to this member's own address come back at
	// once: after each futile round the loop waits longer (1, 2, 3, 3
	// intervals), instead of cycling them every interval.
	src := newFake(true)
	l := NewLoop(Options{Policy: defaultPolicy, Source: src})
	var reasons []string
	for range 14 {
		reasons = append(reasons, l.Step().Reason)
	}
	o, b := ReasonOverloaded, "backoff"
	require.Equal(t, []string{o, b, b, o, b, b, b, o, b, b, b, b, o, b}, reasons)
	require.Len(t, src.shed, 8)
	require.Len(t, src.sessions, 20)

	// Once shedding lowers the count again, the backoff is over.
	src.comeBack = false
	for l.Step().Reason == b {
	}
	require.Equal(t, o, l.Step().Reason)
	require.Equal(t, o, l.Step().Reason)
}
