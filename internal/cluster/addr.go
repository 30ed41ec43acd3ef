package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// joinTarget is one parsed cluster.join entry: an IP or a DNS name, and a
// port.
type joinTarget struct {
	entry string     // as configured, for messages
	ip    netip.Addr // valid when the entry names an IP
	host  string     // the DNS name otherwise
	port  uint16
}

// parseJoinEntry parses an IP, host:port, [IPv6]:port, bare IPv6 address
// or DNS name. Entries without a port get defaultPort.
func parseJoinEntry(entry string, defaultPort uint16) (joinTarget, error) {
	t := joinTarget{entry: entry, port: defaultPort}
	s := strings.TrimSpace(entry)
	if s == "" {
		return t, errors.New("empty entry; give an IP, host:port or DNS name")
	}
	if ip, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		t.ip = ip.Unmap()
		return t, nil
	}
	host := s
	if h, p, err := net.SplitHostPort(s); err == nil {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return t, fmt.Errorf("port %q is not a number from 1 to 65535", p)
		}
		host, t.port = h, uint16(n)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		t.ip = ip.Unmap()
		return t, nil
	}
	if err := validateHostname(host); err != nil {
		return t, err
	}
	t.host = host
	return t, nil
}

// validateHostname accepts DNS names: dot-separated labels of letters,
// digits, '-' and '_', optionally ending with a dot.
func validateHostname(host string) error {
	name := strings.TrimSuffix(host, ".")
	if name == "" || len(name) > 253 {
		return fmt.Errorf("%q is not an IP address, host:port or DNS name", host)
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("%q is not an IP address, host:port or DNS name", host)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' {
				continue
			}
			return fmt.Errorf("%q is not an IP address, host:port or DNS name", host)
		}
	}
	return nil
}

// resolved is the outcome of resolving the join entries once.
type resolved struct {
	addrs []netip.AddrPort // every address found, deduplicated, in order
	errs  []error          // lookups that failed for another reason than "no such name"
}

// resolveTargets looks up every target: an IP stands for itself, a name
// expands to all its addresses of the given family ("ip4" or "ip6"). A
// name that does not exist or has no address counts as resolving to
// nothing, not as an error.
func resolveTargets(ctx context.Context, r *net.Resolver, network string, targets []joinTarget) resolved {
	var out resolved
	seen := make(map[netip.AddrPort]bool)
	add := func(ap netip.AddrPort) {
		if !seen[ap] {
			seen[ap] = true
			out.addrs = append(out.addrs, ap)
		}
	}
	for _, t := range targets {
		if t.ip.IsValid() {
			add(netip.AddrPortFrom(t.ip, t.port))
			continue
		}
		ips, err := r.LookupNetIP(ctx, network, t.host)
		if err != nil {
			var dnsErr *net.DNSError
			if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
				continue
			}
			out.errs = append(out.errs, fmt.Errorf("resolving cluster.join entry %q: %w", t.entry, err))
			continue
		}
		for _, ip := range ips {
			add(netip.AddrPortFrom(ip.Unmap(), t.port))
		}
	}
	return out
}

// gossipAddresses works out the memberlist bind IP and port and the
// advertised IP and port from gossip.bind_addr and gossip.advertise_addr.
// The advertised address is gossip.advertise_addr when set (a name is
// resolved), else the bind IP when it is a specific IP, else the node's
// private IP.
func gossipAddresses(ctx context.Context, r *net.Resolver, bindAddr, advertiseAddr string) (bindIP netip.Addr, bindPort int, adv netip.Addr, advPort int, err error) {
	bindIP, bindPort, err = hostPortIP(ctx, r, bindAddr)
	if err != nil {
		return bindIP, 0, adv, 0, fmt.Errorf("gossip.bind_addr (--gossip.bind-addr) %q: %w", bindAddr, err)
	}
	if advertiseAddr != "" {
		adv, advPort, err = hostPortIP(ctx, r, advertiseAddr)
		if err != nil {
			return bindIP, 0, adv, 0, fmt.Errorf("gossip.advertise_addr (--gossip.advertise-addr) %q: %w", advertiseAddr, err)
		}
		if adv.IsUnspecified() {
			return bindIP, 0, adv, 0, fmt.Errorf("gossip.advertise_addr (--gossip.advertise-addr) %q: an unspecified address cannot be reached; give this node's IP", advertiseAddr)
		}
		return bindIP, bindPort, adv, advPort, nil
	}
	if !bindIP.IsUnspecified() {
		return bindIP, bindPort, bindIP, bindPort, nil
	}
	adv, err = AdvertiseIP()
	if err != nil {
		return bindIP, 0, adv, 0, fmt.Errorf("gossip.advertise_addr (--gossip.advertise-addr) is not set and cannot be derived: %w; set it to this node's IP and gossip port", err)
	}
	return bindIP, bindPort, adv, bindPort, nil
}

// hostPortIP splits addr and resolves its host to one IP; an empty host
// means all IPv4 interfaces.
func hostPortIP(ctx context.Context, r *net.Resolver, addr string) (netip.Addr, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return netip.Addr{}, 0, errors.New("not a host:port address")
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return netip.Addr{}, 0, fmt.Errorf("port %q is not a number from 0 to 65535", p)
	}
	if host == "" {
		return netip.IPv4Unspecified(), int(port), nil
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip.Unmap(), int(port), nil
	}
	ips, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return netip.Addr{}, 0, fmt.Errorf("resolving %q: %w", host, err)
	}
	if len(ips) == 0 {
		return netip.Addr{}, 0, fmt.Errorf("%q has no address", host)
	}
	return ips[0].Unmap(), int(port), nil
}

// privateRanges are the address ranges AdvertiseIP prefers, in order of
// preference.
var privateRanges = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("100.64.0.0/10"), // carrier-grade NAT, used by some pod networks
	netip.MustParsePrefix("fc00::/7"),      // IPv6 unique local
}

// AdvertiseIP returns the IP a node advertises for a listener bound to all
// interfaces when no advertise address is set: the first private address
// of the machine's interfaces (RFC 1918, RFC 6598, IPv6 unique local),
// else its first other global unicast address (IPv4 before IPv6), else
// loopback — enough for a node that is alone on the machine.
func AdvertiseIP() (netip.Addr, error) {
	ifAddrs, err := net.InterfaceAddrs()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("listing interface addresses: %w", err)
	}
	var ips []netip.Addr
	for _, a := range ifAddrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			ips = append(ips, p.Addr().Unmap())
		}
	}
	return advertiseIPFrom(ips), nil
}

func advertiseIPFrom(ips []netip.Addr) netip.Addr {
	for _, r := range privateRanges {
		for _, ip := range ips {
			if r.Contains(ip) {
				return ip
			}
		}
	}
	for _, v4 := range []bool{true, false} {
		for _, ip := range ips {
			if ip.IsGlobalUnicast() && ip.Is4() == v4 {
				return ip
			}
		}
	}
	return netip.MustParseAddr("127.0.0.1")
}
