package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pico-proxy/pico/internal/cluster"
)

// proc is a child process whose output goes to a log file.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error // cmd.Wait's result, set before done is closed
}

func startProc(bin, logDir, name string, args ...string) (*proc, error) {
	logPath := filepath.Join(logDir, name+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("log file of %s: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	running.Store(p, struct{}{})
	go func() {
		p.err = cmd.Wait()
		logFile.Close()
		running.Delete(p)
		close(p.done)
	}()
	return p, nil
}

// running holds every child process that has not exited.
var running sync.Map

// terminateAll stops every running child process (on an interrupt).
func terminateAll(timeout time.Duration) {
	var wg sync.WaitGroup
	running.Range(func(k, _ any) bool {
		wg.Go(func() { _, _ = k.(*proc).terminate(timeout) })
		return true
	})
	wg.Wait()
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// terminate sends SIGTERM and waits for the exit (SIGKILL after timeout).
// It returns how long the process took to exit and its exit error.
func (p *proc) terminate(timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	select {
	case <-p.done:
		return 0, p.err
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return time.Since(start), p.err
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		return time.Since(start), fmt.Errorf("%s did not exit within %s of SIGTERM; killed", p.name, timeout)
	}
}

func (p *proc) stop() { _, _ = p.terminate(90 * time.Second) }

// node is a `pico server` process on its own loopback IP with the default
// ports.
type node struct {
	*proc
	ip string
}

func (n *node) proxyURL() string    { return "http://" + n.ip + ":8000" }
func (n *node) upstreamURL() string { return "http://" + n.ip + ":8001" }
func (n *node) adminURL() string    { return "http://" + n.ip + ":8002" }

// startNode starts `pico server` on ip, joining join (IPs), and waits for
// /ready.
func startNode(o *options, logDir, ip string, join []string, extra ...string) (*node, error) {
	args := []string{"server",
		"--proxy.bind-addr", ip + ":8000", "--upstream.bind-addr", ip + ":8001",
		"--admin.bind-addr", ip + ":8002", "--gossip.bind-addr", ip + ":8003",
		"--log.level", "warn"}
	if len(join) > 0 {
		args = append(args, "--cluster.join", strings.Join(join, ","))
	}
	for _, port := range []string{"8000", "8001", "8002", "8003"} {
		ln, err := net.Listen("tcp", net.JoinHostPort(ip, port))
		if err != nil {
			return nil, fmt.Errorf("%s:%s is taken by another process (another pico-bench? choose other addresses with --first-ip): %w", ip, port, err)
		}
		ln.Close()
	}
	p, err := startProc(o.pico, logDir, "server-"+ip, append(args, extra...)...)
	if err != nil {
		return nil, err
	}
	n := &node{proc: p, ip: ip}
	if err := n.waitReady(30 * time.Second); err != nil {
		p.stop()
		return nil, err
	}
	return n, nil
}

func (n *node) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-n.done:
			return fmt.Errorf("node %s exited before it was ready: %v (log %s)", n.ip, n.err, n.log)
		default:
		}
		resp, err := http.Get(n.adminURL() + "/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("node %s not ready within %s (log %s)", n.ip, timeout, n.log)
}

// procStatus returns a field of /proc/PID/status in bytes (VmRSS, VmHWM).
func procStatus(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), field+":")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) != 2 || fields[1] != "kB" {
			return 0, fmt.Errorf("/proc/%d/status: unexpected %s line %q", pid, field, sc.Text())
		}
		kb, err := strconv.ParseInt(fields[0], 10, 64)
		return kb << 10, err
	}
	return 0, fmt.Errorf("/proc/%d/status has no %s", pid, field)
}

// openFilesLimit returns the soft "Max open files" of a process.
func openFilesLimit(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
			if f := strings.Fields(rest); len(f) >= 1 {
				return f[0], nil
			}
		}
	}
	return "", errors.New("no Max open files line")
}

// metric returns the sum of every sample of a Prometheus metric family
// (all label sets) from a node's /metrics.
func metric(ctx context.Context, adminURL, name string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, adminURL+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	var sum float64
	found := false
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		f := strings.Fields(rest[strings.LastIndexByte(rest, '}')+1:])
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return 0, fmt.Errorf("metric %s: %w", name, err)
		}
		sum += v
		found = true
	}
	if !found {
		return 0, fmt.Errorf("%s/metrics has no %s", adminURL, name)
	}
	return sum, nil
}

// waitMembers waits until every node lists want active members.
func waitMembers(nodes []*node, want int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		short := ""
		for _, n := range nodes {
			if got, err := activeMembers(n); err != nil || got != want {
				short = fmt.Sprintf("node %s sees %d active members (error %v), want %d", n.ip, got, err, want)
				break
			}
		}
		if short == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New(short)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func activeMembers(n *node) (int, error) {
	resp, err := http.Get(n.adminURL() + "/status/cluster/nodes")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var members []cluster.NodeSummary
	if err := json.NewDecoder(resp.Body).Decode(&members); err != nil {
		return 0, fmt.Errorf("decoding /status/cluster/nodes: %w", err)
	}
	active := 0
	for _, m := range members {
		if m.Status == cluster.StatusActive {
			active++
		}
	}
	return active, nil
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat CPU times (100 on
// every Linux architecture Go supports).
const clockTicks = 100

// procCPU returns the user + system CPU time a process has used.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name (which may contain spaces): state is
	// field 3; utime and stime are fields 14 and 15.
	_, rest, ok := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if !ok || len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	var ticks int64
	for _, s := range f[11:13] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// selfCPU returns the CPU time this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
