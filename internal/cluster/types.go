package cluster

import "maps"

// Node statuses shown by the admin API.
const (
	StatusActive  = "active"  // member, serving
	StatusLeaving = "leaving" // member, draining after SIGTERM
	StatusLeft    = "left"    // left gracefully
	StatusDead    = "dead"    // failed (detected by memberlist)
)

// Node is a member that can receive forwarded proxy requests.
type Node struct {
	ID        string
	ProxyAddr string // host:port of the node's proxy listener
}

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
