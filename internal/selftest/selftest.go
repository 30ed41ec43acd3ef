// Package selftest checks a running Pico cluster from the outside, as the Helm chart's
// `helm test` pod does (`pico selftest`):
//
//  1. membership: every member's admin API, addressed one by one, reports exactly the
//     expected number of `active` members, and all of them report the same member IDs, so
//     every pod is in one cluster;
//  2. routing: an in-process HTTP upstream on 127.0.0.1 is registered under a random endpoint
//     ID by an agent connected to the upstream URL (the client Service), and requests sent to
//     the proxy URL (the client Service again, so they land on any member) with
//     `x-pico-endpoint` must reach it and carry its answer back.
//
// Both steps retry until the deadline, since members and routes converge over gossip.
package selftest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/pico-proxy/pico/internal/agent"
	"github.com/pico-proxy/pico/internal/config"
)

// Config is what to check.
type Config struct {
	// AdminURLs are the admin API base URLs of every member, e.g.
	// http://pico-0.pico-headless.default.svc:8002.
	AdminURLs []string
	// ExpectMembers is the number of active members every member must report.
	ExpectMembers int
	// ProxyURL is the base URL of the proxy port (the client Service).
	ProxyURL string
	// UpstreamURL is the base URL of the upstream port the agent connects to.
	UpstreamURL string
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
	for _, u := range c.AdminURLs {
		if err := checkURL("--admin-url", u); err != nil {
			return err
		}
	}
	if c.ExpectMembers < 1 {
		return fmt.Errorf("--expect-members is %d: it must be at least 1", c.ExpectMembers)
	}
	if err := checkURL("--proxy-url", c.ProxyURL); err != nil {
		return err
	}
	if err := checkURL("--upstream-url", c.UpstreamURL); err != nil {
		return err
	}
	if c.Requests < 1 {
		return fmt.Errorf("--requests is %d: it must be at least 1", c.Requests)
	}
	return nil
}

func checkURL(flag, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%s %q: want an http:// or https:// URL with a host, e.g. http://pico:8000", flag, raw)
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
	client := &http.Client{Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()

	start := time.Now()
	ids, err := waitForMembers(ctx, client, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "membership: all %d members report the same %d active members after %s: %s\n",
		len(cfg.AdminURLs), cfg.ExpectMembers, since(start), strings.Join(ids, ", "))

	start = time.Now()
	if err := checkRouting(ctx, client, cfg, out); err != nil {
		return err
	}
	fmt.Fprintf(out, "routing: %d consecutive requests through %s reached the test upstream (%s)\n",
		cfg.Requests, cfg.ProxyURL, since(start))
	return nil
}

func since(t time.Time) time.Duration { return time.Since(t).Round(time.Millisecond) }

// node is the part of GET /status/cluster/nodes the check reads.
type node struct {
	ID     string `json:"id"`
	Status string `json:"status"`
}

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
	for {
		round := make([]view, len(cfg.AdminURLs))
		for i, u := range cfg.AdminURLs {
			round[i] = fetchView(ctx, client, u)
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

func fetchView(ctx context.Context, client *http.Client, base string) view {
	target := strings.TrimSuffix(base, "/") + "/status/cluster/nodes"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return view{err: fmt.Errorf("build request: %w", err)}
	}
	resp, err := client.Do(req)
	if err != nil {
		return view{err: fmt.Errorf("GET %s: %w", target, err)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return view{err: fmt.Errorf("GET %s: reading the answer: %w", target, err)}
	}
	if resp.StatusCode != http.StatusOK {
		return view{err: fmt.Errorf("GET %s: status %d: %s", target, resp.StatusCode, strings.TrimSpace(string(body)))}
	}
	var nodes []node
	if err := json.Unmarshal(body, &nodes); err != nil {
		return view{err: fmt.Errorf("GET %s: not a JSON array of nodes: %w", target, err)}
	}
	v := view{all: len(nodes)}
	for _, n := range nodes {
		if n.Status == "active" {
			v.active = append(v.active, n.ID)
		}
	}
	sort.Strings(v.active)
	return v
}

// checkRouting registers a test upstream through an agent and sends requests to it through
// the proxy URL.
func checkRouting(ctx context.Context, client *http.Client, cfg Config, out io.Writer) error {
	endpoint := "selftest-" + randomHex(6)
	secret := randomHex(16)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("routing: start the test upstream: %w", err)
	}
	upstream := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprintf(w, "%s %s %s", secret, r.Method, r.URL.Path)
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	go func() { _ = upstream.Serve(ln) }()
	defer upstream.Close()

	acfg := config.DefaultAgent()
	acfg.Connect.URL = cfg.UpstreamURL
	acfg.GracePeriod = 5 * time.Second
	acfg.Endpoints = []agent.Endpoint{{ID: endpoint, Protocol: config.ProtocolHTTP, Addr: "http://" + ln.Addr().String()}}
	a, err := agent.New(*acfg, cfg.Logger)
	if err != nil {
		return fmt.Errorf("routing: %w", err)
	}
	agentCtx, stopAgent := context.WithCancel(ctx)
	agentDone := make(chan error, 1)
	go func() { agentDone <- a.Run(agentCtx) }()
	defer func() {
		stopAgent()
		<-agentDone
	}()
	if err := a.WaitRegistered(ctx); err != nil {
		return fmt.Errorf("routing: the agent could not register endpoint %s at %s: %w", endpoint, cfg.UpstreamURL, err)
	}
	fmt.Fprintf(out, "routing: agent registered endpoint %s through %s\n", endpoint, cfg.UpstreamURL)

	var (
		ok      int
		lastErr error
		path    = "/selftest/" + randomHex(4)
		want    = secret + " GET " + path
		target  = strings.TrimSuffix(cfg.ProxyURL, "/") + path
	)
	for ok < cfg.Requests {
		if err := proxyRequest(ctx, client, target, endpoint, want); err != nil {
			ok, lastErr = 0, err
			if !sleep(ctx, cfg.PollInterval/4) {
				return fmt.Errorf("routing: requests through %s did not reach the test upstream before the deadline; last failure: %w", cfg.ProxyURL, lastErr)
			}
			continue
		}
		ok++
	}
	return nil
}

func proxyRequest(ctx context.Context, client *http.Client, target, endpoint, want string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("x-pico-endpoint", endpoint)
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", target, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return fmt.Errorf("GET %s: reading the answer: %w", target, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d: %s", target, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	if string(body) != want {
		return fmt.Errorf("GET %s: answer %q is not the test upstream's %q", target, body, want)
	}
	return nil
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
