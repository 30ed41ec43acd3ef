package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pico-proxy/pico/internal/upstream/upstreamtest"
)

// rawGet sends a GET with the given Host and extra header lines on a new
// connection to the proxy port (rawExchange) and returns the answer, its
// body readable again.
func (s *testServer) rawGet(host, extra string) *http.Response {
	s.t.Helper()
	resps, bodies, _ := s.rawExchange(fmt.Sprintf("GET /p HTTP/1.1\r\nHost: %s\r\n%sConnection: close\r\n\r\n", host, extra))
	require.Len(s.t, resps, 1)
	resps[0].Body = io.NopCloser(strings.NewReader(bodies[0]))
	return resps[0]
}

// The Host label is compared lower-cased (DNS names are case-insensitive);
// the upstream still sees Host as the client sent it.
func TestHostLabelRoutesCaseInsensitively(t *testing.T) {
	s := startServer(t, serverSetup{})
	s.agent("raw", echoHandler("raw"))

	for _, host := range []string{"RAW.example.com", "Raw.Example.COM:8000", "raw.example.com"} {
		e := decodeEcho(t, s.rawGet(host, ""))
		require.Equal(t, "raw", e.Name, host)
		require.Equal(t, host, e.Host, "the Host header reaches the service as sent")
	}
}

// IDs named in a header compare exactly: only the Host label, a DNS
// name, is case-folded.
func TestEndpointHeaderIsCaseSensitive(t *testing.T) {
	s := startServer(t, serverSetup{})
	s.agent("Mixed", echoHandler("mixed"))

	require.Equal(t, "mixed", decodeEcho(t, s.get("Mixed", "/")).Name)
	requireJSONError(t, s.get("mixed", "/"), http.StatusBadGateway, `no upstream for endpoint "mixed"`)
}

// Piko accepts IDs with dots (api.v1); its agents register them with Pico
// and clients reach them through the endpoint headers.
func TestEndpointIDsWithDots(t *testing.T) {
	s := startServer(t, serverSetup{})
	s.agent("api.v1", echoHandler("pico-agent"))
	piko, err := upstreamtest.ServeHTTP(context.Background(), upstreamtest.PikoURL(s.Addrs().Upstream, "billing.eu-1.v2"), echoHandler("piko-agent"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = piko.Close() })

	require.Equal(t, "pico-agent", decodeEcho(t, s.rawGet("any.example.com", "X-Pico-Endpoint: api.v1\r\n")).Name)
	require.Equal(t, "piko-agent", decodeEcho(t, s.rawGet("any.example.com", "X-Piko-Endpoint: billing.eu-1.v2\r\n")).Name)

	// Host routing takes the first label only.
	requireJSONError(t, s.rawGet("api.v1.example.com", ""), http.StatusBadGateway, `no upstream for endpoint "api"`)

	var endpoints map[string]int
	require.Equal(t, http.StatusOK, s.getJSON("/status/upstream/endpoints", &endpoints))
	require.Equal(t, map[string]int{"api.v1": 1, "billing.eu-1.v2": 1}, endpoints)
}
