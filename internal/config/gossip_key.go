package config

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"
)

// gossipSecretKeyKey is the YAML key LoadGossipKeys parses.
const gossipSecretKeyKey = "gossip.secret_key"

// generateGossipKey is the hint every key error ends with.
const generateGossipKey = "generate one with `head -c 32 /dev/urandom | base64`"

// GossipKeys is the parsed value of gossip.secret_key: the AES keys
// memberlist encrypts and authenticates gossip with.
type GossipKeys struct {
	// Keys holds the keys, the primary first: gossip is encrypted with the
	// primary, and a message encrypted with any of the keys is accepted.
	// Empty means no encryption.
	Keys [][]byte
	// File is the path of the key file when the setting names one, ""
	// for an inline key. A running node re-reads the file and applies
	// its keys (see ParseGossipKeyFile), so keys rotate without restarts.
	File string
}

// LoadGossipKeys parses the value of gossip.secret_key. The value is
// empty (no encryption), the base64 text itself of one 16, 24 or 32-byte
// key (AES-128, -192 or -256), such as the output of
// `head -c 32 /dev/urandom | base64`, or the path of an existing key file
// in the format of ParseGossipKeyFile, which may hold several keys. An
// inline value is exactly one key: several keys need a file. Errors name
// the setting, and the file and line of a bad key, never the key.
func LoadGossipKeys(value string) (GossipKeys, error) {
	if value == "" {
		return GossipKeys{}, nil
	}
	if info, err := os.Stat(value); err == nil {
		if !info.Mode().IsRegular() {
			return GossipKeys{}, fmt.Errorf("%s: %s is not a regular file; give the path of a key file or the base64 key itself", describeKey(gossipSecretKeyKey), value)
		}
		data, err := os.ReadFile(value)
		if err != nil {
			return GossipKeys{}, fmt.Errorf("%s: reading the key file: %w", describeKey(gossipSecretKeyKey), err)
		}
		keys, err := ParseGossipKeyFile(value, data)
		if err != nil {
			return GossipKeys{}, err
		}
		return GossipKeys{Keys: keys, File: value}, nil
	}
	text := strings.TrimSpace(value)
	key, problem := decodeGossipKey(text)
	if strings.ContainsAny(text, ", \t\r\n") {
		problem = "holds a comma or a blank; an inline value is exactly one key, so put several keys one per line in a key file and give its path"
	}
	if problem != "" {
		// A base64 key may start with "/": a value that looks like a
		// path is taken for a missing file only when it is no key.
		if looksLikePath(value) {
			return GossipKeys{}, fmt.Errorf("%s: file %s does not exist; give the path of an existing key file or the base64 key itself", describeKey(gossipSecretKeyKey), value)
		}
		return GossipKeys{}, fmt.Errorf("%s: the value %s", describeKey(gossipSecretKeyKey), problem)
	}
	return GossipKeys{Keys: [][]byte{key}}, nil
}

// ParseGossipKeyFile parses the content of a gossip key file; path only
// names the file in errors. The file holds one base64 key per line: the
// first key is the primary, which encrypts; every key listed is accepted.
// `#` starts a comment that runs to the end of the line (base64 never
// contains `#`); blank lines, surrounding blanks and Windows line ends
// are ignored. Every bad line is reported (a key that is not base64, has
// the wrong length or repeats an earlier one), each naming the setting,
// the file and the line, never the key; a file without a key is an error.
func ParseGossipKeyFile(path string, data []byte) ([][]byte, error) {
	var keys [][]byte
	var keyLines []int
	var errs []error
	for i, line := range strings.Split(string(data), "\n") {
		lineNo := i + 1
		if hash := strings.IndexByte(line, '#'); hash >= 0 {
			line = line[:hash]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if strings.ContainsAny(line, " \t") {
			errs = append(errs, fmt.Errorf("%s: file %s line %d holds more than one word; put one base64 key per line (comments start with #)", describeKey(gossipSecretKeyKey), path, lineNo))
			continue
		}
		key, problem := decodeGossipKey(line)
		if problem != "" {
			errs = append(errs, fmt.Errorf("%s: file %s line %d %s", describeKey(gossipSecretKeyKey), path, lineNo, problem))
			continue
		}
		if j := indexKey(keys, key); j >= 0 {
			errs = append(errs, fmt.Errorf("%s: file %s line %d repeats the key of line %d; list each key once", describeKey(gossipSecretKeyKey), path, lineNo, keyLines[j]))
			continue
		}
		keys = append(keys, key)
		keyLines = append(keyLines, lineNo)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s: file %s holds no key; put a base64 key on its first line (%s)", describeKey(gossipSecretKeyKey), path, generateGossipKey)
	}
	return keys, nil
}

// decodeGossipKey decodes one base64 key, or says what is wrong with it
// (a phrase following "the value" or "line N").
func decodeGossipKey(text string) (key []byte, problem string) {
	key, err := base64.StdEncoding.DecodeString(text)
	if err != nil {
		return nil, "is not base64; " + generateGossipKey
	}
	switch len(key) {
	case 16, 24, 32:
		return key, ""
	}
	return nil, fmt.Sprintf("decodes to %d bytes; an AES key is 16, 24 or 32 bytes (%s)", len(key), generateGossipKey)
}

func indexKey(keys [][]byte, key []byte) int {
	for i, k := range keys {
		if bytes.Equal(k, key) {
			return i
		}
	}
	return -1
}

// looksLikePath reports whether a setting that should name a file or hold
// a value was probably meant as a path.
func looksLikePath(value string) bool {
	return strings.HasPrefix(value, "/") || strings.HasPrefix(value, "./") || strings.HasPrefix(value, "../")
}
