package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// wrkResult is one wrk run's summary. Latencies are in microseconds.
type wrkResult struct {
	RPS      float64 `json:"rps"`
	P50      float64 `json:"p50"`
	P99      float64 `json:"p99"`
	P999     float64 `json:"p999"`
	Requests int64   `json:"requests"`
	Errors   int64   `json:"errors"` // connect, read, write and timeout errors
	Non2xx   int64   `json:"non2xx"` // responses with a status >= 400

	// CPU is the CPU time each process used during the run, by
	// component ("wrk", "upstream", "node 1", "node 2", "agent").
	CPU map[string]time.Duration `json:"-"`
	// Syscalls is the read and write system calls each Pico process
	// ("node 1", "node 2", "agent") made during the run.
	Syscalls map[string][2]int64 `json:"-"`
}

// wrkScript makes wrk print a JSON summary with the percentiles we need.
const wrkScript = `
local endpoint = os.getenv("PICO_ENDPOINT")
if endpoint and endpoint ~= "" then wrk.headers["x-pico-endpoint"] = endpoint end
done = function(summary, latency, requests)
  io.write(string.format('JSON{"rps":%f,"p50":%f,"p99":%f,"p999":%f,"requests":%d,"errors":%d,"non2xx":%d}\n',
    summary.requests / (summary.duration / 1e6), latency:percentile(50), latency:percentile(99), latency:percentile(99.9),
    summary.requests, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status))
end
`

// wrk runs the wrk binary with the summary script.
type wrk struct {
	bin     string
	script  string
	threads int
}

func newWrk(tmp string, threads int) (*wrk, error) {
	bin, err := ensureWrk()
	if err != nil {
		return nil, err
	}
	script := filepath.Join(tmp, "summary.lua")
	if err := os.WriteFile(script, []byte(wrkScript), 0o644); err != nil {
		return nil, fmt.Errorf("writing the wrk script: %w", err)
	}
	return &wrk{bin: bin, script: script, threads: threads}, nil
}

// run loads url (with x-pico-endpoint: endpoint unless empty) over
// connections keep-alive connections for d.
func (w *wrk) run(url, endpoint string, connections int, d time.Duration) (wrkResult, error) {
	threads := min(w.threads, connections)
	cmd := exec.Command(w.bin, "-t", fmt.Sprint(threads), "-c", fmt.Sprint(connections),
		"-d", fmt.Sprintf("%ds", int(d.Round(time.Second)/time.Second)), "--timeout", "10s", "-s", w.script, url)
	cmd.Env = append(os.Environ(), "PICO_ENDPOINT="+endpoint)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk: %w: %s", err, out)
	}
	_, js, ok := strings.Cut(string(out), "JSON")
	if !ok {
		return wrkResult{}, fmt.Errorf("wrk printed no summary: %s", out)
	}
	var r wrkResult
	if err := json.NewDecoder(strings.NewReader(js)).Decode(&r); err != nil {
		return wrkResult{}, fmt.Errorf("parsing wrk's summary: %w", err)
	}
	r.CPU = map[string]time.Duration{"wrk": cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()}
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
