// Command pico-bench produces Pico's benchmark report: every figure from
// one run on this machine, each with its direct baseline.
//
// It starts an in-process HTTP upstream serving 1 KiB bodies, a 3-node
// `pico server` cluster on loopback addresses (127.0.0.61-63 by default)
// and `pico agent` processes, drives
// HTTP load with wrk (installed with apt-get if missing) and measures:
//
//   - headline: requests/s, p50, p99 and p99.9 latency of a 1 KiB GET with
//     50 connections, direct vs single-node vs cross-node;
//   - sweep: the same at 1, 10, 100 and 1 000 connections;
//   - routable: how long after an agent registers a new endpoint on node 1
//     every node routes to it;
//   - rolling: failed requests while every node of the cluster is restarted
//     under steady load behind round-robin load balancers;
//   - memory: a fresh node's resident memory per idle upstream connection
//     with 10 000 WebSocket + yamux sessions.
//
// It prints the tables and writes bench/RESULTS.md and bench/results.png.
//
// It is its own Go module (so that gonum/plot stays out of Pico's go.mod)
// and runs from the repository's root:
//
//	make bench [BENCH_FLAGS='--sections headline,sweep,... --duration 5s']
//	go -C bench build -o ../bin/pico-bench . && bin/pico-bench [--pico bin/pico] [--out bench] [...]
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pico-proxy/pico/internal/testutil/picoproc"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "pico-bench:", err)
		os.Exit(1)
	}
}

// Sections, in the order they run.
var allSections = []string{"headline", "sweep", "routable", "rolling", "memory", "hops"}

type options struct {
	pico          string
	out           string
	sections      []string
	duration      time.Duration
	rounds        int
	connections   int
	threads       int
	sweep         []int
	sweepDuration time.Duration
	sessions      int
	routableRuns  int
	rollingRate   int
	keepLogs      bool
	addrs         addresses
	// abBase: compare this build of pico with --pico instead of running
	// the sections (runAB).
	abBase string
	// serveRelay: only run one relay of the hops section.
	serveRelay string
}

func parseFlags(args []string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("pico-bench", flag.ContinueOnError)
	fs.StringVar(&o.pico, "pico", "bin/pico", "pico binary")
	fs.StringVar(&o.out, "out", "bench", "directory for RESULTS.md and results.png (empty: print only)")
	sections := fs.String("sections", strings.Join(allSections, ","), "sections to run, comma-separated")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "length of each headline wrk run")
	fs.IntVar(&o.rounds, "rounds", 3, "headline rounds: every path runs this many times, interleaved, and its median round is reported")
	fs.IntVar(&o.connections, "connections", 50, "connections of the headline runs")
	fs.IntVar(&o.threads, "threads", 2, "wrk threads")
	sweep := fs.String("sweep", "1,10,100,1000", "connection counts of the concurrency sweep")
	fs.DurationVar(&o.sweepDuration, "sweep-duration", 5*time.Second, "length of each sweep wrk run")
	fs.IntVar(&o.sessions, "sessions", 10000, "idle upstream sessions of the memory section")
	fs.IntVar(&o.routableRuns, "routable-runs", 20, "new endpoints timed by the routable section")
	fs.IntVar(&o.rollingRate, "rolling-rate", 200, "requests/s during the rolling restart")
	fs.BoolVar(&o.keepLogs, "keep-logs", false, "keep the directory with the servers' and agents' logs (kept anyway when a section fails)")
	fs.StringVar(&o.abBase, "ab", "", "base pico binary: instead of the sections, compare it with --pico in --rounds interleaved rounds on the single-node path (--connections, --duration, --sweep-duration) and print a table")
	fs.StringVar(&o.serveRelay, "serve-relay", "", "only run one relay of the hops section (tcp|http,LISTEN,TARGET) until SIGTERM")
	firstIP := fs.String("first-ip", "127.0.0.60", "first of the 9 consecutive loopback addresses used: balancers, 3 cluster nodes, the memory node and 4 client sources")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	for _, s := range strings.Split(*sections, ",") {
		if !slices.Contains(allSections, s) {
			return nil, fmt.Errorf("--sections: unknown section %q; use some of %s", s, strings.Join(allSections, ","))
		}
		o.sections = append(o.sections, s)
	}
	for _, s := range strings.Split(*sweep, ",") {
		c, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || c < 1 {
			return nil, fmt.Errorf("--sweep: %q is not a positive connection count", s)
		}
		o.sweep = append(o.sweep, c)
	}
	var err error
	if o.addrs, err = planAddresses(*firstIP); err != nil {
		return nil, err
	}
	switch {
	case o.duration < time.Second || o.sweepDuration < time.Second:
		return nil, errors.New("--duration and --sweep-duration must be at least 1s (wrk's resolution)")
	case o.rounds < 1:
		return nil, errors.New("--rounds must be at least 1")
	case o.connections < 1 || o.threads < 1 || o.sessions < 1 || o.routableRuns < 1 || o.rollingRate < 1:
		return nil, errors.New("--connections, --threads, --sessions, --routable-runs and --rolling-rate must be positive")
	}
	return o, nil
}

// env is the state shared by the sections.
type env struct {
	o          *options
	tmp        string
	upstream   string // address of the in-process 1 KiB upstream
	wrk        *wrk
	nodes      []*node // the 3-node cluster, started on first use
	benchAgent *proc
	rep        *report
	progress   io.Writer
}

func (e *env) logf(format string, args ...any) {
	fmt.Fprintf(e.progress, format+"\n", args...)
}

// cluster starts the 3-node cluster once: node 1 alone, nodes 2 and 3
// joining it, then waits until every node sees three active members.
func (e *env) cluster() ([]*node, error) {
	if e.nodes != nil {
		return e.nodes, nil
	}
	ips := e.o.addrs.cluster
	e.logf("starting a 3-node cluster on %s", strings.Join(ips, ", "))
	for i, ip := range ips {
		var join []string
		if i > 0 {
			join = ips[:1]
		}
		n, err := startNode(e.o, e.tmp, ip, join)
		if err != nil {
			e.stopCluster()
			return nil, err
		}
		e.nodes = append(e.nodes, n)
	}
	if err := waitMembers(e.nodes, len(e.nodes), 20*time.Second); err != nil {
		e.stopCluster()
		return nil, err
	}
	return e.nodes, nil
}

func (e *env) stopCluster() {
	e.stopBenchAgent()
	for _, n := range e.nodes {
		n.stop()
	}
	e.nodes = nil
}

func run() error {
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if o.serveRelay != "" {
		return serveRelay(o.serveRelay)
	}
	if _, err := os.Stat(o.pico); err != nil {
		return fmt.Errorf("--pico: %w (run make build first)", err)
	}
	if o.abBase != "" {
		if _, err := os.Stat(o.abBase); err != nil {
			return fmt.Errorf("--ab: %w", err)
		}
	}
	if err := raiseOpenFilesLimit(); err != nil {
		return err
	}
	// SIGINT or SIGTERM: stop the servers and agents, then exit.
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		sig := <-signals
		fmt.Fprintf(os.Stderr, "pico-bench: %s: stopping the servers and agents\n", sig)
		picoproc.TerminateAll(15 * time.Second)
		os.Exit(1)
	}()
	tmp, err := os.MkdirTemp("", "pico-bench")
	if err != nil {
		return err
	}
	rep := &report{Started: time.Now(), Args: os.Args[1:], Addrs: o.addrs, Machine: machineFacts(o.pico)}
	e := &env{o: o, tmp: tmp, rep: rep, progress: os.Stderr}
	upstream, stopUpstream, err := startUpstream()
	if err != nil {
		return err
	}
	defer stopUpstream()
	e.upstream = upstream
	if e.wrk, err = newWrk(tmp, o.threads); err != nil {
		return err
	}

	if o.abBase != "" {
		defer os.RemoveAll(tmp)
		return e.runAB()
	}

	steps := map[string]func() error{
		"headline": e.runHeadline,
		"sweep":    e.runSweep,
		"routable": e.runRoutable,
		"rolling":  e.runRolling,
		"memory": func() error {
			e.stopCluster() // measure on a quiet machine
			return e.runMemory()
		},
		"hops": func() error {
			e.stopCluster()
			return e.runHops()
		},
	}
	failed := 0
	for _, s := range allSections {
		if !slices.Contains(o.sections, s) {
			continue
		}
		e.logf("== %s", s)
		t := time.Now()
		if err := steps[s](); err != nil {
			failed++
			rep.Errors = append(rep.Errors, fmt.Sprintf("%s: %v", s, err))
			e.logf("%s failed: %v", s, err)
		}
		e.logf("   %s took %s", s, time.Since(t).Round(time.Second))
	}
	e.stopCluster()
	rep.Finished = time.Now()
	rep.LoadAfter = loadAverage()

	rep.writeText(os.Stdout)
	if o.out != "" {
		if err := rep.writeFiles(o.out); err != nil {
			return err
		}
		fmt.Printf("\nwrote %s and %s\n", filepath.Join(o.out, "RESULTS.md"), filepath.Join(o.out, "results.png"))
	}
	if failed > 0 {
		return fmt.Errorf("%d section(s) failed (logs in %s)", failed, tmp)
	}
	if o.keepLogs {
		fmt.Fprintf(os.Stderr, "logs in %s\n", tmp)
		return nil
	}
	_ = os.RemoveAll(tmp)
	return nil
}

// raiseOpenFilesLimit lifts the soft RLIMIT_NOFILE to the hard limit.
// Setting it explicitly (rather than relying on the Go runtime's own
// raise) makes the child processes (the servers) inherit it.
func raiseOpenFilesLimit() error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("reading RLIMIT_NOFILE: %w", err)
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("raising RLIMIT_NOFILE to %d: %w", lim.Max, err)
	}
	return nil
}

// addresses are the loopback addresses pico-bench uses, consecutive from
// --first-ip.
type addresses struct {
	balancer string   // the load balancers (ports 8000 and 8001)
	cluster  []string // the 3-node cluster
	memory   string   // the node of the memory section
	sources  []string // source addresses of the memory section's sessions
}

func planAddresses(first string) (addresses, error) {
	ip := net.ParseIP(first).To4()
	if ip == nil || !ip.IsLoopback() || ip[3] > 255-8 {
		return addresses{}, fmt.Errorf("--first-ip: %q must be an IPv4 loopback address with 8 more after it (e.g. 127.0.0.60)", first)
	}
	at := func(i int) string { return net.IPv4(ip[0], ip[1], ip[2], ip[3]+byte(i)).String() }
	return addresses{
		balancer: at(0),
		cluster:  []string{at(1), at(2), at(3)},
		memory:   at(4),
		sources:  []string{at(5), at(6), at(7), at(8)},
	}, nil
}

func (a addresses) String() string {
	return fmt.Sprintf("load balancers %s, cluster %s, memory node %s, memory clients %s",
		a.balancer, strings.Join(a.cluster, " "), a.memory, strings.Join(a.sources, " "))
}
