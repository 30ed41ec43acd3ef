package picoproc

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pico-proxy/pico/internal/adminapi"
	"github.com/stretchr/testify/require"
)

// The test binary doubles as the child process: with $PICOPROC_CHILD set
// it behaves as that child instead of running the tests.
func TestMain(m *testing.M) {
	if mode := os.Getenv("PICOPROC_CHILD"); mode != "" {
		child(mode, os.Args[1:])
		return
	}
	os.Exit(m.Run())
}

func child(mode string, args []string) {
	switch mode {
	case "output":
		fmt.Println("to stdout")
		fmt.Fprintln(os.Stderr, "to stderr")
		os.Exit(3)
	case "graceful": // exits 0 on SIGTERM
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM)
		fmt.Println("waiting")
		<-sig
		os.Exit(0)
	case "stubborn": // ignores SIGTERM
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("waiting")
		time.Sleep(time.Minute)
	case "server": // answers the admin API like `pico server`
		fs := flag.NewFlagSet("server", flag.ExitOnError)
		admin := fs.String("admin.bind-addr", "", "")
		for _, f := range []string{"proxy.bind-addr", "upstream.bind-addr", "gossip.bind-addr"} {
			fs.String(f, "", "")
		}
		_ = fs.Parse(args[1:])
		mux := http.NewServeMux()
		mux.HandleFunc("/ready", func(w http.ResponseWriter, _ *http.Request) {})
		mux.HandleFunc("/status/cluster/nodes", func(w http.ResponseWriter, _ *http.Request) {
			_ = json.NewEncoder(w).Encode([]adminapi.NodeSummary{
				{NodeInfo: adminapi.NodeInfo{ID: "self", Status: adminapi.StatusActive}},
				{NodeInfo: adminapi.NodeInfo{ID: "gone", Status: adminapi.StatusLeft}},
			})
		})
		fmt.Println(http.ListenAndServe(*admin, mux))
		os.Exit(1)
	}
	os.Exit(2)
}

func startChild(t *testing.T, mode string, s Spec) *Process {
	t.Helper()
	s.Name, s.Bin = mode, os.Args[0]
	s.Env = append(s.Env, "PICOPROC_CHILD="+mode)
	p, err := Start(s)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Kill(10 * time.Second) })
	return p
}

func waitOutput(t *testing.T, p *Process, want string) {
	t.Helper()
	require.Eventually(t, func() bool { return strings.Contains(p.Log(), want) }, 20*time.Second, 10*time.Millisecond,
		"%s never printed %q", p.Name, want)
}

func TestStartCapturesOutputInLogAndLogFile(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "child.log")
	p := startChild(t, "output", Spec{LogFile: logFile})
	var ee *exec.ExitError
	require.ErrorAs(t, p.Wait(20*time.Second), &ee)
	require.Equal(t, 3, p.ExitCode())
	require.Contains(t, p.Log(), "to stdout\n")
	require.Contains(t, p.Log(), "to stderr\n")
	b, err := os.ReadFile(logFile)
	require.NoError(t, err)
	require.Equal(t, p.Log(), string(b))
}

func TestStartFailureNamesTheProcess(t *testing.T) {
	_, err := Start(Spec{Name: "nothing", Bin: filepath.Join(t.TempDir(), "missing")})
	require.ErrorContains(t, err, "starting nothing")
}

func TestTerminateWaitsForAGracefulExit(t *testing.T) {
	p := startChild(t, "graceful", Spec{})
	waitOutput(t, p, "waiting")
	require.False(t, p.Exited())
	took, err := p.Terminate(20 * time.Second)
	require.NoError(t, err)
	require.Positive(t, took)
	require.True(t, p.Exited())
	require.Equal(t, 0, p.ExitCode())
}

func TestTerminateKillsAProcessThatIgnoresSIGTERM(t *testing.T) {
	p := startChild(t, "stubborn", Spec{})
	waitOutput(t, p, "waiting")
	_, err := p.Terminate(300 * time.Millisecond)
	require.ErrorIs(t, err, ErrTimeout)
	require.ErrorContains(t, err, "killed")
	require.True(t, p.Exited())
	require.Equal(t, -1, p.ExitCode(), "killed by a signal")
}

func TestWaitTimesOutWithoutStopping(t *testing.T) {
	p := startChild(t, "stubborn", Spec{})
	require.ErrorIs(t, p.Wait(100*time.Millisecond), ErrTimeout)
	require.False(t, p.Exited())
	require.Equal(t, -1, p.ExitCode())
	require.NoError(t, p.Kill(20*time.Second))
	require.True(t, p.Exited())
}

func TestTerminateAllStopsEveryRunningProcess(t *testing.T) {
	a := startChild(t, "graceful", Spec{})
	b := startChild(t, "graceful", Spec{})
	waitOutput(t, a, "waiting")
	waitOutput(t, b, "waiting")
	TerminateAll(20 * time.Second)
	require.True(t, a.Exited())
	require.True(t, b.Exited())
	require.Equal(t, 0, a.ExitCode())
}

func TestPrepareAdjustsTheCommand(t *testing.T) {
	p := startChild(t, "graceful", Spec{Prepare: func(c *exec.Cmd) {
		c.Env = append(c.Env, "PICOPROC_CHILD=output") // the last value wins
	}})
	require.Error(t, p.Wait(20*time.Second))
	require.Equal(t, 3, p.ExitCode())
}

// testIP is a loopback address no other suite of this repository uses.
const testIP = "127.0.251.1"

func TestServerReadyAndMembers(t *testing.T) {
	s, err := StartServer(Spec{Name: "server", Bin: os.Args[0], Env: []string{"PICOPROC_CHILD=server"}}, testIP)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Process.Kill(10 * time.Second) })
	require.Equal(t, "server", s.Process.Args[0])
	require.Contains(t, strings.Join(s.Process.Args, " "), "--admin.bind-addr "+testIP+":8002")
	require.Equal(t, "http://"+testIP+":8000", s.ProxyURL())
	require.Equal(t, "http://"+testIP+":8001", s.UpstreamURL())
	require.Equal(t, testIP+":8003", s.GossipAddr())

	require.NoError(t, s.WaitReady(20*time.Second), s.Process.Log())
	require.ErrorContains(t, PortsFree(testIP), testIP+":8002 is taken")
	members, err := s.Members()
	require.NoError(t, err)
	require.Len(t, members, 2)
	require.Equal(t, []string{"self"}, s.ActiveIDs())

	require.NoError(t, s.Process.Kill(10*time.Second))
	require.Nil(t, s.ActiveIDs(), "admin API gone")
	require.NoError(t, PortsFree(testIP))
}

func TestServerWaitReadyFailsWhenTheProcessExits(t *testing.T) {
	// The "output" child exits 3 at once.
	s, err := StartServer(Spec{Name: "early", Bin: os.Args[0], Env: []string{"PICOPROC_CHILD=output"}}, testIP)
	require.NoError(t, err)
	err = s.WaitReady(20 * time.Second)
	require.ErrorContains(t, err, "early exited before it was ready")
	require.False(t, errors.Is(err, ErrTimeout))
}
