package upstream_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pico-proxy/pico/internal/testutil"
	"github.com/pico-proxy/pico/internal/upstream"
	"github.com/pico-proxy/pico/internal/upstream/upstreamtest"
)

// fastProbe keeps the liveness tests short; Quiet is long so that only the
// test's own Suspect calls ping.
var fastProbe = upstream.ProbeOptions{Unresponsive: 50 * time.Millisecond, Timeout: 500 * time.Millisecond, Quiet: time.Hour}

// newestSession registers another agent for endpoint and returns it with
// its session: the one not among known.
func (e *env) newestSession(endpoint string, known ...*upstream.Session) (*upstreamtest.Agent, *upstream.Session) {
	e.t.Helper()
	a := e.agent(endpoint)
	require.Eventually(e.t, func() bool { return e.registry.Counts()[endpoint] == len(known)+1 }, 5*time.Second, time.Millisecond)
	s, _ := e.registry.Acquire(endpoint, known...)
	require.NotNil(e.t, s)
	s.Release()
	return a, s
}

func TestAnUnansweredPingTakesTheSessionOutOfRotationThenClosesIt(t *testing.T) {
	e := newEnv(t, upstream.RegistryOptions{Probe: fastProbe})
	_, good := e.newestSession("ep")
	frozen, stuck := e.newestSession("ep", good)

	frozen.Freeze()
	stuck.Suspect()
	require.Eventually(t, func() bool {
		for range 4 {
			s, _ := e.registry.Acquire("ep")
			s.Release()
			if s != good {
				return false
			}
		}
		return true
	}, 5*time.Second, 10*time.Millisecond, "once its ping is out too long, the frozen session gets no requests")

	select {
	case <-stuck.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the session whose ping went unanswered was not closed")
	}
	require.Equal(t, 1, e.registry.Counts()["ep"])
	require.True(t, !testutil.Closed(good.Done()), "the healthy session stays")
}

func TestAnAnsweredPingKeepsTheSession(t *testing.T) {
	e := newEnv(t, upstream.RegistryOptions{Probe: fastProbe})
	_, s := e.newestSession("ep")
	s.Suspect()
	require.Eventually(t, func() bool { return !upstream.PingOut(s) }, 5*time.Second, time.Millisecond, "the agent answers")
	require.True(t, !testutil.Closed(s.Done()))
	again, _ := e.registry.Acquire("ep")
	require.Same(t, s, again)
	again.Release()
}

func TestAnUnresponsiveSessionStillServesWhenItIsTheOnlyOne(t *testing.T) {
	e := newEnv(t, upstream.RegistryOptions{Probe: upstream.ProbeOptions{Unresponsive: time.Millisecond, Timeout: time.Hour, Quiet: time.Hour}})
	a, s := e.newestSession("ep")
	a.Freeze()
	s.Suspect()
	time.Sleep(5 * time.Millisecond) // past Unresponsive
	require.True(t, upstream.PingOut(s))
	only, avail := e.registry.Acquire("ep")
	require.Same(t, s, only, "availability %v", avail)
	only.Release()
	a.Thaw()
	require.Eventually(t, func() bool { return !upstream.PingOut(s) }, 5*time.Second, time.Millisecond, "the answer arrives after the thaw")
}
