package server

import (
	"net"
	"strconv"
)

// advertiseAddr returns the address other nodes use for a listener:
// configured if set, else the bound address when it names a specific IP,
// else the node's private IP with the bound port.
func advertiseAddr(configured string, bound net.Addr) string {
	if configured != "" {
		return configured
	}
	tcp, ok := bound.(*net.TCPAddr)
	if !ok {
		return bound.String()
	}
	return deriveAddr(tcp.IP, tcp.Port)
}

// deriveAdvertise derives an advertise address from a configured bind
// address that is not bound yet.
func deriveAdvertise(configured, bindAddr string) string {
	if configured != "" {
		return configured
	}
	host, port, err := net.SplitHostPort(bindAddr)
	if err != nil {
		return bindAddr
	}
	n, _ := strconv.Atoi(port)
	return deriveAddr(net.ParseIP(host), n)
}

func deriveAddr(ip net.IP, port int) string {
	if ip == nil || ip.IsUnspecified() {
		ip = privateIP()
	}
	return net.JoinHostPort(ip.String(), strconv.Itoa(port))
}

// privateIP returns the first private IPv4 address of the host's
// interfaces, else the first non-loopback one, else loopback.
func privateIP() net.IP {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return net.IPv4(127, 0, 0, 1)
	}
	var fallback net.IP
	for _, a := range addrs {
		ipNet, ok := a.(*net.IPNet)
		if !ok || ipNet.IP.IsLoopback() || ipNet.IP.To4() == nil {
			continue
		}
		if ipNet.IP.IsPrivate() {
			return ipNet.IP.To4()
		}
		if fallback == nil && ipNet.IP.IsGlobalUnicast() {
			fallback = ipNet.IP.To4()
		}
	}
	if fallback != nil {
		return fallback
	}
	return net.IPv4(127, 0, 0, 1)
}
