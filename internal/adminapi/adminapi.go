// Package adminapi holds the wire types of the admin port's status API
// (GET /status/cluster/nodes, /status/cluster/nodes/{id} and
// /status/upstream/endpoints): the server (internal/admin, fed by the
// cluster) encodes them, the clients (internal/adminclient, pico selftest,
// tooling) decode them. It imports nothing but the standard library, so
// a client does not link memberlist.
package adminapi

import (
	"maps"
	"net/url"
)

// Status routes of the admin API.
const (
	// NodesPath lists every known member ([]NodeSummary).
	NodesPath = "/status/cluster/nodes"
	// EndpointsPath maps this node's endpoints to their upstream counts.
	EndpointsPath = "/status/upstream/endpoints"
)

// NodePath is the route of one member's details (NodeDetail).
func NodePath(id string) string { return NodesPath + "/" + url.PathEscape(id) }

// Node statuses.
const (
	StatusActive  = "active"  // member, serving
	StatusLeaving = "leaving" // member, draining after SIGTERM
	StatusLeft    = "left"    // left gracefully
	StatusDead    = "dead"    // failed (detected by memberlist)
)

// NodeInfo is what the admin API shows of every member, whether listed
// (NodeSummary) or asked for by ID (NodeDetail).
type NodeInfo struct {
	ID           string `json:"id"`
	Status       string `json:"status"`
	ProxyAddr    string `json:"proxy_addr"`
	AdminAddr    string `json:"admin_addr"`
	UpstreamAddr string `json:"upstream_addr"`
	GossipAddr   string `json:"gossip_addr"`
	// Upstreams is the number of upstream connections on the node.
	Upstreams int `json:"upstreams"`
}

// NodeSummary is one member in GET /status/cluster/nodes.
type NodeSummary struct {
	NodeInfo
	// Endpoints is the number of distinct endpoints with an upstream on
	// the node.
	Endpoints int `json:"endpoints"`
}

// NodeDetail is GET /status/cluster/nodes/{id}: the summary fields plus
// the node's endpoints with their upstream counts.
type NodeDetail struct {
	NodeInfo
	Endpoints map[string]int `json:"endpoints"`
}

// Summary lists the node with endpoints (endpoint → upstream count).
func (i NodeInfo) Summary(endpoints map[string]int) NodeSummary {
	return NodeSummary{NodeInfo: i, Endpoints: len(endpoints)}
}

// Detail describes the node with a copy of endpoints.
func (i NodeInfo) Detail(endpoints map[string]int) NodeDetail {
	return NodeDetail{NodeInfo: i, Endpoints: maps.Clone(endpoints)}
}
