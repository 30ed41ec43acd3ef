package cluster

// Node is a member that can receive forwarded proxy requests.
type Node struct {
	ID        string
	ProxyAddr string // host:port of the node's proxy listener
}
