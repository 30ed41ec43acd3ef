package cluster

import (
	"crypto/rand"
	"fmt"
)

// maxNodeIDLength bounds node IDs: they travel in every gossip message, in
// node metadata and in the X-Pico-Forwarded-By header.
const maxNodeIDLength = 128

// nodeIDSuffixLength is the length of the random part of a generated ID:
// 10 characters of a 32-letter alphabet are 50 random bits, so two starts
// of the same pod never collide in practice.
const nodeIDSuffixLength = 10

const nodeIDAlphabet = "abcdefghijklmnopqrstuvwxyz234567"

// NodeID returns the ID a starting node uses: id as given when it is set,
// otherwise prefix followed by a random suffix that is new at every call,
// so a restarted process never reuses the ID of its previous incarnation
// (memberlist refuses a known name that comes back with a new address).
func NodeID(id, prefix string) (string, error) {
	if id != "" {
		if prefix != "" {
			return "", fmt.Errorf("cluster.node_id and cluster.node_id_prefix are both set; set only one")
		}
		if err := validateNodeID(id); err != nil {
			return "", fmt.Errorf("cluster.node_id (--cluster.node-id) %q: %w", id, err)
		}
		return id, nil
	}
	if prefix != "" {
		if err := validateNodeID(prefix); err != nil || len(prefix)+nodeIDSuffixLength > maxNodeIDLength {
			return "", fmt.Errorf("cluster.node_id_prefix (--cluster.node-id-prefix) %q: use at most %d letters, digits, '.', '-' or '_'", prefix, maxNodeIDLength-nodeIDSuffixLength)
		}
	}
	return prefix + randomSuffix(), nil
}

func randomSuffix() string {
	b := make([]byte, nodeIDSuffixLength)
	if _, err := rand.Read(b); err != nil {
		// crypto/rand.Read never fails on supported platforms.
		panic(fmt.Sprintf("cluster: reading random bytes: %v", err))
	}
	for i := range b {
		b[i] = nodeIDAlphabet[int(b[i])%len(nodeIDAlphabet)]
	}
	return string(b)
}

// validateNodeID accepts 1 to maxNodeIDLength letters, digits, '.', '-'
// and '_': IDs appear in HTTP headers and admin API paths.
func validateNodeID(id string) error {
	if id == "" || len(id) > maxNodeIDLength {
		return fmt.Errorf("use 1 to %d letters, digits, '.', '-' or '_'", maxNodeIDLength)
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
