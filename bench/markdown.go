package main

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// How each section was measured, for RESULTS.md.
const (
	methodHeadline = `wrk (the Debian package; 2 threads, keep-alive connections) loads the paths in turn with the same GET answered by a 1 KiB body. *direct*: the upstream itself, a Go net/http server inside pico-bench on 127.0.0.1. *single-node*: wrk → node 1's proxy port → a yamux stream of the agent's WebSocket session → ` + "`pico agent`" + ` (one process, connected to node 1) → upstream. *cross-node*: wrk → node 2's proxy port → node 1 (signed one-hop forwarding over pooled keep-alive HTTP) → agent → upstream. *single-node, reuse_streams* (headline only): a standalone node started with ` + "`--upstream.reuse-streams`" + ` and its own agent, so that HTTP/1.1 requests follow each other on kept-alive yamux streams instead of one stream per request; its CPU row counts that node as node 1. The paths run in turn, --rounds times over (default 3); each path's row is its median round by requests/s (latency and CPU figures from that same round), and the last column gives the lowest and highest requests/s of its rounds, so the noise of the shared machine shows. Percentiles are wrk's latency distribution (time from sending a request to its complete response); errors are wrk's connect, read, write and timeout errors plus non-2xx/3xx answers.`

	methodCPU = `During each headline run pico-bench reads the CPU time (user + system) used by every process involved: wrk (its rusage), the upstream (pico-bench's own rusage; nothing else runs in it meanwhile), nodes 1 and 2 and the agent (/proc/PID/stat, 10 ms resolution), and divides by the requests completed. Idle processes still show their background work (gossip). The last column is the throughput the CPUs would allow if every cycle went to this path — the ceiling the direct and Pico figures run into on a machine this small, where load generator, upstream, servers and agent share the same CPUs.`

	methodSweep = `The same three paths with wrk -c %s (threads = min(2, connections)). At each concurrency the three paths run one after the other, so every Pico figure has a direct baseline measured seconds apart; the percentage is of direct at the same concurrency.`

	methodSyscalls = `Read during the same runs as the CPU time: syscr and syscw of /proc/PID/io (every read-like and write-like system call: read, readv, recvmsg…, write, writev, sendmsg…) of each Pico process, divided by the requests completed. On the single-node path the floor is one read and one write of the client's connection on the node, one write and one read of the local connection on the agent, and one write each way on the upstream connection; each read that drains a socket is followed by one that finds it empty (EAGAIN) before the goroutine waits in the poller. Idle processes show their background work (gossip, node 2 on the single-node path).`
	methodHops     = `pico-bench starts two relays of its own (` + "`pico-bench --serve-relay`" + `, each a process on the memory node's address) in front of the same 1 KiB upstream: a TCP relay that copies bytes both ways (io.Copy, two goroutines per connection, nothing parsed) and Go's HTTP reverse proxy (httputil.ReverseProxy, pooled keep-alive connections to the upstream). wrk loads each and the direct upstream with 1 connection (p50) and with the headline's connection count (requests/s, and the relay process's CPU time per request from /proc/PID/stat). Nothing of Pico runs meanwhile. These rows say what putting one Go process in a request's path costs on this machine; Pico's single-node path has two (node and agent), and every wake-up of a process here pays for the hypervisor waking an idle vCPU.`
	methodMemory   = `A fresh standalone ` + "`pico server`" + ` is started by pico-bench, which first raised its own soft RLIMIT_NOFILE to the hard limit (the server inherits it). After 3 s idle, the server's VmRSS (/proc/PID/status) and Go runtime figures (go_memstats_heap_inuse_bytes, go_memstats_stack_inuse_bytes, go_goroutines from its /metrics) are read. pico-bench then opens the sessions with the real upstream protocol — protocol.DialWebSocket to /pico/v1/upstream/mem-NNNNN, then a yamux.Client with protocol.YamuxConfig — 64 handshakes at a time from four source addresses, each session registering its own endpoint; it waits until the server's pico_upstream_connections gauge shows all of them, waits 3 s more and reads the same figures again. Per session = (after − before) / sessions. The sessions stay idle (no streams; yamux keepalive pings every 30 s). RSS includes memory the Go runtime holds but has not returned to the kernel, so it is the figure an operator sees.`

	methodRoutable = `An in-process agent (internal/agent, the library behind ` + "`pico agent`" + `) connects a new endpoint to node 1's upstream port. The moment the agent reports the endpoint registered (the server's 101 arrived), pico-bench sends a GET for it to every node's proxy port at once. A node that does not know the endpoint yet holds the request until its routing learns it (or answers 502 after its bounded wait, and the GET is repeated every millisecond), so the time to a 200 is the time until that node routes, plus one request. "Every node" is, per endpoint, the slowest of the three. The last row times one more request to each node right after its 200: what a request costs on its own, the part of the figures above that is not waiting for the route. Each agent is stopped before the next endpoint is timed.`

	methodRolling = `The 3-node cluster. Ten ` + "`pico agent`" + ` processes each register roll-a, roll-b and roll-c through a round-robin TCP balancer in front of the three upstream ports (like a Kubernetes Service). A Go client sends GETs at a steady rate, round robin over the three endpoints, through a round-robin TCP balancer in front of the three proxy ports, over a keep-alive pool (Go's http.Transport, which, like any HTTP client, resends an idempotent request when a pooled connection turns out to be closed before any response byte). After 3 s of load, each node in turn is removed from both balancers (established connections stay up, as with a Service), sent SIGTERM and waited for, started again on the same address (a new node ID, joining the other two), waited for until /ready answers 200, added back to both balancers, and given 3 s under load before the next node. A request fails on a transport error, a client timeout (30 s) or a 5xx answer. The last column shows how much of the load each new process took by the end: clients keep their pooled connections to the nodes they first reached and agents stay where they reconnected, so a node restarted late gets new connections only as clients and agents open them — as behind a Kubernetes Service. Agents then move by cluster.rebalance (defaults): after the last restart, the load keeps running until every node holds 0.7–1.3 × the fair share of the 30 upstream connections (at most 90 s); the facts give the distribution before and after and the time it took.`
)

// markdown writes RESULTS.md.
func (r *report) markdown(w io.Writer, chart bool) {
	m := r.Machine
	fmt.Fprintf(w, "# Pico benchmark report\n\n")
	fmt.Fprintf(w, "Produced by `%s` (`make bench` builds `bin/pico` and, from the `bench/` module, `bin/pico-bench`, then runs it) on %s; the run took %s. "+
		"Every figure below comes from this one run on this machine, and every Pico figure was measured next to its direct baseline.\n\n",
		r.command(), r.Started.UTC().Format("2006-01-02 15:04 MST"), r.Finished.Sub(r.Started).Round(time.Second))

	fmt.Fprintf(w, "## Machine\n\n| | |\n|---|---|\n")
	fmt.Fprintf(w, "| CPU | %s, %d CPUs (nproc) |\n", m.CPU, m.CPUs)
	fmt.Fprintf(w, "| Kernel | %s |\n", m.Kernel)
	fmt.Fprintf(w, "| Go | %s |\n", m.Go)
	fmt.Fprintf(w, "| pico | %s (tree %s) |\n", m.Pico, m.Commit)
	fmt.Fprintf(w, "| Addresses | %s |\n", r.Addrs)
	fmt.Fprintf(w, "| Load average (1, 5, 15 min) | %s at the start, %s at the end |\n\n", m.LoadBefore, r.LoadAfter)
	if m.busy(m.LoadBefore) || m.busy(r.LoadAfter) {
		fmt.Fprintf(w, "> **Note:** this machine was shared with other work during the run (load average above shows it). "+
			"wrk, the upstream, the servers and the agent all compete for the same %d CPUs, so absolute figures are lower and noisier than on an idle machine; "+
			"the direct baseline and the Pico figures are measured back to back and suffer alike, so ratios are the more stable figures.\n\n", m.CPUs)
	}

	for _, s := range r.sections() {
		fmt.Fprintf(w, "## %s\n\n", s.table.title)
		s.table.markdown(w)
		fmt.Fprintln(w)
		if s.facts != "" {
			fmt.Fprintf(w, "%s\n\n", s.facts)
		}
		if chart && s.id == "sweep" {
			fmt.Fprintf(w, "![Throughput and latency vs concurrency, direct vs through Pico](results.png)\n\n")
		}
		if s.id == "rolling" && len(r.Rolling.Load.Failed) > 0 {
			fmt.Fprintf(w, "Failed requests:\n\n```\n%s\n```\n\n", strings.Join(r.Rolling.Load.Failed, "\n"))
		}
		fmt.Fprintf(w, "*How it was measured:* %s\n\n", s.method)
	}
	if len(r.Errors) > 0 {
		fmt.Fprintf(w, "## Sections that failed\n\n")
		for _, e := range r.Errors {
			fmt.Fprintf(w, "- %s\n", e)
		}
		fmt.Fprintln(w)
	}
}
