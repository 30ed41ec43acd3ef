package protocol

import (
	"fmt"
	"strings"
)

// EndpointProtocolHeader is the header of the upstream handshake in which
// an agent says how it serves the endpoint's streams: "http" (each stream
// carries HTTP/1.1 requests) or "tcp" (raw bytes piped to a TCP service).
// It is optional: Piko's agents (and Pico's before it) do not send it,
// and their endpoints' protocol is unknown.
const EndpointProtocolHeader = "X-Pico-Endpoint-Protocol"

// EndpointProtocol is how an agent serves an endpoint's streams.
type EndpointProtocol string

// The protocols of an endpoint. The TCP route of the proxy port is
// refused for an HTTP endpoint: it would pipe a client's raw bytes to an
// HTTP server, past the proxy's header handling.
const (
	ProtocolUnknown EndpointProtocol = ""
	ProtocolHTTP    EndpointProtocol = "http"
	ProtocolTCP     EndpointProtocol = "tcp"
)

// ParseEndpointProtocol parses the value of EndpointProtocolHeader
// (case-insensitive); an absent header is ProtocolUnknown.
func ParseEndpointProtocol(v string) (EndpointProtocol, error) {
	switch p := EndpointProtocol(strings.ToLower(strings.TrimSpace(v))); p {
	case ProtocolUnknown, ProtocolHTTP, ProtocolTCP:
		return p, nil
	}
	return ProtocolUnknown, fmt.Errorf("%s %q is invalid: use http or tcp, or leave it out", EndpointProtocolHeader, v)
}
