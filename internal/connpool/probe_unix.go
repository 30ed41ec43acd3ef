//go:build unix

package connpool

import (
	"net"
	"syscall"
)

// peerOpen reports whether an idle connection can carry another request:
// the peer has not closed it and sent nothing unasked. It peeks without
// blocking.
func peerOpen(c net.Conn) bool {
	if tc, ok := c.(interface{ NetConn() net.Conn }); ok {
		// TLS: a peer's close alert shows as unasked data underneath.
		c = tc.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	open := false
	err = raw.Read(func(fd uintptr) bool {
		var b [1]byte
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		// Nothing to read: open. EOF (no error), data or another error:
		// not reusable.
		open = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK || err == syscall.EINTR
		return true // never wait for readiness
	})
	return err == nil && open
}
