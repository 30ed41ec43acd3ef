package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// nameServer answers every connection with name and a newline, then
// echoes lines back until the client closes.
func nameServer(t *testing.T, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				fmt.Fprintln(c, name)
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					fmt.Fprintln(c, sc.Text())
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func greeting(t *testing.T, c net.Conn) string {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	line, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err)
	return line[:len(line)-1]
}

func TestBalancerSpreadsAndRemovesWithoutCuttingConnections(t *testing.T) {
	a, b := nameServer(t, "a"), nameServer(t, "b")
	lb, err := newBalancer("127.0.0.1:0", []string{a, b})
	require.NoError(t, err)
	t.Cleanup(lb.close)

	seen := map[string]int{}
	var kept net.Conn
	for range 4 {
		c, err := net.Dial("tcp", lb.addr())
		require.NoError(t, err)
		name := greeting(t, c)
		seen[name]++
		if name == "a" && kept == nil {
			kept = c
			continue
		}
		c.Close()
	}
	require.Equal(t, map[string]int{"a": 2, "b": 2}, seen, "round robin over both backends")

	lb.remove(a)
	for range 3 {
		c, err := net.Dial("tcp", lb.addr())
		require.NoError(t, err)
		require.Equal(t, "b", greeting(t, c), "a removed backend gets no new connections")
		c.Close()
	}
	// The connection established before the removal still works.
	_, err = fmt.Fprintln(kept, "still there")
	require.NoError(t, err)
	r := bufio.NewReader(kept)
	line, err := r.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "still there\n", line)
	kept.Close()

	lb.add(a)
	seen = map[string]int{}
	for range 2 {
		c, err := net.Dial("tcp", lb.addr())
		require.NoError(t, err)
		seen[greeting(t, c)]++
		c.Close()
	}
	require.Equal(t, map[string]int{"a": 1, "b": 1}, seen, "an added backend takes its turn")
}

func TestMetricSumsEveryLabelSet(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, "# HELP pico_upstream_connections x\n"+
			"pico_upstream_connections_total 99\n"+
			"pico_upstream_connections{endpoint=\"a\"} 2\n"+
			"pico_upstream_connections{endpoint=\"b\"} 3\n"+
			"go_goroutines 7\n")
	}))
	t.Cleanup(srv.Close)
	v, err := metric(context.Background(), srv.URL, "pico_upstream_connections")
	require.NoError(t, err)
	require.Equal(t, 5.0, v)
	v, err = metric(context.Background(), srv.URL, "go_goroutines")
	require.NoError(t, err)
	require.Equal(t, 7.0, v)
	_, err = metric(context.Background(), srv.URL, "go_threads")
	require.ErrorContains(t, err, "no go_threads")
}

func TestProcFiguresOfThisProcess(t *testing.T) {
	rss, err := procStatus(os.Getpid(), "VmRSS")
	require.NoError(t, err)
	require.Greater(t, rss, int64(1<<20))
	_, err = procStatus(os.Getpid(), "NoSuchField")
	require.Error(t, err)

	start, err := procCPU(os.Getpid())
	require.NoError(t, err)
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) { // burn CPU
	}
	require.Eventually(t, func() bool {
		now, err := procCPU(os.Getpid())
		return err == nil && now > start
	}, 5*time.Second, 10*time.Millisecond)

	limit, err := openFilesLimit(os.Getpid())
	require.NoError(t, err)
	require.NotEmpty(t, limit)
}

func TestPlanAddresses(t *testing.T) {
	a, err := planAddresses("127.0.0.60")
	require.NoError(t, err)
	require.Equal(t, "127.0.0.60", a.balancer)
	require.Equal(t, []string{"127.0.0.61", "127.0.0.62", "127.0.0.63"}, a.cluster)
	require.Equal(t, "127.0.0.64", a.memory)
	require.Equal(t, []string{"127.0.0.65", "127.0.0.66", "127.0.0.67", "127.0.0.68"}, a.sources)

	for _, bad := range []string{"10.0.0.1", "127.0.0.250", "::1", "nonsense"} {
		_, err := planAddresses(bad)
		require.ErrorContains(t, err, "--first-ip", bad)
	}
}

func TestPercentileNearestRank(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 100; i++ {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	require.Equal(t, 50*time.Millisecond, percentile(ds, 50))
	require.Equal(t, 99*time.Millisecond, percentile(ds, 99))
	require.Equal(t, 100*time.Millisecond, percentile(ds, 100))
	require.Equal(t, time.Duration(0), percentile(nil, 50))
}

func TestParseFlagsRejectsBadInput(t *testing.T) {
	o, err := parseFlags(nil)
	require.NoError(t, err)
	require.Equal(t, []int{1, 10, 100, 1000}, o.sweep)
	require.Equal(t, allSections, o.sections)

	for args, want := range map[string][]string{
		"--sections":       {"--sections", "headline,nope"},
		"--sweep":          {"--sweep", "1,x"},
		"--duration":       {"--duration", "500ms"},
		"--rolling-rate":   {"--rolling-rate", "0"},
		"--first-ip":       {"--first-ip", "10.1.1.1"},
		"--sweep-duration": {"--sweep-duration", "0s"},
	} {
		_, err := parseFlags(want)
		require.Error(t, err, args)
		require.Contains(t, err.Error(), args)
	}
}

// TestBudgetNoteFromMeasuredFigures checks the arithmetic of the targets'
// budget on the figures of a committed run: direct 36 674 req/s at p50
// 1.09 ms with wrk 19 and upstream 28 µs of CPU per request; single-node
// 7 413 req/s at p50 6.15 ms over 50 connections, with wrk 23, upstream
// 42, node 95 and agent 64 µs.
func TestBudgetNoteFromMeasuredFigures(t *testing.T) {
	const reqs = 74130
	cpu := func(us int) time.Duration { return time.Duration(us*reqs) * time.Microsecond }
	r := &report{Machine: machine{CPUs: 2}, Headline: &throughputResult{Connections: 50, Results: map[string]wrkResult{
		pathDirect: {RPS: 36674, P50: 1090, Requests: 366740, CPU: map[string]time.Duration{
			"wrk": 19 * 366740 * time.Microsecond, "upstream": 28 * 366740 * time.Microsecond}},
		pathSingle: {RPS: 7413, P50: 6150, Requests: reqs, CPU: map[string]time.Duration{
			"wrk": cpu(23), "upstream": cpu(42), "node 1": cpu(95), "agent": cpu(64)}},
	}}}
	note := r.budgetNote()
	for _, want := range []string{
		"25.0% of direct is 9168 req/s",            // 0.25 × 36 674
		"busy 86% of the time",                     // 47 µs × 36 674 / 2 s
		"serve 9168 req/s only at ≤ 188 µs of CPU", // 2 s × 0.862 / 9 168
		"used 65 µs on the single-node path",       // wrk + upstream
		"leaving 123 µs for node and agent, which used 159 µs",
		"6.74 ms at 7413 req/s (p50 6.15 ms)", // 50 / 7 413
		"A p50 of 3× direct (3.27 ms)",
		"about 16770 req/s, 45.7% of direct", // 50 / (3.27 ms × 6.15 / 6.745) = 16 769.6
	} {
		require.Contains(t, note, want)
	}
	require.Empty(t, (&report{Machine: machine{CPUs: 2}, Headline: &throughputResult{Results: map[string]wrkResult{}}}).budgetNote(),
		"no note without measurements")
}
