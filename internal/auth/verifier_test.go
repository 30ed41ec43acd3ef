package auth

import (
	"encoding/base64"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/pico-proxy/pico/internal/config"
	"github.com/stretchr/testify/require"
)

func newVerifier(t *testing.T, cfg config.Auth, opts ...Option) *Verifier {
	t.Helper()
	v, err := NewVerifier(cfg, opts...)
	require.NoError(t, err)
	t.Cleanup(v.Close)
	return v
}

func authConfig(mod func(*config.Auth)) config.Auth {
	cfg := config.DefaultAuth()
	mod(&cfg)
	return cfg
}

// noneToken is an unsigned token (alg "none") with otherwise valid claims.
func noneToken(t *testing.T) string {
	return sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, tokenClaims(nil), nil)
}

func TestVerifyAcceptsAndRejects(t *testing.T) {
	rsa1, rsa2 := rsaKeys()[0], rsaKeys()[1]
	ec := ecKeys()
	rsaPEM := publicPEM(t, &rsa1.PublicKey)

	hmacCfg := authConfig(func(c *config.Auth) { c.TokenHMACSecretKey = hmacSecret })
	rsaCfg := authConfig(func(c *config.Auth) { c.TokenRSAPublicKey = rsaPEM })
	ecCfg := func(curve string) config.Auth {
		return authConfig(func(c *config.Auth) { c.TokenECDSAPublicKey = publicPEM(t, &ec[curve].PublicKey) })
	}
	hmacAndRSACfg := authConfig(func(c *config.Auth) {
		c.TokenHMACSecretKey = hmacSecret
		c.TokenRSAPublicKey = rsaPEM
	})
	audIssCfg := authConfig(func(c *config.Auth) {
		c.TokenHMACSecretKey = hmacSecret
		c.TokenAudience = "pico"
		c.TokenIssuer = "https://issuer.example"
	})
	requireCfg := authConfig(func(c *config.Auth) {
		c.TokenHMACSecretKey = hmacSecret
		c.RequireEndpointsClaim = true
	})

	hs := func(method jwt.SigningMethod, extra map[string]any) string {
		return sign(t, method, []byte(hmacSecret), tokenClaims(extra), nil)
	}
	now := time.Now()

	tests := []struct {
		name    string
		cfg     config.Auth
		token   string
		wantErr string // substring; empty means accepted
	}{
		// Each key type and algorithm.
		{"HS256", hmacCfg, hs(jwt.SigningMethodHS256, nil), ""},
		{"HS384", hmacCfg, hs(jwt.SigningMethodHS384, nil), ""},
		{"HS512", hmacCfg, hs(jwt.SigningMethodHS512, nil), ""},
		{"RS256", rsaCfg, sign(t, jwt.SigningMethodRS256, rsa1, tokenClaims(nil), nil), ""},
		{"RS384", rsaCfg, sign(t, jwt.SigningMethodRS384, rsa1, tokenClaims(nil), nil), ""},
		{"RS512", rsaCfg, sign(t, jwt.SigningMethodRS512, rsa1, tokenClaims(nil), nil), ""},
		{"PS256", rsaCfg, sign(t, jwt.SigningMethodPS256, rsa1, tokenClaims(nil), nil), ""},
		{"ES256", ecCfg("P-256"), sign(t, jwt.SigningMethodES256, ec["P-256"], tokenClaims(nil), nil), ""},
		{"ES384", ecCfg("P-384"), sign(t, jwt.SigningMethodES384, ec["P-384"], tokenClaims(nil), nil), ""},
		{"ES512", ecCfg("P-521"), sign(t, jwt.SigningMethodES512, ec["P-521"], tokenClaims(nil), nil), ""},
		{"no exp is accepted", hmacCfg, hs(jwt.SigningMethodHS256, map[string]any{"exp": nil}), ""},
		{"HMAC and RSA configured, HS256", hmacAndRSACfg, hs(jwt.SigningMethodHS256, nil), ""},
		{"HMAC and RSA configured, RS256", hmacAndRSACfg, sign(t, jwt.SigningMethodRS256, rsa1, tokenClaims(nil), nil), ""},

		// Validity period.
		{"expired", hmacCfg, hs(jwt.SigningMethodHS256, map[string]any{"exp": now.Add(-time.Minute).Unix()}), "expired at"},
		{"not yet valid", hmacCfg, hs(jwt.SigningMethodHS256, map[string]any{"nbf": now.Add(time.Hour).Unix()}), "not valid before"},
		{"nbf in the past", hmacCfg, hs(jwt.SigningMethodHS256, map[string]any{"nbf": now.Add(-time.Minute).Unix()}), ""},

		// Wrong keys.
		{"HMAC wrong secret", hmacCfg, sign(t, jwt.SigningMethodHS256, []byte(otherHMACSecret), tokenClaims(nil), nil), "signature does not match"},
		{"RSA wrong key", rsaCfg, sign(t, jwt.SigningMethodRS256, rsa2, tokenClaims(nil), nil), "signature does not match"},
		{"ECDSA wrong key", ecCfg("P-256"), sign(t, jwt.SigningMethodES256, ec["P-256b"], tokenClaims(nil), nil), "signature does not match"},
		{"tampered payload", hmacCfg, tamper(hs(jwt.SigningMethodHS256, nil)), "signature does not match"},

		// Wrong algorithms.
		{"none against HMAC", hmacCfg, noneToken(t), `"none" is not accepted`},
		{"none against RSA", rsaCfg, noneToken(t), `"none" is not accepted`},
		{"RS256 against HMAC key", hmacCfg, sign(t, jwt.SigningMethodRS256, rsa1, tokenClaims(nil), nil), `"RS256" is not accepted`},
		{"HS256 against RSA key", rsaCfg, hs(jwt.SigningMethodHS256, nil), `"HS256" is not accepted`},
		{"ES384 against P-256 key", ecCfg("P-256"), sign(t, jwt.SigningMethodES384, ec["P-384"], tokenClaims(nil), nil), `"ES384" is not accepted`},
		{"unknown algorithm", hmacCfg, withHeader(t, hs(jwt.SigningMethodHS256, nil), `{"alg":"XX999","typ":"JWT"}`), "not accepted"},
		// Algorithm confusion: an HS256 token "signed" with the RSA public
		// key's PEM text as the HMAC secret.
		{"HS256 keyed with the RSA public key, RSA only", rsaCfg, sign(t, jwt.SigningMethodHS256, []byte(rsaPEM), tokenClaims(nil), nil), `"HS256" is not accepted`},
		{"HS256 keyed with the RSA public key, HMAC and RSA", hmacAndRSACfg, sign(t, jwt.SigningMethodHS256, []byte(rsaPEM), tokenClaims(nil), nil), "signature does not match"},

		// Audience and issuer.
		{"audience and issuer match", audIssCfg, hs(jwt.SigningMethodHS256, map[string]any{"aud": []string{"other", "pico"}, "iss": "https://issuer.example"}), ""},
		{"wrong audience", audIssCfg, hs(jwt.SigningMethodHS256, map[string]any{"aud": "other", "iss": "https://issuer.example"}), `audience does not include "pico"`},
		{"missing audience", audIssCfg, hs(jwt.SigningMethodHS256, map[string]any{"iss": "https://issuer.example"}), `no audience (aud); "pico" is required`},
		{"wrong issuer", audIssCfg, hs(jwt.SigningMethodHS256, map[string]any{"aud": "pico", "iss": "https://evil.example"}), `issuer is not "https://issuer.example"`},
		{"missing issuer", audIssCfg, hs(jwt.SigningMethodHS256, map[string]any{"aud": "pico"}), `no issuer (iss); "https://issuer.example" is required`},

		// Endpoints claim.
		{"require_endpoints_claim without claim", requireCfg, hs(jwt.SigningMethodHS256, nil), "no pico.endpoints claim"},
		{"require_endpoints_claim with pico claim", requireCfg, hs(jwt.SigningMethodHS256, map[string]any{"pico": map[string]any{"endpoints": []string{"a"}}}), ""},
		{"require_endpoints_claim with piko claim", requireCfg, hs(jwt.SigningMethodHS256, map[string]any{"piko": map[string]any{"endpoints": []string{"a"}}}), ""},
		{"require_endpoints_claim with null list", requireCfg, hs(jwt.SigningMethodHS256, map[string]any{"pico": map[string]any{"endpoints": nil}}), "no pico.endpoints claim"},
		{"endpoints claim of the wrong type", hmacCfg, hs(jwt.SigningMethodHS256, map[string]any{"pico": map[string]any{"endpoints": "a"}}), "malformed"},

		// Not tokens at all.
		{"empty", hmacCfg, "", "malformed"},
		{"garbage", hmacCfg, "not-a-token", "malformed"},
		{"three garbage segments", hmacCfg, "a.b.c", "malformed"},
		{"too long", hmacCfg, strings.Repeat("a", maxTokenBytes+1), "limit"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := newVerifier(t, tc.cfg)
			tok, err := v.Verify(tc.token)
			if tc.wantErr == "" {
				require.NoError(t, err)
				require.NotNil(t, tok)
				return
			}
			require.Error(t, err)
			require.Nil(t, tok)
			require.ErrorIs(t, err, ErrInvalidToken)
			require.Contains(t, err.Error(), tc.wantErr)
			requireNoTokenText(t, err, tc.token)
			require.Equal(t, 401, HTTPStatus(err))
		})
	}
}

// requireNoTokenText checks that err quotes no part of token.
func requireNoTokenText(t *testing.T, err error, token string) {
	t.Helper()
	for _, part := range strings.Split(token, ".") {
		if len(part) >= 8 {
			require.NotContains(t, err.Error(), part, "the error quotes the token")
		}
	}
}

// tamper changes the payload of a signed token, keeping its signature.
func tamper(token string) string {
	parts := strings.Split(token, ".")
	payload := base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"admin","exp":4102444800}`))
	return parts[0] + "." + payload + "." + parts[2]
}

// withHeader replaces a token's header.
func withHeader(t *testing.T, token, header string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	return base64.RawURLEncoding.EncodeToString([]byte(header)) + "." + parts[1] + "." + parts[2]
}

func TestTokenEndpointsAndExpiry(t *testing.T) {
	v := newVerifier(t, authConfig(func(c *config.Auth) { c.TokenHMACSecretKey = hmacSecret }))
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	hs := func(extra map[string]any) *Token {
		tok, err := v.Verify(sign(t, jwt.SigningMethodHS256, []byte(hmacSecret), tokenClaims(extra), nil))
		require.NoError(t, err)
		return tok
	}
	tests := []struct {
		name      string
		extra     map[string]any
		endpoints []string
		allowed   []string
		refused   []string
	}{
		{"no claim allows any endpoint", nil, nil, []string{"a", "anything"}, nil},
		{"pico.endpoints", map[string]any{"pico": map[string]any{"endpoints": []string{"a", "b"}}}, []string{"a", "b"}, []string{"a", "b"}, []string{"c", "ab", ""}},
		{"piko.endpoints", map[string]any{"piko": map[string]any{"endpoints": []string{"a"}}}, []string{"a"}, []string{"a"}, []string{"b"}},
		{"pico wins over piko", map[string]any{"pico": map[string]any{"endpoints": []string{"a"}}, "piko": map[string]any{"endpoints": []string{"b"}}}, []string{"a"}, []string{"a"}, []string{"b"}},
		{"empty pico object falls back to piko", map[string]any{"pico": map[string]any{}, "piko": map[string]any{"endpoints": []string{"b"}}}, []string{"b"}, []string{"b"}, []string{"a"}},
		{"explicit empty list allows nothing", map[string]any{"pico": map[string]any{"endpoints": []string{}}}, []string{}, nil, []string{"a"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			extra := map[string]any{"exp": exp.Unix(), "sub": "agent-7"}
			for k, val := range tc.extra {
				extra[k] = val
			}
			tok := hs(extra)
			require.Equal(t, tc.endpoints, tok.Endpoints)
			require.True(t, tok.Expiry.Equal(exp), "expiry %s, want %s", tok.Expiry, exp)
			require.Equal(t, "agent-7", tok.Subject)
			for _, e := range tc.allowed {
				require.True(t, tok.Allows(e), "endpoint %q", e)
			}
			for _, e := range tc.refused {
				require.False(t, tok.Allows(e), "endpoint %q", e)
			}
		})
	}
	require.False(t, (*Token)(nil).Allows("a"), "a nil token allows nothing")
	require.True(t, hs(map[string]any{"exp": nil}).Expiry.IsZero())
}

func TestDisabledVerifier(t *testing.T) {
	v := newVerifier(t, config.DefaultAuth())
	require.False(t, v.Enabled())
	require.False(t, (*Verifier)(nil).Enabled())
	_, err := v.Verify(sign(t, jwt.SigningMethodHS256, []byte(hmacSecret), tokenClaims(nil), nil))
	require.ErrorIs(t, err, ErrInvalidToken, "a disabled verifier accepts nothing it is asked to verify")
}

func TestCloseOnExpiry(t *testing.T) {
	enabled := newVerifier(t, authConfig(func(c *config.Auth) { c.TokenHMACSecretKey = hmacSecret }))
	disabled := newVerifier(t, authConfig(func(c *config.Auth) {
		c.TokenHMACSecretKey = hmacSecret
		c.DisconnectOnExpiry = false
	}))
	soon := &Token{Expiry: time.Now().Add(50 * time.Millisecond)}

	var closed, closedWhenDisabled, closedAfterStop atomic.Bool
	stop := enabled.CloseOnExpiry(soon, func() { closed.Store(true) })
	defer stop()
	stopDisabled := disabled.CloseOnExpiry(soon, func() { closedWhenDisabled.Store(true) })
	defer stopDisabled()
	enabled.CloseOnExpiry(soon, func() { closedAfterStop.Store(true) })()

	require.Eventually(t, closed.Load, 5*time.Second, 5*time.Millisecond, "the session is closed when the token expires")
	require.False(t, closedWhenDisabled.Load(), "disconnect_on_expiry=false keeps the session")
	require.False(t, closedAfterStop.Load(), "stop cancels the close")

	// No expiry, or no token (auth disabled): nothing is scheduled.
	enabled.CloseOnExpiry(&Token{}, func() { t.Error("closed a session whose token has no expiry") })
	enabled.CloseOnExpiry(nil, func() { t.Error("closed a session without a token") })
}

func TestVerifiedTokenExpiryDrivesClose(t *testing.T) {
	v := newVerifier(t, authConfig(func(c *config.Auth) { c.TokenHMACSecretKey = hmacSecret }))
	// exp has a one-second resolution: the token expires within two seconds.
	tok, err := v.Verify(sign(t, jwt.SigningMethodHS256, []byte(hmacSecret), tokenClaims(map[string]any{"exp": time.Now().Add(2 * time.Second).Unix()}), nil))
	require.NoError(t, err)
	var closed atomic.Bool
	defer v.CloseOnExpiry(tok, func() { closed.Store(true) })()
	require.Eventually(t, closed.Load, 10*time.Second, 10*time.Millisecond)
	require.False(t, time.Now().Before(tok.Expiry), "closed before the token expired")
}

func TestKeyConfigurationErrors(t *testing.T) {
	rsa1 := rsaKeys()[0]
	ec := ecKeys()
	small := mustRSA(1024)
	rsaFile := writeFile(t, "rsa.pem", publicPEM(t, &rsa1.PublicKey))
	ecFile := writeFile(t, "ec.pem", publicPEM(t, &ec["P-384"].PublicKey))
	secretFile := writeFile(t, "secret", hmacSecret+"\n")
	shortSecret := "too-short-secret"

	tests := []struct {
		name    string
		section string
		cfg     func(*config.Auth)
		wantErr string // empty: accepted
		secret  string // must not appear in the error
	}{
		{"RSA PEM from a file", "auth", func(c *config.Auth) { c.TokenRSAPublicKey = rsaFile }, "", ""},
		{"ECDSA PEM from a file", "auth", func(c *config.Auth) { c.TokenECDSAPublicKey = ecFile }, "", ""},
		{"HMAC secret from a file", "auth", func(c *config.Auth) { c.TokenHMACSecretKey = secretFile }, "", ""},
		{"short HMAC secret", "auth", func(c *config.Auth) { c.TokenHMACSecretKey = shortSecret }, "auth.token_hmac_secret_key (--auth.token-hmac-secret-key): the secret is 16 bytes; use at least 32", shortSecret},
		{"mistyped HMAC secret path", "proxy.auth", func(c *config.Auth) { c.TokenHMACSecretKey = "/etc/pico/no-such-secret-file-anywhere-at-all" }, "proxy.auth.token_hmac_secret_key (--proxy.auth.token-hmac-secret-key): file /etc/pico/no-such-secret-file-anywhere-at-all does not exist", ""},
		{"missing RSA file", "admin.auth", func(c *config.Auth) { c.TokenRSAPublicKey = "/nonexistent/rsa.pem" }, "admin.auth.token_rsa_public_key (--admin.auth.token-rsa-public-key): not PEM text, and not a readable file", ""},
		{"RSA private key", "auth", func(c *config.Auth) { c.TokenRSAPublicKey = privatePEM(t, rsa1) }, "holds a private key; give only the public key", ""},
		{"RSA key too small", "auth", func(c *config.Auth) { c.TokenRSAPublicKey = publicPEM(t, &small.PublicKey) }, "the RSA key has 1024 bits; use at least 2048", ""},
		{"ECDSA key as RSA key", "auth", func(c *config.Auth) { c.TokenRSAPublicKey = publicPEM(t, &ec["P-256"].PublicKey) }, "auth.token_rsa_public_key (--auth.token-rsa-public-key): not an RSA public key", ""},
		{"RSA key as ECDSA key", "auth", func(c *config.Auth) { c.TokenECDSAPublicKey = publicPEM(t, &rsa1.PublicKey) }, "auth.token_ecdsa_public_key (--auth.token-ecdsa-public-key): not an ECDSA public key", ""},
		{"P-224 ECDSA key", "auth", func(c *config.Auth) { c.TokenECDSAPublicKey = publicPEM(t, &ec["P-224"].PublicKey) }, "curve P-224 is not used by JWT", ""},
		{"PEM without a block", "auth", func(c *config.Auth) { c.TokenRSAPublicKey = "-----BEGIN nonsense" }, "no PEM block found", ""},
		// The configuration's own checks (an http:// key set, an
		// audience without a key) are config.Auth.Validate's, at load:
		// internal/config TestValidatedOnceAtLoad.
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := NewVerifier(authConfig(tc.cfg), WithSection(tc.section))
			if tc.wantErr == "" {
				require.NoError(t, err)
				require.True(t, v.Enabled())
				v.Close()
				return
			}
			require.ErrorContains(t, err, tc.wantErr)
			if tc.secret != "" {
				require.NotContains(t, err.Error(), tc.secret)
			}
		})
	}
}

func TestHMACSecretFileWithNewlineVerifies(t *testing.T) {
	v := newVerifier(t, authConfig(func(c *config.Auth) { c.TokenHMACSecretKey = writeFile(t, "secret", hmacSecret+"\r\n") }))
	_, err := v.Verify(sign(t, jwt.SigningMethodHS256, []byte(hmacSecret), tokenClaims(nil), nil))
	require.NoError(t, err, "the trailing newline of the file is not part of the secret")
}
