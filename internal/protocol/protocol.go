// Package protocol holds Pico's wire conventions shared by the server, the
// agent and the forwarder: route and header names (Pico's and Piko's),
// endpoint IDs, the WebSocket byte-stream transport and the yamux
// configuration.
package protocol

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
)

// Upstream routes on the upstream port: WebSocket GET <prefix>{endpoint}.
const (
	UpstreamPathPrefix     = "/pico/v1/upstream/"
	PikoUpstreamPathPrefix = "/piko/v1/upstream/"
)

// TCP routes on the proxy port: WebSocket GET <prefix>{endpoint}.
const (
	TCPPathPrefix     = "/_pico/v1/tcp/"
	PikoTCPPathPrefix = "/_piko/v1/tcp/"
	// ReservedPathPrefix is the path space reserved for Pico itself on the
	// proxy port; Piko's reserved prefix is treated the same way.
	ReservedPathPrefix     = "/_pico/"
	PikoReservedPathPrefix = "/_piko/"
)

// Headers.
const (
	EndpointHeader          = "X-Pico-Endpoint"
	PikoEndpointHeader      = "X-Piko-Endpoint"
	AuthorizationHeader     = "X-Pico-Authorization"
	PikoAuthorizationHeader = "X-Piko-Authorization"
)

// MaxEndpointIDLength is the longest valid endpoint ID.
const MaxEndpointIDLength = 63

// ErrNoEndpoint means a request named no endpoint.
var ErrNoEndpoint = errors.New("no endpoint: set the x-pico-endpoint header or use a Host of the form <endpoint>.<domain>")

// ValidateEndpointID checks that id is 1 to 63 characters of letters,
// digits, '-', '_' and '.', starting and ending with a letter or digit.
// Dots are accepted because Piko accepts IDs such as "api.v1"; such an ID
// is reached through the x-pico-endpoint header, since Host routing takes
// only the first label. IDs compare exactly (case-sensitively).
func ValidateEndpointID(id string) error {
	if id == "" {
		return errors.New("endpoint ID is empty")
	}
	if len(id) > MaxEndpointIDLength {
		return fmt.Errorf("endpoint ID %.20q… is %d characters; the maximum is %d", id, len(id), MaxEndpointIDLength)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if alnum {
			continue
		}
		if (c == '-' || c == '_' || c == '.') && i != 0 && i != len(id)-1 {
			continue
		}
		return fmt.Errorf("endpoint ID %q is invalid: use 1-%d letters, digits, '-', '_' or '.', starting and ending with a letter or digit", id, MaxEndpointIDLength)
	}
	return nil
}

// EndpointFromRequest returns the endpoint a proxy request is for: the
// x-pico-endpoint (or x-piko-endpoint) header, else the first label of
// Host, lower-cased (DNS names are case-insensitive; the header is used
// as sent), when Host is a name containing a dot. It returns ErrNoEndpoint
// when neither names one, and a validation error for an invalid ID.
func EndpointFromRequest(r *http.Request) (string, error) {
	id := r.Header.Get(EndpointHeader)
	if id == "" {
		id = r.Header.Get(PikoEndpointHeader)
	}
	if id == "" {
		id = endpointFromHost(r.Host)
	}
	if id == "" {
		return "", ErrNoEndpoint
	}
	if err := ValidateEndpointID(id); err != nil {
		return "", err
	}
	return id, nil
}

func endpointFromHost(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(host, ".")
	if net.ParseIP(strings.Trim(host, "[]")) != nil {
		return ""
	}
	label, _, hasDot := strings.Cut(host, ".")
	if !hasDot {
		return ""
	}
	return strings.ToLower(label) // returns label itself when it has no upper case
}

// EndpointFromPath returns the endpoint ID that follows one of prefixes in
// path, and whether a prefix matched.
func EndpointFromPath(path string, prefixes ...string) (id string, matched bool) {
	for _, p := range prefixes {
		if rest, ok := strings.CutPrefix(path, p); ok {
			return strings.TrimSuffix(rest, "/"), true
		}
	}
	return "", false
}
