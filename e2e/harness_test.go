//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pico-proxy/pico/internal/adminapi"
	"github.com/pico-proxy/pico/internal/testutil"
	"github.com/pico-proxy/pico/internal/testutil/picoproc"
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

// Process is a pico child process (picoproc.Process) whose output is
// printed when the test fails.
type Process struct {
	*picoproc.Process
}

// ProcOption adjusts how a process is started.
type ProcOption func(*picoproc.Spec)

// WithResolvConf runs the process in its own mount namespace where
// /etc/resolv.conf is the given file (needs root): its DNS view is the
// test's DNS server.
func WithResolvConf(path string) ProcOption {
	return func(s *picoproc.Spec) {
		s.Prepare = func(c *exec.Cmd) {
			args := append([]string{"-m", "--", "sh", "-c", `mount --bind "$0" /etc/resolv.conf && exec "$@"`, path}, c.Args...)
			c.Path, _ = exec.LookPath("unshare")
			c.Args = append([]string{"unshare"}, args...)
		}
	}
}

// WithEnv adds environment variables.
func WithEnv(kv ...string) ProcOption {
	return func(s *picoproc.Spec) { s.Env = append(s.Env, kv...) }
}

func spec(name string, args []string, opts []ProcOption) picoproc.Spec {
	s := picoproc.Spec{Name: name, Bin: picoBin, Args: args}
	for _, o := range opts {
		o(&s)
	}
	return s
}

// cleanupProcess kills p at cleanup if it is still running, and logs its
// output if the test failed, or always when $PICO_E2E_LOGS is set.
func cleanupProcess(t testing.TB, p *picoproc.Process) {
	t.Cleanup(func() {
		if !p.Exited() {
			_ = p.Kill(testutil.StopTimeout)
		}
		if t.Failed() || os.Getenv("PICO_E2E_LOGS") != "" {
			t.Logf("---- log of %s (%s) ----\n%s", p.Name, strings.Join(p.Args, " "), p.Log())
		}
	})
}

// StartProcess starts `pico args...`; it is stopped (SIGKILL) at cleanup if
// still running. Its output is logged at cleanup if the test failed, or
// always when $PICO_E2E_LOGS is set.
func StartProcess(t testing.TB, name string, args []string, opts ...ProcOption) *Process {
	t.Helper()
	p, err := picoproc.Start(spec(name, args, opts))
	require.NoError(t, err)
	cleanupProcess(t, p)
	return &Process{p}
}

// Terminate sends SIGTERM and waits up to timeout for the exit; it returns
// the exit code.
func (p *Process) Terminate(t testing.TB, timeout time.Duration) int {
	t.Helper()
	if _, err := p.Process.Terminate(timeout); errors.Is(err, picoproc.ErrTimeout) {
		require.FailNow(t, "process did not exit", "%s still running after %s", p.Name, timeout)
	}
	return p.ExitCode()
}

// Kill sends SIGKILL and waits for the exit.
func (p *Process) Kill(t testing.TB) {
	t.Helper()
	require.NoError(t, p.Process.Kill(10*time.Second), "process did not exit")
}

// Wait waits up to timeout for the process to exit and returns its code.
func (p *Process) Wait(t testing.TB, timeout time.Duration) int {
	t.Helper()
	if err := p.Process.Wait(timeout); errors.Is(err, picoproc.ErrTimeout) {
		require.FailNow(t, "process did not exit", "%s still running after %s", p.Name, timeout)
	}
	return p.ExitCode()
}

// Node is a `pico server` process (picoproc.Server) on its own loopback IP
// with the default ports.
type Node struct {
	*Process
	*picoproc.Server
	// extra and opts are the flags and options it was started with (for
	// StartAgain).
	extra []string
	opts  []ProcOption
}

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
	args := append([]string{
		"--server.graceful-shutdown-timeout", "20s",
		"--server.drain-delay", "1s", // the tests' load balancers drop a node before SIGTERM
		"--log.level", "debug",
	}, extra...)
	s, err := picoproc.StartServer(spec("server@"+ip, args, opts), ip)
	require.NoError(t, err)
	cleanupProcess(t, s.Process)
	return &Node{Process: &Process{s.Process}, Server: s, extra: extra, opts: opts}
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
		if m.ProxyAddr == n.IP+":8000" && m.Status == adminapi.StatusActive {
			return m.ID
		}
	}
	require.FailNow(t, "node does not list itself", n.Name)
	return ""
}

// WaitReady waits until GET /ready answers 200.
func (n *Node) WaitReady(t testing.TB, timeout time.Duration) {
	t.Helper()
	require.NoError(t, n.Server.WaitReady(timeout), "log of %s:\n%s", n.Name, n.Log())
}

// Members returns the node's view of the cluster.
func (n *Node) Members(t testing.TB) []adminapi.NodeSummary {
	t.Helper()
	out, err := n.Server.Members()
	require.NoError(t, err)
	return out
}

// TryMembers returns the node's view of the cluster, or an error if the
// admin API cannot be reached (for use inside require.Eventually).
func (n *Node) TryMembers() ([]adminapi.NodeSummary, error) { return n.Server.Members() }

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
