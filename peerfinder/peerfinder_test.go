package peerfinder_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pico-proxy/pico/internal/testdns"
	"github.com/pico-proxy/pico/peerfinder"
)

const service = "pico-headless.default.svc.cluster.local"

func podName(pod string) string { return peerfinder.PodFQDN(pod, service) }

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func startDNS(t testing.TB) *testdns.Server {
	t.Helper()
	srv, err := testdns.Start("127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, srv.Close()) })
	return srv
}

// newFinder returns a Finder for pod in service, asking srv, polling fast.
// Snapshots passed to OnChange are sent on the returned channel.
func newFinder(t testing.TB, srv *testdns.Server, cfg peerfinder.Config) (*peerfinder.Finder, <-chan peerfinder.Snapshot) {
	t.Helper()
	changes := make(chan peerfinder.Snapshot, 100)
	if cfg.Service == "" {
		cfg.Service = service
	}
	cfg.Resolver = peerfinder.ResolverAt(srv.Addr())
	peerfinder.FastPauses(t)
	cfg.OnChange = func(s peerfinder.Snapshot) { changes <- s }
	f, err := peerfinder.New(cfg)
	require.NoError(t, err)
	return f, changes
}

func names(peers []peerfinder.Peer) []string {
	out := make([]string, len(peers))
	for i, p := range peers {
		out[i] = p.String()
	}
	return out
}

func nextChange(t *testing.T, changes <-chan peerfinder.Snapshot) peerfinder.Snapshot {
	t.Helper()
	select {
	case s := <-changes:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("no change reported")
		return peerfinder.Snapshot{}
	}
}

func TestLookupSeveralPeers(t *testing.T) {
	srv := startDNS(t)
	for i, pod := range []string{"pico-2", "pico-0", "pico-1"} {
		srv.PublishPod(service, pod, addr(fmt.Sprintf("10.0.0.%d", i+1)), 8003)
	}
	f, _ := newFinder(t, srv, peerfinder.Config{Self: podName("pico-1")})

	snap, err := f.Lookup(context.Background())
	require.NoError(t, err)
	assert.Equal(t, peerfinder.SourceSRV, snap.Source)
	assert.Equal(t, []string{podName("pico-0"), podName("pico-1"), podName("pico-2")}, names(snap.Peers))
	assert.True(t, snap.Published())
	assert.Equal(t, []string{podName("pico-0"), podName("pico-2")}, names(snap.Others()))
	assert.Contains(t, snap.String(), "3 peers in the SRV records of "+service)
	assert.Contains(t, snap.String(), "this pod among them")
}

func TestLookupNormalizesAndDeduplicatesSRVTargets(t *testing.T) {
	srv := startDNS(t)
	// A pod with two ports has two SRV records; names may come in any case.
	srv.SetSRV(service,
		testdns.SRV{Target: "PICO-0." + service + ".", Port: 8003},
		testdns.SRV{Target: "pico-0." + service, Port: 8002},
		testdns.SRV{Target: "pico-1." + service, Port: 8003},
	)
	f, _ := newFinder(t, srv, peerfinder.Config{Service: service + ".", Self: "Pico-1." + service})

	snap, err := f.Lookup(context.Background())
	require.NoError(t, err)
	assert.Equal(t, []string{podName("pico-0"), podName("pico-1")}, names(snap.Peers))
	assert.True(t, snap.Published())
}

func TestLookupNothingIsNotAnError(t *testing.T) {
	srv := startDNS(t)
	f, _ := newFinder(t, srv, peerfinder.Config{Self: podName("pico-0")})

	for _, setup := range []struct {
		name string
		do   func()
	}{
		{"NXDOMAIN", func() { srv.Remove(service) }},
		{"empty answer", func() { srv.SetEmpty(service) }},
	} {
		t.Run(setup.name, func(t *testing.T) {
			setup.do()
			snap, err := f.Lookup(context.Background())
			require.NoError(t, err)
			assert.Equal(t, peerfinder.SourceNone, snap.Source)
			assert.Empty(t, snap.Peers)
			assert.False(t, snap.Published())
			assert.Contains(t, snap.String(), "no SRV or A/AAAA records for "+service)
		})
	}
}

func TestLookupServerFailureIsAnError(t *testing.T) {
	srv := startDNS(t)
	srv.PublishPod(service, "pico-0", addr("10.0.0.1"), 8003)
	srv.SetRcode(service, dns.RcodeServerFailure)
	f, _ := newFinder(t, srv, peerfinder.Config{Self: podName("pico-0")})

	_, err := f.Lookup(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), service)
}

func TestLookupFallsBackToAddressRecords(t *testing.T) {
	srv := startDNS(t)
	srv.SetAddrs(service, addr("10.0.0.3"), addr("10.0.0.1"), addr("fd00::2"))

	t.Run("self found by its published name", func(t *testing.T) {
		srv.SetAddrs(podName("pico-1"), addr("fd00::2"))
		t.Cleanup(func() { srv.Remove(podName("pico-1")) })
		f, _ := newFinder(t, srv, peerfinder.Config{Self: podName("pico-1")})

		snap, err := f.Lookup(context.Background())
		require.NoError(t, err)
		assert.Equal(t, peerfinder.SourceAddrs, snap.Source)
		assert.True(t, snap.Published())
		assert.Equal(t, []string{"10.0.0.1", "10.0.0.3", podName("pico-1")}, names(snap.Peers))
		assert.Equal(t, []string{"10.0.0.1", "10.0.0.3"}, names(snap.Others()))
		for _, p := range snap.Others() {
			assert.Empty(t, p.Name, "peers found by address have no name")
		}
	})
	t.Run("self not published", func(t *testing.T) {
		f, _ := newFinder(t, srv, peerfinder.Config{Self: podName("pico-9")})

		snap, err := f.Lookup(context.Background())
		require.NoError(t, err)
		assert.Equal(t, peerfinder.SourceAddrs, snap.Source)
		assert.False(t, snap.Published())
		assert.Len(t, snap.Others(), 3)
	})
}

func TestLookupManyPeersNeedsTCP(t *testing.T) {
	srv := startDNS(t)
	const pods = 80 // the SRV answer no longer fits a UDP response
	want := make([]string, 0, pods)
	for i := range pods {
		pod := fmt.Sprintf("pico-%02d", i)
		srv.PublishPod(service, pod, netip.AddrFrom4([4]byte{10, 0, 1, byte(i)}), 8003)
		want = append(want, podName(pod))
	}
	f, _ := newFinder(t, srv, peerfinder.Config{Self: podName("pico-42")})

	snap, err := f.Lookup(context.Background())
	require.NoError(t, err)
	assert.Equal(t, want, names(snap.Peers))
	assert.True(t, snap.Published())
}

func TestWaitPublishedSelfAppearsLater(t *testing.T) {
	srv := startDNS(t)
	srv.PublishPod(service, "pico-0", addr("10.0.0.1"), 8003)
	f, changes := newFinder(t, srv, peerfinder.Config{Self: podName("pico-1")})

	type result struct {
		snap peerfinder.Snapshot
		err  error
	}
	done := make(chan result, 1)
	go func() {
		s, err := f.WaitPublished(context.Background())
		done <- result{s, err}
	}()

	first := nextChange(t, changes)
	assert.Equal(t, []string{podName("pico-0")}, names(first.Peers))
	assert.False(t, first.Published())
	// Let it poll the unchanged answer a few times: no change is reported.
	require.Eventually(t, func() bool { return srv.Queries(service) >= 6 }, 10*time.Second, time.Millisecond)
	assert.Empty(t, changes)

	srv.PublishPod(service, "pico-1", addr("10.0.0.2"), 8003)
	r := <-done
	require.NoError(t, r.err)
	assert.True(t, r.snap.Published())
	assert.Equal(t, []string{podName("pico-0")}, names(r.snap.Others()))
	second := nextChange(t, changes)
	assert.True(t, second.Equal(r.snap))
}

func TestWaitPublishedAfterEmptyAnswers(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(*testdns.Server)
	}{
		{"NXDOMAIN", func(*testdns.Server) {}},
		{"empty answer", func(s *testdns.Server) { s.SetEmpty(service) }},
		{"server failure", func(s *testdns.Server) { s.SetRcode(service, dns.RcodeServerFailure) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startDNS(t)
			tc.setup(srv)
			f, _ := newFinder(t, srv, peerfinder.Config{Self: podName("pico-0")})
			done := make(chan error, 1)
			var snap peerfinder.Snapshot
			go func() {
				var err error
				snap, err = f.WaitPublished(context.Background())
				done <- err
			}()
			require.Eventually(t, func() bool { return srv.Queries(service) >= 4 }, 10*time.Second, time.Millisecond)

			srv.SetRcode(service, dns.RcodeSuccess)
			srv.PublishPod(service, "pico-0", addr("10.0.0.1"), 8003)
			require.NoError(t, <-done)
			assert.True(t, snap.Published())
			assert.Empty(t, snap.Others(), "the first pod sees only itself")
		})
	}
}

func TestWaitPublishedTimesOut(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(*testdns.Server)
		want  []string
	}{
		{
			name:  "NXDOMAIN",
			setup: func(*testdns.Server) {},
			want:  []string{"no SRV or A/AAAA records for " + service, "NXDOMAIN or an empty answer"},
		},
		{
			name: "peers without this pod",
			setup: func(s *testdns.Server) {
				s.PublishPod(service, "pico-0", addr("10.0.0.1"), 8003)
				s.PublishPod(service, "pico-2", addr("10.0.0.3"), 8003)
			},
			want: []string{"2 peers in the SRV records of " + service, podName("pico-0") + ", " + podName("pico-2"), "this pod not among them"},
		},
		{
			name:  "server failure",
			setup: func(s *testdns.Server) { s.SetRcode(service, dns.RcodeServerFailure) },
			want:  []string{"every lookup failed", "server misbehaving"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startDNS(t)
			tc.setup(srv)
			f, _ := newFinder(t, srv, peerfinder.Config{Self: podName("pico-1")})
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()

			_, err := f.WaitPublished(ctx)
			require.Error(t, err)
			var npe *peerfinder.NotPublishedError
			require.ErrorAs(t, err, &npe)
			assert.ErrorIs(t, err, context.DeadlineExceeded)
			msg := err.Error()
			assert.Contains(t, msg, podName("pico-1")+" did not appear among the peers of "+service+" within ")
			for _, w := range tc.want {
				assert.Contains(t, msg, w)
			}
			assert.Contains(t, msg, "publishNotReadyAddresses: true")
			assert.NotContains(t, msg, "\n")
			assert.Greater(t, srv.Queries(service), 2, "retried until the deadline")
		})
	}
}

func TestWaitPublishedStopsWhenCanceled(t *testing.T) {
	srv := startDNS(t)
	f, _ := newFinder(t, srv, peerfinder.Config{Self: podName("pico-0")})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := f.WaitPublished(ctx)
		done <- err
	}()
	require.Eventually(t, func() bool { return srv.Queries(service) >= 2 }, 10*time.Second, time.Millisecond)
	cancel()
	err := <-done
	assert.ErrorIs(t, err, context.Canceled)
	assert.Contains(t, err.Error(), "stopped after")
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  peerfinder.Config
		want string
	}{
		{"no service", peerfinder.Config{Self: podName("pico-0")}, "service name: must not be empty"},
		{"bad service", peerfinder.Config{Service: "a_b.svc", Self: podName("pico-0")}, `service name: "a_b.svc" is not a DNS name`},
		{"no self", peerfinder.Config{Service: service}, "cannot be recognised"},
		{"bad self", peerfinder.Config{Service: service, Self: "pico 0"}, `pod name: "pico 0" is not a DNS name`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := peerfinder.New(tc.cfg)
			assert.ErrorContains(t, err, tc.want)
		})
	}
}

func TestLookupUnreachableServerIsAnError(t *testing.T) {
	// A port nobody listens on: the lookup fails, it does not "find nothing".
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := pc.LocalAddr().String()
	require.NoError(t, pc.Close())
	f, err := peerfinder.New(peerfinder.Config{
		Service:  service,
		Self:     podName("pico-0"),
		Resolver: peerfinder.ResolverAt(closed),
	})
	require.NoError(t, err)

	_, err = f.Lookup(context.Background())
	assert.ErrorContains(t, err, "look up SRV records of "+service)
}

func BenchmarkLookup(b *testing.B) {
	srv := startDNS(b)
	for i := range 3 {
		srv.PublishPod(service, fmt.Sprintf("pico-%d", i), netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)}), 8003)
	}
	f, _ := newFinder(b, srv, peerfinder.Config{Self: podName("pico-1")})
	ctx := context.Background()
	for b.Loop() {
		snap, err := f.Lookup(ctx)
		if err != nil || !snap.Published() {
			b.Fatalf("lookup: %v %v", snap, err)
		}
	}
}

func TestLookupIgnoresRootSRVTargets(t *testing.T) {
	// An SRV target "." says "no service here": not a peer. With no other
	// target the address records are used.
	srv := startDNS(t)
	srv.SetSRV(service, testdns.SRV{Target: "."})
	srv.SetAddrs(service, addr("10.0.0.1"))
	srv.SetAddrs(podName("pico-0"), addr("10.0.0.1"))
	f, _ := newFinder(t, srv, peerfinder.Config{Self: podName("pico-0")})

	snap, err := f.Lookup(context.Background())
	require.NoError(t, err)
	assert.Equal(t, peerfinder.SourceAddrs, snap.Source)
	assert.True(t, snap.Published())
}
