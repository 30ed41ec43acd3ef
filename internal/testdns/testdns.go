// Package testdns is a small authoritative DNS server for tests.
//
// It answers SRV, A and AAAA questions over UDP and TCP on one loopback
// address from an in-memory table that the test changes while the server
// runs, so code that discovers peers through DNS can be exercised against a
// real resolver speaking the real protocol:
//
//	srv, err := testdns.Start("127.0.0.1:0")
//	...
//	defer srv.Close()
//	srv.PublishPod("pico-headless.default.svc.cluster.local", "pico-0", netip.MustParseAddr("10.0.0.1"), 8003)
//	srv.Remove("gone.example")  // NXDOMAIN
//	srv.SetEmpty("empty.example") // NOERROR with an empty answer
//
// Names are case-insensitive and may be given with or without the trailing
// dot. A name that was never set (or was removed) is answered with
// NXDOMAIN; a name that exists but has no record of the asked type is
// answered with an empty NOERROR response, as a real server does.
//
// UDP answers that do not fit the client's buffer are truncated with the TC
// bit set, so clients retry over TCP exactly as they would against CoreDNS.
package testdns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// TTL is the time to live, in seconds, of every record the server returns.
const TTL = 5

// SRV is one SRV record served for a name.
type SRV struct {
	// Target is the name the record points at, e.g. "pico-0.pico-headless.default.svc.cluster.local".
	Target   string
	Port     uint16
	Priority uint16
	Weight   uint16
}

// Server is a running test DNS server. Its methods are safe for concurrent
// use, also while queries are being answered.
type Server struct {
	addr string
	udp  *dns.Server
	tcp  *dns.Server

	mu    sync.Mutex
	names map[string]*entry // keyed by canonical name (lower case, trailing dot)
	count map[string]int    // queries seen per canonical name
}

// entry is what the server knows about one existing name.
type entry struct {
	srv   []SRV
	addrs []netip.Addr
	rcode int // answered instead of records when not dns.RcodeSuccess
}

// Start listens on addr ("host:port"; port 0 picks a free port that is then
// used for both UDP and TCP) and serves until Close. Addr reports the
// address actually used.
func Start(addr string) (*Server, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("testdns: listen address %q: %w", addr, err)
	}
	// With port 0 the kernel picks the UDP port; the TCP port must match
	// it and may happen to be taken, so try a few times.
	const attempts = 10
	for i := 0; ; i++ {
		pc, err := net.ListenPacket("udp", net.JoinHostPort(host, port))
		if err != nil {
			return nil, fmt.Errorf("testdns: listen udp %s: %w", addr, err)
		}
		bound := pc.LocalAddr().String()
		l, err := net.Listen("tcp", bound)
		if err != nil {
			pc.Close()
			if port == "0" && i < attempts {
				continue
			}
			return nil, fmt.Errorf("testdns: listen tcp %s: %w", bound, err)
		}
		return serve(bound, pc, l)
	}
}

func serve(addr string, pc net.PacketConn, l net.Listener) (*Server, error) {
	s := &Server{
		addr:  addr,
		names: make(map[string]*entry),
		count: make(map[string]int),
	}
	var started sync.WaitGroup
	started.Add(2)
	s.udp = &dns.Server{PacketConn: pc, Handler: s, NotifyStartedFunc: started.Done}
	s.tcp = &dns.Server{Listener: l, Handler: s, NotifyStartedFunc: started.Done}
	failed := make(chan error, 2)
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		go func() {
			if err := srv.ActivateAndServe(); err != nil {
				failed <- err
			}
		}()
	}
	ready := make(chan struct{})
	go func() { started.Wait(); close(ready) }()
	select {
	case <-ready:
		return s, nil
	case err := <-failed:
		pc.Close()
		l.Close()
		return nil, fmt.Errorf("testdns: serve on %s: %w", addr, err)
	}
}

// Addr is the "host:port" the server answers on, over both UDP and TCP.
func (s *Server) Addr() string { return s.addr }

// Close stops the server and releases its sockets.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return errors.Join(s.udp.ShutdownContext(ctx), s.tcp.ShutdownContext(ctx))
}

// SetSRV replaces the SRV records of name. With no records the name exists
// but SRV questions get an empty answer.
func (s *Server) SetSRV(name string, records ...SRV) {
	s.update(name, func(e *entry) { e.srv = slices.Clone(records) })
}

// SetAddrs replaces the address records of name: IPv4 addresses are served
// as A records, IPv6 addresses as AAAA records. With no addresses the name
// exists but address questions get an empty answer.
func (s *Server) SetAddrs(name string, addrs ...netip.Addr) {
	s.update(name, func(e *entry) { e.addrs = slices.Clone(addrs) })
}

// SetEmpty makes name exist without any record: every question about it
// gets an empty NOERROR answer (what DNS people call NODATA).
func (s *Server) SetEmpty(name string) {
	s.update(name, func(e *entry) { *e = entry{} })
}

// SetRcode makes every question about name fail with rcode (for example
// dns.RcodeServerFailure or dns.RcodeRefused) until Remove or SetRcode with
// dns.RcodeSuccess. The name's records are kept.
func (s *Server) SetRcode(name string, rcode int) {
	s.update(name, func(e *entry) { e.rcode = rcode })
}

// Remove deletes name and all its records: questions about it get NXDOMAIN.
func (s *Server) Remove(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.names, dns.CanonicalName(name))
}

// PublishPod does what Kubernetes' DNS does when a pod of a StatefulSet
// becomes an endpoint of its headless service: the pod's name
// "pod.service" gets the A/AAAA record addr, the service name gains an SRV
// record pointing at the pod's name on port, and the service name gains
// addr among its address records. Publishing a pod again replaces its
// address.
func (s *Server) PublishPod(service, pod string, addr netip.Addr, port uint16) {
	s.UnpublishPod(service, pod)
	service = dns.CanonicalName(service)
	podName := dns.CanonicalName(pod + "." + service)
	s.mu.Lock()
	defer s.mu.Unlock()
	svc := s.entry(service)
	svc.srv = append(svc.srv, SRV{Target: podName, Port: port, Weight: 100})
	svc.addrs = append(svc.addrs, addr)
	s.entry(podName).addrs = []netip.Addr{addr}
}

// UnpublishPod reverses PublishPod: the pod's name is removed (NXDOMAIN)
// and the service loses its SRV and address records for the pod. The
// service name itself stays (with an empty answer once its last pod is
// gone), as with a headless service that has no endpoints.
func (s *Server) UnpublishPod(service, pod string) {
	service = dns.CanonicalName(service)
	podName := dns.CanonicalName(pod + "." + service)
	s.mu.Lock()
	defer s.mu.Unlock()
	podEntry, ok := s.names[podName]
	if !ok {
		return
	}
	delete(s.names, podName)
	svc, ok := s.names[service]
	if !ok {
		return
	}
	svc.srv = slices.DeleteFunc(svc.srv, func(r SRV) bool { return dns.CanonicalName(r.Target) == podName })
	svc.addrs = slices.DeleteFunc(svc.addrs, func(a netip.Addr) bool { return slices.Contains(podEntry.addrs, a) })
}

// Queries reports how many questions (of any type, over any transport)
// the server has received about name. Tests use it to wait until a client
// has polled, instead of sleeping.
func (s *Server) Queries(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count[dns.CanonicalName(name)]
}

func (s *Server) update(name string, change func(*entry)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	change(s.entry(dns.CanonicalName(name)))
}

// entry returns the entry of the canonical name, creating it. s.mu is held.
func (s *Server) entry(name string) *entry {
	e, ok := s.names[name]
	if !ok {
		e = &entry{}
		s.names[name] = e
	}
	return e
}

// ServeDNS answers one query; it implements dns.Handler.
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	resp := new(dns.Msg)
	if len(req.Question) != 1 {
		resp.SetRcode(req, dns.RcodeFormatError)
		_ = w.WriteMsg(resp)
		return
	}
	resp.SetReply(req)
	resp.Authoritative = true
	resp.RecursionAvailable = true
	q := req.Question[0]
	s.answer(resp, dns.CanonicalName(q.Name), q.Qtype)

	size := dns.MaxMsgSize
	if _, udp := w.LocalAddr().(*net.UDPAddr); udp {
		size = dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = int(opt.UDPSize())
		}
	}
	if opt := req.IsEdns0(); opt != nil {
		resp.SetEdns0(opt.UDPSize(), false)
	}
	resp.Truncate(size)
	_ = w.WriteMsg(resp)
}

// answer fills resp for a question about the canonical name.
func (s *Server) answer(resp *dns.Msg, name string, qtype uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.count[name]++
	e, ok := s.names[name]
	switch {
	case !ok:
		resp.Rcode = dns.RcodeNameError
		return
	case e.rcode != dns.RcodeSuccess:
		resp.Rcode = e.rcode
		return
	}
	switch qtype {
	case dns.TypeSRV:
		for _, r := range e.srv {
			target := dns.CanonicalName(r.Target)
			resp.Answer = append(resp.Answer, &dns.SRV{
				Hdr:      header(name, dns.TypeSRV),
				Priority: r.Priority,
				Weight:   r.Weight,
				Port:     r.Port,
				Target:   target,
			})
			// Like CoreDNS, help the client with the targets' addresses.
			if t, ok := s.names[target]; ok && t.rcode == dns.RcodeSuccess {
				resp.Extra = append(resp.Extra, addressRecords(target, t.addrs, dns.TypeA)...)
				resp.Extra = append(resp.Extra, addressRecords(target, t.addrs, dns.TypeAAAA)...)
			}
		}
	case dns.TypeA, dns.TypeAAAA:
		resp.Answer = addressRecords(name, e.addrs, qtype)
	}
}

// addressRecords returns the records of type qtype (A or AAAA) among addrs.
func addressRecords(name string, addrs []netip.Addr, qtype uint16) []dns.RR {
	var rrs []dns.RR
	for _, a := range addrs {
		a = a.Unmap()
		switch {
		case qtype == dns.TypeA && a.Is4():
			rrs = append(rrs, &dns.A{Hdr: header(name, dns.TypeA), A: a.AsSlice()})
		case qtype == dns.TypeAAAA && a.Is6():
			rrs = append(rrs, &dns.AAAA{Hdr: header(name, dns.TypeAAAA), AAAA: a.AsSlice()})
		}
	}
	return rrs
}

func header(name string, rrtype uint16) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: rrtype, Class: dns.ClassINET, Ttl: TTL}
}
