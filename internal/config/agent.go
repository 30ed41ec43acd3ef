package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pico-proxy/pico/internal/protocol"
	"github.com/spf13/pflag"
)

// Agent is the configuration of `pico agent`.
//
// YAML (`pico agent --config.path FILE`):
//
//	connect:
//	  url: http://localhost:8001   # the server's upstream port
//	  token: ""                    # sent as "Authorization: Bearer <token>"
//	  token_file: ""               # or: a file holding it, read before every connection
//	  tls: {ca: "", insecure_skip_verify: false, cert: "", key: ""}
//	  timeout: 10s                 # bound on one connection handshake
//	endpoints:
//	  - {id: my-endpoint, protocol: http, addr: "3000"}
//	  - {id: my-db, protocol: tcp, addr: "localhost:5432"}
//	grace_period: 1m               # bound on finishing in-flight work at SIGTERM
//	log:
//	  level: info
//	  subsystems: []
//
// The shutdown bound is the top-level key `grace_period` (flag
// --grace-period), the name Piko's agent uses, rather than the server's
// `server.graceful_shutdown_timeout`: an agent has no "server" section.
// Endpoints have no flags; the command line adds one with
// `pico agent http|tcp ENDPOINT ADDR`.
type Agent struct {
	// Client holds connect, grace_period (in-flight requests and TCP
	// connections get this long to finish) and log.
	Client `yaml:",inline"`
	// Endpoints are registered with one upstream connection each.
	Endpoints []AgentEndpoint `yaml:"endpoints"`
	// KeepaliveInterval is how often the agent pings the server over each
	// upstream connection; a ping unanswered for 10 s (yamux's wait)
	// replaces the connection. It bounds how long an endpoint stays on a
	// server that vanished without closing the connection (a crashed
	// host, a cut network): about this plus 10 s. Piko's agents use
	// yamux's 30 s.
	KeepaliveInterval time.Duration `yaml:"keepalive_interval"`
}

// DefaultKeepaliveInterval is the agent's default keepalive_interval.
const DefaultKeepaliveInterval = 10 * time.Second

// DefaultAgentURL is the default connect.url of `pico agent`: the upstream
// port of a local server.
const DefaultAgentURL = "http://localhost:8001"

// DefaultAgent returns the documented defaults (no endpoints).
func DefaultAgent() *Agent {
	return &Agent{Client: defaultClient(DefaultAgentURL), KeepaliveInterval: DefaultKeepaliveInterval}
}

// RegisterFlags registers one flag per key except endpoints.
func (a *Agent) RegisterFlags(fs *pflag.FlagSet) {
	a.Client.RegisterFlags(fs, "the server's upstream port", "in-flight requests and TCP connections")
	fs.DurationVar(&a.KeepaliveInterval, "keepalive-interval", a.KeepaliveInterval,
		"how often each upstream connection is pinged; one whose ping goes unanswered for 10s is replaced")
}

// Validate returns every problem found, joined. An empty endpoint list is
// valid here (the command line may add one); agent.New requires at least
// one.
func (a *Agent) Validate() error {
	errs := []error{a.Client.Validate(), positiveDuration("keepalive_interval", a.KeepaliveInterval)}
	seen := make(map[string]int, len(a.Endpoints))
	for i, e := range a.Endpoints {
		where := fmt.Sprintf("endpoints[%d]", i)
		errs = append(errs, e.Validate(where))
		if first, dup := seen[e.ID]; dup && e.ID != "" {
			errs = append(errs, fmt.Errorf("%s.id %q repeats endpoints[%d].id; list each endpoint once", where, e.ID, first))
		} else {
			seen[e.ID] = i
		}
	}
	return errors.Join(errs...)
}

// Endpoint protocols.
const (
	ProtocolHTTP = "http"
	ProtocolTCP  = "tcp"
)

// AgentEndpoint is one endpoint the agent registers and the local service
// its traffic goes to.
type AgentEndpoint struct {
	// ID is the endpoint ID (1-63 letters, digits, '-' or '_').
	ID string `yaml:"id"`
	// Protocol is "http" (each proxied request is reverse-proxied to Addr)
	// or "tcp" (each proxied connection is piped to a new TCP connection to
	// Addr).
	Protocol string `yaml:"protocol"`
	// Addr is the local service: a port ("3000", meaning localhost:3000),
	// host:port, or a URL (http://host:port/prefix or https://… for HTTP
	// endpoints; tcp://host:port is also accepted for TCP endpoints).
	Addr string `yaml:"addr"`
}

// Validate checks the endpoint; where names it in errors (for example
// "endpoints[0]").
func (e AgentEndpoint) Validate(where string) error {
	var errs []error
	if err := protocol.ValidateEndpointID(e.ID); err != nil {
		errs = append(errs, fmt.Errorf("%s.id: %w", where, err))
	}
	switch e.Protocol {
	case ProtocolHTTP, ProtocolTCP:
	default:
		errs = append(errs, fmt.Errorf("%s.protocol is %q; use http or tcp", where, e.Protocol))
	}
	if _, err := e.Target(); err != nil {
		errs = append(errs, fmt.Errorf("%s.addr: %w", where, err))
	}
	return errors.Join(errs...)
}

// Target parses Addr for the endpoint's protocol. For HTTP endpoints the
// URL's scheme is http or https; for TCP endpoints only the URL's Host
// (always host:port) matters.
func (e AgentEndpoint) Target() (*url.URL, error) {
	u, err := ParseServiceAddr(e.Addr)
	if err != nil {
		return nil, err
	}
	switch {
	case e.Protocol == ProtocolHTTP && u.Scheme == "tcp":
		return nil, fmt.Errorf("%q is a tcp:// address but the endpoint's protocol is http; use a port, host:port or an http(s):// URL", e.Addr)
	case e.Protocol == ProtocolTCP && u.Path != "":
		return nil, fmt.Errorf("%q has a path but the endpoint's protocol is tcp; use a port or host:port", e.Addr)
	}
	return u, nil
}

// ParseServiceAddr parses the address of a local service, as given to
// `pico agent` (ADDR) or in endpoints[].addr:
//
//   - a port: "3000" is http://localhost:3000
//   - host:port: "10.0.0.5:3000", ":3000" (localhost), "[::1]:3000"
//   - a URL: "http://host:port/prefix", "https://host" (port 443),
//     "tcp://host:port"
//
// The returned URL's Host always carries a port. A URL's path is a prefix
// prepended to every proxied request's path.
func ParseServiceAddr(addr string) (*url.URL, error) {
	const forms = "use a port (3000), host:port (localhost:3000) or a URL (http://localhost:3000)"
	if addr == "" {
		return nil, errors.New("empty address; " + forms)
	}
	if isDigits(addr) {
		port, err := parsePort(addr)
		if err != nil {
			return nil, fmt.Errorf("%q: %w; %s", addr, err, forms)
		}
		return &url.URL{Scheme: "http", Host: net.JoinHostPort("localhost", port)}, nil
	}
	if strings.Contains(addr, "://") {
		return parseServiceURL(addr, forms)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("%q is not a port, host:port or URL; %s", addr, forms)
	}
	if host == "" {
		host = "localhost"
	}
	if port, err = parsePort(port); err != nil {
		return nil, fmt.Errorf("%q: %w; %s", addr, err, forms)
	}
	if err := checkHost(host); err != nil {
		return nil, fmt.Errorf("%q: %w; %s", addr, err, forms)
	}
	return &url.URL{Scheme: "http", Host: net.JoinHostPort(host, port)}, nil
}

func parseServiceURL(addr, forms string) (*url.URL, error) {
	u, err := url.Parse(addr)
	if err != nil {
		return nil, fmt.Errorf("%q is not a valid URL (%v); %s", addr, errors.Unwrap(err), forms)
	}
	u.Scheme = strings.ToLower(u.Scheme)
	defaultPort := map[string]string{"http": "80", "https": "443", "tcp": ""}
	dp, ok := defaultPort[u.Scheme]
	switch {
	case !ok:
		return nil, fmt.Errorf("%q: scheme %q is not supported; use http://, https:// or tcp://", addr, u.Scheme)
	case u.User != nil:
		return nil, fmt.Errorf("%q: credentials in the address are not supported; remove the user info", addr)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return nil, fmt.Errorf("%q: a query or fragment is not supported; give scheme, host, port and an optional path", addr)
	case u.Opaque != "" || u.Hostname() == "":
		return nil, fmt.Errorf("%q has no host; %s", addr, forms)
	}
	port := u.Port()
	if port == "" {
		if dp == "" {
			return nil, fmt.Errorf("%q has no port; use tcp://host:port", addr)
		}
		port = dp
	}
	if port, err = parsePort(port); err != nil {
		return nil, fmt.Errorf("%q: %w; %s", addr, err, forms)
	}
	if err := checkHost(u.Hostname()); err != nil {
		return nil, fmt.Errorf("%q: %w; %s", addr, err, forms)
	}
	u.Host = net.JoinHostPort(u.Hostname(), port)
	if u.Path == "/" {
		u.Path, u.RawPath = "", ""
	}
	return u, nil
}

// checkHost accepts a host name or IP address that survives a round trip
// through a URL unchanged.
func checkHost(host string) error {
	u, err := url.Parse("http://" + net.JoinHostPort(host, "1"))
	if err != nil || u.Hostname() != host || strings.ContainsAny(host, "/?#@%") {
		return fmt.Errorf("host %q is not a valid host name or IP address", host)
	}
	return nil
}

// parsePort returns the canonical form of a TCP port from 1 to 65535.
func parsePort(s string) (string, error) {
	n, err := strconv.Atoi(s)
	if err != nil || !isDigits(s) || n < 1 || n > 65535 {
		return "", fmt.Errorf("port %q is not a number from 1 to 65535", s)
	}
	return strconv.Itoa(n), nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// Connect is how a client (agent, forwarder) reaches a Pico server.
type Connect struct {
	// URL is the server's base URL (http, https, ws or wss); Pico's routes
	// are appended to its path.
	URL string `yaml:"url"`
	// Credentials: token, token_file and tls.
	Credentials `yaml:",inline"`
	// Timeout bounds one connection handshake.
	Timeout time.Duration `yaml:"timeout"`
}

// DefaultConnect returns the connect defaults with the given URL.
func DefaultConnect(url string) Connect {
	return Connect{URL: url, Timeout: 10 * time.Second}
}

// RegisterFlags registers the connect.* flags; what describes the port the
// URL points at.
func (c *Connect) RegisterFlags(fs *pflag.FlagSet, what string) {
	fs.StringVar(&c.URL, "connect.url", c.URL, "URL of "+what)
	c.Credentials.RegisterFlags(fs, "connect")
	fs.DurationVar(&c.Timeout, "connect.timeout", c.Timeout, "bound on one connection handshake")
}

// Validate checks the connect section.
func (c *Connect) Validate() error {
	return errors.Join(
		validateServerURL("connect.url", c.URL, "http", "https", "ws", "wss"),
		c.Credentials.Validate("connect", "connect.url", c.URL),
		positiveDuration("connect.timeout", c.Timeout),
	)
}

// validateServerURL checks a base URL of a Pico server whose scheme is one
// of schemes.
func validateServerURL(key, raw string, schemes ...string) error {
	u, err := url.Parse(raw)
	if err == nil {
		switch {
		case !slices.Contains(schemes, u.Scheme):
			err = fmt.Errorf("the scheme must be %s", strings.Join(schemes, ", "))
		case u.Host == "":
			err = errors.New("no host")
		case u.RawQuery != "" || u.Fragment != "":
			err = errors.New("a query or fragment is not supported")
		}
	}
	if err != nil {
		return fmt.Errorf("%s (%s) %q: %v; use a URL such as \"http://host:port\"", key, FlagName(key), raw, err)
	}
	return nil
}
