package selftest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/pico-proxy/pico/internal/agent"
	"github.com/pico-proxy/pico/internal/config"
	"github.com/pico-proxy/pico/internal/protocol"
)

// routing is the second step: a test upstream registered through the upstream port must
// answer the requests sent to the proxy port.
type routing struct {
	cfg             Config
	proxy, upstream leg
	proxyClient     *http.Client // requests to the proxy port (--proxy.tls.*)
	upstreamClient  *http.Client // the registration handshake checking --upstream.*
}

// run registers a test upstream through an agent and sends requests to it through the proxy
// URL.
func (r *routing) run(ctx context.Context, out io.Writer) error {
	cfg := r.cfg
	endpoint := cfg.Endpoint
	if endpoint == "" {
		endpoint = "selftest-" + randomHex(6)
	}
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

	if err := r.checkRegistration(ctx, endpoint); err != nil {
		return err
	}

	acfg := config.DefaultAgent()
	acfg.Connect.URL = cfg.UpstreamURL
	acfg.Connect.Credentials = cfg.Upstream
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
		if err := r.proxyRequest(ctx, target, endpoint, want); err != nil {
			if errors.Is(err, errRefused) {
				return fmt.Errorf("routing: %w", err)
			}
			ok, lastErr = 0, informative(ctx, lastErr, err)
			if !sleep(ctx, cfg.PollInterval/4) {
				return fmt.Errorf("routing: requests through %s did not reach the test upstream before the deadline; last failure: %w", cfg.ProxyURL, lastErr)
			}
			continue
		}
		ok++
	}
	return nil
}

// checkRegistration makes registration handshakes for endpoint with the upstream credentials
// until one succeeds (and closes it at once), and fails at once when the upstream port
// refuses them or the selftest refuses its certificate. The agent would retry those like any
// other failure until the deadline.
func (r *routing) checkRegistration(ctx context.Context, endpoint string) error {
	base, err := url.Parse(r.cfg.UpstreamURL)
	if err != nil {
		return fmt.Errorf("--upstream-url: %w", err)
	}
	base.Path = strings.TrimSuffix(base.Path, "/") + protocol.UpstreamPathPrefix + endpoint
	base.RawPath = ""
	target := base.String()
	plain := base.Scheme == "http" || base.Scheme == "ws"
	var lastErr error
	for {
		err := r.register(ctx, target, endpoint, plain)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, errRefused):
			return fmt.Errorf("routing: registering endpoint %s at %s: %w", endpoint, r.cfg.UpstreamURL, err)
		}
		lastErr = informative(ctx, lastErr, err)
		if !sleep(ctx, r.cfg.PollInterval) {
			return fmt.Errorf("routing: the upstream port at %s did not accept endpoint %s before the deadline; last failure: %w", r.cfg.UpstreamURL, endpoint, lastErr)
		}
	}
}

// register makes one registration handshake and closes the connection.
func (r *routing) register(ctx context.Context, target, endpoint string, plain bool) error {
	token, err := r.upstream.token()
	if err != nil {
		return refused(err, "") // names --upstream.token-file
	}
	header := http.Header{}
	if token != "" {
		header.Set("Authorization", "Bearer "+token)
	}
	dialCtx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	conn, err := protocol.DialSession(dialCtx, target, header, r.upstreamClient)
	if err == nil {
		return conn.Close()
	}
	var dialErr *protocol.DialError
	if errors.As(err, &dialErr) {
		err = fmt.Errorf("GET %s: status %d: %s", target, dialErr.StatusCode, strings.TrimSpace(dialErr.Body))
		if fix := r.upstream.statusFix(dialErr.StatusCode, dialErr.Body, token != "", plain, endpoint); fix != "" {
			return refused(err, fix)
		}
		return err
	}
	return r.upstream.classify(err)
}

// proxyRequest sends one request for endpoint through the proxy port and checks that the
// test upstream's answer want came back.
func (r *routing) proxyRequest(ctx context.Context, target, endpoint, want string) error {
	token, err := r.proxy.token()
	if err != nil {
		return refused(err, "") // names --proxy.token-file
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("x-pico-endpoint", endpoint)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := r.proxyClient.Do(req)
	if err != nil {
		return r.proxy.classify(fmt.Errorf("GET %s: %w", target, err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return fmt.Errorf("GET %s: reading the answer: %w", target, err)
	}
	if resp.StatusCode != http.StatusOK {
		err := fmt.Errorf("GET %s: status %d: %s", target, resp.StatusCode, strings.TrimSpace(string(body)))
		if fix := r.proxy.statusFix(resp.StatusCode, string(body), token != "", resp.TLS == nil, endpoint); fix != "" {
			return refused(err, fix)
		}
		return err
	}
	if string(body) != want {
		return fmt.Errorf("GET %s: answer %q is not the test upstream's %q", target, body, want)
	}
	return nil
}

// informative returns the failure worth reporting after an attempt failed with err: an attempt
// cut short by ctx's deadline says nothing about the member, so the previous failure, when
// there was one, stays the one reported.
func informative(ctx context.Context, previous, err error) error {
	if ctx.Err() != nil && previous != nil {
		return previous
	}
	return err
}
