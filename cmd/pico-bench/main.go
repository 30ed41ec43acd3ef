// Command pico-bench measures Pico's proxy throughput and latency against
// the same upstream reached directly, in one run on this machine: an
// in-process HTTP upstream serving 1 KiB bodies, `pico server` processes on
// loopback addresses, a `pico agent`, and wrk as the load generator
// (installed with apt-get if missing). It prints a table with
// requests/s, p50, p99 and p99.9 latency and the ratio to direct.
//
//	go run ./cmd/pico-bench [--pico bin/pico] [--duration 10s] [--connections 50]
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "pico-bench:", err)
		os.Exit(1)
	}
}

type options struct {
	pico        string
	duration    time.Duration
	connections int
	threads     int
}

func run() error {
	var o options
	flag.StringVar(&o.pico, "pico", "bin/pico", "pico binary")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "length of each wrk run")
	flag.IntVar(&o.connections, "connections", 50, "concurrent connections")
	flag.IntVar(&o.threads, "threads", 2, "wrk threads")
	flag.Parse()

	wrk, err := ensureWrk()
	if err != nil {
		return err
	}
	upstreamAddr, stopUpstream, err := startUpstream()
	if err != nil {
		return err
	}
	defer stopUpstream()

	tmp, err := os.MkdirTemp("", "pico-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	node1, err := startNode(o.pico, tmp, "127.0.0.61", nil)
	if err != nil {
		return err
	}
	defer node1.stop()
	node2, err := startNode(o.pico, tmp, "127.0.0.62", []string{"--cluster.join", "127.0.0.61"})
	if err != nil {
		return err
	}
	defer node2.stop()
	agent, err := startProc(o.pico, tmp, "agent", "agent", "http", "bench", upstreamAddr, "--connect.url", "http://127.0.0.61:8001", "--log.level", "warn")
	if err != nil {
		return err
	}
	defer agent.stop()
	for _, n := range []string{"127.0.0.61", "127.0.0.62"} {
		if err := waitRoutable("http://"+n+":8000/", "bench", 10*time.Second); err != nil {
			return fmt.Errorf("node %s never routed to the agent: %w (logs in %s)", n, err, tmp)
		}
	}

	cases := []struct{ name, url, endpoint string }{
		{"direct", "http://" + upstreamAddr + "/", ""},
		{"pico single-node", "http://127.0.0.61:8000/", "bench"},
		{"pico cross-node", "http://127.0.0.62:8000/", "bench"},
	}
	var results []result
	for _, c := range cases {
		r, err := runWrk(wrk, tmp, o, c.url, c.endpoint)
		if err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
		r.name = c.name
		results = append(results, r)
	}
	printTable(os.Stdout, o, results)
	return nil
}

type result struct {
	name                   string
	RPS                    float64 `json:"rps"`
	P50, P99, P999         float64 // microseconds
	Requests, Errors, Non2 int64
}

func printTable(w io.Writer, o options, rs []result) {
	fmt.Fprintf(w, "\n1 KiB GET, %d connections, %d wrk threads, %s per case, %s\n\n", o.connections, o.threads, o.duration, time.Now().Format(time.RFC3339))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "case\treq/s\tvs direct\tp50\tp99\tp99.9\terrors\t")
	direct := rs[0]
	for _, r := range rs {
		fmt.Fprintf(tw, "%s\t%.0f\t%.1f%%\t%s\t%s\t%s\t%d\t\n", r.name, r.RPS, 100*r.RPS/direct.RPS,
			us(r.P50), us(r.P99), us(r.P999), r.Errors+r.Non2)
	}
	tw.Flush()
	if len(rs) == 3 && rs[1].RPS > 0 {
		fmt.Fprintf(w, "\ncross-node / single-node throughput: %.1f%%; p50 through Pico / direct: %.1fx\n",
			100*rs[2].RPS/rs[1].RPS, rs[1].P50/direct.P50)
	}
}

func us(v float64) string {
	return (time.Duration(v) * time.Microsecond).Round(10 * time.Microsecond).String()
}

// wrkScript makes wrk print a JSON summary with the percentiles we need.
const wrkScript = `
local endpoint = os.getenv("PICO_ENDPOINT")
if endpoint and endpoint ~= "" then wrk.headers["x-pico-endpoint"] = endpoint end
done = function(summary, latency, requests)
  io.write(string.format('JSON{"rps":%f,"P50":%f,"P99":%f,"P999":%f,"Requests":%d,"Errors":%d,"Non2":%d}\n',
    summary.requests / (summary.duration / 1e6), latency:percentile(50), latency:percentile(99), latency:percentile(99.9),
    summary.requests, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status))
end
`

func runWrk(wrk, tmp string, o options, url, endpoint string) (result, error) {
	script := filepath.Join(tmp, "summary.lua")
	if err := os.WriteFile(script, []byte(wrkScript), 0o644); err != nil {
		return result{}, err
	}
	cmd := exec.Command(wrk, "-t", fmt.Sprint(o.threads), "-c", fmt.Sprint(o.connections),
		"-d", o.duration.String(), "-s", script, url)
	cmd.Env = append(os.Environ(), "PICO_ENDPOINT="+endpoint)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return result{}, fmt.Errorf("wrk: %w: %s", err, out)
	}
	_, js, ok := strings.Cut(string(out), "JSON")
	if !ok {
		return result{}, fmt.Errorf("wrk printed no summary: %s", out)
	}
	var r result
	if err := json.NewDecoder(strings.NewReader(js)).Decode(&r); err != nil {
		return result{}, fmt.Errorf("parsing wrk summary: %w", err)
	}
	return r, nil
}

func ensureWrk() (string, error) {
	if p, err := exec.LookPath("wrk"); err == nil {
		return p, nil
	}
	fmt.Fprintln(os.Stderr, "installing wrk with apt-get…")
	cmd := exec.Command("sh", "-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("installing wrk: %w", err)
	}
	return exec.LookPath("wrk")
}

var body1KiB = bytes.Repeat([]byte("x"), 1024)

func startUpstream() (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(body1KiB)
	})}
	go srv.Serve(ln)
	return ln.Addr().String(), func() { srv.Close() }, nil
}

type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func startProc(bin, logDir, name string, args ...string) (*proc, error) {
	logFile, err := os.Create(filepath.Join(logDir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); logFile.Close(); close(p.done) }()
	return p, nil
}

func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
	}
}

func startNode(bin, logDir, ip string, extra []string) (*proc, error) {
	args := []string{"server",
		"--proxy.bind-addr", ip + ":8000", "--upstream.bind-addr", ip + ":8001",
		"--admin.bind-addr", ip + ":8002", "--gossip.bind-addr", ip + ":8003",
		"--log.level", "warn"}
	p, err := startProc(bin, logDir, "server-"+ip, append(args, extra...)...)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + ip + ":8002/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.stop()
	return nil, fmt.Errorf("node %s not ready within 20s (logs in %s)", ip, logDir)
}

func waitRoutable(url, endpoint string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		req.Header.Set("x-pico-endpoint", endpoint)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = errors.New(resp.Status)
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(50 * time.Millisecond):
		}
	}
}
