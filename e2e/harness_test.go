//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pico-proxy/pico/internal/cluster"
)

// picoBin is the pico binary under test: $PICO_BIN, or built by TestMain.
var picoBin string

func TestMain(m *testing.M) {
	picoBin = os.Getenv("PICO_BIN")
	if picoBin == "" {
		dir, err := os.MkdirTemp("", "pico-e2e-bin")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		picoBin = filepath.Join(dir, "pico")
		build := exec.Command("go", "build", "-o", picoBin, "../cmd/pico")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building pico:", err)
			os.Exit(1)
		}
		defer os.RemoveAll(dir)
	}
	os.Exit(m.Run())
}

// nextIP hands out distinct loopback addresses so that every node of every
// test has its own IP with Pico's default ports.
var ipCounter atomic.Uint32

func nextIP() string {
	n := ipCounter.Add(1)
	return fmt.Sprintf("127.0.%d.%d", 10+n/250, 1+n%250)
}

// Process is a pico child process whose output goes to a log file that is
// printed when the test fails.
type Process struct {
	Name string
	cmd  *exec.Cmd
	log  *bytes.Buffer
	mu   sync.Mutex
	done chan struct{}
	err  error
}

type lockedWriter struct {
	mu  *sync.Mutex
	buf *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

// ProcOption adjusts how a process is started.
type ProcOption func(*exec.Cmd)

// WithResolvConf runs the process in its own mount namespace where
// /etc/resolv.conf is the given file (needs root): its DNS view is the
// test's DNS server.
func WithResolvConf(path string) ProcOption {
	return func(c *exec.Cmd) {
		args := append([]string{"-m", "--", "sh", "-c", `mount --bind "$0" /etc/resolv.conf && exec "$@"`, path}, c.Args...)
		c.Path, _ = exec.LookPath("unshare")
		c.Args = append([]string{"unshare"}, args...)
	}
}

// WithEnv adds environment variables.
func WithEnv(kv ...string) ProcOption {
	return func(c *exec.Cmd) { c.Env = append(c.Env, kv...) }
}

// StartProcess starts `pico args...`; it is stopped (SIGKILL) at cleanup if
// still running. Its output is logged at cleanup if the test failed, or
// always when $PICO_E2E_LOGS is set.
func StartProcess(t testing.TB, name string, args []string, opts ...ProcOption) *Process {
	t.Helper()
	p := &Process{Name: name, log: &bytes.Buffer{}, done: make(chan struct{})}
	cmd := exec.Command(picoBin, args...)
	cmd.Env = os.Environ()
	for _, o := range opts {
		o(cmd)
	}
	w := lockedWriter{&p.mu, p.log}
	cmd.Stdout, cmd.Stderr = w, w
	require.NoError(t, cmd.Start(), "starting %s", name)
	p.cmd = cmd
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() || os.Getenv("PICO_E2E_LOGS") != "" {
			t.Logf("---- log of %s (%s) ----\n%s", name, strings.Join(args, " "), p.Log())
		}
	})
	return p
}

// Log returns the process output so far.
func (p *Process) Log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// PID is the process ID.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Terminate sends SIGTERM and waits up to timeout for the exit; it returns
// the exit code.
func (p *Process) Terminate(t testing.TB, timeout time.Duration) int {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	return p.Wait(t, timeout)
}

// Kill sends SIGKILL and waits for the exit.
func (p *Process) Kill(t testing.TB) {
	t.Helper()
	_ = p.cmd.Process.Kill()
	p.Wait(t, 10*time.Second)
}

// Wait waits up to timeout for the process to exit and returns its code.
func (p *Process) Wait(t testing.TB, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		require.FailNow(t, "process did not exit", "%s still running after %s", p.Name, timeout)
	}
	if p.err == nil {
		return 0
	}
	if ee, ok := p.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

// Node is a `pico server` process on its own loopback IP with the default
// ports.
type Node struct {
	*Process
	IP string
	// extra and opts are the flags and options it was started with (for
	// StartAgain).
	extra []string
	opts  []ProcOption
}

// ProxyURL, UpstreamURL and AdminURL are the node's listeners.
func (n *Node) ProxyURL() string    { return "http://" + n.IP + ":8000" }
func (n *Node) UpstreamURL() string { return "http://" + n.IP + ":8001" }
func (n *Node) AdminURL() string    { return "http://" + n.IP + ":8002" }
func (n *Node) GossipAddr() string  { return n.IP + ":8003" }

// StartNode starts `pico server` on ip (nextIP() when empty) with extra
// flags and waits until it is ready.
func StartNode(t testing.TB, ip string, extra []string, opts ...ProcOption) *Node {
	t.Helper()
	n := StartNodeNoWait(t, ip, extra, opts...)
	n.WaitReady(t, 30*time.Second)
	return n
}

// StartNodeNoWait starts `pico server` without waiting for readiness.
func StartNodeNoWait(t testing.TB, ip string, extra []string, opts ...ProcOption) *Node {
	t.Helper()
	if ip == "" {
		ip = nextIP()
	}
	args := []string{"server",
		"--proxy.bind-addr", ip + ":8000",
		"--upstream.bind-addr", ip + ":8001",
		"--admin.bind-addr", ip + ":8002",
		"--gossip.bind-addr", ip + ":8003",
		"--server.graceful-shutdown-timeout", "20s",
		"--server.drain-delay", "1s", // the tests' load balancers drop a node before SIGTERM
		"--log.level", "debug",
	}
	args = append(args, extra...)
	return &Node{Process: StartProcess(t, "server@"+ip, args, opts...), IP: ip, extra: extra, opts: opts}
}

// StartAgain starts a new `pico server` process on the node's IP with the
// same flags, as Kubernetes restarts a pod: the previous process must have
// exited. It does not wait for readiness.
func (n *Node) StartAgain(t testing.TB) *Node {
	t.Helper()
	require.True(t, n.Exited(), "%s is still running", n.Name)
	return StartNodeNoWait(t, n.IP, n.extra, n.opts...)
}

// ID returns the node's ID as it reports itself: the active member with
// its proxy address in its own admin API (an earlier process on the same
// IP may still be listed as left or dead).
func (n *Node) ID(t testing.TB) string {
	t.Helper()
	for _, m := range n.Members(t) {
		if m.ProxyAddr == n.IP+":8000" && m.Status == cluster.StatusActive {
			return m.ID
		}
	}
	require.FailNow(t, "node does not list itself", n.Name)
	return ""
}

// WaitReady waits until GET /ready answers 200.
func (n *Node) WaitReady(t testing.TB, timeout time.Duration) {
	t.Helper()
	require.Eventually(t, func() bool {
		if n.Exited() {
			return true
		}
		resp, err := http.Get(n.AdminURL() + "/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, timeout, 20*time.Millisecond, "%s not ready", n.Name)
	require.False(t, n.Exited(), "%s exited before it was ready:\n%s", n.Name, n.Log())
}

// Members returns the node's view of the cluster.
func (n *Node) Members(t testing.TB) []cluster.NodeSummary {
	t.Helper()
	var out []cluster.NodeSummary
	getJSON(t, n.AdminURL()+"/status/cluster/nodes", &out)
	return out
}

// TryMembers returns the node's view of the cluster, or an error if the
// admin API cannot be reached (for use inside require.Eventually).
func (n *Node) TryMembers() ([]cluster.NodeSummary, error) {
	resp, err := http.Get(n.AdminURL() + "/status/cluster/nodes")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var nodes []cluster.NodeSummary
	if err := json.NewDecoder(resp.Body).Decode(&nodes); err != nil {
		return nil, err
	}
	return nodes, nil
}

// ActiveIDs returns the IDs the node lists as active, or nil if the admin
// API cannot be reached.
func (n *Node) ActiveIDs() []string {
	nodes, err := n.TryMembers()
	if err != nil {
		return nil
	}
	var ids []string
	for _, m := range nodes {
		if m.Status == cluster.StatusActive {
			ids = append(ids, m.ID)
		}
	}
	return ids
}

func getJSON(t testing.TB, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "GET %s", url)
	require.NoError(t, json.NewDecoder(resp.Body).Decode(v))
}

// StartAgent starts `pico agent http endpoint addr` connected to url.
func StartAgent(t testing.TB, connectURL, endpoint, addr string, extra ...string) *Process {
	t.Helper()
	args := append([]string{"agent", "http", endpoint, addr, "--connect.url", connectURL}, extra...)
	return StartProcess(t, "agent:"+endpoint, args)
}

// StartUpstream starts an HTTP service on a loopback port that answers with
// its name, the request path and body, after sleeping for the duration in
// the query parameter sleep if given; it returns its address.
func StartUpstream(t testing.TB, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if d, err := time.ParseDuration(r.URL.Query().Get("sleep")); err == nil {
			time.Sleep(d) // a slow upstream keeps requests in flight
		}
		w.Header().Set("X-Upstream", name)
		fmt.Fprintf(w, "%s %s %s", name, r.URL.Path, body)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return ln.Addr().String()
}

// proxyGet sends GET path for endpoint through a node's proxy port and
// returns status and body (status 0 on transport error).
func proxyGet(client *http.Client, proxyURL, endpoint, path string) (int, string) {
	req, _ := http.NewRequest(http.MethodGet, proxyURL+path, nil)
	req.Header.Set("x-pico-endpoint", endpoint)
	resp, err := client.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}
