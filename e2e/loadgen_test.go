//go:build e2e

package e2e

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// LoadGen sends a steady, open-loop stream of GET requests through one
// URL (a load balancer in front of the proxy ports), spread round robin
// over several endpoints, and records the outcome of every request.
//
// Open loop: requests leave at the configured rate whatever happens to
// earlier ones, so a stall shows up as failed or slow requests instead of
// a quieter generator. Every request opens its own connection (no
// keep-alive): the balancer's backend changes take effect at once, and
// nothing retries a request, not even net/http's replay of an idempotent
// request on a reused connection. A request fails if it gets a transport
// error or a 5xx.
type LoadGen struct {
	url       string
	endpoints []string
	rate      int
	client    *http.Client

	started time.Time
	stop    chan struct{}
	loop    sync.WaitGroup
	pending sync.WaitGroup

	mu      sync.Mutex
	results []Result
}

// Result is the outcome of one request.
type Result struct {
	Start    time.Time
	Duration time.Duration
	Endpoint string
	// Path is the request path (/load/<sequence number>), as in the
	// nodes' access logs.
	Path string
	// Status is the HTTP status, 0 on a transport error.
	Status int
	// Upstream is the service that answered (its X-Upstream header).
	Upstream string
	// Reason says why the request failed (empty when it succeeded).
	Reason string
}

// Failed reports whether the request got a transport error or a 5xx.
func (r Result) Failed() bool { return r.Status == 0 || r.Status >= 500 }

func (r Result) String() string {
	outcome := r.Reason
	if outcome == "" {
		outcome = fmt.Sprintf("%d from %s", r.Status, r.Upstream)
	}
	return fmt.Sprintf("%s +%s %s %s: %s", r.Start.Format("15:04:05.000"), r.Duration.Round(time.Millisecond), r.Endpoint, r.Path, outcome)
}

// StartLoad starts sending rate requests per second to url, cycling
// through endpoints (named with the x-pico-endpoint header). Each request
// has the given client timeout. The generator stops at test cleanup if
// Stop was not called.
func StartLoad(t testing.TB, url string, endpoints []string, rate int, timeout time.Duration) *LoadGen {
	t.Helper()
	l := &LoadGen{
		url:       url,
		endpoints: endpoints,
		rate:      rate,
		client: &http.Client{
			Timeout:   timeout,
			Transport: &http.Transport{DisableKeepAlives: true, DisableCompression: true},
		},
		started: time.Now(),
		stop:    make(chan struct{}),
	}
	l.loop.Add(1)
	go l.run()
	t.Cleanup(func() { l.Stop() })
	return l
}

func (l *LoadGen) run() {
	defer l.loop.Done()
	interval := time.Second / time.Duration(l.rate)
	next := time.Now()
	for i := 0; ; i++ {
		select {
		case <-l.stop:
			return
		case <-time.After(time.Until(next)):
		}
		l.pending.Add(1)
		go l.send(l.endpoints[i%len(l.endpoints)], i)
		next = next.Add(interval)
	}
}

func (l *LoadGen) send(endpoint string, seq int) {
	defer l.pending.Done()
	path := fmt.Sprintf("/load/%d", seq)
	req, _ := http.NewRequest(http.MethodGet, l.url+path, nil)
	req.Header.Set("x-pico-endpoint", endpoint)
	res := Result{Start: time.Now(), Endpoint: endpoint, Path: path}
	resp, err := l.client.Do(req)
	if err != nil {
		res.Reason = "transport error: " + err.Error()
	} else {
		body, readErr := io.ReadAll(resp.Body)
		resp.Body.Close()
		res.Status = resp.StatusCode
		res.Upstream = resp.Header.Get("X-Upstream")
		switch {
		case readErr != nil:
			res.Status = 0
			res.Reason = fmt.Sprintf("reading the %d response: %v", resp.StatusCode, readErr)
		case resp.StatusCode >= 500:
			res.Reason = fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(body)))
		case !strings.HasPrefix(string(body), endpoint+"-"):
			// Not a failure by the definition, but a wrong answer is
			// worse: make it one.
			res.Status = 0
			res.Reason = fmt.Sprintf("%d from the wrong service: %q", resp.StatusCode, body)
		}
	}
	res.Duration = time.Since(res.Start)
	l.mu.Lock()
	l.results = append(l.results, res)
	l.mu.Unlock()
}

// Stop stops sending and waits for the requests in flight.
func (l *LoadGen) Stop() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.loop.Wait()
	l.pending.Wait()
}

// Results returns the requests finished so far, ordered by start time.
func (l *LoadGen) Results() []Result {
	l.mu.Lock()
	out := append([]Result(nil), l.results...)
	l.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out
}

// LoadSummary condenses a set of results.
type LoadSummary struct {
	Total, Failed int
	Failures      []Result
	MaxDuration   time.Duration
	P50, P99      time.Duration
	// Slowest are the three slowest requests.
	Slowest []Result
	// Rate is the achieved rate of requests started per second.
	Rate float64
}

// Summarize condenses results ordered by start time (as Results returns
// them).
func Summarize(results []Result) LoadSummary {
	s := LoadSummary{Total: len(results)}
	durations := make([]time.Duration, 0, len(results))
	for _, r := range results {
		durations = append(durations, r.Duration)
		if r.Failed() {
			s.Failed++
			s.Failures = append(s.Failures, r)
		}
		s.MaxDuration = max(s.MaxDuration, r.Duration)
	}
	if len(durations) > 0 {
		slices.Sort(durations)
		s.P50 = durations[len(durations)/2]
		s.P99 = durations[len(durations)*99/100]
	}
	bySpeed := slices.Clone(results)
	slices.SortFunc(bySpeed, func(a, b Result) int { return int(b.Duration - a.Duration) })
	s.Slowest = bySpeed[:min(3, len(bySpeed))]
	if len(results) > 1 {
		span := results[len(results)-1].Start.Sub(results[0].Start)
		if span > 0 {
			s.Rate = float64(len(results)-1) / span.Seconds()
		}
	}
	return s
}

// Since returns the results of requests started at or after t.
func Since(results []Result, t time.Time) []Result {
	i := sort.Search(len(results), func(i int) bool { return !results[i].Start.Before(t) })
	return results[i:]
}

// Log writes the summary to the test log: totals, the achieved rate,
// latencies, the slowest requests and the failures (the first 20) with
// their times and reasons.
func (s LoadSummary) Log(t testing.TB, what string) {
	t.Helper()
	t.Logf("%s: %d requests at %.0f/s, %d failed; latency p50 %s, p99 %s, max %s", what, s.Total, s.Rate, s.Failed,
		s.P50.Round(100*time.Microsecond), s.P99.Round(100*time.Microsecond), s.MaxDuration.Round(time.Millisecond))
	for _, r := range s.Slowest {
		t.Logf("  slow: %s", r)
	}
	for i, f := range s.Failures {
		if i == 20 {
			t.Logf("  … and %d more failures", len(s.Failures)-i)
			break
		}
		t.Logf("  failed: %s", f)
	}
}

// FailureStrings lists failures for an assertion message.
func (s LoadSummary) FailureStrings() []string {
	out := make([]string, len(s.Failures))
	for i, f := range s.Failures {
		out[i] = f.String()
	}
	return firstN(out, 10)
}

// WaitRequests waits until n requests that started at or after from have
// finished (at the generator's rate that takes about n/rate seconds).
func (l *LoadGen) WaitRequests(t testing.TB, from time.Time, n int) {
	t.Helper()
	timeout := 3*time.Duration(n)*time.Second/time.Duration(l.rate) + 30*time.Second
	require.Eventually(t, func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		count := 0
		for _, r := range l.results {
			if !r.Start.Before(from) {
				count++
			}
		}
		return count >= n
	}, timeout, 20*time.Millisecond, "the load generator did not finish %d requests", n)
}
