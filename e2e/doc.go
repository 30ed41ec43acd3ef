// Package e2e holds Pico's multi-node end-to-end tests: real `pico`
// processes on distinct loopback IPs, real agents and real HTTP. The tests
// are behind the `e2e` build tag and run with `make e2e`; some need root
// (mount namespaces give a process its own /etc/resolv.conf).
package e2e
