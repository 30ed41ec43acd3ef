package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/pem"
	"fmt"
	"os"
	"strings"

	"github.com/golang-jwt/jwt/v5"
	"github.com/pico-proxy/pico/internal/config"
)

// Key size floors: RFC 7518 §3.2 requires an HMAC key at least as long as
// the hash output (32 bytes for HS256); RSA keys below 2048 bits are
// considered breakable.
const (
	minHMACKeyBytes = 32
	minRSAKeyBits   = 2048
)

// Algorithms accepted for each kind of key. Which ones a verifier accepts
// depends only on the keys configured, never on the token.
var (
	hmacAlgorithms = []string{"HS256", "HS384", "HS512"}
	rsaAlgorithms  = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
	jwksAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)

// setting names one configuration key for error messages.
type setting struct{ section, key string }

func (s setting) String() string {
	k := s.section + "." + s.key
	return k + " (" + config.FlagName(k) + ")"
}

// loadHMACKey reads the HMAC secret: the value itself, or the contents of
// the file it names (one trailing newline removed). Errors never include
// the secret.
func loadHMACKey(s setting, value string) ([]byte, error) {
	secret := []byte(value)
	_, statErr := os.Stat(value)
	switch {
	case statErr == nil:
		data, err := os.ReadFile(value)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s, err)
		}
		secret = []byte(strings.TrimSuffix(strings.TrimSuffix(string(data), "\n"), "\r"))
	case strings.HasPrefix(value, "/") || strings.HasPrefix(value, "./") || strings.HasPrefix(value, "../"):
		// A mistyped path must not silently become a guessable secret.
		return nil, fmt.Errorf("%s: file %s does not exist; give the path of an existing file or the secret itself", s, value)
	}
	if len(secret) < minHMACKeyBytes {
		return nil, fmt.Errorf("%s: the secret is %d bytes; use at least %d random bytes (e.g. `head -c 32 /dev/urandom | base64`)", s, len(secret), minHMACKeyBytes)
	}
	return secret, nil
}

// readPEM returns the PEM text of a public key setting: the value itself
// when it holds PEM, else the contents of the file it names.
func readPEM(s setting, value string) ([]byte, error) {
	if strings.Contains(value, "-----BEGIN") {
		return []byte(value), nil
	}
	data, err := os.ReadFile(value)
	if err != nil {
		return nil, fmt.Errorf("%s: not PEM text, and not a readable file: %w", s, err)
	}
	return data, nil
}

// checkPublicPEM refuses private keys, which do not belong on a server
// that only verifies, with a message that says so.
func checkPublicPEM(s setting, data []byte) error {
	block, _ := pem.Decode(data)
	if block == nil {
		return fmt.Errorf("%s: no PEM block found; give a public key (-----BEGIN PUBLIC KEY-----) or the path of a file holding one", s)
	}
	if strings.Contains(block.Type, "PRIVATE") {
		return fmt.Errorf("%s: holds a private key; give only the public key (e.g. `openssl pkey -in key.pem -pubout`)", s)
	}
	return nil
}

func loadRSAKey(s setting, value string) (*rsa.PublicKey, error) {
	data, err := readPEM(s, value)
	if err != nil {
		return nil, err
	}
	if err := checkPublicPEM(s, data); err != nil {
		return nil, err
	}
	key, err := jwt.ParseRSAPublicKeyFromPEM(data)
	if err != nil {
		return nil, fmt.Errorf("%s: not an RSA public key: %w", s, err)
	}
	if bits := key.N.BitLen(); bits < minRSAKeyBits {
		return nil, fmt.Errorf("%s: the RSA key has %d bits; use at least %d", s, bits, minRSAKeyBits)
	}
	return key, nil
}

// loadECDSAKey returns the key and the one algorithm its curve signs.
func loadECDSAKey(s setting, value string) (*ecdsa.PublicKey, string, error) {
	data, err := readPEM(s, value)
	if err != nil {
		return nil, "", err
	}
	if err := checkPublicPEM(s, data); err != nil {
		return nil, "", err
	}
	key, err := jwt.ParseECPublicKeyFromPEM(data)
	if err != nil {
		return nil, "", fmt.Errorf("%s: not an ECDSA public key: %w", s, err)
	}
	switch key.Curve {
	case elliptic.P256():
		return key, "ES256", nil
	case elliptic.P384():
		return key, "ES384", nil
	case elliptic.P521():
		return key, "ES512", nil
	}
	return nil, "", fmt.Errorf("%s: curve %s is not used by JWT; use P-256, P-384 or P-521", s, key.Curve.Params().Name)
}
