// Package picoproc runs pico binaries as child processes for the tools that
// drive real processes: the end-to-end tests (e2e/) and the benchmark
// (bench/). It owns a process's lifecycle (start with arguments, capture
// of its output, SIGTERM and wait with a timeout, kill) and a `pico server`
// on its own loopback IP with Pico's default ports (its addresses,
// readiness on the admin port, its view of the cluster).
//
// It reports failures as errors, never through testing.T, so that a
// command can use it as well as a test.
package picoproc

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/pico-proxy/pico/internal/testutil"
)

// ErrTimeout is returned (wrapped) when a process does not exit in time.
var ErrTimeout = errors.New("process did not exit in time")

// Spec describes a process to start.
type Spec struct {
	// Name names the process in errors.
	Name string
	// Bin is the executable, Args its arguments.
	Bin  string
	Args []string
	// Env is added to the environment the process inherits.
	Env []string
	// LogFile, when set, receives the process's output (appended) as
	// well as Log.
	LogFile string
	// Prepare adjusts the command before it starts, e.g. to run it
	// through another program.
	Prepare func(*exec.Cmd)
}

// Process is a running (or exited) child process.
type Process struct {
	Name    string
	Args    []string // the Spec's Args
	LogFile string   // the Spec's LogFile
	cmd     *exec.Cmd
	log     testutil.LogBuffer
	done    chan struct{}
	err     error // cmd.Wait's result, set before done is closed
}

// running holds every process started here that has not exited.
var running sync.Map

// Start starts the process described by s. Its stdout and stderr are
// kept (Log) and appended to s.LogFile when set.
func Start(s Spec) (*Process, error) {
	p := &Process{Name: s.Name, Args: s.Args, LogFile: s.LogFile, done: make(chan struct{})}
	cmd := exec.Command(s.Bin, s.Args...)
	cmd.Env = append(os.Environ(), s.Env...)
	if s.Prepare != nil {
		s.Prepare(cmd)
	}
	var out io.Writer = &p.log
	var logFile *os.File
	if s.LogFile != "" {
		f, err := os.OpenFile(s.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, fmt.Errorf("log file of %s: %w", s.Name, err)
		}
		logFile = f
		out = io.MultiWriter(&p.log, f)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		if logFile != nil {
			logFile.Close()
		}
		return nil, fmt.Errorf("starting %s: %w", s.Name, err)
	}
	p.cmd = cmd
	running.Store(p, struct{}{})
	go func() {
		p.err = cmd.Wait()
		if logFile != nil {
			logFile.Close()
		}
		running.Delete(p)
		close(p.done)
	}()
	return p, nil
}

// TerminateAll terminates every process started here that is still
// running (e.g. when the program is interrupted), each within timeout.
func TerminateAll(timeout time.Duration) {
	var wg sync.WaitGroup
	running.Range(func(k, _ any) bool {
		wg.Go(func() { _, _ = k.(*Process).Terminate(timeout) })
		return true
	})
	wg.Wait()
}

// PID is the process ID.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Log returns the process's output so far.
func (p *Process) Log() string { return p.log.String() }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Err is the process's exit error (nil for exit status 0, an
// *exec.ExitError otherwise); it is nil while the process runs.
func (p *Process) Err() error {
	if !p.Exited() {
		return nil
	}
	return p.err
}

// ExitCode is the exit status of an exited process (-1 if it was killed
// by a signal or is still running).
func (p *Process) ExitCode() int {
	if !p.Exited() {
		return -1
	}
	if p.err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// Wait waits up to timeout for the process to exit and returns its exit
// error; an error wrapping ErrTimeout if it is still running.
func (p *Process) Wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		return fmt.Errorf("%s still running after %s: %w", p.Name, timeout, ErrTimeout)
	}
}

// Terminate sends SIGTERM and waits up to timeout for the exit; a
// process still running then is killed, and the error wraps ErrTimeout.
// It returns how long the process took to exit and its exit error.
func (p *Process) Terminate(timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	if p.Exited() {
		return 0, p.err
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	err := p.Wait(timeout)
	if errors.Is(err, ErrTimeout) {
		_ = p.Kill(timeout)
		return time.Since(start), fmt.Errorf("%s did not exit within %s of SIGTERM; killed: %w", p.Name, timeout, ErrTimeout)
	}
	return time.Since(start), err
}

// Kill sends SIGKILL and waits up to timeout for the exit; the error
// wraps ErrTimeout if the process is still running.
func (p *Process) Kill(timeout time.Duration) error {
	_ = p.cmd.Process.Kill()
	if err := p.Wait(timeout); errors.Is(err, ErrTimeout) {
		return err
	}
	return nil
}
