package server

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pico-proxy/pico/internal/cluster"
	"github.com/pico-proxy/pico/internal/config"
	"github.com/pico-proxy/pico/internal/proxy"
)

// clusterMembership is the memberlist cluster as the server's Membership:
// it hands the proxy the proxy's own node type.
type clusterMembership struct{ *cluster.Cluster }

// PickRemote is proxy.Router.
func (m clusterMembership) PickRemote(endpoint string, exclude ...string) (proxy.Node, bool) {
	n, ok := m.Cluster.PickRemote(endpoint, exclude...)
	return proxy.Node(n), ok
}

// ClusterMembership returns the factory of the real cluster membership:
// memberlist on the gossip port, the initial join and the periodic
// re-join of cfg.Cluster (validated: its join entries and gossip keys are
// the parsed ones). This is what `pico server` uses; tests that need
// a lone node may keep the default Standalone.
func ClusterMembership(cfg *config.Server, logger *slog.Logger) MembershipFactory {
	return func(local LocalNode, metrics prometheus.Registerer) (Membership, error) {
		c, err := cluster.New(cluster.Config{
			NodeID:           local.ID,
			BindAddr:         local.GossipBind,
			AdvertiseAddr:    local.GossipAdvertise,
			Join:             cfg.Cluster.JoinTargets(),
			JoinTimeout:      cfg.Cluster.JoinTimeout,
			AbortIfJoinFails: cfg.Cluster.AbortIfJoinFails,
			RejoinInterval:   cfg.Cluster.RejoinInterval,
			GossipKeys:       cfg.Gossip.Keys(),
			ProxyAddr:        local.ProxyAddr,
			AdminAddr:        local.AdminAddr,
			UpstreamAddr:     local.UpstreamAddr,
			Logger:           logger,
			Registerer:       metrics,
		})
		if err != nil {
			return nil, err
		}
		// Run re-joins missing members every cluster.rejoin_interval until
		// Shutdown.
		go c.Run(context.Background())
		return clusterMembership{c}, nil
	}
}
