package picoproc

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/pico-proxy/pico/internal/adminapi"
)

// Pico's default ports, which every Server uses on its own IP.
const (
	ProxyPort    = "8000"
	UpstreamPort = "8001"
	AdminPort    = "8002"
	GossipPort   = "8003"
)

// Server is a `pico server` process listening on its own loopback IP with
// Pico's default ports.
type Server struct {
	IP      string
	Process *Process
}

// StartServer starts `pico server` on ip: s.Args (further flags) follow the
// four --*.bind-addr flags. It does not wait for readiness (WaitReady).
func StartServer(s Spec, ip string) (*Server, error) {
	s.Args = append([]string{"server",
		"--proxy.bind-addr", net.JoinHostPort(ip, ProxyPort),
		"--upstream.bind-addr", net.JoinHostPort(ip, UpstreamPort),
		"--admin.bind-addr", net.JoinHostPort(ip, AdminPort),
		"--gossip.bind-addr", net.JoinHostPort(ip, GossipPort),
	}, s.Args...)
	p, err := Start(s)
	if err != nil {
		return nil, err
	}
	return &Server{Process: p, IP: ip}, nil
}

// PortsFree returns an error naming the first of a server's TCP ports on ip
// that another process listens on.
func PortsFree(ip string) error {
	for _, port := range []string{ProxyPort, UpstreamPort, AdminPort, GossipPort} {
		ln, err := net.Listen("tcp", net.JoinHostPort(ip, port))
		if err != nil {
			return fmt.Errorf("%s is taken by another process: %w", net.JoinHostPort(ip, port), err)
		}
		ln.Close()
	}
	return nil
}

// ProxyURL, UpstreamURL and AdminURL are the server's HTTP listeners;
// GossipAddr its gossip address.
func (s *Server) ProxyURL() string    { return "http://" + net.JoinHostPort(s.IP, ProxyPort) }
func (s *Server) UpstreamURL() string { return "http://" + net.JoinHostPort(s.IP, UpstreamPort) }
func (s *Server) AdminURL() string    { return "http://" + net.JoinHostPort(s.IP, AdminPort) }
func (s *Server) GossipAddr() string  { return net.JoinHostPort(s.IP, GossipPort) }

// WaitReady waits up to timeout until GET /ready on the admin port answers
// 200; it fails early if the process exits.
func (s *Server) WaitReady(timeout time.Duration) error {
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(timeout)
	for {
		if s.Process.Exited() {
			return fmt.Errorf("%s exited before it was ready: %v", s.Process.Name, s.Process.Err())
		}
		resp, err := client.Get(s.AdminURL() + "/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready within %s", s.Process.Name, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Members returns the server's view of the cluster
// (GET /status/cluster/nodes).
func (s *Server) Members() ([]adminapi.NodeSummary, error) {
	resp, err := http.Get(s.AdminURL() + "/status/cluster/nodes")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s/status/cluster/nodes: %s", s.AdminURL(), resp.Status)
	}
	var nodes []adminapi.NodeSummary
	if err := json.NewDecoder(resp.Body).Decode(&nodes); err != nil {
		return nil, fmt.Errorf("decoding /status/cluster/nodes of %s: %w", s.Process.Name, err)
	}
	return nodes, nil
}

// ActiveIDs returns the IDs the server lists as active members, or nil if
// its admin API cannot be reached.
func (s *Server) ActiveIDs() []string {
	nodes, err := s.Members()
	if err != nil {
		return nil
	}
	var ids []string
	for _, m := range nodes {
		if m.Status == adminapi.StatusActive {
			ids = append(ids, m.ID)
		}
	}
	return ids
}
