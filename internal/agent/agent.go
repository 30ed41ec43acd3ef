// Package agent is Pico's upstream agent: it registers endpoints with a
// Pico server and forwards their traffic to local services.
//
// For every endpoint the agent dials a WebSocket to
// <connect.url>/pico/v1/upstream/<endpoint>, runs a yamux client session
// over it and serves every stream the server opens: HTTP endpoints
// by sending each request to the local service over a pooled keep-alive
// connection (streaming bodies, trailers and WebSocket upgrades pass
// through; Host and X-Forwarded-* stay as the server set them), TCP
// endpoints by piping each stream to a new TCP
// connection to the local service.
//
// The agent reconnects whenever a connection ends for a reason other than
// its own shutdown: at once after a connection that had been up for a
// while (and as soon as the server announces it is going away), then with
// exponential backoff from 100 ms to 15 s with jitter (at most 400 ms while
// connections are refused outright, which costs a server nothing and
// means it is restarting). A server that
// refuses an endpoint with 400 Bad Request (an invalid endpoint ID) is
// permanent: Run stops and returns an error naming the endpoint. Other
// refusals (5xx, other 4xx) and network errors are retried.
//
// When Run's context is cancelled (SIGTERM), the agent tells the server
// to open no more streams (yamux GoAway), lets in-flight requests and TCP
// connections finish within the grace period, then closes its
// connections and returns.
//
// In-process use:
//
//	cfg := config.DefaultAgent()
//	cfg.Connect.URL = "http://pico:8001"
//	cfg.Endpoints = []agent.Endpoint{{ID: "my-endpoint", Protocol: "http", Addr: "3000"}}
//	a, err := agent.New(*cfg, logger)
//	go a.Run(ctx)
//	err = a.WaitRegistered(ctx) // every endpoint is routable now
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pico-proxy/pico/internal/config"
	"github.com/pico-proxy/pico/internal/tlsconfig"
)

// Config is the agent's configuration; config.Agent documents every key.
// Start from config.DefaultAgent().
type Config = config.Agent

// Endpoint is one endpoint to register and its local service.
type Endpoint = config.AgentEndpoint

// Agent keeps one upstream connection per configured endpoint.
type Agent struct {
	cfg       Config
	logger    *slog.Logger
	endpoints []*endpoint
	// server is the client dialling the server (connect.tls.*).
	server *http.Client
	// random returns a number in [0, 1) for backoff jitter.
	random func() float64
	// healthyAfter is how long a connection must last for its end to be
	// followed by an immediate reconnect (healthyAfter; tests shorten it).
	healthyAfter time.Duration

	started atomic.Bool

	mu           sync.Mutex
	unregistered int           // endpoints that never registered yet
	registered   chan struct{} // closed when unregistered reaches 0

	done chan struct{} // closed when Run returns
	err  error         // Run's result, set before done is closed
}

// New validates cfg and returns an agent ready to Run. It needs at least
// one endpoint.
func New(cfg Config, logger *slog.Logger) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("agent configuration: %w", err)
	}
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("agent configuration: no endpoints; give one on the command line (pico agent http|tcp ENDPOINT ADDR) or list them under endpoints in the --config.path file")
	}
	logger = logger.With("subsystem", "agent")
	server, err := tlsconfig.WebSocketClient(cfg.Connect.TLS, "connect.tls", logger)
	if err != nil {
		return nil, fmt.Errorf("agent configuration: %w", err)
	}
	if _, err := cfg.Connect.BearerToken("connect"); err != nil {
		return nil, fmt.Errorf("agent configuration: %w", err)
	}
	a := &Agent{
		server:       server,
		cfg:          cfg,
		logger:       logger,
		random:       rand.Float64,
		healthyAfter: healthyAfter,
		unregistered: len(cfg.Endpoints),
		registered:   make(chan struct{}),
		done:         make(chan struct{}),
	}
	for _, ep := range cfg.Endpoints {
		e, err := newEndpoint(a, ep)
		if err != nil {
			return nil, err
		}
		a.endpoints = append(a.endpoints, e)
	}
	return a, nil
}

// Run connects every endpoint and serves its traffic until ctx is
// cancelled, then drains gracefully (see the package documentation) and
// returns nil. It returns an error naming the endpoint when the server
// refuses one permanently (after draining the others). Run may be called
// once.
func (a *Agent) Run(ctx context.Context) error {
	if !a.started.CompareAndSwap(false, true) {
		return errors.New("agent: Run may be called only once")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	errs := make([]error, len(a.endpoints))
	var wg sync.WaitGroup
	for i, e := range a.endpoints {
		wg.Go(func() {
			if err := e.run(ctx); err != nil {
				errs[i] = err
				cancel() // a misconfigured agent stops as a whole
			}
		})
	}
	wg.Wait()
	a.server.CloseIdleConnections()
	a.err = errors.Join(errs...)
	close(a.done)
	if a.err != nil {
		a.logger.Error("agent stopped", "error", a.err)
	} else {
		a.logger.Info("agent stopped")
	}
	return a.err
}

// WaitRegistered blocks until every endpoint has registered with the
// server at least once (the server answered 101 Switching Protocols, so it
// routes to the endpoint), Run has returned, or ctx is done.
func (a *Agent) WaitRegistered(ctx context.Context) error {
	select {
	case <-a.registered:
		return nil
	case <-a.done:
		select {
		case <-a.registered:
			return nil
		default:
		}
		if a.err != nil {
			return fmt.Errorf("agent stopped before every endpoint registered: %w", a.err)
		}
		return errors.New("agent stopped before every endpoint registered")
	case <-ctx.Done():
		return fmt.Errorf("waiting for endpoints to register: %w", ctx.Err())
	}
}

// markRegistered records an endpoint's first registration.
func (a *Agent) markRegistered() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.unregistered--
	if a.unregistered == 0 {
		close(a.registered)
	}
}
