package server

import (
	"fmt"
	"net"
	"strconv"

	"github.com/pico-proxy/pico/internal/cluster"
)

// advertiseAddr returns the address other nodes use for a listener:
// configured if set, else the bound address when it names a specific IP,
// else the node's advertise IP (cluster.AdvertiseIP) with the bound port.
func advertiseAddr(configured string, bound net.Addr) (string, error) {
	if configured != "" {
		return configured, nil
	}
	tcp, ok := bound.(*net.TCPAddr)
	if !ok {
		return bound.String(), nil
	}
	return deriveAddr(tcp.IP, tcp.Port)
}

// deriveAdvertise derives an advertise address from a configured bind
// address that is not bound yet.
func deriveAdvertise(configured, bindAddr string) (string, error) {
	if configured != "" {
		return configured, nil
	}
	host, port, err := net.SplitHostPort(bindAddr)
	if err != nil {
		return bindAddr, nil
	}
	n, _ := strconv.Atoi(port)
	return deriveAddr(net.ParseIP(host), n)
}

func deriveAddr(ip net.IP, port int) (string, error) {
	if ip != nil && !ip.IsUnspecified() {
		return net.JoinHostPort(ip.String(), strconv.Itoa(port)), nil
	}
	adv, err := cluster.AdvertiseIP()
	if err != nil {
		return "", fmt.Errorf("deriving the advertise address: %w; set the *.advertise_addr keys", err)
	}
	return net.JoinHostPort(adv.String(), strconv.Itoa(port)), nil
}
