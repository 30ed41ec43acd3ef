// Package cluster turns a set of Pico server nodes into one cluster:
// membership and failure detection with hashicorp/memberlist on the gossip
// port, the routing table of which node holds upstreams for which
// endpoint, the initial join with retries and the periodic
// re-join that heals split brains, and the proof that a forwarded request
// comes from a member.
//
// # Lifecycle
//
//	c, err := cluster.New(cfg)   // memberlist listening, not joined (cfg holds resolved values)
//	err = c.Join(ctx)            // initial join (cluster.join, join_timeout, abort_if_join_fails)
//	go c.Run(ctx)                // periodic re-join (cluster.rejoin_interval)
//	c.UpdateLocalEndpoints(m)    // whenever local upstreams change
//	…
//	c.SetLeaving()               // SIGTERM: peers stop routing new requests here
//	c.Leave(timeout)             // after the drain: peers drop the node at once
//	c.Shutdown()
//
// The node ID comes in Config (chosen once by internal/server with
// config.Cluster.NewNodeID: cluster.node_id as given, or
// cluster.node_id_prefix plus a random suffix drawn at every start):
// memberlist refuses a known name that reappears with another address, so
// a restarted process always joins under a new name and the old one is
// removed by its leave (or failure). The gossip addresses come resolved
// too (internal/server owns the advertise rule), and so do the join
// targets and gossip keys (parsed by config.Server.Validate at load).
//
// # Routing state
//
// Each node publishes its endpoints (endpoint → upstream count) as a
// versioned state. A change goes at once as a delta in one UDP packet to
// every member and through memberlist's gossip; a change too large for a
// packet is announced, and members fetch the full state over TCP. The
// state version also rides in the node's memberlist metadata (which holds
// only the node's addresses, forwarding secret and state version, far
// below memberlist's 512-byte limit however many endpoints the node has),
// so a member that missed an update notices and pulls; memberlist's
// push/pull carries every member's full state, so a joining node has the
// whole table when Join returns. On loopback an endpoint is routable from
// every node of three within about a millisecond of UpdateLocalEndpoints,
// and a set of 5 000 endpoints within a few tens of milliseconds.
//
// PickRemote spreads requests over the nodes holding an endpoint in
// proportion to their upstream counts and skips nodes that are leaving,
// failed or left; a proxy that cannot connect to a node reports it
// (ReportUnreachable) and the node is avoided for a few seconds while
// other nodes hold the endpoint. Changed lets a proxy wait for an
// endpoint to appear.
//
// # Failure detection
//
// memberlist probes every 400 ms with a 200 ms timeout and declares a
// suspect dead after 1.2–2.4 s (see the constants in cluster.go): a
// killed node is out of routing about 2.2 s on average after it died
// (worst seen 3.5 s, bound ≈ 3.8 s on a healthy network). A node that leaves gracefully (Leave) is removed at once. Nodes that
// failed or left stay listed by Nodes for Timing.ForgetAfter with status
// dead or left, and are never routed to. A failed member's address is
// tried again every few seconds for a while, so a node cut off by a
// network partition rejoins as soon as the network heals, even after
// memberlist gave up on it; Run's re-resolution of cluster.join covers
// longer partitions and clusters that formed separately.
//
// # Forwarding trust
//
// A node that forwards a request to another signs it (SignForward):
// X-Pico-Forwarded-By carries its node ID and X-Pico-Forward-Signature an
// HMAC-SHA256 over the node ID, a timestamp, the method, the request URI
// and the endpoint, keyed by a 32-byte secret the node draws at start and
// publishes in its memberlist metadata. The receiver (VerifyForward)
// accepts the claim only if the sender is a current member, the signature
// matches with that member's secret and the timestamp is within a minute
// of its clock; otherwise the proxy strips the headers and treats the
// request as an ordinary client request. Piko's x-piko-forward header is
// never trusted.
//
// Forwarding trust therefore equals cluster membership: whoever can join
// the gossip network learns the secrets. In a correct deployment clients
// cannot reach the gossip port (it is not exposed outside the cluster
// network), and gossip encryption (gossip.secret_key, AES-GCM) keeps
// anyone without the key from joining the cluster or reading the secrets
// on the wire. A signed request captured on the node-to-node network could
// be replayed within the timestamp window; TLS between nodes prevents the
// capture.
//
// # Gossip keys
//
// gossip.secret_key (read at load, see config.LoadGossipKeys) is one inline key or a
// key file with one key per line: memberlist encrypts with the first
// (the primary) and accepts all of them. A key file is checked every
// Timing.GossipKeyCheckInterval (10 s) and a change is applied to the
// running keyring in the order that never cuts the node off from peers
// one rotation step behind or ahead — new keys accepted, then the
// primary switched, then the keys no longer listed refused — so the key
// rotates in three file updates without restarts (add the new key
// second, make it first, remove the old one). A file that does not parse
// is logged and the keyring kept. Each change is logged at info with
// the key's ID (the first 8 hex digits of its SHA-256, never the key),
// and pico_cluster_gossip_keys lists the keyring, so operators can see
// when every node finished a step.
package cluster
