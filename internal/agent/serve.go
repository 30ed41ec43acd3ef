package agent

import (
	"log/slog"
	"net"
	"sync"

	"github.com/pico-proxy/pico/internal/protocol"
	"github.com/pico-proxy/pico/internal/yamux"
)

// tcpServer serves a TCP endpoint's streams: each stream is piped to a new
// connection to the local service.
type tcpServer struct {
	addr   string
	dialer net.Dialer
	wg     *sync.WaitGroup
	logger *slog.Logger
}

func newTCPServer(addr string, wg *sync.WaitGroup, logger *slog.Logger) *tcpServer {
	return &tcpServer{addr: addr, dialer: net.Dialer{Timeout: localDialTimeout}, wg: wg, logger: logger}
}

func (t *tcpServer) serve(sess *yamux.Session) {
	for {
		stream, err := sess.AcceptStream()
		if err != nil {
			return
		}
		t.wg.Go(func() { t.handle(stream) })
	}
}

func (t *tcpServer) handle(stream *yamux.Stream) {
	local, err := t.dialer.Dial("tcp", t.addr)
	if err != nil {
		t.logger.Warn("local service unavailable", "target", t.addr, "error", err)
		stream.Close()
		return
	}
	protocol.Pipe(stream, local, 0) // both sides carry half-closes
}

func (t *tcpServer) drain() {}

func (t *tcpServer) close() {}
