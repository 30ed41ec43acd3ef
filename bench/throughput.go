package main

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// Paths compared by the throughput sections.
const (
	pathDirect = "direct"
	pathSingle = "pico single-node"
	pathCross  = "pico cross-node"
	// pathReuse is single-node with upstream.reuse_streams on (HTTP
	// keep-alive over streams instead of a stream per request), measured
	// at the headline concurrency only.
	pathReuse = "pico single-node, reuse_streams"
)

// paths are measured at every concurrency; headlinePaths at the
// headline's.
var (
	paths         = []string{pathDirect, pathSingle, pathCross}
	headlinePaths = append(slices.Clip(paths), pathReuse)
)

// throughputResult is the headline comparison at one concurrency.
type throughputResult struct {
	Connections int
	Duration    time.Duration
	// Rounds is how many times every path ran, in turn; Results holds
	// each path's median round by requests/s, and Spread each path's
	// lowest and highest requests/s over the rounds.
	Rounds  int
	Results map[string]wrkResult // by path
	Spread  map[string][2]float64
}

// sweepResult is throughput and latency at several concurrencies.
type sweepResult struct {
	Duration time.Duration
	Levels   []throughputResult
}

// startBenchAgent connects a `pico agent` for endpoint "bench" to node 1
// and waits until nodes 1 and 2 route to it.
func (e *env) startBenchAgent() error {
	if e.benchAgent != nil {
		return nil
	}
	nodes, err := e.cluster()
	if err != nil {
		return err
	}
	a, err := startProc(e.o.pico, e.tmp, "agent-bench", "agent", "http", "bench", e.upstream,
		"--connect.url", nodes[0].upstreamURL(), "--log.level", "warn")
	if err != nil {
		return err
	}
	e.benchAgent = a
	for _, n := range nodes[:2] {
		if _, err := waitStatus(n.proxyURL(), "bench", 20*time.Second); err != nil {
			return fmt.Errorf("node %s never routed to the bench agent: %w (logs in %s)", n.ip, err, e.tmp)
		}
	}
	return nil
}

func (e *env) stopBenchAgent() {
	if e.benchAgent != nil {
		e.benchAgent.stop()
		e.benchAgent = nil
	}
}

// standalone is a node of its own with one agent in front of the
// upstream: the reuse_streams path, and each side of --ab.
type standalone struct {
	node  *node
	agent *proc
}

// startStandalone starts bin as a standalone node on the memory node's
// address (with the server flags extra) and as its agent, and waits until
// the node routes to the agent.
func (e *env) startStandalone(bin, name string, extra ...string) (*standalone, error) {
	n, err := startNodeOf(bin, e.tmp, e.o.addrs.memory, nil, extra...)
	if err != nil {
		return nil, err
	}
	a, err := startProc(bin, e.tmp, "agent-"+name, "agent", "http", "bench", e.upstream,
		"--connect.url", n.upstreamURL(), "--log.level", "warn")
	if err != nil {
		n.stop()
		return nil, err
	}
	s := &standalone{node: n, agent: a}
	if _, err := waitStatus(n.proxyURL(), "bench", 20*time.Second); err != nil {
		s.stop()
		return nil, fmt.Errorf("the %s node never routed to its agent: %w (logs in %s)", name, err, e.tmp)
	}
	return s, nil
}

func (s *standalone) stop() {
	s.agent.stop()
	s.node.stop()
}

// startReuse starts the reuse_streams path's node and agent (stopped
// before the memory section, which uses the same address).
func (e *env) startReuse() (*standalone, error) {
	return e.startStandalone(e.o.pico, "reuse", "--upstream.reuse-streams")
}

// measureLevel runs wrk on each of the paths at one concurrency, the
// direct baseline first, rounds times over (interleaved, so that a
// passing disturbance of the shared machine hits one round of every path
// rather than all of one path), and keeps each path's median round.
// reuse is needed for pathReuse.
func (e *env) measureLevel(connections int, d time.Duration, rounds int, paths []string, reuse *standalone) (throughputResult, error) {
	if err := e.startBenchAgent(); err != nil {
		return throughputResult{}, err
	}
	nodes := e.nodes
	urls := map[string]string{
		pathDirect: "http://" + e.upstream + "/",
		pathSingle: nodes[0].proxyURL() + "/",
		pathCross:  nodes[1].proxyURL() + "/",
	}
	if reuse != nil {
		urls[pathReuse] = reuse.node.proxyURL() + "/"
	}
	res := throughputResult{Connections: connections, Duration: d, Rounds: rounds, Results: map[string]wrkResult{}, Spread: map[string][2]float64{}}
	all := map[string][]wrkResult{}
	for round := 1; round <= rounds; round++ {
		for _, p := range paths {
			endpoint := "bench"
			if p == pathDirect {
				endpoint = ""
			}
			e.logf("  wrk %-31s -c %-4d %s  round %d/%d", p, connections, d, round, rounds)
			pids := e.picoPIDs(p, reuse)
			before, ioBefore := cpuSample(pids), syscallSample(pids)
			r, err := e.wrk.run(urls[p], endpoint, connections, d)
			if err != nil {
				return res, fmt.Errorf("%s at %d connections: %w", p, connections, err)
			}
			for k, v := range cpuSample(pids) {
				r.CPU[k] = v - before[k]
			}
			r.Syscalls = map[string][2]int64{}
			for k, v := range syscallSample(pids) {
				if b, ok := ioBefore[k]; ok {
					r.Syscalls[k] = [2]int64{v[0] - b[0], v[1] - b[1]}
				}
			}
			all[p] = append(all[p], r)
		}
	}
	for p, runs := range all {
		slices.SortFunc(runs, func(a, b wrkResult) int { return cmp.Compare(a.RPS, b.RPS) })
		res.Results[p] = runs[len(runs)/2]
		res.Spread[p] = [2]float64{runs[0].RPS, runs[len(runs)-1].RPS}
	}
	return res, nil
}

func (e *env) runHeadline() error {
	reuse, err := e.startReuse()
	if err != nil {
		return err
	}
	defer reuse.stop()
	r, err := e.measureLevel(e.o.connections, e.o.duration, e.o.rounds, headlinePaths, reuse)
	if err != nil {
		return err
	}
	e.rep.Headline = &r
	return nil
}

func (e *env) runSweep() error {
	s := &sweepResult{Duration: e.o.sweepDuration}
	for _, c := range e.o.sweep {
		r, err := e.measureLevel(c, e.o.sweepDuration, 1, paths, nil)
		if err != nil {
			return err
		}
		s.Levels = append(s.Levels, r)
	}
	e.rep.Sweep = s
	return nil
}

// Components whose CPU time is accounted per request, besides wrk.
var cpuComponents = []string{"wrk", "upstream", "node 1", "node 2", "agent"}

// picoPIDs: the Pico processes of path by component. On pathReuse the
// reuse node counts as node 1 and its agent as the agent.
func (e *env) picoPIDs(path string, reuse *standalone) map[string]int {
	if path == pathReuse {
		return reuse.pids()
	}
	return map[string]int{"node 1": e.nodes[0].pid(), "node 2": e.nodes[1].pid(), "agent": e.benchAgent.pid()}
}

// pids: the standalone node as "node 1" and its agent as "agent".
func (s *standalone) pids() map[string]int {
	return map[string]int{"node 1": s.node.pid(), "agent": s.agent.pid()}
}

// syscallSample reads the read and write system calls the processes pids
// have made so far.
func syscallSample(pids map[string]int) map[string][2]int64 {
	s := map[string][2]int64{}
	for name, pid := range pids {
		if r, w, err := procSyscalls(pid); err == nil {
			s[name] = [2]int64{r, w}
		}
	}
	return s
}

// cpuSample reads the CPU time used so far by the upstream (this
// process) and by the processes pids.
func cpuSample(pids map[string]int) map[string]time.Duration {
	s := map[string]time.Duration{"upstream": selfCPU()}
	for name, pid := range pids {
		if v, err := procCPU(pid); err == nil {
			s[name] = v
		}
	}
	return s
}
