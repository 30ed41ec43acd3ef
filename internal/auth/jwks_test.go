package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/pico-proxy/pico/internal/config"
	"github.com/stretchr/testify/require"
)

// jwksServer is an HTTPS server publishing a key set that tests replace.
type jwksServer struct {
	*httptest.Server
	set      atomic.Pointer[[]byte]
	requests atomic.Int64
}

func newJWKSServer(t *testing.T, set []byte) *jwksServer {
	s := &jwksServer{}
	s.set.Store(&set)
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(*s.set.Load())
	}))
	s.Config.ErrorLog = log.New(io.Discard, "", 0) // handshakes refused by untrusting clients
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) publish(set []byte) { s.set.Store(&set) }

func TestJWKSOverHTTPSWithRotation(t *testing.T) {
	rsa1, rsa2 := rsaKeys()[0], rsaKeys()[1]
	ec := ecKeys()
	edPub, edPriv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	srv := newJWKSServer(t, jwksJSON(t, map[string]any{"k1": &rsa1.PublicKey, "e1": &ec["P-384"].PublicKey, "d1": edPub}))
	v := newVerifier(t, authConfig(func(c *config.Auth) {
		c.JWKSURL = srv.URL + "/.well-known/jwks.json"
		c.JWKSRefreshInterval = time.Hour // rotation below goes through the unknown-kid refresh
	}), WithHTTPClient(srv.Client()))

	k1 := sign(t, jwt.SigningMethodRS256, rsa1, tokenClaims(nil), map[string]any{"kid": "k1"})
	k2 := sign(t, jwt.SigningMethodRS256, rsa2, tokenClaims(nil), map[string]any{"kid": "k2"})
	_, err = v.Verify(k1)
	require.NoError(t, err)
	_, err = v.Verify(sign(t, jwt.SigningMethodEdDSA, edPriv, tokenClaims(nil), map[string]any{"kid": "d1"}))
	require.NoError(t, err, "Ed25519 keys of the set verify EdDSA tokens")
	_, err = v.Verify(sign(t, jwt.SigningMethodES384, ec["P-384"], tokenClaims(nil), map[string]any{"kid": "e1"}))
	require.NoError(t, err, "ECDSA keys of the set verify too")
	_, err = v.Verify(sign(t, jwt.SigningMethodRS256, rsa1, tokenClaims(nil), nil))
	require.NoError(t, err, "a token without kid is tried against every key")
	_, err = v.Verify(sign(t, jwt.SigningMethodRS256, rsa2, tokenClaims(nil), map[string]any{"kid": "k1"}))
	require.ErrorContains(t, err, "signature does not match", "a token signed by another key under a known kid")

	// The issuer rotates to k2 and drops k1: a token naming the new kid
	// makes the verifier fetch the set again at once.
	srv.publish(jwksJSON(t, map[string]any{"k2": &rsa2.PublicKey}))
	_, err = v.Verify(k2)
	require.NoError(t, err, "a new key is picked up as soon as a token names it")
	_, err = v.Verify(k1)
	require.ErrorIs(t, err, ErrInvalidToken, "a key removed from the set no longer verifies")
	require.ErrorContains(t, err, "no key in auth.jwks_url matches the token")
	requireNoTokenText(t, err, k1)
}

func TestJWKSPeriodicRefreshRevokesKeys(t *testing.T) {
	rsa1, rsa2 := rsaKeys()[0], rsaKeys()[1]
	srv := newJWKSServer(t, jwksJSON(t, map[string]any{"k1": &rsa1.PublicKey}))
	v := newVerifier(t, authConfig(func(c *config.Auth) {
		c.JWKSURL = srv.URL
		c.JWKSRefreshInterval = 50 * time.Millisecond
	}), WithHTTPClient(srv.Client()))
	k1 := sign(t, jwt.SigningMethodRS256, rsa1, tokenClaims(nil), map[string]any{"kid": "k1"})
	_, err := v.Verify(k1)
	require.NoError(t, err)

	srv.publish(jwksJSON(t, map[string]any{"k2": &rsa2.PublicKey}))
	require.Eventually(t, func() bool {
		_, err := v.Verify(k1)
		return err != nil
	}, 10*time.Second, 20*time.Millisecond, "the periodic refresh drops the revoked key")

	// Close stops the background refresh.
	v.Close()
	before := srv.requests.Load()
	require.Never(t, func() bool { return srv.requests.Load() > before+1 }, 300*time.Millisecond, 50*time.Millisecond, "refreshes continue after Close")
}

func TestJWKSFileReloadsOnChange(t *testing.T) {
	rsa1, rsa2 := rsaKeys()[0], rsaKeys()[1]
	dir := t.TempDir()
	path := filepath.Join(dir, "jwks.json")
	require.NoError(t, os.WriteFile(path, jwksJSON(t, map[string]any{"k1": &rsa1.PublicKey}), 0o600))
	v := newVerifier(t, authConfig(func(c *config.Auth) {
		c.JWKSURL = (&url.URL{Scheme: "file", Path: path}).String()
		c.JWKSRefreshInterval = 20 * time.Millisecond
	}))
	k1 := sign(t, jwt.SigningMethodRS256, rsa1, tokenClaims(nil), map[string]any{"kid": "k1"})
	k2 := sign(t, jwt.SigningMethodRS256, rsa2, tokenClaims(nil), map[string]any{"kid": "k2"})
	_, err := v.Verify(k1)
	require.NoError(t, err)
	_, err = v.Verify(k2)
	require.Error(t, err)

	// A broken write keeps the previous keys.
	require.NoError(t, os.WriteFile(path, []byte("{not json"), 0o600))
	require.Never(t, func() bool { _, err := v.Verify(k1); return err != nil }, 200*time.Millisecond, 20*time.Millisecond)

	require.NoError(t, os.WriteFile(path, jwksJSON(t, map[string]any{"k2": &rsa2.PublicKey}), 0o600))
	require.Eventually(t, func() bool {
		_, err2 := v.Verify(k2)
		_, err1 := v.Verify(k1)
		return err2 == nil && err1 != nil
	}, 10*time.Second, 20*time.Millisecond, "the rewritten key set replaces the old one")
}

func TestJWKSRefusesSymmetricKeysAndConfusion(t *testing.T) {
	rsa1 := rsaKeys()[0]
	secret := []byte(hmacSecret)
	// A key set holding an "oct" (HMAC) key next to an RSA key.
	var set map[string][]map[string]any
	require.NoError(t, json.Unmarshal(jwksJSON(t, map[string]any{"k1": &rsa1.PublicKey}), &set))
	set["keys"] = append(set["keys"], map[string]any{"kty": "oct", "kid": "s1", "k": base64.RawURLEncoding.EncodeToString(secret)})
	data, err := json.Marshal(set)
	require.NoError(t, err)
	srv := newJWKSServer(t, data)
	v := newVerifier(t, authConfig(func(c *config.Auth) { c.JWKSURL = srv.URL }), WithHTTPClient(srv.Client()))

	for name, token := range map[string]string{
		"HS256 with the set's symmetric key":  sign(t, jwt.SigningMethodHS256, secret, tokenClaims(nil), map[string]any{"kid": "s1"}),
		"HS256 keyed with the RSA modulus":    sign(t, jwt.SigningMethodHS256, rsa1.PublicKey.N.Bytes(), tokenClaims(nil), map[string]any{"kid": "k1"}),
		"none":                                sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, tokenClaims(nil), map[string]any{"kid": "k1"}),
		"RS256 under the symmetric key's kid": sign(t, jwt.SigningMethodRS256, rsa1, tokenClaims(nil), map[string]any{"kid": "s1"}),
	} {
		_, err := v.Verify(token)
		require.ErrorIs(t, err, ErrInvalidToken, name)
	}
}

func TestJWKSStartupErrors(t *testing.T) {
	rsa1 := rsaKeys()[0]
	failing := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	defer failing.Close()
	empty := newJWKSServer(t, []byte(`{"keys":[]}`))
	untrusted := newJWKSServer(t, jwksJSON(t, map[string]any{"k1": &rsa1.PublicKey}))

	tests := []struct {
		name    string
		url     string
		client  *http.Client
		wantErr string
	}{
		{"issuer answers an error", failing.URL, failing.Client(), "auth.jwks_url (--auth.jwks-url): fetching the key set"},
		{"empty key set", empty.URL, empty.Client(), "the key set has no usable keys"},
		{"certificate not trusted", untrusted.URL, nil, "certificate"},
		{"missing file", "file:///nonexistent/jwks.json", nil, "no such file"},
		{"file that is not a key set", "file://" + writeFile(t, "jwks.json", `{"keys": 3}`), nil, "is not a JSON Web Key Set"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewVerifier(authConfig(func(c *config.Auth) { c.JWKSURL = tc.url }), WithHTTPClient(tc.client))
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}
