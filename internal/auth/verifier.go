// Package auth authenticates upstreams, proxy clients and admin API callers
// with JSON Web Tokens.
//
// A Verifier is built from one config.Auth section (`auth`, `proxy.auth`,
// `admin.auth`). It accepts only the algorithms of the keys configured
// (HMAC secret, RSA or ECDSA public key, JSON Web Key Set), so `none` and
// algorithm confusion (an HS256 token "signed" with the RSA public key) are
// refused; `exp` and `nbf` are enforced, `aud` and `iss` checked when
// configured. A token's `pico.endpoints` claim (or Piko's `piko.endpoints`)
// limits the endpoints it may use. Signature checks are done by
// github.com/golang-jwt/jwt/v5, key sets handled by
// github.com/MicahParks/keyfunc/v3.
//
// Errors never contain the token: a token valid for another audience is
// still a credential.
package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/pico-proxy/pico/internal/config"
)

// maxTokenBytes bounds the tokens Verify looks at.
const maxTokenBytes = 16 << 10

// jwksLookupTimeout bounds the wait for a key set refresh during Verify.
const jwksLookupTimeout = 15 * time.Second

// Errors returned by Verify and AuthorizeRequest; the message after the
// sentinel says what exactly was wrong.
var (
	ErrNoToken              = errors.New("no token: send it as `Authorization: Bearer <token>` or in the x-pico-authorization header")
	ErrInvalidToken         = errors.New("invalid token")
	ErrEndpointNotPermitted = errors.New("the token does not permit this endpoint")
)

// Token is a verified token.
type Token struct {
	// Subject is the token's `sub` claim (may be empty), for logs.
	Subject string
	// Expiry is when the token expires; zero if it has no `exp`.
	Expiry time.Time
	// Endpoints are the endpoint IDs the token may use; nil means any.
	Endpoints []string
}

// Allows reports whether the token may use endpoint. A nil token allows
// nothing.
func (t *Token) Allows(endpoint string) bool {
	if t == nil {
		return false
	}
	return t.Endpoints == nil || slices.Contains(t.Endpoints, endpoint)
}

// claims are the parts of a token Pico reads.
type claims struct {
	jwt.RegisteredClaims
	Pico *endpointsClaim `json:"pico,omitempty"`
	Piko *endpointsClaim `json:"piko,omitempty"`
}

type endpointsClaim struct {
	Endpoints []string `json:"endpoints"`
}

// endpoints returns pico.endpoints, else piko.endpoints; nil when neither
// is present. An explicit empty list permits no endpoint.
func (c *claims) endpoints() []string {
	for _, e := range []*endpointsClaim{c.Pico, c.Piko} {
		if e != nil && e.Endpoints != nil {
			return e.Endpoints
		}
	}
	return nil
}

// Verifier verifies tokens against the keys of one config.Auth section.
// A nil Verifier, or one built from a section without keys, is disabled.
type Verifier struct {
	section            string
	hmacKey            []byte
	rsaKey             *rsa.PublicKey
	ecdsaKey           *ecdsa.PublicKey
	keySet             jwks
	parser             *jwt.Parser
	algorithms         []string
	audience, issuer   string
	requireEndpoints   bool
	disconnectOnExpiry bool
}

// Option changes how NewVerifier builds a Verifier.
type Option func(*options)

type options struct {
	section string
	logger  *slog.Logger
	client  *http.Client
}

// WithSection names the configuration section in errors ("auth" by
// default; "proxy.auth" or "admin.auth" for the other listeners).
func WithSection(section string) Option { return func(o *options) { o.section = section } }

// WithLogger sets the logger for key set refreshes and reloads.
func WithLogger(logger *slog.Logger) Option { return func(o *options) { o.logger = logger } }

// WithHTTPClient sets the client fetching https:// key sets (e.g. one
// trusting a private CA). The default uses the system roots.
func WithHTTPClient(client *http.Client) Option { return func(o *options) { o.client = client } }

// NewVerifier loads the keys of cfg, validated at load (config.Auth.Validate).
// With no key configured it returns a
// disabled Verifier. An https:// key set is fetched before it returns (an
// unreachable issuer is an error) and refreshed in the background until
// Close.
func NewVerifier(cfg config.Auth, opts ...Option) (*Verifier, error) {
	o := options{section: "auth"}
	for _, opt := range opts {
		opt(&o)
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	o.logger = o.logger.With("subsystem", "auth", "section", o.section)
	v := &Verifier{
		section:            o.section,
		audience:           cfg.TokenAudience,
		issuer:             cfg.TokenIssuer,
		requireEndpoints:   cfg.RequireEndpointsClaim,
		disconnectOnExpiry: cfg.DisconnectOnExpiry,
	}
	if !cfg.Enabled() {
		return v, nil
	}
	var err error
	if cfg.TokenHMACSecretKey != "" {
		if v.hmacKey, err = loadHMACKey(setting{o.section, "token_hmac_secret_key"}, cfg.TokenHMACSecretKey); err != nil {
			return nil, err
		}
		v.algorithms = append(v.algorithms, hmacAlgorithms...)
	}
	if cfg.TokenRSAPublicKey != "" {
		if v.rsaKey, err = loadRSAKey(setting{o.section, "token_rsa_public_key"}, cfg.TokenRSAPublicKey); err != nil {
			return nil, err
		}
		v.algorithms = append(v.algorithms, rsaAlgorithms...)
	}
	if cfg.TokenECDSAPublicKey != "" {
		key, alg, err := loadECDSAKey(setting{o.section, "token_ecdsa_public_key"}, cfg.TokenECDSAPublicKey)
		if err != nil {
			return nil, err
		}
		v.ecdsaKey = key
		v.algorithms = append(v.algorithms, alg)
	}
	if cfg.JWKSURL != "" {
		if v.keySet, err = newJWKS(setting{o.section, "jwks_url"}, cfg.JWKSURL, cfg.JWKSRefreshInterval, o.client, o.logger); err != nil {
			return nil, err
		}
		v.algorithms = append(v.algorithms, jwksAlgorithms...)
	}
	slices.Sort(v.algorithms)
	v.algorithms = slices.Compact(v.algorithms)

	parserOpts := []jwt.ParserOption{jwt.WithValidMethods(v.algorithms)}
	if v.audience != "" {
		parserOpts = append(parserOpts, jwt.WithAudience(v.audience))
	}
	if v.issuer != "" {
		parserOpts = append(parserOpts, jwt.WithIssuer(v.issuer))
	}
	v.parser = jwt.NewParser(parserOpts...)
	return v, nil
}

// Enabled reports whether tokens are required.
func (v *Verifier) Enabled() bool { return v != nil && v.parser != nil }

// Close stops refreshing the key set. The Verifier still verifies with
// the keys it has.
func (v *Verifier) Close() {
	if v != nil && v.keySet != nil {
		v.keySet.close()
	}
}

// Verify checks token's signature, validity period, audience, issuer and
// (with require_endpoints_claim) endpoints claim. Errors wrap
// ErrInvalidToken and never contain the token.
func (v *Verifier) Verify(token string) (*Token, error) {
	if !v.Enabled() {
		return nil, fmt.Errorf("%w: authentication is not configured", ErrInvalidToken)
	}
	if len(token) > maxTokenBytes {
		return nil, fmt.Errorf("%w: the token is %d bytes; the limit is %d", ErrInvalidToken, len(token), maxTokenBytes)
	}
	ctx, cancel := context.WithTimeout(context.Background(), jwksLookupTimeout)
	defer cancel()
	var c claims
	parsed, err := v.parser.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		return v.key(ctx, t)
	})
	if err != nil {
		return nil, v.describe(parsed, &c, err)
	}
	endpoints := c.endpoints()
	if endpoints == nil && v.requireEndpoints {
		return nil, fmt.Errorf("%w: the token has no pico.endpoints claim, which %s.require_endpoints_claim requires", ErrInvalidToken, v.section)
	}
	t := &Token{Subject: c.Subject, Endpoints: endpoints}
	if c.ExpiresAt != nil {
		t.Expiry = c.ExpiresAt.Time
	}
	return t, nil
}

// key returns the configured keys that may verify t. The parser has
// already refused algorithms outside v.algorithms, and each signing method
// refuses keys of the wrong type, so an HMAC token is never checked
// against a public key.
func (v *Verifier) key(ctx context.Context, t *jwt.Token) (any, error) {
	var keys []jwt.VerificationKey
	switch t.Method.(type) {
	case *jwt.SigningMethodHMAC:
		if v.hmacKey == nil {
			return nil, noKeyFor(t)
		}
		return v.hmacKey, nil // never a key set's symmetric key
	case *jwt.SigningMethodRSA, *jwt.SigningMethodRSAPSS:
		if v.rsaKey != nil {
			keys = append(keys, v.rsaKey)
		}
	case *jwt.SigningMethodECDSA:
		if v.ecdsaKey != nil {
			keys = append(keys, v.ecdsaKey)
		}
	}
	if v.keySet != nil {
		found, err := v.keySet.lookup(ctx, t)
		switch k := found.(type) {
		case nil:
			if len(keys) > 0 {
				break
			}
			// err quotes the key ID the token claims; it is not passed on.
			if errors.Is(err, context.DeadlineExceeded) {
				return nil, keyLookupError(fmt.Sprintf("refreshing %s.jwks_url to find the token's key timed out", v.section))
			}
			return nil, keyLookupError(fmt.Sprintf("no key in %s.jwks_url matches the token's key ID and algorithm", v.section))
		case jwt.VerificationKeySet:
			keys = append(keys, k.Keys...)
		default:
			keys = append(keys, k)
		}
	}
	switch len(keys) {
	case 0:
		return nil, noKeyFor(t)
	case 1:
		return keys[0], nil
	}
	return jwt.VerificationKeySet{Keys: keys}, nil
}

// keyLookupError explains why no key was found for a token.
type keyLookupError string

func (e keyLookupError) Error() string { return string(e) }

func noKeyFor(t *jwt.Token) error {
	return keyLookupError(fmt.Sprintf("no configured key verifies %.16q tokens", t.Method.Alg()))
}

// describe turns a parse error into an error that explains the problem
// without quoting the token.
func (v *Verifier) describe(parsed *jwt.Token, c *claims, err error) error {
	var reason string
	var lookupErr keyLookupError
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		reason = "the token is malformed (not a signed JWT)"
	case parsed != nil && parsed.Method != nil && !slices.Contains(v.algorithms, parsed.Method.Alg()):
		reason = fmt.Sprintf("signing algorithm %.16q is not accepted; the configured keys accept %v", parsed.Method.Alg(), v.algorithms)
	case parsed != nil && parsed.Method == nil:
		reason = "the token's signing algorithm is not accepted"
	case errors.As(err, &lookupErr):
		reason = string(lookupErr)
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		reason = "no configured key can verify the token"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		reason = "the signature does not match any configured key"
	case errors.Is(err, jwt.ErrTokenExpired):
		reason = "the token has expired"
		if c.ExpiresAt != nil {
			reason = "the token expired at " + c.ExpiresAt.UTC().Format(time.RFC3339)
		}
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		reason = "the token is not valid yet"
		if c.NotBefore != nil {
			reason = "the token is not valid before " + c.NotBefore.UTC().Format(time.RFC3339)
		}
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing) && v.audience != "" && len(c.Audience) == 0:
		reason = fmt.Sprintf("the token has no audience (aud); %q is required", v.audience)
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing) && v.issuer != "" && c.Issuer == "":
		reason = fmt.Sprintf("the token has no issuer (iss); %q is required", v.issuer)
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		reason = fmt.Sprintf("the token's audience does not include %q", v.audience)
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		reason = fmt.Sprintf("the token's issuer is not %q", v.issuer)
	default:
		reason = "the token's claims are invalid"
	}
	return fmt.Errorf("%w: %s", ErrInvalidToken, reason)
}

// CloseOnExpiry arranges for closeFn to run when tok expires, if the
// section's disconnect_on_expiry is set and tok has an expiry. Call the
// returned stop function when the connection ends. A nil token (auth
// disabled) schedules nothing.
func (v *Verifier) CloseOnExpiry(tok *Token, closeFn func()) (stop func()) {
	if v == nil || !v.disconnectOnExpiry || tok == nil || tok.Expiry.IsZero() {
		return func() {}
	}
	timer := time.AfterFunc(time.Until(tok.Expiry), closeFn)
	return func() { timer.Stop() }
}
