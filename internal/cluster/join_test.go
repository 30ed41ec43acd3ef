package cluster

import (
	"context"
	"encoding/base64"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/stretchr/testify/require"

	"github.com/pico-proxy/pico/internal/adminapi"
)

func TestJoinExpandsANameToAllItsAddresses(t *testing.T) {
	dns := startDNS(t)
	ipA, ipB, ipC := nextIP(), nextIP(), nextIP()
	// Two nodes that know nothing of each other…
	a := joinNode(t, testConfig(ipA))
	b := joinNode(t, testConfig(ipB))
	// …and a third whose join name lists all three: it must contact every
	// address, or a and b would never meet.
	dns.SetAddrs("peers.pico.test", ipA, ipB, ipC)
	cfg := testConfig(ipC, "peers.pico.test")
	cfg.Resolver = testResolver(dns)
	c := joinNode(t, cfg)
	nodes := []*Cluster{a, b, c}
	waitActive(t, nodes, ids(nodes)...)
}

func TestJoinAcceptsIPsAndHostPorts(t *testing.T) {
	ipA := nextIP()
	a := joinNode(t, testConfig(ipA))
	b := joinNode(t, testConfig(nextIP(), ipA.String()))
	c := joinNode(t, testConfig(nextIP(), a.GossipAddr()))
	nodes := []*Cluster{a, b, c}
	waitActive(t, nodes, ids(nodes)...)
}

func TestJoinNamesResolvingOnlyToThisNodeStartANewCluster(t *testing.T) {
	dns := startDNS(t)
	ip := nextIP()
	dns.SetAddrs("self.pico.test", ip)
	dns.SetEmpty("empty.pico.test")
	cfg := testConfig(ip, "self.pico.test", "empty.pico.test", "missing.pico.test", net.JoinHostPort(ip.String(), "17946"))
	cfg.Resolver = testResolver(dns)
	cfg.AbortIfJoinFails = true
	cfg.JoinTimeout = time.Minute
	c := startNode(t, cfg)
	// The first pod of a new cluster must not wait for the join timeout:
	// a Join that waited would be cut short by this deadline and fail.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, c.Join(ctx))
	require.Equal(t, []string{c.LocalID()}, activeIDs(c))
}

func TestJoinFailsWhenOtherNodesCannotBeJoined(t *testing.T) {
	dns := startDNS(t)
	self, nobody := nextIP(), nextIP() // nothing listens on nobody
	dns.SetAddrs("others.pico.test", self, nobody)

	cfg := testConfig(self, "others.pico.test")
	cfg.Resolver = testResolver(dns)
	cfg.AbortIfJoinFails = true
	cfg.JoinTimeout = time.Second
	c := startNode(t, cfg)
	err := c.Join(context.Background())
	require.ErrorContains(t, err, "none could be joined within cluster.join_timeout")
	require.ErrorContains(t, err, nobody.String())
	require.GreaterOrEqual(t, dns.Queries("others.pico.test"), 2, "the join is retried")

	// Without abort_if_join_fails the node carries on alone.
	require.NoError(t, c.Shutdown())
	cfg.AbortIfJoinFails = false
	c = startNode(t, cfg)
	require.NoError(t, c.Join(context.Background()))
}

func TestJoinRetriesUntilAMemberAppears(t *testing.T) {
	dns := startDNS(t)
	ipA, ipB := nextIP(), nextIP()
	dns.SetAddrs("later.pico.test", ipA)
	cfg := testConfig(ipB, "later.pico.test")
	cfg.Resolver = testResolver(dns)
	cfg.JoinTimeout = 30 * time.Second
	b := startNode(t, cfg)
	joined := make(chan error, 1)
	go func() { joined <- b.Join(context.Background()) }()

	require.Eventually(t, func() bool { return dns.Queries("later.pico.test") >= 2 }, eventually, tick, "b retries")
	a := joinNode(t, testConfig(ipA))
	require.NoError(t, <-joined)
	waitActive(t, []*Cluster{a, b}, a.LocalID(), b.LocalID())
}

func TestJoinIsInterruptedByItsContext(t *testing.T) {
	cfg := testConfig(nextIP(), nextIP().String()) // nobody there
	cfg.JoinTimeout = time.Minute
	c := startNode(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, c.Join(ctx), context.Canceled)
}

func TestSplitBrainIsHealedByThePeriodicRejoin(t *testing.T) {
	dns := startDNS(t)
	ipA, ipB := nextIP(), nextIP()
	// Both nodes start at the same instant: each one's join name shows
	// only itself, so each founds its own cluster.
	dns.SetAddrs("peers-of-a.pico.test", ipA)
	dns.SetAddrs("peers-of-b.pico.test", ipB)
	start := func(ip netip.Addr, name string) *Cluster {
		cfg := testConfig(ip, name)
		cfg.Resolver = testResolver(dns)
		cfg.RejoinInterval = 200 * time.Millisecond
		c := joinNode(t, cfg)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { c.Run(ctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
		return c
	}
	a := start(ipA, "peers-of-a.pico.test")
	b := start(ipB, "peers-of-b.pico.test")
	a.UpdateLocalEndpoints(map[string]int{"on-a": 1})
	b.UpdateLocalEndpoints(map[string]int{"on-b": 1})
	require.Equal(t, []string{a.LocalID()}, activeIDs(a))
	require.Equal(t, []string{b.LocalID()}, activeIDs(b))

	// Later DNS shows both: the periodic re-join merges the two clusters,
	// routing state included.
	dns.SetAddrs("peers-of-a.pico.test", ipA, ipB)
	dns.SetAddrs("peers-of-b.pico.test", ipA, ipB)
	waitActive(t, []*Cluster{a, b}, a.LocalID(), b.LocalID())
	require.Eventually(t, func() bool {
		return routesTo(a, "on-b", b.LocalID()) && routesTo(b, "on-a", a.LocalID())
	}, eventually, tick)
}

func TestPartitionedNodeRejoinsWhenThePartitionHeals(t *testing.T) {
	var isolated atomic.Bool
	noGossipToTheDead := func(mc *memberlist.Config) {
		// Only the reconnect loop can heal: memberlist's own gossip to
		// recently dead nodes is off.
		mc.GossipToTheDeadTime = 0
	}
	first := nextIP()
	start := func(ip netip.Addr, join []string, cut bool) *Cluster {
		cfg := testConfig(ip, join...)
		cfg.Timing.ReconnectInterval = 300 * time.Millisecond
		cfg.Timing.Memberlist = noGossipToTheDead
		if cut {
			cfg.Timing.Memberlist = func(mc *memberlist.Config) {
				noGossipToTheDead(mc)
				nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
					BindAddrs: []string{mc.BindAddr},
					BindPort:  mc.BindPort,
					Logger:    mc.Logger,
				})
				require.NoError(t, err)
				mc.Transport = newIsolatingTransport(nt, &isolated)
			}
		}
		return joinNode(t, cfg)
	}
	a := start(first, nil, false)
	b := start(nextIP(), []string{first.String()}, false)
	c := start(nextIP(), []string{first.String()}, true)
	nodes := []*Cluster{a, b, c}
	waitActive(t, nodes, ids(nodes)...)
	c.UpdateLocalEndpoints(map[string]int{"on-c": 1})
	require.Eventually(t, func() bool { return routesTo(a, "on-c", c.LocalID()) }, eventually, tick)

	isolated.Store(true)
	require.Eventually(t, func() bool {
		return status(a, c.LocalID()) == adminapi.StatusDead && status(b, c.LocalID()) == adminapi.StatusDead &&
			status(c, a.LocalID()) == adminapi.StatusDead && status(c, b.LocalID()) == adminapi.StatusDead
	}, eventually, tick, describe(nodes))
	_, ok := a.PickRemote("on-c")
	require.False(t, ok)
	c.UpdateLocalEndpoints(map[string]int{"on-c": 1, "while-cut": 1})

	healed := time.Now()
	isolated.Store(false)
	waitActive(t, nodes, ids(nodes)...)
	require.Eventually(t, func() bool { return routesTo(b, "while-cut", c.LocalID()) }, eventually, tick)
	t.Logf("partition healed %s after the network came back", time.Since(healed).Round(time.Millisecond))
}

// isolatingTransport is memberlist's real network transport with a switch
// that cuts the node off the network (both directions, UDP and TCP), like
// a firewall rule would.
type isolatingTransport struct {
	*memberlist.NetTransport
	isolated *atomic.Bool
	packets  chan *memberlist.Packet
	streams  chan net.Conn
	done     chan struct{}
}

func newIsolatingTransport(nt *memberlist.NetTransport, isolated *atomic.Bool) *isolatingTransport {
	t := &isolatingTransport{
		NetTransport: nt,
		isolated:     isolated,
		packets:      make(chan *memberlist.Packet),
		streams:      make(chan net.Conn),
		done:         make(chan struct{}),
	}
	go func() {
		for {
			select {
			case p := <-nt.PacketCh():
				if isolated.Load() {
					continue
				}
				select {
				case t.packets <- p:
				case <-t.done:
					return
				}
			case <-t.done:
				return
			}
		}
	}()
	go func() {
		for {
			select {
			case conn := <-nt.StreamCh():
				if isolated.Load() {
					conn.Close()
					continue
				}
				select {
				case t.streams <- conn:
				case <-t.done:
					conn.Close()
					return
				}
			case <-t.done:
				return
			}
		}
	}()
	return t
}

// Shutdown stops the real transport first: it blocks until its listeners
// have handed over what they received, so the forwarders must still run.
func (t *isolatingTransport) Shutdown() error {
	err := t.NetTransport.Shutdown()
	close(t.done)
	return err
}

var errIsolated = &net.OpError{Op: "dial", Net: "tcp", Err: net.ErrClosed}

func (t *isolatingTransport) PacketCh() <-chan *memberlist.Packet { return t.packets }
func (t *isolatingTransport) StreamCh() <-chan net.Conn           { return t.streams }

func (t *isolatingTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	if t.isolated.Load() {
		return time.Now(), nil // lost on the way
	}
	return t.NetTransport.WriteTo(b, addr)
}

func (t *isolatingTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	return t.WriteTo(b, a.Addr)
}

func (t *isolatingTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if t.isolated.Load() {
		return nil, errIsolated
	}
	return t.NetTransport.DialTimeout(addr, timeout)
}

func (t *isolatingTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	return t.DialTimeout(a.Addr, timeout)
}

func TestGossipEncryptionKeepsStrangersOut(t *testing.T) {
	key := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	first := nextIP()
	cfg := testConfig(first)
	cfg.GossipKeys = loadKeys(t, key)
	a := joinNode(t, cfg)
	cfg = testConfig(nextIP(), first.String())
	cfg.GossipKeys = loadKeys(t, key)
	b := joinNode(t, cfg)
	waitActive(t, []*Cluster{a, b}, a.LocalID(), b.LocalID())

	for name, strangerKey := range map[string]string{"wrong key": base64.StdEncoding.EncodeToString([]byte("fedcba9876543210fedcba9876543210")), "no key": ""} {
		cfg = testConfig(nextIP(), first.String())
		cfg.GossipKeys = loadKeys(t, strangerKey)
		cfg.JoinTimeout = 500 * time.Millisecond
		stranger := startNode(t, cfg)
		require.ErrorContains(t, stranger.Join(context.Background()), "none could be joined", name)
		require.Equal(t, ids([]*Cluster{a, b}), activeIDs(a), name)
		require.Len(t, a.Nodes(), 2, name)
	}
}
