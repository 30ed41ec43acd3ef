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
// Both steps retry until the deadline, since members and routes converge over gossip. The
// admin API may serve TLS (https:// admin URLs) and require a token (admin.auth): Config.Admin
// holds the credentials, the same `connect`-style settings the other client commands take.
// A refused certificate or token does not heal by waiting, so it ends the check at once.
package selftest

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
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
	"github.com/pico-proxy/pico/internal/tlsconfig"
)

// adminSection names the credentials of the admin API in errors and flags
// (--admin.token-file, --admin.tls.ca, ...).
const adminSection = "admin"

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
	plain := ""
	for _, u := range c.AdminURLs {
		if err := checkURL("--admin-url", u); err != nil {
			return err
		}
		if plain == "" && !strings.HasPrefix(u, "https://") {
			plain = u
		}
	}
	// TLS settings with a plain http:// admin URL would be silently unused.
	if err := c.Admin.Validate(adminSection, "admin_url", cmp.Or(plain, c.AdminURLs[0])); err != nil {
		return err
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
	adminClient, err := tlsconfig.HTTPClient(cfg.Admin.TLS, adminSection+".tls", requestTimeout, cfg.Logger)
	if err != nil {
		return err
	}
	defer adminClient.CloseIdleConnections()
	client := &http.Client{Timeout: requestTimeout}
	defer client.CloseIdleConnections()

	start := time.Now()
	ids, err := waitForMembers(ctx, adminClient, cfg)
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

// requestTimeout bounds one request to a member.
const requestTimeout = 5 * time.Second

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
		// Read every round, so a token file renewed in place is picked up.
		token, err := cfg.Admin.BearerToken(adminSection)
		if err != nil {
			return nil, fmt.Errorf("membership: %w", err)
		}
		round := make([]view, len(cfg.AdminURLs))
		for i, u := range cfg.AdminURLs {
			round[i] = fetchView(ctx, client, u, token, cfg.Admin.TLS.Cert != "")
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

// errRefused marks an answer that waiting will not change: the member refused the
// credentials, or the selftest refused the member's certificate.
var errRefused = errors.New("refused")

// refusal is an errRefused with the reason and the fix.
type refusal struct {
	err error  // what happened
	fix string // which setting to change
}

func (r *refusal) Error() string          { return r.err.Error() + "; " + r.fix }
func (r *refusal) Unwrap() []error        { return []error{r.err, errRefused} }
func refused(err error, fix string) error { return &refusal{err: err, fix: fix} }

// tlsFix names the setting that fixes a failed TLS handshake with the admin port, or "" when
// err is not a refused certificate or a TLS mismatch. clientCert tells whether a client
// certificate was sent.
func tlsFix(err error, clientCert bool) string {
	var (
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		verify   *tls.CertificateVerificationError
	)
	// crypto/tls reports the server's alerts as a net.OpError "remote error" around an
	// unexported type, so they are told apart by their text.
	alert := ""
	if op := (*net.OpError)(nil); errors.As(err, &op) && op.Op == "remote error" && op.Err != nil {
		alert = op.Err.Error()
	}
	switch {
	case strings.HasSuffix(alert, "bad certificate") && clientCert:
		return "the admin port refused the client certificate of --admin.tls.cert: it must be signed by a CA of the server's admin.tls.client_cas"
	case strings.HasSuffix(alert, "certificate required"), strings.HasSuffix(alert, "bad certificate"):
		return "the admin port requires a client certificate (admin.tls.client_cas): pass --admin.tls.cert and --admin.tls.key"
	case strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return "the admin port does not serve TLS: use http:// admin URLs"
	case errors.As(err, &unknown):
		return "trust the CA that signed the admin certificate with --admin.tls.ca"
	case errors.As(err, &hostname):
		return "the admin certificate does not name the host of --admin-url: give a name it lists with --admin.tls.server-name"
	case errors.As(err, &invalid), errors.As(err, &verify):
		return "the admin certificate is not valid: check the certificate the members serve (admin.tls.cert)"
	}
	return ""
}

// fetchView asks one member for its view of the cluster. token, when set, is sent as a bearer
// token; clientCert tells whether the client presents a certificate.
func fetchView(ctx context.Context, client *http.Client, base, token string, clientCert bool) view {
	target := strings.TrimSuffix(base, "/") + "/status/cluster/nodes"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return view{err: fmt.Errorf("build request: %w", err)}
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		err = fmt.Errorf("GET %s: %w", target, err)
		if fix := tlsFix(err, clientCert); fix != "" {
			err = refused(err, fix)
		}
		return view{err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return view{err: fmt.Errorf("GET %s: reading the answer: %w", target, err)}
	}
	if resp.StatusCode != http.StatusOK {
		err := fmt.Errorf("GET %s: status %d: %s", target, resp.StatusCode, strings.TrimSpace(string(body)))
		switch {
		case resp.StatusCode == http.StatusUnauthorized && token == "":
			err = refused(err, "the admin API requires a token (admin.auth): pass --admin.token-file")
		case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
			err = refused(err, "the admin API refused the token of --admin.token-file or --admin.token: check its key, audience, issuer and expiry against admin.auth")
		case resp.StatusCode == http.StatusBadRequest && resp.TLS == nil && strings.Contains(string(body), "HTTPS"):
			err = refused(err, "the admin port serves TLS (admin.tls): use https:// admin URLs")
		}
		return view{err: err}
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
