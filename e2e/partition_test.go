//go:build e2e

package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// Partition is a set of gossip relays, one in front of each node's gossip
// port, that can cut one node off from the others in both directions and
// heal the cut. Every node advertises its relay's address
// (--gossip.advertise-addr) and joins the others through their relays, so
// all gossip between nodes passes through relays:
//
//   - UDP to the cut node (through its relay) is dropped, and so is UDP
//     from it (it sends from its gossip bind address) at the other relays;
//   - TCP connections to the cut node are reset, and so are TCP
//     connections from its process to the other relays (memberlist dials
//     without a source address, so the relay asks the kernel which process
//     owns the other end);
//   - TCP connections across the cut that are open when it begins are
//     closed.
type Partition struct {
	mu     sync.RWMutex
	cutIP  string // gossip bind IP of the node cut off; "" when healed
	cutPID int
	relays []*GossipRelay
}

// GossipRelay relays TCP and UDP from its own loopback IP's gossip port to
// a node's gossip port, unless the partition blocks the traffic.
type GossipRelay struct {
	IP     string
	nodeIP string
	part   *Partition
	tcp    net.Listener
	udp    *net.UDPConn
	out    *net.UDPConn
	target *net.UDPAddr

	mu    sync.Mutex
	conns map[*relayedConn]struct{}
}

// relayedConn is one relayed TCP connection: the client's side, where it
// comes from, and the connection to the node.
type relayedConn struct {
	client  *net.TCPConn
	backend *net.TCPConn
	src     netip.AddrPort
}

func (c *relayedConn) reset() {
	for _, tc := range []*net.TCPConn{c.client, c.backend} {
		_ = tc.SetLinger(0)
		tc.Close()
	}
}

// NewRelay starts a relay on a fresh loopback IP in front of nodeIP:8003.
func (p *Partition) NewRelay(t testing.TB, nodeIP string) *GossipRelay {
	t.Helper()
	r := &GossipRelay{IP: nextIP(), nodeIP: nodeIP, part: p, conns: map[*relayedConn]struct{}{}}
	var err error
	r.tcp, err = net.Listen("tcp", r.Addr())
	require.NoError(t, err)
	r.udp, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(r.Addr())))
	require.NoError(t, err)
	r.out, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(r.IP)})
	require.NoError(t, err)
	r.target = net.UDPAddrFromAddrPort(netip.MustParseAddrPort(nodeIP + ":8003"))
	go r.serveTCP()
	go r.serveUDP()
	go func() { _, _ = io.Copy(io.Discard, connReader{r.out}) }() // memberlist replies to advertised addresses, not here
	t.Cleanup(func() {
		r.tcp.Close()
		r.udp.Close()
		r.out.Close()
		r.closeConns(func(*relayedConn) bool { return true })
	})
	p.mu.Lock()
	p.relays = append(p.relays, r)
	p.mu.Unlock()
	return r
}

// Addr is the relay's gossip address, which its node advertises.
func (r *GossipRelay) Addr() string { return r.IP + ":8003" }

// Cut cuts the node whose gossip binds to nodeIP (process pid) off.
func (p *Partition) Cut(nodeIP string, pid int) {
	p.mu.Lock()
	p.cutIP, p.cutPID = nodeIP, pid
	relays := append([]*GossipRelay(nil), p.relays...)
	p.mu.Unlock()
	for _, r := range relays {
		r.closeConns(func(c *relayedConn) bool {
			return r.nodeIP == nodeIP || c.src.Addr().String() == nodeIP || socketOwnedBy(pid, c.src)
		})
	}
}

// Heal lets all traffic through again.
func (p *Partition) Heal() {
	p.mu.Lock()
	p.cutIP, p.cutPID = "", 0
	p.mu.Unlock()
}

// blocked reports whether traffic through relay r from src is cut.
// fromPID tells whether the source belongs to a process (TCP only).
func (p *Partition) blocked(r *GossipRelay, srcIP string, fromPID func(int) bool) bool {
	p.mu.RLock()
	cutIP, cutPID := p.cutIP, p.cutPID
	p.mu.RUnlock()
	switch {
	case cutIP == "":
		return false
	case r.nodeIP == cutIP, srcIP == cutIP:
		return true
	case fromPID != nil:
		return fromPID(cutPID)
	}
	return false
}

func (r *GossipRelay) serveUDP() {
	buf := make([]byte, 65536)
	for {
		n, src, err := r.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		if r.part.blocked(r, src.Addr().String(), nil) {
			continue
		}
		_, _ = r.out.WriteToUDP(buf[:n], r.target)
	}
}

func (r *GossipRelay) serveTCP() {
	for {
		c, err := r.tcp.Accept()
		if err != nil {
			return
		}
		go r.relayTCP(c.(*net.TCPConn))
	}
}

func (r *GossipRelay) relayTCP(c *net.TCPConn) {
	src := c.RemoteAddr().(*net.TCPAddr).AddrPort()
	fromPID := func(pid int) bool { return socketOwnedBy(pid, src) }
	if r.part.blocked(r, src.Addr().String(), fromPID) {
		_ = c.SetLinger(0) // reset, like a refused connection
		c.Close()
		return
	}
	backend, err := net.Dial("tcp", r.nodeIP+":8003")
	if err != nil {
		c.Close()
		return
	}
	rc := &relayedConn{client: c, backend: backend.(*net.TCPConn), src: src}
	r.mu.Lock()
	r.conns[rc] = struct{}{}
	r.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(rc.backend, c); _ = rc.backend.CloseWrite(); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, rc.backend); _ = c.CloseWrite(); done <- struct{}{} }()
	<-done
	<-done
	c.Close()
	backend.Close()
	r.mu.Lock()
	delete(r.conns, rc)
	r.mu.Unlock()
}

// closeConns resets the relayed connections that match.
func (r *GossipRelay) closeConns(match func(*relayedConn) bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for c := range r.conns {
		if match(c) {
			c.reset()
		}
	}
}

// connReader reads packets from a UDP socket as a stream.
type connReader struct{ c *net.UDPConn }

func (r connReader) Read(p []byte) (int, error) { return r.c.Read(p) }

// socketOwnedBy reports whether the local end of an IPv4 TCP connection,
// addr, is a socket of process pid: it finds the socket's inode in
// /proc/net/tcp (addresses in host byte order: little-endian here) and
// looks for it among the process's file descriptors.
func socketOwnedBy(pid int, addr netip.AddrPort) bool {
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		return false
	}
	defer f.Close()
	ip := addr.Addr().As4()
	want := fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], addr.Port())
	inode := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 9 && fields[1] == want {
			inode = fields[9]
			break
		}
	}
	if inode == "" || inode == "0" {
		return false
	}
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		if link, err := os.Readlink(dir + "/" + e.Name()); err == nil && link == "socket:["+inode+"]" {
			return true
		}
	}
	return false
}
