package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"

	"github.com/pico-proxy/pico/internal/config"
)

// This file owns the advertise rule of every listener: the configured
// *.advertise_addr, else the bound IP when it is a specific one, else the
// machine's private IP (advertiseIP), with the bound port.

// advertiseAddr returns the address other nodes use for the bound
// listener of section (e.g. "proxy").
func advertiseAddr(section, configured string, bound net.Addr) (string, error) {
	if configured != "" {
		return configured, nil
	}
	tcp, ok := bound.(*net.TCPAddr)
	if !ok {
		return bound.String(), nil
	}
	ap := tcp.AddrPort()
	ip, err := advertiseIP(ap.Addr().Unmap())
	if err != nil {
		return "", fmt.Errorf("%s.advertise_addr (--%s.advertise-addr) is not set and cannot be derived: %w; set it to this node's IP and port", section, section, err)
	}
	return netip.AddrPortFrom(ip, ap.Port()).String(), nil
}

// gossipAddrs resolves gossip.bind_addr and gossip.advertise_addr (names
// are looked up) into the addresses memberlist binds and advertises. The
// gossip port is not bound yet: a bind port of 0 is advertised as 0 and
// filled in once bound.
func gossipAddrs(ctx context.Context, r *net.Resolver, g config.Gossip) (bind, adv netip.AddrPort, err error) {
	if bind, err = resolveHostPort(ctx, r, g.BindAddr); err != nil {
		return bind, adv, fmt.Errorf("gossip.bind_addr (--gossip.bind-addr) %q: %w", g.BindAddr, err)
	}
	if g.AdvertiseAddr != "" {
		if adv, err = resolveHostPort(ctx, r, g.AdvertiseAddr); err != nil {
			return bind, adv, fmt.Errorf("gossip.advertise_addr (--gossip.advertise-addr) %q: %w", g.AdvertiseAddr, err)
		}
		if adv.Addr().IsUnspecified() {
			return bind, adv, fmt.Errorf("gossip.advertise_addr (--gossip.advertise-addr) %q resolves to %s, which cannot be reached; give this node's IP", g.AdvertiseAddr, adv.Addr())
		}
		return bind, adv, nil
	}
	ip, err := advertiseIP(bind.Addr())
	if err != nil {
		return bind, adv, fmt.Errorf("gossip.advertise_addr (--gossip.advertise-addr) is not set and cannot be derived: %w; set it to this node's IP and gossip port", err)
	}
	return bind, netip.AddrPortFrom(ip, bind.Port()), nil
}

// resolveHostPort splits addr and resolves its host to one IP; an empty
// host means all IPv4 interfaces.
func resolveHostPort(ctx context.Context, r *net.Resolver, addr string) (netip.AddrPort, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return netip.AddrPort{}, errors.New("not a host:port address")
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("port %q is not a number from 0 to 65535", p)
	}
	if host == "" {
		return netip.AddrPortFrom(netip.IPv4Unspecified(), uint16(port)), nil
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return netip.AddrPortFrom(ip.Unmap(), uint16(port)), nil
	}
	ips, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("resolving %q: %w", host, err)
	}
	if len(ips) == 0 {
		return netip.AddrPort{}, fmt.Errorf("%q has no address", host)
	}
	return netip.AddrPortFrom(ips[0].Unmap(), uint16(port)), nil
}

// advertiseIP is the IP other nodes reach a listener bound to bound on:
// bound itself when it is a specific IP, else the machine's first private
// address (RFC 1918, RFC 6598, IPv6 unique local), else its first other
// global unicast address (IPv4 before IPv6), else loopback — enough for a
// node that is alone on the machine.
func advertiseIP(bound netip.Addr) (netip.Addr, error) {
	if bound.IsValid() && !bound.IsUnspecified() {
		return bound, nil
	}
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
	return machineIP(ips), nil
}

// privateRanges are the address ranges machineIP prefers, in order of
// preference.
var privateRanges = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("100.64.0.0/10"), // carrier-grade NAT, used by some pod networks
	netip.MustParsePrefix("fc00::/7"),      // IPv6 unique local
}

// machineIP picks the advertise IP among the machine's addresses ips.
func machineIP(ips []netip.Addr) netip.Addr {
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
