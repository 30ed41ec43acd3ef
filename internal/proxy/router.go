package proxy

import (
	"net/http"
)

// Node is another node of the cluster that a request can be forwarded to.
type Node struct {
	ID        string
	ProxyAddr string // host:port of the node's proxy listener
}

// Router is the proxy's view of the other nodes of the cluster. The
// membership layer (internal/cluster) implements it; a nil Router means a
// single node.
type Router interface {
	// PickRemote returns a node other than this one that has an upstream
	// for endpoint, chosen at random weighted by the nodes' upstream
	// counts, skipping the nodes whose IDs are in exclude.
	PickRemote(endpoint string, exclude ...string) (Node, bool)
	// SignForward marks r as forwarded by this node: it sets
	// X-Pico-Forwarded-By and X-Pico-Forward-Signature (replacing any
	// earlier values).
	SignForward(r *http.Request)
	// VerifyForward checks the forwarding headers of r and returns the
	// sending node's ID; an error means r must be treated as a client
	// request (its forwarding headers are then stripped).
	VerifyForward(r *http.Request) (fromNodeID string, err error)
	// Changed returns a channel that is closed at the next change of the
	// routing table (take it before PickRemote, then wait on it).
	Changed() <-chan struct{}
	// ReportUnreachable says that connecting to the node with id just
	// failed, so that PickRemote avoids it for a while (until failure
	// detection confirms or clears it) when another node can serve.
	ReportUnreachable(id string)
	// Gone reports whether failure detection declared the node with id
	// failed: a request still waiting on it will get no answer. A node
	// that is leaving, or left, gracefully answers what it holds first,
	// so it is not gone.
	Gone(id string) bool
}

// Headers of node-to-node forwarding.
const (
	// ForwardedByHeader names the node that forwarded a request.
	ForwardedByHeader = "X-Pico-Forwarded-By"
	// ForwardSignatureHeader proves ForwardedByHeader.
	ForwardSignatureHeader = "X-Pico-Forward-Signature"
	// PikoForwardHeader is Piko's (unauthenticated) forwarding marker; it
	// is always stripped.
	PikoForwardHeader = "X-Piko-Forward"
	// NoUpstreamHeader, on a 502 answering a forwarded request, tells the
	// forwarding node that this node has no upstream for the endpoint, so
	// that it may retry on another node.
	NoUpstreamHeader = "X-Pico-No-Upstream"
)

// forwardHeaderPrefix covers ForwardedByHeader, ForwardSignatureHeader and
// any further X-Pico-Forward* header a signer may add.
const forwardHeaderPrefix = "X-Pico-Forward"
