package upstream

import (
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/pico-proxy/pico/internal/auth"
	"github.com/pico-proxy/pico/internal/protocol"
	"github.com/pico-proxy/pico/internal/yamux"
)

// DefaultExpiryGrace is how long the in-flight streams of an upstream
// connection whose token expired may take to finish.
const DefaultExpiryGrace = 15 * time.Second

// Handler serves the upstream port: WebSocket GET
// /pico/v1/upstream/{endpoint} (or Piko's /piko/v1/upstream/{endpoint})
// becomes a yamux server session registered for the endpoint.
type Handler struct {
	registry    *Registry
	logger      *slog.Logger
	yamux       *yamux.Config
	verifier    *auth.Verifier
	expiryGrace time.Duration
}

// HandlerOption customises a Handler.
type HandlerOption func(*Handler)

// WithVerifier requires agents to present a token that v accepts and that
// permits the endpoint (section `auth`). When the token expires (and the
// section's disconnect_on_expiry is set) the connection leaves routing,
// its agent is told to go away (it reconnects at once, with its current
// token) and it closes once its in-flight streams have finished, at the
// latest after grace.
func WithVerifier(v *auth.Verifier, grace time.Duration) HandlerOption {
	return func(h *Handler) { h.verifier, h.expiryGrace = v, grace }
}

// NewHandler returns the upstream port's handler registering sessions in
// registry.
func NewHandler(registry *Registry, logger *slog.Logger, opts ...HandlerOption) *Handler {
	logger = logger.With("subsystem", "upstream")
	cfg := protocol.YamuxConfig(logger)
	// The server only opens streams; an agent's own streams are reset
	// as they open instead of parked, unread, in an accept backlog.
	cfg.RefuseStreams = true
	h := &Handler{registry: registry, logger: logger, yamux: cfg, expiryGrace: DefaultExpiryGrace}
	for _, opt := range opts {
		opt(h)
	}
	return h
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
	proto, err := protocol.ParseEndpointProtocol(r.Header.Get(protocol.EndpointProtocolHeader))
	if err != nil {
		h.registry.metrics.registrations.WithLabelValues("invalid").Inc()
		protocol.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	// Before anything is recorded for the endpoint: an agent without a
	// valid token must not even make the endpoint pending.
	token, err := h.verifier.AuthorizeRequest(r, endpoint)
	if err != nil {
		result := "unauthorized"
		if auth.HTTPStatus(err) == http.StatusForbidden {
			result = "forbidden"
		}
		h.registry.metrics.registrations.WithLabelValues(result).Inc()
		// err never contains the token.
		h.logger.Warn("upstream refused", "endpoint", endpoint, "remote_addr", r.RemoteAddr, "error", err)
		auth.WriteError(w, err)
		return
	}

	// The reservation makes the endpoint "pending" before the agent can
	// see the 101, so a request racing with the registration waits for
	// the session instead of failing.
	res, err := h.registry.Reserve(endpoint)
	if err != nil {
		h.registry.metrics.registrations.WithLabelValues("draining").Inc()
		// Close the connection: the agent's retry must be a new TCP
		// connection, so that a load balancer (a Kubernetes Service
		// balances per connection) can send it to another node.
		w.Header().Set("Connection", "close")
		protocol.WriteError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	conn, err := protocol.AcceptSession(w, r)
	if err != nil {
		res.Cancel()
		h.registry.metrics.registrations.WithLabelValues("failed").Inc()
		h.logger.Debug("upstream handshake failed", "endpoint", endpoint, "remote_addr", r.RemoteAddr, "error", err)
		return
	}
	session, err := res.Activate(conn, r.RemoteAddr, proto, h.yamux)
	if err != nil {
		h.registry.metrics.registrations.WithLabelValues("failed").Inc()
		h.logger.Error("registering upstream", "endpoint", endpoint, "error", err)
		return
	}
	if session != nil && token != nil {
		h.closeOnExpiry(session, token)
	}
}

// closeOnExpiry retires session when token expires (if configured).
func (h *Handler) closeOnExpiry(session *Session, token *auth.Token) {
	stop := h.verifier.CloseOnExpiry(token, func() {
		h.registry.metrics.expired.Inc()
		h.logger.Info("upstream token expired; closing the connection", "endpoint", session.Endpoint(),
			"session", session.ID(), "remote_addr", session.RemoteAddr(), "subject", token.Subject)
		session.Retire(h.expiryGrace)
	})
	go func() {
		<-session.Done()
		stop()
	}()
}
