package upstream

import (
	"fmt"
	"log/slog"
	"net/http"

	"github.com/hashicorp/yamux"

	"github.com/pico-proxy/pico/internal/protocol"
)

// Handler serves the upstream port: WebSocket GET
// /pico/v1/upstream/{endpoint} (or Piko's /piko/v1/upstream/{endpoint})
// becomes a yamux server session registered for the endpoint.
type Handler struct {
	registry *Registry
	logger   *slog.Logger
	yamux    *yamux.Config
}

// NewHandler returns the upstream port's handler registering sessions in
// registry.
func NewHandler(registry *Registry, logger *slog.Logger) *Handler {
	logger = logger.With("subsystem", "upstream")
	return &Handler{registry: registry, logger: logger, yamux: protocol.YamuxConfig(logger)}
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	endpoint, ok := protocol.EndpointFromPath(r.URL.Path, protocol.UpstreamPathPrefix, protocol.PikoUpstreamPathPrefix)
	if !ok {
		protocol.WriteError(w, http.StatusNotFound, fmt.Sprintf("not found: agents connect to %s{endpoint}", protocol.UpstreamPathPrefix))
		return
	}
	if err := protocol.ValidateEndpointID(endpoint); err != nil {
		h.registry.metrics.registrations.WithLabelValues("invalid").Inc()
		protocol.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	if r.Method != http.MethodGet {
		protocol.WriteError(w, http.StatusMethodNotAllowed, "agents connect with a WebSocket GET")
		return
	}

	// The reservation makes the endpoint "pending" before the agent can
	// see the 101, so a request racing with the registration waits for
	// the session instead of failing.
	res, err := h.registry.Reserve(endpoint)
	if err != nil {
		h.registry.metrics.registrations.WithLabelValues("draining").Inc()
		protocol.WriteError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	conn, err := protocol.AcceptWebSocket(w, r)
	if err != nil {
		res.Cancel()
		h.registry.metrics.registrations.WithLabelValues("failed").Inc()
		h.logger.Debug("upstream handshake failed", "endpoint", endpoint, "remote_addr", r.RemoteAddr, "error", err)
		return
	}
	if _, err := res.Activate(protocol.CoalesceWrites(conn), r.RemoteAddr, h.yamux); err != nil {
		h.registry.metrics.registrations.WithLabelValues("failed").Inc()
		h.logger.Error("registering upstream", "endpoint", endpoint, "error", err)
	}
}
