// Package cluster turns a set of Pico server nodes into one cluster:
// membership and failure detection with hashicorp/memberlist on the gossip
// port, the routing table of which node holds upstreams for which
// endpoint, node IDs, the initial join with retries and the periodic
// re-join that heals split brains, and the proof that a forwarded request
// comes from a member.
package cluster
