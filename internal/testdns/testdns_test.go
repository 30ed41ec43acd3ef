package testdns_test

import (
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pico-proxy/pico/internal/testdns"
)

const service = "web.default.svc.cluster.local"

func start(t *testing.T) *testdns.Server {
	t.Helper()
	srv, err := testdns.Start("127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, srv.Close()) })
	return srv
}

// ask sends one question over network ("udp" or "tcp") with a plain
// client, so the tests see the raw response.
func ask(t *testing.T, srv *testdns.Server, network, name string, qtype uint16) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: network}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	resp, _, err := c.Exchange(m, srv.Addr())
	require.NoError(t, err)
	return resp
}

func TestAnswersOverUDPAndTCPOnTheSamePort(t *testing.T) {
	srv := start(t)
	host, port, err := net.SplitHostPort(srv.Addr())
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1", host)
	assert.NotEqual(t, "0", port)
	srv.SetAddrs("a.example", netip.MustParseAddr("192.0.2.1"))

	for _, network := range []string{"udp", "tcp"} {
		resp := ask(t, srv, network, "a.example", dns.TypeA)
		require.Equal(t, dns.RcodeSuccess, resp.Rcode, network)
		require.Len(t, resp.Answer, 1)
		assert.Equal(t, "192.0.2.1", resp.Answer[0].(*dns.A).A.String())
		assert.True(t, resp.Authoritative)
	}
	assert.Equal(t, 2, srv.Queries("A.EXAMPLE."))
}

func TestStartOnAGivenPort(t *testing.T) {
	first := start(t)
	_, err := testdns.Start(first.Addr())
	assert.ErrorContains(t, err, "address already in use", "the port is taken by the first server")
	_, err = testdns.Start("no-port")
	assert.ErrorContains(t, err, `listen address "no-port"`)
}

func TestNXDOMAINEmptyAndFailures(t *testing.T) {
	srv := start(t)
	srv.SetAddrs("v4only.example", netip.MustParseAddr("192.0.2.1"))
	srv.SetEmpty("empty.example")
	srv.SetAddrs("failing.example", netip.MustParseAddr("192.0.2.2"))
	srv.SetRcode("failing.example", dns.RcodeServerFailure)

	for _, tc := range []struct {
		name    string
		qtype   uint16
		rcode   int
		answers int
	}{
		{"unknown.example", dns.TypeA, dns.RcodeNameError, 0},
		{"empty.example", dns.TypeA, dns.RcodeSuccess, 0},
		{"empty.example", dns.TypeSRV, dns.RcodeSuccess, 0},
		{"v4only.example", dns.TypeAAAA, dns.RcodeSuccess, 0},
		{"v4only.example", dns.TypeSRV, dns.RcodeSuccess, 0},
		{"v4only.example", dns.TypeA, dns.RcodeSuccess, 1},
		{"failing.example", dns.TypeA, dns.RcodeServerFailure, 0},
	} {
		resp := ask(t, srv, "udp", tc.name, tc.qtype)
		assert.Equal(t, tc.rcode, resp.Rcode, "%s %s", tc.name, dns.TypeToString[tc.qtype])
		assert.Len(t, resp.Answer, tc.answers, "%s %s", tc.name, dns.TypeToString[tc.qtype])
	}

	srv.SetRcode("failing.example", dns.RcodeSuccess)
	assert.Len(t, ask(t, srv, "udp", "failing.example", dns.TypeA).Answer, 1, "records kept while failing")
	srv.Remove("v4only.example")
	assert.Equal(t, dns.RcodeNameError, ask(t, srv, "udp", "v4only.example", dns.TypeA).Rcode)
}

func TestPublishAndUnpublishPods(t *testing.T) {
	srv := start(t)
	srv.PublishPod(service, "web-0", netip.MustParseAddr("10.0.0.1"), 80)
	srv.PublishPod(service+".", "web-1", netip.MustParseAddr("fd00::1"), 80)

	srvResp := ask(t, srv, "udp", service, dns.TypeSRV)
	var targets []string
	for _, rr := range srvResp.Answer {
		targets = append(targets, rr.(*dns.SRV).Target)
	}
	assert.ElementsMatch(t, []string{"web-0." + service + ".", "web-1." + service + "."}, targets)
	assert.Len(t, srvResp.Extra, 2, "addresses of the targets as additional records")
	assert.Len(t, ask(t, srv, "udp", service, dns.TypeA).Answer, 1)
	assert.Len(t, ask(t, srv, "udp", service, dns.TypeAAAA).Answer, 1)
	assert.Len(t, ask(t, srv, "udp", "web-1."+service, dns.TypeAAAA).Answer, 1)

	// Publishing again moves the pod to its new address.
	srv.PublishPod(service, "web-0", netip.MustParseAddr("10.0.0.9"), 80)
	a := ask(t, srv, "udp", service, dns.TypeA)
	require.Len(t, a.Answer, 1)
	assert.Equal(t, "10.0.0.9", a.Answer[0].(*dns.A).A.String())
	assert.Len(t, ask(t, srv, "udp", service, dns.TypeSRV).Answer, 2)

	srv.UnpublishPod(service, "web-0")
	srv.UnpublishPod(service, "web-1")
	assert.Equal(t, dns.RcodeNameError, ask(t, srv, "udp", "web-0."+service, dns.TypeA).Rcode)
	empty := ask(t, srv, "udp", service, dns.TypeSRV)
	assert.Equal(t, dns.RcodeSuccess, empty.Rcode, "the service stays, without endpoints")
	assert.Empty(t, empty.Answer)
}

func TestLargeAnswersAreTruncatedOverUDP(t *testing.T) {
	srv := start(t)
	for i := range 60 {
		srv.PublishPod(service, fmt.Sprintf("web-%d", i), netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), 80)
	}
	udp := ask(t, srv, "udp", service, dns.TypeSRV)
	assert.True(t, udp.Truncated)
	assert.Less(t, len(udp.Answer), 60)
	tcp := ask(t, srv, "tcp", service, dns.TypeSRV)
	assert.False(t, tcp.Truncated)
	assert.Len(t, tcp.Answer, 60)
}
