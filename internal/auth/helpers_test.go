package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"
)

// Keys are generated once per test binary: RSA generation is slow.
var (
	rsaKeys = sync.OnceValue(func() [2]*rsa.PrivateKey {
		return [2]*rsa.PrivateKey{mustRSA(2048), mustRSA(2048)}
	})
	ecKeys = sync.OnceValue(func() map[string]*ecdsa.PrivateKey {
		keys := map[string]*ecdsa.PrivateKey{}
		for name, curve := range map[string]elliptic.Curve{"P-256": elliptic.P256(), "P-256b": elliptic.P256(), "P-384": elliptic.P384(), "P-521": elliptic.P521(), "P-224": elliptic.P224()} {
			k, err := ecdsa.GenerateKey(curve, rand.Reader)
			if err != nil {
				panic(err)
			}
			keys[name] = k
		}
		return keys
	})
)

func mustRSA(bits int) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		panic(err)
	}
	return k
}

const (
	hmacSecret      = "0123456789abcdef0123456789abcdef-secret"
	otherHMACSecret = "fedcba9876543210fedcba9876543210-secret"
)

// publicPEM encodes key's public half as a PKIX PEM block.
func publicPEM(t testing.TB, key any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(key)
	require.NoError(t, err)
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// privatePEM encodes key as a PKCS#8 PEM block.
func privatePEM(t testing.TB, key any) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

// tokenClaims builds claims valid for an hour, plus extra ones.
func tokenClaims(extra map[string]any) jwt.MapClaims {
	c := jwt.MapClaims{
		"sub": "tester",
		"iat": time.Now().Unix(),
		"exp": time.Now().Add(time.Hour).Unix(),
	}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	return c
}

// sign signs claims with method and key, adding header fields.
func sign(t testing.TB, method jwt.SigningMethod, key any, claims jwt.Claims, header map[string]any) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	for k, v := range header {
		tok.Header[k] = v
	}
	s, err := tok.SignedString(key)
	require.NoError(t, err)
	return s
}

// jwksJSON returns a public JSON Web Key Set holding keys by key ID.
func jwksJSON(t testing.TB, keys map[string]any) []byte {
	t.Helper()
	ctx := context.Background()
	store := jwkset.NewMemoryStorage()
	for kid, key := range keys {
		jwk, err := jwkset.NewJWKFromKey(key, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: kid}})
		require.NoError(t, err)
		require.NoError(t, store.KeyWrite(ctx, jwk))
	}
	data, err := store.JSONPublic(ctx)
	require.NoError(t, err)
	return data
}

func writeFile(t testing.TB, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	return path
}
