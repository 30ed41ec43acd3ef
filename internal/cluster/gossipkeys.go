package cluster

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/pico-proxy/pico/internal/config"
	"github.com/pico-proxy/pico/internal/filereload"
)

// gossipKeys is the node's memberlist keyring and, when gossip.secret_key
// names a file, the watch on that file.
type gossipKeys struct {
	ring *memberlist.Keyring // nil without encryption
	file *filereload.Value[[][]byte]
	log  *slog.Logger
	// onChange is called with the keys after every change (metrics).
	onChange func(keys [][]byte)

	// applied is the key set in force, primary first, in file order.
	// Only New and the reload loop touch it.
	applied [][]byte
}

// newGossipKeys builds the keyring from the keys gossip.secret_key held
// at load (config.Gossip.Keys). For a key file, the file is watched from
// now on: a change since the load is applied at the first check, like any
// later one.
func newGossipKeys(set config.GossipKeys, logger *slog.Logger, onChange func([][]byte)) (*gossipKeys, error) {
	k := &gossipKeys{log: logger, onChange: onChange}
	keys := set.Keys
	var err error
	if set.File != "" {
		parse := func(contents [][]byte) ([][]byte, error) { return config.ParseGossipKeyFile(set.File, contents[0]) }
		// The reload loop is the schedule: it calls Get once per
		// check interval, and every Get checks the file (a zero
		// interval would mean filereload's default).
		k.file, err = filereload.New([]string{set.File}, time.Nanosecond, parse, logger.With("setting", "gossip.secret_key"))
		if err != nil {
			var re *filereload.ReadError
			if errors.As(err, &re) {
				return nil, fmt.Errorf("gossip.secret_key (%s): %w", config.FlagName("gossip.secret_key"), re.Err)
			}
			return nil, err
		}
	}
	if len(keys) > 0 {
		if k.ring, err = memberlist.NewKeyring(keys[1:], keys[0]); err != nil {
			return nil, fmt.Errorf("cluster: building the gossip keyring: %w", err)
		}
	}
	k.applied = slices.Clone(keys)
	k.onChange(k.applied)
	return k, nil
}

// reload applies the key file's current content if it changed. A file
// that does not parse is logged by filereload and leaves the keyring as
// it is.
func (k *gossipKeys) reload() {
	if k.file != nil {
		k.apply(k.file.Get())
	}
}

// apply brings the keyring to keys (primary first) in the order that
// never cuts the node off from peers one rotation step behind or ahead:
// new keys are accepted first, then the primary switches, and only then
// are the keys no longer listed refused.
func (k *gossipKeys) apply(keys [][]byte) {
	if len(keys) == 0 || k.ring == nil || slices.EqualFunc(keys, k.applied, bytes.Equal) {
		return
	}
	prev := k.applied
	k.applied = slices.Clone(prev) // changed step by step below
	defer func() { k.onChange(k.applied) }()
	for _, key := range keys {
		if containsKey(prev, key) {
			continue
		}
		if err := k.ring.AddKey(key); err != nil {
			k.log.Error("adding a gossip key failed; the change is retried at the next check", "key_id", keyID(key), "error", err)
			return
		}
		k.applied = append(k.applied, key)
		k.log.Info("gossip key added: gossip encrypted with it is accepted from now on", "key_id", keyID(key))
	}
	if primary := keys[0]; !bytes.Equal(primary, prev[0]) {
		if !containsKey(prev, primary) {
			k.log.Warn("the new primary gossip key was not accepted before this change: peers that have not loaded it yet cannot read this node's gossip; add a key on every node before making it the primary", "key_id", keyID(primary))
		}
		if err := k.ring.UseKey(primary); err != nil {
			k.log.Error("switching the primary gossip key failed; the change is retried at the next check", "key_id", keyID(primary), "error", err)
			return
		}
		k.applied = moveToFront(k.applied, primary)
		k.log.Info("gossip primary key switched: gossip is encrypted with it from now on", "key_id", keyID(primary), "previous_key_id", keyID(prev[0]))
	}
	for _, key := range prev {
		if containsKey(keys, key) {
			continue
		}
		if bytes.Equal(key, prev[0]) {
			k.log.Warn("the previous primary gossip key is refused in the same change that retired it: peers still encrypting with it cannot reach this node until they switch; switch the primary on every node before removing the old key", "key_id", keyID(key))
		}
		if err := k.ring.RemoveKey(key); err != nil {
			k.log.Error("removing a gossip key failed; the change is retried at the next check", "key_id", keyID(key), "error", err)
			return
		}
		k.applied = slices.DeleteFunc(k.applied, func(a []byte) bool { return bytes.Equal(a, key) })
		k.log.Info("gossip key removed: gossip encrypted with it is refused from now on", "key_id", keyID(key))
	}
	// The keyring now holds exactly keys; keep the file's order.
	k.applied = slices.Clone(keys)
}

// keyID identifies a gossip key in logs and metrics without revealing it:
// the first 8 hex digits of the key's SHA-256
// (`base64 -d <<<KEY | sha256sum | cut -c1-8`).
func keyID(key []byte) string {
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:4])
}

func containsKey(keys [][]byte, key []byte) bool {
	return slices.ContainsFunc(keys, func(k []byte) bool { return bytes.Equal(k, key) })
}

// moveToFront returns keys with key first and the others in order.
func moveToFront(keys [][]byte, key []byte) [][]byte {
	out := [][]byte{key}
	for _, k := range keys {
		if !bytes.Equal(k, key) {
			out = append(out, k)
		}
	}
	return out
}
