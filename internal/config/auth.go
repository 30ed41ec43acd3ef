package config

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/spf13/pflag"
)

// Auth configures JWT verification for one listener. The YAML section is
// chosen by the embedding struct: `auth` for upstreams, `proxy.auth` for
// proxy clients, `admin.auth` for the admin API; RegisterFlags and Validate
// take it as prefix. Authentication is enabled when at least one key
// source is set.
type Auth struct {
	// TokenHMACSecretKey verifies HS256/HS384/HS512 tokens: the secret
	// itself (at least 32 bytes), or the path of a file holding it.
	TokenHMACSecretKey string `yaml:"token_hmac_secret_key"`
	// TokenRSAPublicKey verifies RS256/384/512 and PS256/384/512 tokens:
	// PEM text or the path of a PEM file.
	TokenRSAPublicKey string `yaml:"token_rsa_public_key"`
	// TokenECDSAPublicKey verifies ES256, ES384 or ES512 tokens (the one
	// matching the key's curve): PEM text or the path of a PEM file.
	TokenECDSAPublicKey string `yaml:"token_ecdsa_public_key"`
	// JWKSURL is an https:// or file:// URL of a JSON Web Key Set. Keys are
	// cached, refreshed every JWKSRefreshInterval (and when a token names
	// an unknown key ID) so the issuer can rotate keys.
	JWKSURL string `yaml:"jwks_url"`
	// JWKSRefreshInterval is how often the key set is refreshed.
	JWKSRefreshInterval time.Duration `yaml:"jwks_refresh_interval"`
	// TokenAudience, when set, must be one of a token's `aud` values.
	TokenAudience string `yaml:"token_audience"`
	// TokenIssuer, when set, must equal a token's `iss`.
	TokenIssuer string `yaml:"token_issuer"`
	// RequireEndpointsClaim refuses tokens without a `pico.endpoints` (or
	// Piko's `piko.endpoints`) claim instead of letting them use any
	// endpoint.
	RequireEndpointsClaim bool `yaml:"require_endpoints_claim"`
	// DisconnectOnExpiry closes a connection authenticated by a token when
	// the token expires.
	DisconnectOnExpiry bool `yaml:"disconnect_on_expiry"`
}

// DefaultAuth returns the defaults: authentication disabled, expired
// sessions disconnected, key sets refreshed every 5 minutes.
func DefaultAuth() Auth {
	return Auth{DisconnectOnExpiry: true, JWKSRefreshInterval: 5 * time.Minute}
}

// Enabled reports whether a verification key is configured.
func (a *Auth) Enabled() bool {
	return a.TokenHMACSecretKey != "" || a.TokenRSAPublicKey != "" || a.TokenECDSAPublicKey != "" || a.JWKSURL != ""
}

// RegisterFlags registers the <prefix>.* flags, e.g. --proxy.auth.jwks-url
// for prefix "proxy.auth".
func (a *Auth) RegisterFlags(fs *pflag.FlagSet, prefix string) {
	flag := flagPrefix(prefix)
	fs.StringVar(&a.TokenHMACSecretKey, flag+".token-hmac-secret-key", a.TokenHMACSecretKey, "secret (or path of a file holding it) verifying HS256/384/512 tokens; enables authentication")
	fs.StringVar(&a.TokenRSAPublicKey, flag+".token-rsa-public-key", a.TokenRSAPublicKey, "RSA public key, PEM text or file path, verifying RS/PS 256/384/512 tokens; enables authentication")
	fs.StringVar(&a.TokenECDSAPublicKey, flag+".token-ecdsa-public-key", a.TokenECDSAPublicKey, "ECDSA public key, PEM text or file path, verifying ES256/384/512 tokens; enables authentication")
	fs.StringVar(&a.JWKSURL, flag+".jwks-url", a.JWKSURL, "https:// or file:// URL of a JSON Web Key Set verifying tokens; enables authentication")
	fs.DurationVar(&a.JWKSRefreshInterval, flag+".jwks-refresh-interval", a.JWKSRefreshInterval, "how often the JSON Web Key Set is refreshed")
	fs.StringVar(&a.TokenAudience, flag+".token-audience", a.TokenAudience, "required token audience (aud); empty accepts any")
	fs.StringVar(&a.TokenIssuer, flag+".token-issuer", a.TokenIssuer, "required token issuer (iss); empty accepts any")
	fs.BoolVar(&a.RequireEndpointsClaim, flag+".require-endpoints-claim", a.RequireEndpointsClaim, "refuse tokens without a pico.endpoints (or piko.endpoints) claim instead of allowing every endpoint")
	fs.BoolVar(&a.DisconnectOnExpiry, flag+".disconnect-on-expiry", a.DisconnectOnExpiry, "close a token's connection when the token expires")
}

// Validate checks the <prefix> section. Key material is parsed when the
// verifier is built, with errors naming these keys.
func (a *Auth) Validate(prefix string) error {
	var errs []error
	if a.JWKSURL != "" {
		if err := validateJWKSURL(a.JWKSURL); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", describeKey(prefix+".jwks_url"), err))
		}
		if a.JWKSRefreshInterval <= 0 {
			errs = append(errs, fmt.Errorf("%s is %s; use a positive duration such as \"5m\"", describeKey(prefix+".jwks_refresh_interval"), a.JWKSRefreshInterval))
		}
	}
	if !a.Enabled() {
		// Options without a key would silently leave authentication off.
		options := []struct {
			key string
			set bool
		}{
			{"token_audience", a.TokenAudience != ""},
			{"token_issuer", a.TokenIssuer != ""},
			{"require_endpoints_claim", a.RequireEndpointsClaim},
		}
		for _, o := range options {
			if o.set {
				errs = append(errs, fmt.Errorf("%s is set but no verification key is, so authentication is off; set %s.token_hmac_secret_key, %s.token_rsa_public_key, %s.token_ecdsa_public_key or %s.jwks_url", describeKey(prefix+"."+o.key), prefix, prefix, prefix, prefix))
			}
		}
	}
	return errors.Join(errs...)
}

func validateJWKSURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("not a URL; use https://host/path or file:///path")
	}
	switch u.Scheme {
	case "https":
		if u.Host == "" {
			return errors.New("has no host; use https://host/path")
		}
	case "file":
		if u.Path == "" || u.Host != "" {
			return errors.New("needs an absolute path; use file:///path/to/jwks.json")
		}
	case "http":
		return errors.New("plain http would let anyone on the path substitute keys; use https:// or file://")
	default:
		return fmt.Errorf("scheme %q is not supported; use https:// or file://", u.Scheme)
	}
	return nil
}
