package cluster

import "github.com/pico-proxy/pico/internal/adminapi"

// Node is a member that can receive forwarded proxy requests.
type Node struct {
	ID        string
	ProxyAddr string // host:port of the node's proxy listener
}

// Aliases of admin API wire types for the tooling outside the product
// (cmd/pico-bench and the e2e harness) until it moves to its own module;
// the product uses internal/adminapi.
type (
	// Deprecated: use adminapi.NodeSummary.
	NodeSummary = adminapi.NodeSummary
)

// Deprecated: use the adminapi statuses.
const (
	StatusActive  = adminapi.StatusActive
	StatusLeaving = adminapi.StatusLeaving
	StatusLeft    = adminapi.StatusLeft
)
