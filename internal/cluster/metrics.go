package cluster

import (
	"fmt"
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pico-proxy/pico/internal/adminapi"
)

// metrics are the package's Prometheus metrics.
type metrics struct {
	collectors     []prometheus.Collector
	verifyFailures *prometheus.CounterVec
	pulls          prometheus.Counter
	gossipKeys     *gossipKeysCollector
}

func newMetrics(c *Cluster) *metrics {
	m := &metrics{
		verifyFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pico_cluster_forward_verification_failures_total",
			Help: "Requests claiming to be forwarded by a node whose claim was rejected, by reason (malformed, stale, unknown_node, bad_signature).",
		}, []string{"reason"}),
		pulls: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pico_cluster_state_pulls_total",
			Help: "Full routing-state transfers requested from other nodes (after a missed or oversized update).",
		}),
	}
	m.gossipKeys = &gossipKeysCollector{desc: prometheus.NewDesc("pico_cluster_gossip_keys",
		"Gossip encryption keys this node accepts (1 each), by key ID (the first 8 hex digits of the key's SHA-256) and whether gossip is encrypted with it (primary).",
		[]string{"key_id", "primary"}, nil)}
	m.gossipKeys.ids.Store(&[]string{})
	for _, reason := range []string{"malformed", "stale", "unknown_node", "bad_signature"} {
		m.verifyFailures.WithLabelValues(reason)
	}
	m.collectors = append(m.collectors, m.verifyFailures, m.pulls, m.gossipKeys)
	for _, status := range []string{adminapi.StatusActive, adminapi.StatusLeaving, adminapi.StatusLeft, adminapi.StatusDead} {
		m.collectors = append(m.collectors, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "pico_cluster_members",
			Help:        "Known cluster members, this node included, by status (dead and left ones are forgotten after a short while).",
			ConstLabels: prometheus.Labels{"status": status},
		}, func() float64 { return float64(c.countMembers(status)) }))
	}
	m.collectors = append(m.collectors, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "pico_cluster_routing_entries",
		Help: "Entries of the routing table: (routable remote node, endpoint) pairs this node may forward to.",
	}, func() float64 { return float64(c.routingEntries()) }))
	return m
}

// setGossipKeys shows the keys in the keyring, primary first.
func (m *metrics) setGossipKeys(keys [][]byte) {
	ids := make([]string, len(keys))
	for i, key := range keys {
		ids[i] = keyID(key)
	}
	m.gossipKeys.ids.Store(&ids)
}

// gossipKeysCollector exports pico_cluster_gossip_keys: one series per
// key, replaced all at once when the keyring changes, so a scrape never
// sees a keyring half updated.
type gossipKeysCollector struct {
	desc *prometheus.Desc
	ids  atomic.Pointer[[]string] // key IDs, primary first
}

func (g *gossipKeysCollector) Describe(ch chan<- *prometheus.Desc) { ch <- g.desc }

func (g *gossipKeysCollector) Collect(ch chan<- prometheus.Metric) {
	for i, id := range *g.ids.Load() {
		ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, 1, id, strconv.FormatBool(i == 0))
	}
}

func (m *metrics) register(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	for i, col := range m.collectors {
		if err := reg.Register(col); err != nil {
			for _, done := range m.collectors[:i] {
				reg.Unregister(done)
			}
			return fmt.Errorf("cluster: registering metrics: %w", err)
		}
	}
	return nil
}

func (m *metrics) unregister(reg prometheus.Registerer) {
	if reg == nil {
		return
	}
	for _, col := range m.collectors {
		reg.Unregister(col)
	}
}

// countMembers counts the members (this node included) with status.
func (c *Cluster) countMembers(status string) int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	n := 0
	if c.local.status == status {
		n++
	}
	for _, p := range c.peers {
		if p.member != memberUnknown && p.status() == status {
			n++
		}
	}
	return n
}

// routingEntries counts (routable remote node, endpoint) pairs.
func (c *Cluster) routingEntries() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	n := 0
	for _, p := range c.peers {
		if p.routable() {
			n += len(p.endpoints)
		}
	}
	return n
}
