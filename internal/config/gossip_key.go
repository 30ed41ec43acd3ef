package config

import (
	"encoding/base64"
	"fmt"
	"os"
	"strings"
)

// gossipSecretKeyKey is the YAML key GossipSecretKey parses.
const gossipSecretKeyKey = "gossip.secret_key"

// GossipSecretKey parses the value of gossip.secret_key into the AES key
// memberlist encrypts gossip with. The value is empty (no encryption), the
// path of an existing file holding the base64 text, or the base64 text
// itself of a 16, 24 or 32-byte key (AES-128, -192 or -256), such as the
// output of `head -c 32 /dev/urandom | base64`. Errors never include the
// key.
func GossipSecretKey(value string) ([]byte, error) {
	if value == "" {
		return nil, nil
	}
	text := value
	source := "value"
	if info, err := os.Stat(value); err == nil {
		if !info.Mode().IsRegular() {
			return nil, fmt.Errorf("%s: %s is not a regular file; give the path of a key file or the base64 key itself", describeKey(gossipSecretKeyKey), value)
		}
		data, err := os.ReadFile(value)
		if err != nil {
			return nil, fmt.Errorf("%s: reading the key file: %w", describeKey(gossipSecretKeyKey), err)
		}
		text = string(data)
		source = "file " + value
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(text))
	if err != nil {
		if source == "value" && looksLikePath(value) {
			return nil, fmt.Errorf("%s: file %s does not exist; give the path of an existing key file or the base64 key itself", describeKey(gossipSecretKeyKey), value)
		}
		return nil, fmt.Errorf("%s: the %s is not base64; generate a key with `head -c 32 /dev/urandom | base64`", describeKey(gossipSecretKeyKey), source)
	}
	switch len(key) {
	case 16, 24, 32:
		return key, nil
	}
	return nil, fmt.Errorf("%s: the %s decodes to %d bytes; an AES key is 16, 24 or 32 bytes (generate one with `head -c 32 /dev/urandom | base64`)", describeKey(gossipSecretKeyKey), source, len(key))
}

// looksLikePath reports whether a setting that should name a file or hold
// a value was probably meant as a path.
func looksLikePath(value string) bool {
	return strings.HasPrefix(value, "/") || strings.HasPrefix(value, "./") || strings.HasPrefix(value, "../")
}
