package cluster

import (
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// verifyingServer is a real HTTP server on which node verifies every
// request; it answers "<sender id>" or "rejected: <error>".
func verifyingServer(t *testing.T, node *Cluster) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		from, err := node.VerifyForward(r)
		switch {
		case errors.Is(err, ErrNotForwarded):
			io.WriteString(w, "not forwarded")
		case err != nil:
			io.WriteString(w, "rejected: "+err.Error())
		default:
			io.WriteString(w, from)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func send(t *testing.T, r *http.Request) string {
	t.Helper()
	resp, err := http.DefaultClient.Do(r)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(body)
}

func TestForwardedRequestsVerifyAcrossTheWire(t *testing.T) {
	nodes := startCluster(t, 2)
	sender, receiver := nodes[0], nodes[1]
	srv := verifyingServer(t, receiver)

	newRequest := func(method, path string) *http.Request {
		r, err := http.NewRequest(method, srv.URL+path, strings.NewReader("body"))
		require.NoError(t, err)
		r.Host = "my-endpoint.example.com"
		return r
	}

	for _, path := range []string{"/", "/a/b?x=1&y=%2F", "/with%20space/%7Euser?q", "/_pico/v1/tcp/e1"} {
		r := newRequest(http.MethodPost, path)
		sender.SignForward(r)
		require.Equal(t, sender.LocalID(), send(t, r), "path %s", path)
	}
	r := newRequest(http.MethodGet, "/")
	r.Header.Set("X-Pico-Endpoint", "other")
	sender.SignForward(r)
	require.Equal(t, sender.LocalID(), send(t, r))

	require.Equal(t, "not forwarded", send(t, newRequest(http.MethodGet, "/")))

	failures := func(reason string) float64 {
		return counterValue(t, receiver.metrics.verifyFailures.WithLabelValues(reason))
	}
	for name, tc := range map[string]struct {
		tamper func(r *http.Request)
		reason string
	}{
		"forged signature": {func(r *http.Request) {
			r.Header.Set(ForwardSignatureHeader, "t="+strconv.FormatInt(time.Now().Unix(), 10)+",v1="+strings.Repeat("ab", 32))
		}, "bad_signature"},
		"client-made claim": {func(r *http.Request) {
			r.Header.Set(ForwardSignatureHeader, "deadbeef")
		}, "malformed"},
		"signature without sender": {func(r *http.Request) {
			r.Header.Del(ForwardedByHeader)
		}, "malformed"},
		"unknown node": {func(r *http.Request) {
			r.Header.Set(ForwardedByHeader, "not-a-member")
		}, "unknown_node"},
		"other member's name": {func(r *http.Request) {
			r.Header.Set(ForwardedByHeader, receiver.LocalID())
		}, "bad_signature"},
		"stale timestamp": {func(r *http.Request) {
			old := time.Now().Add(-2 * ForwardWindow).Unix()
			mac := forwardMAC(sender.secret, sender.LocalID(), old, r.Method, r.URL.RequestURI(), "my-endpoint")
			r.Header.Set(ForwardSignatureHeader, "t="+strconv.FormatInt(old, 10)+",v1="+hex.EncodeToString(mac))
		}, "stale"},
		"future timestamp": {func(r *http.Request) {
			future := time.Now().Add(2 * ForwardWindow).Unix()
			mac := forwardMAC(sender.secret, sender.LocalID(), future, r.Method, r.URL.RequestURI(), "my-endpoint")
			r.Header.Set(ForwardSignatureHeader, "t="+strconv.FormatInt(future, 10)+",v1="+hex.EncodeToString(mac))
		}, "stale"},
		"tampered URI": {func(r *http.Request) {
			r.URL.Path = "/admin"
		}, "bad_signature"},
		"tampered query": {func(r *http.Request) {
			r.URL.RawQuery = "x=2"
		}, "bad_signature"},
		"tampered method": {func(r *http.Request) {
			r.Method = http.MethodDelete
		}, "bad_signature"},
		"tampered endpoint header": {func(r *http.Request) {
			r.Header.Set("X-Piko-Endpoint", "victim")
		}, "bad_signature"},
		"tampered host": {func(r *http.Request) {
			r.Host = "victim.example.com"
		}, "bad_signature"},
	} {
		t.Run(name, func(t *testing.T) {
			before := failures(tc.reason)
			r := newRequest(http.MethodGet, "/a?x=1")
			sender.SignForward(r)
			tc.tamper(r)
			require.True(t, strings.HasPrefix(send(t, r), "rejected: "))
			require.Equal(t, before+1, failures(tc.reason))
		})
	}
}

func TestForwardSignatureParsing(t *testing.T) {
	good := "t=1700000000,v1=" + strings.Repeat("0f", 32)
	ts, mac, err := parseForwardSignature(good)
	require.NoError(t, err)
	require.Equal(t, int64(1700000000), ts)
	require.Len(t, mac, 32)
	for _, bad := range []string{"", "t=1", "v1=ab", "t=x,v1=" + strings.Repeat("0f", 32), "t=1,v1=zz", "t=1,v1=" + strings.Repeat("0f", 31), "1,2"} {
		_, _, err := parseForwardSignature(bad)
		require.Error(t, err, bad)
	}
}

func FuzzParseForwardSignature(f *testing.F) {
	f.Add("t=1700000000,v1=" + strings.Repeat("0f", 32))
	f.Add("t=-1,v1=")
	f.Add(",")
	f.Fuzz(func(t *testing.T, s string) {
		ts, mac, err := parseForwardSignature(s)
		if err != nil {
			return
		}
		require.Len(t, mac, 32)
		again, _, err := parseForwardSignature("t=" + strconv.FormatInt(ts, 10) + ",v1=" + hex.EncodeToString(mac))
		require.NoError(t, err)
		require.Equal(t, ts, again)
	})
}
