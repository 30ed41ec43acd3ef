package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pico-proxy/pico/internal/adminapi"
	"github.com/pico-proxy/pico/internal/testutil/picoproc"
)

// proc is a child process whose output goes to a log file in the run's
// log directory.
type proc struct {
	*picoproc.Process
}

func startProc(bin, logDir, name string, args ...string) (*proc, error) {
	p, err := picoproc.Start(picoproc.Spec{Name: name, Bin: bin, Args: args, LogFile: filepath.Join(logDir, name+".log")})
	if err != nil {
		return nil, err
	}
	return &proc{p}, nil
}

func (p *proc) pid() int { return p.PID() }

// terminate sends SIGTERM and waits for the exit (SIGKILL after timeout).
// It returns how long the process took to exit and its exit error.
func (p *proc) terminate(timeout time.Duration) (time.Duration, error) {
	return p.Terminate(timeout)
}

func (p *proc) stop() { _, _ = p.terminate(90 * time.Second) }

// node is a `pico server` process (picoproc.Server) on its own loopback IP
// with the default ports.
type node struct {
	*proc
	server *picoproc.Server
	ip     string
}

func (n *node) proxyURL() string    { return n.server.ProxyURL() }
func (n *node) upstreamURL() string { return n.server.UpstreamURL() }
func (n *node) adminURL() string    { return n.server.AdminURL() }

// startNode starts `pico server` on ip, joining join (IPs), and waits for
// /ready.
func startNode(o *options, logDir, ip string, join []string, extra ...string) (*node, error) {
	return startNodeOf(o.pico, logDir, ip, join, extra...)
}

// startNodeOf is startNode with the pico binary bin.
func startNodeOf(bin, logDir, ip string, join []string, extra ...string) (*node, error) {
	args := []string{"--log.level", "warn"}
	if len(join) > 0 {
		args = append(args, "--cluster.join", strings.Join(join, ","))
	}
	if err := picoproc.PortsFree(ip); err != nil {
		return nil, fmt.Errorf("%w (another pico-bench? choose other addresses with --first-ip)", err)
	}
	name := "server-" + ip
	s, err := picoproc.StartServer(picoproc.Spec{Name: name, Bin: bin, Args: append(args, extra...),
		LogFile: filepath.Join(logDir, name+".log")}, ip)
	if err != nil {
		return nil, err
	}
	n := &node{proc: &proc{s.Process}, server: s, ip: ip}
	if err := s.WaitReady(30 * time.Second); err != nil {
		n.stop()
		return nil, fmt.Errorf("%w (log %s)", err, n.LogFile)
	}
	return n, nil
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
			if got, err := n.server.Members(); err != nil || countActive(got) != want {
				short = fmt.Sprintf("node %s sees %d active members (error %v), want %d", n.ip, countActive(got), err, want)
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

func countActive(members []adminapi.NodeSummary) int {
	active := 0
	for _, m := range members {
		if m.Status == adminapi.StatusActive {
			active++
		}
	}
	return active
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

// procSyscalls returns the read and write system calls a process has
// made (syscr and syscw of /proc/PID/io: read, readv, pread… and write,
// writev, sendmsg…).
func procSyscalls(pid int) (reads, writes int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0, 0, err
	}
	found := 0
	for _, line := range strings.Split(string(b), "\n") {
		name, value, ok := strings.Cut(line, ": ")
		if !ok || (name != "syscr" && name != "syscw") {
			continue
		}
		v, err := strconv.ParseInt(strings.TrimSpace(value), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/%d/io: %s: %w", pid, name, err)
		}
		if name == "syscr" {
			reads = v
		} else {
			writes = v
		}
		found++
	}
	if found != 2 {
		return 0, 0, fmt.Errorf("/proc/%d/io has no syscr/syscw", pid)
	}
	return reads, writes, nil
}

// selfCPU returns the CPU time this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
