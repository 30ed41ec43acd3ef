package proxy

import (
	"net/http"

	"github.com/pico-proxy/pico/internal/upstream"
)

// exchange is the state of one proxied request. It doubles as the
// client's ResponseWriter, recording the status without a second
// allocation.
type exchange struct {
	http.ResponseWriter
	status      int
	wroteHeader bool

	endpoint string
	// forwardedBy is the verified ID of the member that forwarded the
	// request; such a request is served by local upstreams only.
	forwardedBy string
	// remoteOnly is set for the remote leg of the TCP route (a WebSocket
	// upgrade forwarded to another node, never a local HTTP stream).
	remoteOnly bool
	// firstNode, when set, is the node the first remote attempt goes to.
	firstNode *Node

	// routed is set once an upstream was found anywhere: only then is
	// the endpoint used as a metrics label (bounded cardinality).
	routed bool
	// node and upstream name who served the request, for the access log.
	node     string
	upstream string

	triedSessions []*upstream.Session
	triedNodes    []string
	attempts      int
}

func (ex *exchange) WriteHeader(code int) {
	if !ex.wroteHeader && (code >= 200 || code == http.StatusSwitchingProtocols) {
		ex.status = code
		ex.wroteHeader = true
	}
	ex.ResponseWriter.WriteHeader(code)
}

func (ex *exchange) Write(p []byte) (int, error) {
	if !ex.wroteHeader {
		ex.status = http.StatusOK
		ex.wroteHeader = true
	}
	return ex.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach Flush and Hijack.
func (ex *exchange) Unwrap() http.ResponseWriter { return ex.ResponseWriter }

// Flush sends what was written so far to the client.
func (ex *exchange) Flush() {
	if !ex.wroteHeader {
		ex.status = http.StatusOK
		ex.wroteHeader = true
	}
	if f, ok := ex.ResponseWriter.(http.Flusher); ok {
		f.Flush()
		return
	}
	_ = http.NewResponseController(ex.ResponseWriter).Flush()
}
