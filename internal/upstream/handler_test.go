package upstream

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pico-proxy/pico/internal/config"
	"github.com/pico-proxy/pico/internal/protocol"
	"github.com/pico-proxy/pico/internal/tlsconfig"
)

// A draining server refuses upstreams with 503 and closes the connection,
// and the agent's client never reuses it: each retry is a new TCP
// connection that a load balancer can send to another node.
func TestDrainingRefusalUsesAFreshConnectionPerAttempt(t *testing.T) {
	logger := slog.New(slog.DiscardHandler)
	registry := NewRegistry(logger, RegistryOptions{})
	require.NoError(t, registry.Drain(context.Background()))

	var mu sync.Mutex
	conns := map[string]bool{}
	srv := httptest.NewUnstartedServer(NewHandler(registry, logger))
	srv.Config.ConnState = func(c net.Conn, state http.ConnState) {
		if state == http.StateNew {
			mu.Lock()
			conns[c.RemoteAddr().String()] = true
			mu.Unlock()
		}
	}
	srv.Start()
	defer srv.Close()

	client, err := tlsconfig.WebSocketClient(config.ClientTLS{}, "connect.tls", logger)
	require.NoError(t, err)
	for i := 0; i < 3; i++ {
		_, err := protocol.DialWebSocket(context.Background(), srv.URL+protocol.UpstreamPathPrefix+"e1", nil, client)
		var refused *protocol.DialError
		require.ErrorAs(t, err, &refused)
		require.Equal(t, http.StatusServiceUnavailable, refused.StatusCode)
	}
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, conns, 3, "every attempt must open a new connection")
}
