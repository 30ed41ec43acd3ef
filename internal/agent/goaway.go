package agent

import (
	"encoding/binary"
	"net"
	"sync"
)

// yamux frame header layout (version, type, flags, stream ID, length).
const (
	yamuxHeaderSize   = 12
	yamuxTypeData     = 0
	yamuxTypeGoAway   = 3
	yamuxLengthOffset = 8
)

// goAwayWatcher passes a yamux connection's bytes through unchanged and
// closes goingAway when the server sends a GoAway frame, so the agent can
// open its replacement connection while the old one still serves its
// in-flight streams. (yamux records a remote GoAway but does not expose
// it.) Only yamux's receive loop calls Read, so the parser needs no lock.
type goAwayWatcher struct {
	net.Conn
	header    [yamuxHeaderSize]byte
	have      int    // header bytes collected so far
	skip      uint32 // payload bytes of the current data frame still to pass
	goingAway chan struct{}
	once      sync.Once
}

func newGoAwayWatcher(conn net.Conn) *goAwayWatcher {
	return &goAwayWatcher{Conn: conn, goingAway: make(chan struct{})}
}

func (w *goAwayWatcher) Read(p []byte) (int, error) {
	n, err := w.Conn.Read(p)
	w.scan(p[:n])
	return n, err
}

// scan advances the frame parser over b.
func (w *goAwayWatcher) scan(b []byte) {
	for len(b) > 0 {
		if w.skip > 0 {
			k := min(uint32(len(b)), w.skip)
			w.skip -= k
			b = b[k:]
			continue
		}
		k := copy(w.header[w.have:], b)
		w.have += k
		b = b[k:]
		if w.have < yamuxHeaderSize {
			return
		}
		w.have = 0
		switch w.header[1] {
		case yamuxTypeData:
			w.skip = binary.BigEndian.Uint32(w.header[yamuxLengthOffset:])
		case yamuxTypeGoAway:
			w.once.Do(func() { close(w.goingAway) })
		}
	}
}
