package upstream

import "github.com/prometheus/client_golang/prometheus"

type registryMetrics struct {
	sessions      prometheus.Gauge
	endpoints     prometheus.Gauge
	registrations *prometheus.CounterVec
	expired       prometheus.Counter
	unresponsive  prometheus.Counter
}

func newRegistryMetrics(reg prometheus.Registerer) *registryMetrics {
	m := &registryMetrics{
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pico_upstream_connections",
			Help: "Upstream (agent) connections registered on this node.",
		}),
		endpoints: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pico_upstream_endpoints",
			Help: "Endpoints with at least one upstream connection on this node.",
		}),
		registrations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pico_upstream_registrations_total",
			Help: "Upstream registration attempts by result (accepted, invalid, unauthorized, forbidden, draining, failed).",
		}, []string{"result"}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pico_upstream_token_expirations_total",
			Help: "Upstream connections retired because their token expired.",
		}),
		unresponsive: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pico_upstream_unresponsive_total",
			Help: "Upstream connections closed because their agent did not answer a ping after a slow response.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.sessions, m.endpoints, m.registrations, m.expired, m.unresponsive)
	}
	return m
}
