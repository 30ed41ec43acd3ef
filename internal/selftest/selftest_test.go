package selftest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pico-proxy/pico/internal/config"
	"github.com/pico-proxy/pico/internal/server"
)

// startServer runs a real single-node Pico server on loopback ports; edits change its
// configuration first.
func startServer(t *testing.T, edits ...func(*config.Server)) *server.Server {
	t.Helper()
	cfg := config.DefaultServer()
	cfg.Proxy.BindAddr = "127.0.0.1:0"
	cfg.Upstream.BindAddr = "127.0.0.1:0"
	cfg.Admin.BindAddr = "127.0.0.1:0"
	cfg.Gossip.BindAddr = "127.0.0.1:0"
	cfg.Server.DrainDelay, cfg.Proxy.UpstreamWait = 0, 0
	for _, edit := range edits {
		edit(cfg)
	}
	require.NoError(t, cfg.Validate())
	srv, err := server.New(cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	require.NoError(t, srv.Start(context.Background()))
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	return srv
}

func urls(s *server.Server) (admin, proxy, upstream string) {
	a := s.Addrs()
	return "http://" + a.Admin, "http://" + a.Proxy, "http://" + a.Upstream
}

func TestRunPassesOnAWorkingNode(t *testing.T) {
	srv := startServer(t)
	admin, proxy, upstream := urls(srv)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	err := Run(ctx, Config{AdminURLs: []string{admin}, ExpectMembers: 1, ProxyURL: proxy, UpstreamURL: upstream,
		Requests: 10, PollInterval: 50 * time.Millisecond}, &out)
	require.NoError(t, err, out.String())
	assert.Contains(t, out.String(), "membership: all 1 members report the same 1 active members")
	assert.Contains(t, out.String(), srv.ID())
	assert.Contains(t, out.String(), "routing: agent registered endpoint selftest-")
	assert.Contains(t, out.String(), "routing: 10 consecutive requests through "+proxy+" reached the test upstream")
	assert.Eventually(t, func() bool { return len(srv.Registry().Counts()) == 0 },
		10*time.Second, 20*time.Millisecond, "the test agent must disconnect when the check ends")
}

func TestRunFailsWhenMembersFormSeparateClusters(t *testing.T) {
	a, b := startServer(t), startServer(t)
	adminA, proxy, upstream := urls(a)
	adminB, _, _ := urls(b)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := Run(ctx, Config{AdminURLs: []string{adminA, adminB}, ExpectMembers: 2, ProxyURL: proxy, UpstreamURL: upstream,
		Requests: 1, PollInterval: 50 * time.Millisecond}, &bytes.Buffer{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "members did not agree on 2 active members")
	assert.Contains(t, err.Error(), adminA+": 1 active of 1 known ["+a.ID()+"]")
	assert.Contains(t, err.Error(), adminB+": 1 active of 1 known ["+b.ID()+"]")
}

func TestRunFailsWhenAMemberIsUnreachable(t *testing.T) {
	srv := startServer(t)
	admin, proxy, upstream := urls(srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	gone := "http://" + ln.Addr().String()
	require.NoError(t, ln.Close())
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err = Run(ctx, Config{AdminURLs: []string{admin, gone}, ExpectMembers: 1, ProxyURL: proxy, UpstreamURL: upstream,
		Requests: 1, PollInterval: 50 * time.Millisecond}, &bytes.Buffer{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), gone+": GET "+gone+"/status/cluster/nodes")
	assert.Contains(t, err.Error(), "connection refused")
}

func TestRunFailsWhenTheProxyCannotReachTheUpstream(t *testing.T) {
	// The agent registers with one node and the requests go to another, unrelated node: it
	// has no route to the endpoint.
	a, b := startServer(t), startServer(t)
	admin, _, upstream := urls(a)
	_, otherProxy, _ := urls(b)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var out bytes.Buffer
	err := Run(ctx, Config{AdminURLs: []string{admin}, ExpectMembers: 1, ProxyURL: otherProxy, UpstreamURL: upstream,
		Requests: 1, PollInterval: 50 * time.Millisecond}, &out)
	require.Error(t, err)
	assert.Contains(t, out.String(), "routing: agent registered endpoint")
	assert.Contains(t, err.Error(), "requests through "+otherProxy+" did not reach the test upstream")
	assert.Contains(t, err.Error(), "status 502")
}

func TestValidate(t *testing.T) {
	good := Config{AdminURLs: []string{"http://pico-0.pico-headless:8002"}, ExpectMembers: 3,
		ProxyURL: "http://pico:8000", UpstreamURL: "http://pico:8001", Requests: 1}
	require.NoError(t, good.Validate())
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"no admin URL", func(c *Config) { c.AdminURLs = nil }, "--admin-url: give the admin URL of every member"},
		{"admin URL without scheme", func(c *Config) { c.AdminURLs = []string{"pico-0:8002"} }, `--admin-url "pico-0:8002"`},
		{"zero members", func(c *Config) { c.ExpectMembers = 0 }, "--expect-members is 0"},
		{"proxy URL scheme", func(c *Config) { c.ProxyURL = "ftp://pico" }, "--proxy-url"},
		{"upstream URL empty", func(c *Config) { c.UpstreamURL = "" }, "--upstream-url"},
		{"no requests", func(c *Config) { c.Requests = 0 }, "--requests is 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			c.AdminURLs = append([]string(nil), good.AdminURLs...)
			tc.edit(&c)
			assert.ErrorContains(t, c.Validate(), tc.want)
		})
	}
}

func TestAFailureCutShortByTheDeadlineKeepsTheOneBefore(t *testing.T) {
	live := context.Background()
	over, cancel := context.WithCancel(context.Background())
	cancel()
	status502 := errors.New("status 502")
	deadline := fmt.Errorf("GET: %w", context.DeadlineExceeded)

	assert.Equal(t, deadline, informative(live, status502, deadline), "while the deadline is ahead, the newest failure is reported")
	assert.Equal(t, status502, informative(over, status502, deadline), "a request cut by the deadline keeps the failure before it")
	assert.Equal(t, deadline, informative(over, nil, deadline), "with nothing before it, the cut request is all there is")
}
