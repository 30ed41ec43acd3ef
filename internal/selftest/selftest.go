// Package selftest checks a running Pico cluster from the outside, as the Helm chart's
// `helm test` pod does (`pico selftest`):
//
//  1. membership: every member's admin API, addressed one by one, reports exactly the
//     expected number of `active` members, and all of them report the same member IDs, so
//     every pod is in one cluster;
//  2. routing: an in-process HTTP upstream on 127.0.0.1 is registered under an endpoint ID
//     (Config.Endpoint, else a random `selftest-…` one) by an agent connected to the upstream
//     URL (the client Service), and requests sent to the proxy URL (the client Service again,
//     so they land on any member) with `x-pico-endpoint` must reach it and carry its answer
//     back.
//
// Both steps retry until the deadline, since members and routes converge over gossip. Each
// port may serve TLS (https:// URLs) and require a token (admin.auth, proxy.auth, auth):
// Config.Admin, Config.Proxy and Config.Upstream hold the credentials presented there, the
// same `connect`-style settings the other client commands take. A refused certificate or
// token does not heal by waiting, so it ends the check at once with the flag to set. The
// agent retries refusals like any agent, so before starting it the check makes one
// registration handshake of its own with the upstream credentials and stops at a refusal.
package selftest

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/pico-proxy/pico/internal/adminapi"
	"github.com/pico-proxy/pico/internal/config"
	"github.com/pico-proxy/pico/internal/protocol"
	"github.com/pico-proxy/pico/internal/tlsconfig"
)

// Config is what to check.
type Config struct {
	// AdminURLs are the admin API base URLs of every member, e.g.
	// http://pico-0.pico-headless.default.svc:8002.
	AdminURLs []string
	// Admin is what the admin API requests present: a bearer token for a server with
	// admin.auth, and for https:// admin URLs how the server's certificate is verified plus
	// an optional client certificate (flags --admin.token, --admin.token-file, --admin.tls.*).
	Admin config.Credentials
	// ExpectMembers is the number of active members every member must report.
	ExpectMembers int
	// ProxyURL is the base URL of the proxy port (the client Service).
	ProxyURL string
	// Proxy is what the requests through the proxy port present: a bearer token for a server
	// with proxy.auth, and for an https:// ProxyURL how the certificate is verified plus an
	// optional client certificate (flags --proxy.token, --proxy.token-file, --proxy.tls.*).
	Proxy config.Credentials
	// UpstreamURL is the base URL of the upstream port the agent connects to (http, https,
	// ws or wss).
	UpstreamURL string
	// Upstream is what the test agent presents to the upstream port: a token that the
	// server's auth section accepts for Endpoint, and TLS settings for an https:// or wss://
	// UpstreamURL (flags --upstream.token, --upstream.token-file, --upstream.tls.*).
	Upstream config.Credentials
	// Endpoint is the endpoint ID the test upstream registers and the requests name; empty
	// means a random `selftest-<hex>` one. Tokens whose pico.endpoints claim is required
	// (require_endpoints_claim) must list it, so with those set a fixed name.
	Endpoint string
	// Requests is how many consecutive requests through the proxy must succeed.
	Requests int
	// PollInterval is the pause between two attempts of a step.
	PollInterval time.Duration
	// Logger receives the agent's logs (warnings and errors are useful on failure).
	Logger *slog.Logger
}

// Validate names the first missing or malformed setting.
func (c Config) Validate() error {
	if len(c.AdminURLs) == 0 {
		return errors.New("--admin-url: give the admin URL of every member (repeat the flag)")
	}
	plain := ""
	for _, u := range c.AdminURLs {
		if err := checkURL("--admin-url", u); err != nil {
			return err
		}
		if plain == "" && !strings.HasPrefix(u, "https://") {
			plain = u
		}
	}
	// TLS settings with a plain http:// URL would be silently unused.
	if err := c.Admin.Validate("admin", "admin_url", cmp.Or(plain, c.AdminURLs[0])); err != nil {
		return err
	}
	if c.ExpectMembers < 1 {
		return fmt.Errorf("--expect-members is %d: it must be at least 1", c.ExpectMembers)
	}
	if err := checkURL("--proxy-url", c.ProxyURL); err != nil {
		return err
	}
	if err := c.Proxy.Validate("proxy", "proxy_url", c.ProxyURL); err != nil {
		return err
	}
	if err := checkURL("--upstream-url", c.UpstreamURL, "ws", "wss"); err != nil {
		return err
	}
	if err := c.Upstream.Validate("upstream", "upstream_url", c.UpstreamURL); err != nil {
		return err
	}
	if c.Endpoint != "" {
		if err := protocol.ValidateEndpointID(c.Endpoint); err != nil {
			return fmt.Errorf("--endpoint: %w", err)
		}
	}
	if c.Requests < 1 {
		return fmt.Errorf("--requests is %d: it must be at least 1", c.Requests)
	}
	return nil
}

// checkURL checks a base URL given with flag: http://, https:// or one of the extra schemes.
func checkURL(flag, raw string, extraSchemes ...string) error {
	schemes := append([]string{"http", "https"}, extraSchemes...)
	u, err := url.Parse(raw)
	if err != nil || !slices.Contains(schemes, u.Scheme) || u.Host == "" {
		return fmt.Errorf("%s %q: want an %s:// URL with a host, e.g. http://pico:8000", flag, raw, strings.Join(schemes, ":// or "))
	}
	return nil
}

// Run performs both checks, writing one line per finding to out, and returns nil when the
// cluster passed. ctx bounds the whole run.
func Run(ctx context.Context, cfg Config, out io.Writer) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	// Every credential file is read before the first request: a wrong path fails at once.
	adminClient, err := tlsconfig.HTTPClient(cfg.Admin.TLS, "admin.tls", requestTimeout, cfg.Logger)
	if err != nil {
		return err
	}
	defer adminClient.CloseIdleConnections()
	r := &routing{cfg: cfg, proxy: proxyLeg(cfg.Proxy), upstream: upstreamLeg(cfg.Upstream)}
	if r.proxyClient, err = tlsconfig.HTTPClient(cfg.Proxy.TLS, "proxy.tls", requestTimeout, cfg.Logger); err != nil {
		return err
	}
	defer r.proxyClient.CloseIdleConnections()
	if r.upstreamClient, err = tlsconfig.WebSocketClient(cfg.Upstream.TLS, "upstream.tls", cfg.Logger); err != nil {
		return err
	}
	for _, l := range []leg{r.proxy, r.upstream} {
		if _, err := l.token(); err != nil {
			return err
		}
	}

	start := time.Now()
	ids, err := waitForMembers(ctx, adminClient, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "membership: all %d members report the same %d active members after %s: %s\n",
		len(cfg.AdminURLs), cfg.ExpectMembers, since(start), strings.Join(ids, ", "))

	start = time.Now()
	if err := r.run(ctx, out); err != nil {
		return err
	}
	fmt.Fprintf(out, "routing: %d consecutive requests through %s reached the test upstream (%s)\n",
		cfg.Requests, cfg.ProxyURL, since(start))
	return nil
}

// requestTimeout bounds one request to a member.
const requestTimeout = 5 * time.Second

func since(t time.Time) time.Duration { return time.Since(t).Round(time.Millisecond) }

// view is one member's answer, or why there is none.
type view struct {
	active []string // sorted IDs of active members
	all    int
	err    error
}

func (v view) String() string {
	if v.err != nil {
		return v.err.Error()
	}
	return fmt.Sprintf("%d active of %d known [%s]", len(v.active), v.all, strings.Join(v.active, " "))
}

// waitForMembers polls every admin URL until all report ExpectMembers active members with
// identical IDs, and returns those IDs.
func waitForMembers(ctx context.Context, client *http.Client, cfg Config) ([]string, error) {
	var views []view
	admin := adminLeg(cfg.Admin)
	for {
		// Read every round, so a token file renewed in place is picked up.
		token, err := admin.token()
		if err != nil {
			return nil, fmt.Errorf("membership: %w", err)
		}
		round := make([]view, len(cfg.AdminURLs))
		for i, u := range cfg.AdminURLs {
			round[i] = fetchView(ctx, client, admin, u, token)
			if errors.Is(round[i].err, errRefused) {
				return nil, fmt.Errorf("membership: %s: %w", u, round[i].err)
			}
		}
		// A round cut short by the deadline says nothing about the members: report the
		// last complete one.
		if ctx.Err() == nil || views == nil {
			views = round
		}
		if ids, ok := agree(views, cfg.ExpectMembers); ok && ctx.Err() == nil {
			return ids, nil
		}
		if !sleep(ctx, cfg.PollInterval) {
			var b strings.Builder
			fmt.Fprintf(&b, "membership: members did not agree on %d active members before the deadline; last answers:", cfg.ExpectMembers)
			for i, u := range cfg.AdminURLs {
				fmt.Fprintf(&b, "\n  %s: %s", u, views[i])
			}
			return nil, errors.New(b.String())
		}
	}
}

// agree reports whether every view lists the same want active members.
func agree(views []view, want int) ([]string, bool) {
	for _, v := range views {
		if v.err != nil || len(v.active) != want || !slices.Equal(v.active, views[0].active) {
			return nil, false
		}
	}
	return views[0].active, true
}

// fetchView asks one member for its view of the cluster. token, when set, is sent as a bearer
// token.
func fetchView(ctx context.Context, client *http.Client, admin leg, base, token string) view {
	target := strings.TrimSuffix(base, "/") + adminapi.NodesPath
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return view{err: fmt.Errorf("build request: %w", err)}
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return view{err: admin.classify(fmt.Errorf("GET %s: %w", target, err))}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return view{err: fmt.Errorf("GET %s: reading the answer: %w", target, err)}
	}
	if resp.StatusCode != http.StatusOK {
		err := fmt.Errorf("GET %s: status %d: %s", target, resp.StatusCode, strings.TrimSpace(string(body)))
		if fix := admin.statusFix(resp.StatusCode, string(body), token != "", resp.TLS == nil, ""); fix != "" {
			err = refused(err, fix)
		}
		return view{err: err}
	}
	var nodes []adminapi.NodeSummary
	if err := json.Unmarshal(body, &nodes); err != nil {
		return view{err: fmt.Errorf("GET %s: not a JSON array of nodes: %w", target, err)}
	}
	v := view{all: len(nodes)}
	for _, n := range nodes {
		if n.Status == adminapi.StatusActive {
			v.active = append(v.active, n.ID)
		}
	}
	sort.Strings(v.active)
	return v
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
