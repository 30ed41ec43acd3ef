package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// report collects every section's result.
type report struct {
	Started, Finished time.Time
	Args              []string
	Addrs             addresses
	Machine           machine
	LoadAfter         string
	Headline          *throughputResult
	Sweep             *sweepResult
	Routable          *routableResult
	Rolling           *rollingResult
	Memory            *memoryResult
	Hops              *hopsResult
	Errors            []string
}

// machine describes where the figures were measured.
type machine struct {
	CPU, Kernel, Go, Pico, Commit, LoadBefore string
	CPUs                                      int
}

func machineFacts(pico string) machine {
	m := machine{CPUs: runtime.NumCPU(), Go: runtime.Version(), LoadBefore: loadAverage()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if out, err := exec.Command(pico, "version").Output(); err == nil {
		m.Pico = strings.TrimSpace(string(out))
	}
	if out, err := exec.Command("git", "describe", "--always", "--dirty").Output(); err == nil {
		m.Commit = strings.TrimSpace(string(out))
	}
	return m
}

// loadAverage returns the 1, 5 and 15 minute load averages.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// busy reports whether a load average (first field) shows other work
// competing for the CPUs.
func (m machine) busy(load string) bool {
	var one float64
	if _, err := fmt.Sscan(load, &one); err != nil {
		return false
	}
	return one > 0.5*float64(m.CPUs)
}

// table is a titled table rendered as Markdown or aligned text.
type table struct {
	title  string
	header []string
	rows   [][]string
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) markdown(w io.Writer) {
	fmt.Fprintf(w, "| %s |\n|", strings.Join(t.header, " | "))
	for i := range t.header {
		if i == 0 {
			fmt.Fprint(w, "---|")
		} else {
			fmt.Fprint(w, "---:|")
		}
	}
	fmt.Fprintln(w)
	for _, r := range t.rows {
		fmt.Fprintf(w, "| %s |\n", strings.Join(r, " | "))
	}
}

func (t *table) text(w io.Writer) {
	fmt.Fprintf(w, "\n%s\n\n", t.title)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, strings.Join(t.header, "\t")+"\t")
	for _, r := range t.rows {
		fmt.Fprintln(tw, strings.ReplaceAll(strings.Join(r, "\t"), "**", "")+"\t")
	}
	_ = tw.Flush()
}

// dur formats a latency for a table.
func dur(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	case d >= 100*time.Millisecond:
		return d.Round(time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	default:
		return d.Round(time.Microsecond).String()
	}
}

func usDur(us float64) time.Duration { return time.Duration(us * float64(time.Microsecond)) }

func pct(part, whole float64) string {
	if whole == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*part/whole)
}

func kib(b float64) string { return fmt.Sprintf("%.1f KiB", b/1024) }
func mib(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }

func rps(v float64) string { return fmt.Sprintf("%.0f", v) }

// headlineTable: every path at the headline concurrency.
func (r *report) headlineTable() *table {
	h := r.Headline
	t := &table{
		title: fmt.Sprintf("1. Direct vs through Pico: 1 KiB GET, %d connections, %s per run, median of %d interleaved rounds",
			h.Connections, h.Duration, max(h.Rounds, 1)),
		header: []string{"path", "req/s", "vs direct", "p50", "p99", "p99.9", "errors", "req/s over the rounds"},
	}
	direct := h.Results[pathDirect]
	for _, p := range headlinePaths {
		x, ok := h.Results[p]
		if !ok {
			continue
		}
		spread := "–"
		if s, ok := h.Spread[p]; ok {
			spread = rps(s[0]) + "–" + rps(s[1])
		}
		t.add(p, rps(x.RPS), pct(x.RPS, direct.RPS), dur(usDur(x.P50)), dur(usDur(x.P99)), dur(usDur(x.P999)), fmt.Sprint(x.Errors+x.Non2xx), spread)
	}
	return t
}

func (r *report) headlineRatios() string {
	h := r.Headline
	d, s, c := h.Results[pathDirect], h.Results[pathSingle], h.Results[pathCross]
	ratio := func(a, b float64) float64 {
		if b == 0 {
			return 0
		}
		return a / b
	}
	line := fmt.Sprintf("Single-node throughput is %s of direct (target ≥ 25%%), p50 through Pico is %.1f× direct (target ≤ 3×); "+
		"cross-node throughput is %s of single-node (target ≥ 70%%).",
		pct(s.RPS, d.RPS), ratio(s.P50, d.P50), pct(c.RPS, s.RPS))
	if u, ok := h.Results[pathReuse]; ok && u.RPS > 0 {
		line += fmt.Sprintf(" With upstream.reuse_streams: %s of direct, p50 %.1f× direct.", pct(u.RPS, d.RPS), ratio(u.P50, d.P50))
	}
	return line
}

// cpuTable: CPU time per request of every process on each path at the
// headline concurrency.
func (r *report) cpuTable() *table {
	h := r.Headline
	t := &table{
		title:  fmt.Sprintf("1b. CPU time per request (µs) at %d connections, by process", h.Connections),
		header: append(append([]string{"path"}, cpuComponents...), "total", fmt.Sprintf("req/s if %d CPUs did only this", r.Machine.CPUs)),
	}
	for _, p := range headlinePaths {
		x := h.Results[p]
		if x.Requests == 0 {
			continue
		}
		row := []string{p}
		var total time.Duration
		for _, c := range cpuComponents {
			total += x.CPU[c]
			row = append(row, fmt.Sprintf("%.0f", float64(x.CPU[c].Microseconds())/float64(x.Requests)))
		}
		perReq := float64(total.Microseconds()) / float64(x.Requests)
		row = append(row, fmt.Sprintf("**%.0f**", perReq), fmt.Sprintf("%.0f", float64(r.Machine.CPUs)*1e6/perReq))
		t.add(row...)
	}
	return t
}

// syscallTable: read and write system calls per request of the Pico
// processes on each path at the headline concurrency.
func (r *report) syscallTable() *table {
	h := r.Headline
	procs := []string{"node 1", "node 2", "agent"}
	t := &table{
		title:  fmt.Sprintf("1c. System calls per request at %d connections: reads / writes", h.Connections),
		header: append([]string{"path"}, procs...),
	}
	for _, p := range headlinePaths {
		x := h.Results[p]
		if x.Requests == 0 || p == pathDirect {
			continue
		}
		row := []string{p}
		for _, c := range procs {
			v, ok := x.Syscalls[c]
			if !ok {
				row = append(row, "")
				continue
			}
			row = append(row, fmt.Sprintf("%.2f / %.2f", float64(v[0])/float64(x.Requests), float64(v[1])/float64(x.Requests)))
		}
		t.add(row...)
	}
	return t
}

// Targets of the headline comparison (issue 2).
const (
	targetShare = 0.25 // single-node req/s ≥ 25% of direct
	targetP50   = 3.0  // single-node p50 ≤ 3× direct
)

// budgetNote turns the headline's measurements into what the targets
// demand: the CPU time per request that the throughput target leaves for
// the server and the agent, and (by Little's law: requests in flight =
// throughput × mean latency, with every connection always waiting on
// one request) the throughput that the p50 target implies.
//
// The CPU budget assumes the CPUs are as busy as they were on the direct
// path; on a small shared machine they never are all the time (idle
// moments while processes wait on each other), and no path can use the
// idle time the direct path left.
func (r *report) budgetNote() string {
	h := r.Headline
	d, s := h.Results[pathDirect], h.Results[pathSingle]
	if d.RPS == 0 || d.Requests == 0 || s.Requests == 0 || s.RPS == 0 || r.Machine.CPUs == 0 {
		return ""
	}
	perReq := func(x wrkResult, components ...string) float64 {
		var total time.Duration
		for _, c := range components {
			total += x.CPU[c]
		}
		return float64(total.Microseconds()) / float64(x.Requests)
	}
	busy := perReq(d, cpuComponents...) * d.RPS / (float64(r.Machine.CPUs) * 1e6)
	if busy <= 0 || busy > 1 {
		busy = 1
	}
	others := perReq(s, "wrk", "upstream")
	pico := perReq(s, "node 1", "agent")
	need := targetShare * d.RPS
	budget := busy * float64(r.Machine.CPUs) * 1e6 / need
	meanMs := float64(h.Connections) / s.RPS * 1e3
	p50ms := s.P50 / 1e3
	// Throughput at which the mean latency, scaled by this run's
	// p50-to-mean ratio, equals the p50 target.
	p50Need := float64(h.Connections) / (targetP50 * d.P50 / 1e6 * (p50ms / meanMs))
	return fmt.Sprintf("What the targets demand, from these figures: %s of direct is %s req/s. On the direct path the %d CPUs were busy %.0f%% of the time; "+
		"as busy, they serve %s req/s only at ≤ %.0f µs of CPU per request for all processes together. "+
		"wrk and the upstream used %.0f µs on the single-node path, leaving %.0f µs for node and agent, which used %.0f µs. "+
		"With %d connections each waiting on one request, mean latency is %d ÷ throughput (Little's law): %.2f ms at %s req/s (p50 %.2f ms). "+
		"A p50 of %.0f× direct (%.2f ms) at this p50-to-mean ratio needs about %s req/s, %s of direct.",
		pct(need, d.RPS), rps(need), r.Machine.CPUs, 100*busy, rps(need), budget, others, budget-others, pico,
		h.Connections, h.Connections, meanMs, rps(s.RPS), p50ms,
		targetP50, targetP50*d.P50/1e3, rps(p50Need), pct(p50Need, d.RPS))
}

func (r *report) sweepTable() *table {
	t := &table{
		title: fmt.Sprintf("2. Throughput and latency vs concurrent connections (1 KiB GET, %s per run)", r.Sweep.Duration),
		header: []string{"connections", "direct req/s", "single-node req/s", "cross-node req/s",
			"direct p50 / p99", "single-node p50 / p99", "cross-node p50 / p99", "errors"},
	}
	for _, l := range r.Sweep.Levels {
		d, s, c := l.Results[pathDirect], l.Results[pathSingle], l.Results[pathCross]
		lat := func(x wrkResult) string { return dur(usDur(x.P50)) + " / " + dur(usDur(x.P99)) }
		errs := d.Errors + d.Non2xx + s.Errors + s.Non2xx + c.Errors + c.Non2xx
		t.add(fmt.Sprint(l.Connections), rps(d.RPS),
			fmt.Sprintf("%s (%s)", rps(s.RPS), pct(s.RPS, d.RPS)),
			fmt.Sprintf("%s (%s)", rps(c.RPS), pct(c.RPS, d.RPS)),
			lat(d), lat(s), lat(c), fmt.Sprint(errs))
	}
	return t
}

func (r *report) memoryTable() *table {
	m := r.Memory
	t := &table{
		title:  fmt.Sprintf("3. Memory per idle upstream connection: %d WebSocket + yamux sessions on one node", m.Sessions),
		header: []string{"measure", "before", "after", "per session"},
	}
	verdict := "meets"
	if m.perSession() > 32<<10 {
		verdict = "misses"
	}
	t.add("**RSS (VmRSS)**", mib(float64(m.RSSBefore)), mib(float64(m.RSSAfter)),
		fmt.Sprintf("**%s** (%s the 32 KiB target)", kib(m.perSession()), verdict))
	heap := func(g goMemory) float64 { return g.HeapInuse + g.StackInuse }
	t.add("Go heap + stacks in use", mib(heap(m.GoBefore)), mib(heap(m.GoAfter)),
		kib((heap(m.GoAfter)-heap(m.GoBefore))/float64(m.Sessions)))
	t.add("goroutines", fmt.Sprint(m.GoroutinesBefore), fmt.Sprint(m.GoroutinesAfter),
		fmt.Sprintf("%.1f", (m.GoroutinesAfter-m.GoroutinesBefore)/float64(m.Sessions)))
	t.add("peak RSS (VmHWM)", "", mib(float64(m.RSSPeak)), "")
	return t
}

func (r *report) memoryFacts() string {
	m := r.Memory
	return fmt.Sprintf("%d distinct endpoints; all sessions registered %s after the first dial; "+
		"the server's open-files limit (inherited from pico-bench) was %s.",
		m.Endpoints, m.ConnectTime.Round(100*time.Millisecond), m.OpenFilesLimit)
}

func (r *report) routableTable() *table {
	rt := r.Routable
	t := &table{
		title:  fmt.Sprintf("4. Time until a new endpoint is routable, %d new endpoints on a %d-node cluster", len(rt.Samples), rt.Nodes),
		header: []string{"measured at", "p50", "p90", "max"},
	}
	row := func(name string, ds []time.Duration) {
		s := slices.Clone(ds)
		slices.Sort(s)
		t.add(name, dur(percentile(s, 50)), dur(percentile(s, 90)), dur(percentile(s, 100)))
	}
	row("**every node**", rt.everywhere())
	for i := range rt.Nodes {
		name := fmt.Sprintf("node %d", i+1)
		if i == 0 {
			name += " (agent's node)"
		}
		row(name, column(rt.Samples, i))
	}
	row("for scale: one request once routable, any node", rt.requests())
	return t
}

func (r *report) rollingTable() *table {
	rr := r.Rolling
	t := &table{
		title:  fmt.Sprintf("5. Rolling restart of a 3-node cluster under %d req/s", rr.Rate),
		header: []string{"node", "SIGTERM → exit", "exit", "start → /ready", "failed requests", "new process: requests served, upstreams at the end"},
	}
	for _, x := range rr.Restarts {
		exit := "0"
		if x.ExitErr != "" {
			exit = x.ExitErr
		}
		t.add(x.IP, dur(x.Drain), exit, dur(x.Start), fmt.Sprint(x.Failures), fmt.Sprintf("%.0f, %.0f", x.Served, x.Upstreams))
	}
	l := rr.Load
	t.add("**total**", "", "", "", fmt.Sprintf("**%d of %d**", len(l.Failed), l.Requests), "")
	return t
}

func (r *report) rollingFacts() string {
	rr := r.Rolling
	l := rr.Load
	facts := fmt.Sprintf("%d requests in %s; client latency p50 %s, p99 %s, max %s.",
		l.Requests, rr.Duration.Round(time.Second), dur(l.P50), dur(l.P99), dur(l.Max))
	if rr.AfterRestart != nil {
		total := 0.0
		for _, v := range rr.AfterRestart {
			total += v
		}
		fair := total / float64(len(rr.AfterRestart))
		facts += fmt.Sprintf(" Upstreams per node after the last restart: %s (fair share %.0f)", counts(rr.AfterRestart), fair)
		if rr.Balanced {
			facts += fmt.Sprintf("; rebalanced to %s (every node within %.1f–%.1f × the fair share) %.1f s later.",
				counts(rr.AfterRebalance), rebalanceLow, rebalanceHigh, rr.BalanceTime.Seconds())
		} else {
			facts += fmt.Sprintf("; **not** rebalanced within %s: %s.", rebalanceTimeout, counts(rr.AfterRebalance))
		}
	}
	return facts
}

// counts formats upstream counts per node as "12, 9, 9".
func counts(c []float64) string {
	parts := make([]string, len(c))
	for i, v := range c {
		parts[i] = fmt.Sprintf("%.0f", v)
	}
	return strings.Join(parts, ", ")
}

// section is one measured table with a line of facts and how it was
// measured.
type section struct {
	id     string // the option name of the section
	table  *table
	facts  string
	method string
}

// sections returns every section that has a result, in report order.
func (r *report) sections() []section {
	var out []section
	if r.Headline != nil {
		out = append(out, section{"headline", r.headlineTable(), r.headlineRatios(), methodHeadline})
		out = append(out, section{"cpu", r.cpuTable(), r.budgetNote(), methodCPU})
		out = append(out, section{"syscalls", r.syscallTable(), "", methodSyscalls})
	}
	if r.Sweep != nil {
		var levels []string
		for _, l := range r.Sweep.Levels {
			levels = append(levels, fmt.Sprint(l.Connections))
		}
		out = append(out, section{"sweep", r.sweepTable(), "", fmt.Sprintf(methodSweep, strings.Join(levels, ", "))})
	}
	if r.Memory != nil {
		out = append(out, section{"memory", r.memoryTable(), r.memoryFacts(), methodMemory})
	}
	if r.Routable != nil {
		out = append(out, section{"routable", r.routableTable(), "", methodRoutable})
	}
	if r.Rolling != nil {
		out = append(out, section{"rolling", r.rollingTable(), r.rollingFacts(), methodRolling})
	}
	if r.Hops != nil {
		out = append(out, section{"hops", r.hopsTable(), "", methodHops})
	}
	return out
}

func (r *report) command() string {
	if len(r.Args) == 0 {
		return "make bench"
	}
	return "make bench BENCH_FLAGS='" + strings.Join(r.Args, " ") + "'"
}

// writeText prints the tables to w.
func (r *report) writeText(w io.Writer) {
	for _, x := range r.sections() {
		x.table.text(w)
		if x.facts != "" {
			fmt.Fprintf(w, "\n%s\n", x.facts)
		}
	}
	if r.Rolling != nil {
		for _, f := range r.Rolling.Load.Failed {
			fmt.Fprintf(w, "  failed: %s\n", f)
		}
	}
	for _, e := range r.Errors {
		fmt.Fprintf(w, "\nSECTION FAILED: %s\n", e)
	}
}

// writeFiles writes RESULTS.md and results.png to dir.
func (r *report) writeFiles(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	chart := r.Sweep != nil && len(r.Sweep.Levels) > 0
	if chart {
		if err := r.writeChart(filepath.Join(dir, "results.png")); err != nil {
			return fmt.Errorf("chart: %w", err)
		}
	}
	var b bytes.Buffer
	r.markdown(&b, chart)
	return os.WriteFile(filepath.Join(dir, "RESULTS.md"), b.Bytes(), 0o644)
}
