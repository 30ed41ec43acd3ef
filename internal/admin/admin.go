// Package admin serves the admin port: GET /health, GET /ready,
// GET /metrics (Prometheus text), GET /status/cluster/nodes,
// GET /status/cluster/nodes/{id} and GET /status/upstream/endpoints.
// Every answer is JSON except /metrics; errors are {"error": "..."}.
package admin

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pico-proxy/pico/internal/adminapi"
	"github.com/pico-proxy/pico/internal/protocol"
)

// Cluster is what the status pages show about the members.
type Cluster interface {
	// Nodes lists every known member, this node included.
	Nodes() []adminapi.NodeSummary
	// Node returns one member's details.
	Node(id string) (adminapi.NodeDetail, bool)
}

// Options configures the admin handler.
type Options struct {
	// Ready reports readiness: listeners up and the join finished, and
	// shutdown not begun.
	Ready func() bool
	// Gatherer is scraped by /metrics.
	Gatherer prometheus.Gatherer
	// Cluster feeds /status/cluster/*.
	Cluster Cluster
	// Endpoints returns this node's endpoints with their upstream counts.
	Endpoints func() map[string]int
	// Logger receives errors.
	Logger *slog.Logger
}

// New returns the admin port's handler.
func New(opts Options) http.Handler {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("subsystem", "admin")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, _ *http.Request) {
		if opts.Ready() {
			writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
			return
		}
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready"})
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}))
	mux.HandleFunc("GET "+adminapi.NodesPath, func(w http.ResponseWriter, _ *http.Request) {
		nodes := opts.Cluster.Nodes()
		if nodes == nil {
			nodes = []adminapi.NodeSummary{}
		}
		writeJSON(w, http.StatusOK, nodes)
	})
	mux.HandleFunc("GET "+adminapi.NodesPath+"/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		node, ok := opts.Cluster.Node(id)
		if !ok {
			protocol.WriteError(w, http.StatusNotFound, fmt.Sprintf("node %q is not a known member", id))
			return
		}
		if node.Endpoints == nil {
			node.Endpoints = map[string]int{}
		}
		writeJSON(w, http.StatusOK, node)
	})
	mux.HandleFunc("GET "+adminapi.EndpointsPath, func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, opts.Endpoints())
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		protocol.WriteError(w, http.StatusNotFound, fmt.Sprintf("no such admin route: %s %s", r.Method, r.URL.Path))
	})
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		protocol.WriteError(w, http.StatusInternalServerError, "encoding the answer: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}
