package main

import (
	"fmt"
	"os"
	"time"
)

// runAB compares the build named by --ab with --pico in interleaved rounds
// (base, this, base, this, …) on the single-node path, each round on a
// fresh standalone node and agent: requests/s and the node's and agent's
// CPU time and read/write system calls per request at the headline
// concurrency, then the p50 at 1 connection next to the direct p50. A
// single run on a shared machine moves by ±20 %; pairs measured seconds
// apart move together. It prints a table and writes no report.
func (e *env) runAB() error {
	sides := []struct{ name, bin string }{{"base", e.o.abBase}, {"this", e.o.pico}}
	t := &table{
		title: fmt.Sprintf("%s (base) against %s, %d interleaved rounds on the single-node path", e.o.abBase, e.o.pico, e.o.rounds),
		header: []string{"round", "binary", fmt.Sprintf("req/s at %d connections", e.o.connections), "node µs/request", "agent µs/request",
			"node reads / writes per request", "agent reads / writes per request", "p50 at 1 connection", "direct p50 at 1 connection"},
	}
	for round := 1; round <= e.o.rounds; round++ {
		for _, side := range sides {
			e.logf("  round %d/%d: %s", round, e.o.rounds, side.name)
			row, err := e.abRound(side.name, side.bin)
			if err != nil {
				return fmt.Errorf("%s, round %d: %w", side.name, round, err)
			}
			t.add(append([]string{fmt.Sprint(round), side.name}, row...)...)
		}
	}
	t.text(os.Stdout)
	return nil
}

// abRound measures one side once; see runAB.
func (e *env) abRound(name, bin string) ([]string, error) {
	s, err := e.startStandalone(bin, "ab-"+name)
	if err != nil {
		return nil, err
	}
	defer s.stop()
	url := s.node.proxyURL() + "/"
	if _, err := e.wrk.run(url, "bench", e.o.connections, 2*time.Second); err != nil { // warm-up
		return nil, err
	}
	pids := s.pids()
	cpu0, sys0 := cpuSample(pids), syscallSample(pids)
	load, err := e.wrk.run(url, "bench", e.o.connections, e.o.duration)
	if err != nil {
		return nil, err
	}
	cpu1, sys1 := cpuSample(pids), syscallSample(pids)
	one, err := e.wrk.run(url, "bench", 1, e.o.sweepDuration)
	if err != nil {
		return nil, err
	}
	direct, err := e.wrk.run("http://"+e.upstream+"/", "", 1, e.o.sweepDuration)
	if err != nil {
		return nil, err
	}
	n := float64(max(load.Requests, 1))
	row := []string{rps(load.RPS)}
	for _, k := range []string{"node 1", "agent"} {
		row = append(row, fmt.Sprintf("%.0f", float64((cpu1[k]-cpu0[k]).Microseconds())/n))
	}
	for _, k := range []string{"node 1", "agent"} {
		row = append(row, fmt.Sprintf("%.2f / %.2f", float64(sys1[k][0]-sys0[k][0])/n, float64(sys1[k][1]-sys0[k][1])/n))
	}
	return append(row, dur(usDur(one.P50)), dur(usDur(direct.P50))), nil
}
