package proxy

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	requests  *prometheus.CounterVec
	duration  prometheus.Histogram
	inFlight  prometheus.Gauge
	forwarded *prometheus.CounterVec
	// statusText caches label values for common status codes.
	statusText [600]string
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pico_proxy_requests_total",
			Help: "Proxied requests by endpoint and status. The endpoint label is empty for requests that named no endpoint with an upstream.",
		}, []string{"endpoint", "status"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pico_proxy_request_duration_seconds",
			Help:    "Time from receiving a proxied request to the end of its response.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pico_proxy_requests_in_flight",
			Help: "Proxied requests (and tunnels) currently being served.",
		}),
		forwarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pico_proxy_forwarded_requests_total",
			Help: "Requests forwarded between nodes: direction out (sent to another node, per attempt) or in (received from a verified member).",
		}, []string{"direction"}),
	}
	for code := range m.statusText {
		m.statusText[code] = strconv.Itoa(code)
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration, m.inFlight, m.forwarded)
	}
	return m
}

func (m *metrics) status(code int) string {
	if code >= 0 && code < len(m.statusText) {
		return m.statusText[code]
	}
	return strconv.Itoa(code)
}
