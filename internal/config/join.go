package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/pico-proxy/pico/peerfinder"
)

// JoinTarget is one parsed cluster.join entry: an IP or a DNS name, and a
// port.
type JoinTarget struct {
	Entry string     // as configured, for messages
	IP    netip.Addr // valid when the entry names an IP
	Host  string     // the DNS name otherwise
	Port  uint16     // 0: the entry has none; the node's gossip port is meant
}

// ParseJoinEntry parses a cluster.join entry: an IP, host:port,
// [IPv6]:port, bare IPv6 address or DNS name (peerfinder.ValidateName: RFC
// 1123, in any case, with an optional trailing dot). An entry without a port gets Port 0.
func ParseJoinEntry(entry string) (JoinTarget, error) {
	t := JoinTarget{Entry: entry}
	s := strings.TrimSpace(entry)
	if s == "" {
		return t, errors.New("empty entry; give an IP, host:port or DNS name")
	}
	if ip, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		t.IP = ip.Unmap()
		return t, nil
	}
	host := s
	if h, p, err := net.SplitHostPort(s); err == nil {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return t, fmt.Errorf("port %q is not a number from 1 to 65535", p)
		}
		host, t.Port = h, uint16(n)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		t.IP = ip.Unmap()
		return t, nil
	}
	// DNS is case-insensitive; Kubernetes' rule is written in lower case.
	if err := peerfinder.ValidateName(strings.ToLower(host)); err != nil {
		return t, fmt.Errorf("not an IP address, host:port or DNS name: %w", err)
	}
	t.Host = host
	return t, nil
}

// validateJoin parses every cluster.join entry into c.joinTargets.
func (c *Cluster) validateJoin() error {
	var errs []error
	c.joinTargets = nil
	for i, entry := range c.Join {
		t, err := ParseJoinEntry(entry)
		if err != nil {
			errs = append(errs, fmt.Errorf("cluster.join[%d] (--cluster.join) %q: %w", i, entry, err))
			continue
		}
		c.joinTargets = append(c.joinTargets, t)
	}
	return errors.Join(errs...)
}

// JoinTargets are the cluster.join entries Validate parsed, in order.
func (c *Cluster) JoinTargets() []JoinTarget { return c.joinTargets }
