package config

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// Moved from internal/cluster with the parser; a missing port is now 0
// (the cluster fills in its gossip port) instead of the 8003 passed in.
func TestParseJoinEntry(t *testing.T) {
	for entry, want := range map[string]JoinTarget{
		"10.0.0.1":             {IP: netip.MustParseAddr("10.0.0.1")},
		" 10.0.0.1:9000 ":      {IP: netip.MustParseAddr("10.0.0.1"), Port: 9000},
		"::1":                  {IP: netip.MustParseAddr("::1")},
		"[::1]":                {IP: netip.MustParseAddr("::1")},
		"[fd00::5]:7946":       {IP: netip.MustParseAddr("fd00::5"), Port: 7946},
		"::ffff:10.0.0.2":      {IP: netip.MustParseAddr("10.0.0.2")},
		"pico-headless":        {Host: "pico-headless"},
		"pico-0.pico.ns.svc.":  {Host: "pico-0.pico.ns.svc."},
		"pico.example.com:123": {Host: "pico.example.com", Port: 123},
		"Pico.Example.COM":     {Host: "Pico.Example.COM"}, // DNS is case-insensitive
	} {
		got, err := ParseJoinEntry(entry)
		require.NoError(t, err, entry)
		want.Entry = entry
		require.Equal(t, want, got, entry)
	}
	for _, bad := range []string{"", "  ", "host:0", "host:65536", "host:http", "has space", "a..b", "http://x", "[::1]:x", "-:1:2",
		"-leading-dash", "trailing-dash-.example", strings.Repeat("a", 64) + ".example"} {
		_, err := ParseJoinEntry(bad)
		require.Error(t, err, bad)
	}
}

func FuzzParseJoinEntry(f *testing.F) {
	for _, s := range []string{"10.0.0.1", "10.0.0.1:9000", "[::1]:1", "::1", "name", "name.example:80", "name:0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, entry string) {
		got, err := ParseJoinEntry(entry)
		if err != nil {
			return
		}
		if got.Port == 0 {
			_, _, err := net.SplitHostPort(strings.TrimSpace(entry))
			require.Error(t, err, "an entry with a port has it parsed")
		}
		require.NotEqual(t, got.IP.IsValid(), got.Host != "", "exactly one of IP and name")
	})
}
