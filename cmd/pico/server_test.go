package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pico-proxy/pico/internal/server"
	"github.com/pico-proxy/pico/internal/testutil"
)

func runServerForTest(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var stderr testutil.LogBuffer
	code := serverCommand(context.Background(), args, &stderr, &stderr, func(server.Addrs) {
		t.Error("the server started")
	})
	return code, stderr.String()
}

func TestServerUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--no-such-flag"},
		{"unexpected-argument"},
		{"--proxy.gateway-timeout", "soon"},
	} {
		code, stderr := runServerForTest(t, args...)
		require.Equal(t, 2, code, "%v", args)
		require.Contains(t, stderr, "Usage: pico server", "%v", args)
		require.Contains(t, stderr, "--proxy.bind-addr", "usage lists the flags")
	}
	code, _ := runServerForTest(t, "--help")
	require.Equal(t, 0, code)
}

func TestServerConfigErrorsAreOneLine(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "server.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("proxy:\n  bind_adr: \":1\"\n"), 0o644))
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--config.path", bad}, []string{`unknown key "proxy.bind_adr"`}},
		{[]string{"--config.path", filepath.Join(dir, "missing.yaml")}, []string{"missing.yaml"}},
		{[]string{"--proxy.bind-addr", "8000", "--log.level", "loud"}, []string{"proxy.bind_addr", "log.level"}},
		{[]string{"--proxy.bind-addr", "256.0.0.1:1"}, []string{"proxy.bind_addr"}},
	} {
		code, stderr := runServerForTest(t, tc.args...)
		require.Equal(t, 1, code, "%v: %s", tc.args, stderr)
		require.Equal(t, 1, strings.Count(strings.TrimSpace(stderr), "\n")+1, "one line: %q", stderr)
		require.True(t, strings.HasPrefix(stderr, "pico server: "), stderr)
		for _, w := range tc.want {
			require.Contains(t, stderr, w)
		}
	}
}

func TestServerRunsUntilSignalled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addrs := make(chan server.Addrs, 1)
	done := make(chan int, 1)
	var stderr testutil.LogBuffer
	go func() {
		done <- serverCommand(ctx, []string{
			"--proxy.bind-addr", "127.0.0.1:0", "--upstream.bind-addr", "127.0.0.1:0",
			"--admin.bind-addr", "127.0.0.1:0", "--gossip.bind-addr", "127.0.0.1:0",
		}, io.Discard, &stderr, func(a server.Addrs) { addrs <- a })
	}()
	var a server.Addrs
	select {
	case a = <-addrs:
	case code := <-done:
		t.Fatalf("exited with %d: %s", code, stderr.String())
	}
	resp, err := http.Get("http://" + a.Admin + "/ready")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	cancel() // SIGTERM
	select {
	case code := <-done:
		require.Equal(t, 0, code, stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatal("pico server did not exit after the signal")
	}
	require.Contains(t, stderr.String(), "drained")
}
