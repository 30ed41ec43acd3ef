package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/pico-proxy/pico/internal/server"
	"github.com/pico-proxy/pico/internal/testutil"
	"github.com/pico-proxy/pico/internal/tlsconfig/tlstest"
)

// startSecuredServer runs `pico server` with args on loopback ports until
// the test ends and returns its addresses.
func startSecuredServer(t *testing.T, args ...string) server.Addrs {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addrs := make(chan server.Addrs, 1)
	done := make(chan int, 1)
	var stderr testutil.LogBuffer
	go func() {
		done <- serverCommand(ctx, append([]string{
			"--proxy.bind-addr", "127.0.0.1:0", "--upstream.bind-addr", "127.0.0.1:0",
			"--admin.bind-addr", "127.0.0.1:0", "--gossip.bind-addr", "127.0.0.1:0",
			"--server.graceful-shutdown-timeout", "5s",
		}, args...), io.Discard, &stderr, func(a server.Addrs) { addrs <- a })
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		if t.Failed() {
			t.Logf("server logs:\n%s", stderr.String())
		}
	})
	select {
	case a := <-addrs:
		return a
	case code := <-done:
		done <- code
		t.Fatalf("pico server exited with %d: %s", code, stderr.String())
	}
	return server.Addrs{}
}

func TestStatusOverTLSWithAdminAuth(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "pico CA")
	cert := ca.Server(t, "pico").Write(t, dir, "tls")
	caFile := tlstest.WriteFile(t, dir, "ca.crt", ca.PEM)
	secretFile := tlstest.WriteFile(t, dir, "admin-secret", []byte("admin-secret-0123456789abcdef0123456789\n"))
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"aud": "pico-admin", "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString([]byte("admin-secret-0123456789abcdef0123456789"))
	require.NoError(t, err)
	tokenFile := filepath.Join(dir, "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte(token+"\n"), 0o600))

	a := startSecuredServer(t,
		"--admin.tls.cert", cert.Cert, "--admin.tls.key", cert.Key,
		"--admin.auth.token-hmac-secret-key", secretFile, "--admin.auth.token-audience", "pico-admin")
	adminURL := "https://" + a.Admin

	status := func(args ...string) (int, string, string) {
		var stdout, stderr strings.Builder
		code := runStatus(append([]string{"upstream", "endpoints", "--server.url", adminURL}, args...), &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}
	code, stdout, stderr := status("--connect.tls.ca", caFile, "--connect.token-file", tokenFile)
	require.Equal(t, 0, code, stderr)
	require.Equal(t, "no endpoints with a connected upstream\n", stdout)

	code, _, stderr = status("--connect.tls.insecure-skip-verify", "--connect.token", token)
	require.Equal(t, 0, code, stderr)

	code, _, stderr = status("--connect.tls.ca", caFile)
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "answered 401")
	require.Contains(t, stderr, "--connect.token")

	code, _, stderr = status("--connect.token-file", tokenFile)
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "certificate signed by unknown authority")
	require.NotContains(t, stderr, token)
}

func TestServerRefusesUnusableSecurityFiles(t *testing.T) {
	dir := t.TempDir()
	short := tlstest.WriteFile(t, dir, "short-secret", []byte("too short"))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--auth.token-hmac-secret-key", short}, "auth.token_hmac_secret_key (--auth.token-hmac-secret-key): the secret is 9 bytes"},
		{[]string{"--proxy.tls.cert", filepath.Join(dir, "missing.crt"), "--proxy.tls.key", filepath.Join(dir, "missing.key")}, "proxy.tls.cert (--proxy.tls.cert)"},
		{[]string{"--gossip.secret-key", "bm90IGEga2V5"}, "gossip.secret_key (--gossip.secret-key): the value decodes to 9 bytes"},
	} {
		code, stderr := runServerForTest(t, tc.args...)
		require.Equal(t, 1, code, "%v: %s", tc.args, stderr)
		require.Contains(t, stderr, tc.want)
		require.Equal(t, 1, strings.Count(strings.TrimSpace(stderr), "\n")+1, "one line: %q", stderr)
	}
}
