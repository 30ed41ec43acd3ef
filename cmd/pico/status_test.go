package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestStatusCommand(t *testing.T) {
	admin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/status/upstream/endpoints":
			w.Write([]byte(`{"web":2}`))
		case "/status/cluster/nodes":
			w.Write([]byte(`[{"id":"n1","status":"active","proxy_addr":"127.0.0.1:8000","admin_addr":"127.0.0.1:8002","upstreams":2,"endpoints":1}]`))
		default:
			http.NotFound(w, r)
		}
	}))
	defer admin.Close()

	var stdout, stderr strings.Builder
	require.Equal(t, 0, runStatus([]string{"upstream", "endpoints", "--server.url", admin.URL}, &stdout, &stderr), stderr.String())
	require.Equal(t, "ENDPOINT   UPSTREAMS\nweb        2\n", stdout.String())

	stdout.Reset()
	require.Equal(t, 0, runStatus([]string{"cluster", "nodes", "--server.url", admin.URL, "--output", "json"}, &stdout, &stderr), stderr.String())
	require.JSONEq(t, `[{"id":"n1","status":"active","proxy_addr":"127.0.0.1:8000","admin_addr":"127.0.0.1:8002","upstreams":2,"endpoints":1}]`, stdout.String())

	stdout.Reset()
	require.Equal(t, 0, runStatus([]string{"cluster", "nodes", "--server.url", admin.URL}, &stdout, &stderr), stderr.String())
	require.Contains(t, stdout.String(), "n1   active   127.0.0.1:8000")
}

func TestStatusErrors(t *testing.T) {
	var stdout, stderr strings.Builder
	require.Equal(t, 2, runStatus([]string{"cluster"}, &stdout, &stderr))
	require.Contains(t, stderr.String(), "unknown query")
	require.Contains(t, stderr.String(), "Usage:")

	stderr.Reset()
	require.Equal(t, 1, runStatus([]string{"cluster", "nodes", "--output", "yaml"}, &stdout, &stderr))
	require.Equal(t, "pico status: output (--output) is \"yaml\"; use text or json\n", stderr.String())

	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	url := "http://" + l.Addr().String()
	l.Close()
	stderr.Reset()
	require.Equal(t, 1, runStatus([]string{"upstream", "endpoints", "--server.url", url}, &stdout, &stderr))
	require.Contains(t, stderr.String(), "pico status: cannot reach the admin API at "+url)
	require.Equal(t, 1, strings.Count(stderr.String(), "\n"))
	require.Empty(t, stdout.String())
}
