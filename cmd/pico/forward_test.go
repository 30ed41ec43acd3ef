package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pico-proxy/pico/internal/forward"
	"github.com/pico-proxy/pico/internal/protocol"
	"github.com/pico-proxy/pico/internal/testutil"
)

func TestForwardUsageErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"no arguments":     {nil, "expected tcp LOCAL_ADDR ENDPOINT, got 0 arguments"},
		"unknown protocol": {[]string{"http", "6000", "web"}, `unknown protocol "http"`},
		"unknown flag":     {[]string{"tcp", "6000", "web", "--nope"}, "unknown flag: --nope"},
	} {
		t.Run(name, func(t *testing.T) {
			var stderr testutil.LogBuffer
			require.Equal(t, 2, forwardCommand(context.Background(), tc.args, io.Discard, &stderr, nil))
			require.Contains(t, stderr.String(), tc.want)
			require.Contains(t, stderr.String(), "Usage: pico forward tcp LOCAL_ADDR ENDPOINT")
		})
	}
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"bad endpoint": {[]string{"tcp", "127.0.0.1:0", "no way"}, "pico forward: ENDPOINT: endpoint ID"},
		"bad address":  {[]string{"tcp", "127.0.0.1:port", "db"}, "pico forward: LOCAL_ADDR:"},
		"bad url":      {[]string{"tcp", "127.0.0.1:0", "db", "--connect.url", "ftp://x"}, "connect.url (--connect.url)"},
	} {
		t.Run(name, func(t *testing.T) {
			var stderr testutil.LogBuffer
			require.Equal(t, 1, forwardCommand(context.Background(), tc.args, io.Discard, &stderr, nil))
			require.Contains(t, stderr.String(), tc.want)
			require.Equal(t, 1, strings.Count(stderr.String(), "\n"))
		})
	}
}

func TestForwardCarriesTCPUntilSignalled(t *testing.T) {
	proxyPort := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id, _ := protocol.EndpointFromPath(r.URL.Path, protocol.TCPPathPrefix); id != "db" {
			http.NotFound(w, r)
			return
		}
		conn, err := protocol.AcceptWebSocket(w, r)
		if err != nil {
			return
		}
		defer conn.Close()
		io.Copy(conn, conn)
	}))
	defer proxyPort.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr testutil.LogBuffer
	listening := make(chan *forward.Forwarder, 1)
	done := make(chan int, 1)
	go func() {
		done <- forwardCommand(ctx, []string{"tcp", "127.0.0.1:0", "db", "--connect.url", proxyPort.URL, "--grace-period", "100ms"}, io.Discard, &stderr, listening)
	}()
	var f *forward.Forwarder
	select {
	case f = <-listening:
	case code := <-done:
		t.Fatalf("pico forward exited with %d: %s", code, stderr.String())
	}

	c, err := net.Dial("tcp", f.Addr().String())
	require.NoError(t, err)
	_, err = io.WriteString(c, "select 1")
	require.NoError(t, err)
	got := make([]byte, len("select 1"))
	_, err = io.ReadFull(c, got)
	require.NoError(t, err)
	require.Equal(t, "select 1", string(got))
	c.Close()

	cancel() // SIGTERM
	select {
	case code := <-done:
		require.Equal(t, 0, code, stderr.String())
	case <-time.After(cmdWait):
		t.Fatal("pico forward did not exit after the signal")
	}
}
