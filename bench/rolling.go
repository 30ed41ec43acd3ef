package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

var rollingEndpoints = []string{"roll-a", "roll-b", "roll-c"}

// rollingResult is the outcome of restarting every node once under load.
type rollingResult struct {
	Rate     int
	Agents   int
	Restarts []restart
	Load     loadSummary
	Duration time.Duration
	// Upstreams per node (in node order) right after the last restart
	// settled, and once cluster.rebalance spread them (every node within
	// rebalanceLow–rebalanceHigh × the fair share), BalanceTime after the
	// last restart; Balanced is false if that did not happen within
	// rebalanceTimeout.
	AfterRestart, AfterRebalance []float64
	BalanceTime                  time.Duration
	Balanced                     bool
}

// Bounds of a balanced cluster, and how long the bench waits for one.
const (
	rebalanceLow, rebalanceHigh = 0.7, 1.3
	rebalanceTimeout            = 90 * time.Second
)

// restart is one node's restart.
type restart struct {
	IP       string
	Drain    time.Duration // SIGTERM to exit
	ExitErr  string        // empty for exit 0
	Start    time.Duration // start to /ready
	Failures int           // failed requests sent during this restart
	// Served and Upstreams are the new process's proxied requests and
	// upstream connections at the end of the section.
	Served, Upstreams float64
}

// rollingAgents is the number of agent processes, each registering every
// rolling endpoint (30 upstream connections: enough for the fair share's
// tolerance of 2 connections to leave a restarted node no excuse).
const rollingAgents = 10

// runRolling builds the rolling-restart setup on the cluster (ten agent
// processes serving three endpoints, connected through a round-robin
// balancer in front of the upstream ports; clients through one in front of
// the proxy ports), runs steady load and restarts each node once.
func (e *env) runRolling() error {
	nodes, err := e.cluster()
	if err != nil {
		return err
	}
	e.stopBenchAgent() // it is connected to node 1 directly
	var proxies, upstreams []string
	for _, n := range nodes {
		proxies = append(proxies, n.ip+":8000")
		upstreams = append(upstreams, n.ip+":8001")
	}
	proxyLBAddr, upstreamLBAddr := e.o.addrs.balancer+":8000", e.o.addrs.balancer+":8001"
	proxyLB, err := newBalancer(proxyLBAddr, proxies)
	if err != nil {
		return fmt.Errorf("proxy load balancer: %w", err)
	}
	defer proxyLB.close()
	upstreamLB, err := newBalancer(upstreamLBAddr, upstreams)
	if err != nil {
		return fmt.Errorf("upstream load balancer: %w", err)
	}
	defer upstreamLB.close()

	cfgPath := filepath.Join(e.tmp, "rolling-agent.yaml")
	var yaml strings.Builder
	fmt.Fprintf(&yaml, "connect:\n  url: http://%s\ngrace_period: 2s\nlog:\n  level: warn\nendpoints:\n", upstreamLBAddr)
	for _, ep := range rollingEndpoints {
		fmt.Fprintf(&yaml, "  - {id: %s, protocol: http, addr: %q}\n", ep, e.upstream)
	}
	if err := os.WriteFile(cfgPath, []byte(yaml.String()), 0o644); err != nil {
		return err
	}
	res := &rollingResult{Rate: e.o.rollingRate, Agents: rollingAgents}
	for i := range res.Agents {
		a, err := startProc(e.o.pico, e.tmp, fmt.Sprintf("agent-rolling-%d", i+1), "agent", "--config.path", cfgPath)
		if err != nil {
			return err
		}
		defer a.stop()
	}
	// Every endpoint is routable from every node and every agent
	// connection is registered.
	for _, n := range nodes {
		for _, ep := range rollingEndpoints {
			if _, err := waitStatus(n.proxyURL()+"/", ep, 20*time.Second); err != nil {
				return fmt.Errorf("%s via node %s: %w", ep, n.ip, err)
			}
		}
	}
	if err := waitUpstreams(nodes, len(rollingEndpoints)*res.Agents, 20*time.Second); err != nil {
		return err
	}

	load := startLoad("http://"+proxyLBAddr+"/", rollingEndpoints, e.o.rollingRate)
	start := time.Now()
	time.Sleep(3 * time.Second)
	var restartErr error
	for i, n := range nodes {
		before := load.failures()
		r := restart{IP: n.ip}
		e.logf("  restarting node %s", n.ip)
		proxyLB.remove(n.ip + ":8000")
		upstreamLB.remove(n.ip + ":8001")
		drain, err := n.terminate(90 * time.Second)
		r.Drain = drain
		if err != nil {
			r.ExitErr = err.Error()
		}
		var others []string
		for _, o := range nodes {
			if o != n {
				others = append(others, o.ip)
			}
		}
		t := time.Now()
		fresh, err := startNode(e.o, e.tmp, n.ip, others)
		if err != nil {
			restartErr = fmt.Errorf("restarting node %s: %w", n.ip, err)
			res.Restarts = append(res.Restarts, r)
			break
		}
		r.Start = time.Since(t)
		nodes[i] = fresh
		proxyLB.add(n.ip + ":8000")
		upstreamLB.add(n.ip + ":8001")
		// Let the cluster settle under load before the next node.
		time.Sleep(3 * time.Second)
		r.Failures = load.failures() - before
		res.Restarts = append(res.Restarts, r)
	}
	if restartErr == nil {
		e.logf("  waiting for the upstreams to rebalance")
		res.AfterRestart, _ = upstreamsPerNode(nodes)
		t := time.Now()
		res.AfterRebalance, res.Balanced = waitBalanced(nodes, len(rollingEndpoints)*res.Agents, rebalanceTimeout)
		res.BalanceTime = time.Since(t)
	}
	res.Load = load.stop()
	res.Duration = time.Since(start)
	for i := range res.Restarts {
		n := nodes[i]
		res.Restarts[i].Served, _ = metric(context.Background(), n.adminURL(), "pico_proxy_requests_total")
		res.Restarts[i].Upstreams, _ = metric(context.Background(), n.adminURL(), "pico_upstream_connections")
	}
	e.rep.Rolling = res
	return restartErr
}

// upstreamsPerNode is every node's pico_upstream_connections.
func upstreamsPerNode(nodes []*node) ([]float64, error) {
	out := make([]float64, len(nodes))
	for i, n := range nodes {
		v, err := metric(context.Background(), n.adminURL(), "pico_upstream_connections")
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

// waitBalanced waits up to timeout until the nodes hold total upstream
// connections, each within rebalanceLow–rebalanceHigh × the fair share,
// and returns the last counts and whether they were balanced.
func waitBalanced(nodes []*node, total int, timeout time.Duration) ([]float64, bool) {
	deadline := time.Now().Add(timeout)
	fair := float64(total) / float64(len(nodes))
	var counts []float64
	for {
		if c, err := upstreamsPerNode(nodes); err == nil {
			counts = c
			sum, ok := 0.0, true
			for _, v := range c {
				sum += v
				ok = ok && v >= rebalanceLow*fair && v <= rebalanceHigh*fair
			}
			if ok && int(sum) == total {
				return counts, true
			}
		}
		if time.Now().After(deadline) {
			return counts, false
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// waitUpstreams waits until the nodes together count want upstream
// connections.
func waitUpstreams(nodes []*node, want int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var total float64
	for time.Now().Before(deadline) {
		total = 0
		for _, n := range nodes {
			v, err := metric(context.Background(), n.adminURL(), "pico_upstream_connections")
			if err != nil {
				total = -1
				break
			}
			total += v
		}
		if int(total) == want {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("the nodes count %v upstream connections, want %d", total, want)
}

// load sends GET requests at a steady rate, round robin over endpoints,
// and records every outcome. A request fails on a transport error or a
// 5xx status.
type load struct {
	client    *http.Client
	url       string
	endpoints []string
	stopCh    chan struct{}
	wg        sync.WaitGroup

	mu        sync.Mutex
	sent      int
	latencies []time.Duration
	failed    []string // one line per failure
}

type loadSummary struct {
	Requests int
	Failed   []string
	P50, P99 time.Duration
	Max      time.Duration
}

func startLoad(url string, endpoints []string, rate int) *load {
	l := &load{
		client: &http.Client{
			Transport: &http.Transport{MaxIdleConnsPerHost: 32, IdleConnTimeout: 30 * time.Second},
			Timeout:   30 * time.Second,
		},
		url:       url,
		endpoints: endpoints,
		stopCh:    make(chan struct{}),
	}
	l.wg.Go(func() {
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-l.stopCh:
				return
			case <-tick.C:
			}
			ep := endpoints[i%len(endpoints)]
			l.wg.Go(func() { l.one(ep) })
		}
	})
	return l
}

func (l *load) one(endpoint string) {
	start := time.Now()
	req, _ := http.NewRequest(http.MethodGet, l.url, nil)
	req.Header.Set("x-pico-endpoint", endpoint)
	resp, err := l.client.Do(req)
	var failure string
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode >= 500 {
			failure = fmt.Sprintf("%s: %s", endpoint, resp.Status)
		}
	}
	if err != nil {
		failure = fmt.Sprintf("%s: %v", endpoint, err)
	}
	elapsed := time.Since(start)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sent++
	l.latencies = append(l.latencies, elapsed)
	if failure != "" {
		l.failed = append(l.failed, start.Format("15:04:05.000")+" "+failure)
	}
}

func (l *load) failures() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.failed)
}

// stop ends the load, waits for the requests in flight and summarises.
func (l *load) stop() loadSummary {
	close(l.stopCh)
	l.wg.Wait()
	l.client.CloseIdleConnections()
	l.mu.Lock()
	defer l.mu.Unlock()
	lat := slices.Clone(l.latencies)
	slices.Sort(lat)
	return loadSummary{
		Requests: l.sent,
		Failed:   slices.Clone(l.failed),
		P50:      percentile(lat, 50),
		P99:      percentile(lat, 99),
		Max:      percentile(lat, 100),
	}
}

// percentile of sorted durations (nearest rank).
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p/100*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
