package cluster

import (
	"bytes"
	"fmt"
	"maps"
	"testing"
	"time"
)

// BenchmarkEndpointConvergence measures how long an endpoint registered
// on one node of three takes to be routable from both others.
//
//	go test ./internal/cluster -run '^$' -bench Convergence -benchtime 200x
func BenchmarkEndpointConvergence(b *testing.B) {
	nodes := startCluster(b, 3)
	origin := nodes[0]
	var total, worst time.Duration
	i := 0
	for b.Loop() {
		ep := fmt.Sprintf("bench-%d", i)
		i++
		start := time.Now()
		origin.UpdateLocalEndpoints(map[string]int{ep: 1})
		for _, n := range nodes[1:] {
			waitRoute(b, n, ep, 10*time.Second)
		}
		d := time.Since(start)
		total += d
		worst = max(worst, d)
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/convergence")
	b.ReportMetric(float64(worst.Microseconds())/1000, "ms-worst")
}

// BenchmarkLargeSetConvergence measures the same for a change of 5 000
// endpoints with 40-character IDs at once (an announcement, then a full
// state pull over TCP by each member).
func BenchmarkLargeSetConvergence(b *testing.B) {
	nodes := startCluster(b, 3)
	origin := nodes[0]
	var total time.Duration
	i := 0
	for b.Loop() {
		set := make(map[string]int, 5000)
		for j := range 5000 {
			set[fmt.Sprintf("r%03d-endpoint-%026d", i%1000, j)] = 1
		}
		last := fmt.Sprintf("r%03d-endpoint-%026d", i%1000, 4999)
		i++
		start := time.Now()
		origin.UpdateLocalEndpoints(maps.Clone(set))
		for _, n := range nodes[1:] {
			waitRoute(b, n, last, 10*time.Second)
		}
		total += time.Since(start)
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/convergence")
}

// BenchmarkFailureDetection measures how long after a node dies without
// leaving (memberlist shut down, as with SIGKILL) both other nodes of a
// three-node cluster have removed it from routing. Each iteration takes a
// few seconds:
//
//	go test ./internal/cluster -run '^$' -bench FailureDetection -benchtime 5x
func BenchmarkFailureDetection(b *testing.B) {
	survivors := startCluster(b, 2)
	var total, worst time.Duration
	for b.Loop() {
		victim := joinNode(b, testConfig(nextIP(), survivors[0].GossipAddr()))
		victim.UpdateLocalEndpoints(map[string]int{"victim": 1})
		for _, n := range survivors {
			waitRoute(b, n, "victim", 10*time.Second)
		}
		start := time.Now()
		_ = victim.Shutdown()
		for _, n := range survivors {
			for {
				changed := n.Changed()
				if _, ok := n.PickRemote("victim"); !ok {
					break
				}
				select {
				case <-changed:
				case <-time.After(30 * time.Second):
					b.Fatal("killed node never removed")
				}
			}
		}
		d := time.Since(start)
		total += d
		worst = max(worst, d)
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/detection")
	b.ReportMetric(float64(worst.Milliseconds()), "ms-worst")
}

// BenchmarkForwardMAC measures the HMAC that signs and verifies every
// forwarded request, alternating two keys as a node verifying requests
// from two senders does.
func BenchmarkForwardMAC(b *testing.B) {
	keys := [][]byte{bytes.Repeat([]byte{1}, secretSize), bytes.Repeat([]byte{2}, secretSize)}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		forwardMAC(keys[i/64%2], "pico-0-abcdef", 1763900000, "GET", "/api/v1/items?page=2", "my-endpoint")
	}
}
