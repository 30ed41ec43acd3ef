// Package gossipkey turns on memberlist's gossip encryption from the
// gossip.secret_key setting, so that a stranger who can reach the gossip
// port can neither join the cluster nor read its state (which includes the
// per-node secrets proving forwarded requests).
package gossipkey

import (
	"github.com/hashicorp/memberlist"
	"github.com/pico-proxy/pico/internal/config"
)

// Apply parses secretKey (see config.GossipSecretKey) and, when it is set,
// makes mc encrypt and authenticate all gossip with it and refuse gossip
// that is not encrypted with it. It reports whether encryption is on.
func Apply(mc *memberlist.Config, secretKey string) (bool, error) {
	key, err := config.GossipSecretKey(secretKey)
	if err != nil || key == nil {
		return false, err
	}
	mc.SecretKey = key
	mc.Keyring = nil // built from SecretKey by memberlist.Create
	mc.GossipVerifyIncoming = true
	mc.GossipVerifyOutgoing = true
	return true, nil
}
