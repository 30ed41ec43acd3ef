package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/pico-proxy/pico/internal/agent"
	"github.com/pico-proxy/pico/internal/config"
)

// routableResult holds, for every new endpoint, how long after its
// registration each node first answered a request for it with 200.
type routableResult struct {
	Nodes   int
	Samples [][]time.Duration // [run][node]
	// Request is, per run and node, one more request's duration once the
	// endpoint is routable: the share of a sample that is not waiting.
	Request [][]time.Duration
}

// everywhere returns, per run, the time until the last node routed.
func (r *routableResult) everywhere() []time.Duration {
	out := make([]time.Duration, len(r.Samples))
	for i, s := range r.Samples {
		for _, d := range s {
			out[i] = max(out[i], d)
		}
	}
	return out
}

// column returns every run's time for one node.
func column(samples [][]time.Duration, node int) []time.Duration {
	out := make([]time.Duration, len(samples))
	for j, s := range samples {
		out[j] = s[node]
	}
	return out
}

// requests returns every request time of every node.
func (r *routableResult) requests() []time.Duration {
	var out []time.Duration
	for _, s := range r.Request {
		out = append(out, s...)
	}
	return out
}

// runRoutable connects an in-process agent (the real agent library) for a
// new endpoint to node 1 and, from the moment it reports the endpoint
// registered, sends a request for it to every node. A node that does not
// know the endpoint yet holds the request until the route appears (or
// answers 502 after its bounded wait, and the request is repeated), so
// the time to a 200 is the time until that node routes.
func (e *env) runRoutable() error {
	nodes, err := e.cluster()
	if err != nil {
		return err
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}, Timeout: 20 * time.Second}
	defer client.CloseIdleConnections()
	res := &routableResult{Nodes: len(nodes)}
	for run := range e.o.routableRuns {
		endpoint := fmt.Sprintf("routable-%02d", run+1)
		cfg := config.DefaultAgent()
		cfg.Connect.URL = nodes[0].upstreamURL()
		// The server keeps idle keep-alive streams, which hold the
		// agent's drain for the whole grace period: keep it short.
		cfg.GracePeriod = 200 * time.Millisecond
		cfg.Endpoints = []agent.Endpoint{{ID: endpoint, Protocol: "http", Addr: e.upstream}}
		a, err := agent.New(*cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			return err
		}
		ctx, cancel := context.WithCancel(context.Background())
		runDone := make(chan error, 1)
		go func() { runDone <- a.Run(ctx) }()
		regCtx, regCancel := context.WithTimeout(ctx, 20*time.Second)
		err = a.WaitRegistered(regCtx)
		regCancel()
		registered := time.Now()
		sample := make([]time.Duration, len(nodes))
		request := make([]time.Duration, len(nodes))
		errs := make([]error, len(nodes))
		if err == nil {
			var wg sync.WaitGroup
			for i, n := range nodes {
				wg.Go(func() {
					errs[i] = untilOK(client, n.proxyURL()+"/", endpoint, registered.Add(20*time.Second))
					sample[i] = time.Since(registered)
					if errs[i] == nil {
						t := time.Now()
						errs[i] = untilOK(client, n.proxyURL()+"/", endpoint, t.Add(20*time.Second))
						request[i] = time.Since(t)
					}
				})
			}
			wg.Wait()
		}
		cancel()
		<-runDone
		if err != nil {
			return fmt.Errorf("%s: %w", endpoint, err)
		}
		for i, err := range errs {
			if err != nil {
				return fmt.Errorf("%s on node %s: %w", endpoint, nodes[i].ip, err)
			}
		}
		res.Samples = append(res.Samples, sample)
		res.Request = append(res.Request, request)
	}
	e.rep.Routable = res
	return nil
}

// untilOK repeats a GET for endpoint until it answers 200 or the deadline
// passes.
func untilOK(client *http.Client, url, endpoint string, deadline time.Time) error {
	var last error
	for time.Now().Before(deadline) {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		req.Header.Set("x-pico-endpoint", endpoint)
		resp, err := client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		last = err
		time.Sleep(time.Millisecond)
	}
	return fmt.Errorf("no 200 before the deadline: %w", last)
}

// waitStatus polls url for endpoint until it answers 200, returning the
// time it took.
func waitStatus(url, endpoint string, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	err := untilOK(http.DefaultClient, url, endpoint, start.Add(timeout))
	return time.Since(start), err
}
