package config

import (
	"crypto/rand"
	"errors"
	"fmt"
)

// MaxNodeIDLength bounds node IDs: they travel in every gossip message, in
// node metadata and in the X-Pico-Forwarded-By header.
const MaxNodeIDLength = 128

// nodeIDSuffixLength is the length of the random part of a generated ID:
// 10 characters of a 32-letter alphabet are 50 random bits, so two starts
// of the same pod never collide in practice.
const nodeIDSuffixLength = 10

const nodeIDAlphabet = "abcdefghijklmnopqrstuvwxyz234567"

// ValidateNodeID is the rule for node IDs, configured or heard from a
// peer: 1 to MaxNodeIDLength letters, digits, '.', '-' and '_', since IDs
// appear in HTTP headers and admin API paths. They are not DNS names
// (upper case and '_' are allowed).
func ValidateNodeID(id string) error {
	if id == "" || len(id) > MaxNodeIDLength {
		return fmt.Errorf("use 1 to %d letters, digits, '.', '-' or '_'", MaxNodeIDLength)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_' {
			continue
		}
		return fmt.Errorf("character %q is not allowed; use letters, digits, '.', '-' or '_'", c)
	}
	return nil
}

// validateNodeIDs checks cluster.node_id and cluster.node_id_prefix.
func (c *Cluster) validateNodeIDs() error {
	if c.NodeID != "" && c.NodeIDPrefix != "" {
		return errors.New("cluster.node_id and cluster.node_id_prefix are both set; set only one")
	}
	if c.NodeID != "" {
		if err := ValidateNodeID(c.NodeID); err != nil {
			return fmt.Errorf("%s %q: %w", describeKey("cluster.node_id"), c.NodeID, err)
		}
	}
	if c.NodeIDPrefix != "" {
		if err := ValidateNodeID(c.NodeIDPrefix); err != nil || len(c.NodeIDPrefix)+nodeIDSuffixLength > MaxNodeIDLength {
			return fmt.Errorf("%s %q: use at most %d letters, digits, '.', '-' or '_'", describeKey("cluster.node_id_prefix"), c.NodeIDPrefix, MaxNodeIDLength-nodeIDSuffixLength)
		}
	}
	return nil
}

// NewNodeID returns the ID a starting node uses: cluster.node_id when set,
// otherwise cluster.node_id_prefix followed by a random suffix that is new
// at every call, so a restarted process never reuses the ID of its
// previous incarnation (memberlist refuses a known name that comes back
// with a new address). The server calls it once, at New, and hands the
// ID to its membership.
func (c *Cluster) NewNodeID() string {
	if c.NodeID != "" {
		return c.NodeID
	}
	return c.NodeIDPrefix + randomSuffix()
}

func randomSuffix() string {
	b := make([]byte, nodeIDSuffixLength)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+: it crashes the program instead)
	for i := range b {
		b[i] = nodeIDAlphabet[int(b[i])%len(nodeIDAlphabet)]
	}
	return string(b)
}
