package auth

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
	"github.com/pico-proxy/pico/internal/config"
	"github.com/stretchr/testify/require"
)

func TestTokenFromRequest(t *testing.T) {
	tests := []struct {
		name   string
		header http.Header
		want   string // empty: no token
	}{
		{"Authorization Bearer", http.Header{"Authorization": {"Bearer abc.def.ghi"}}, "abc.def.ghi"},
		{"scheme is case-insensitive", http.Header{"Authorization": {"bearer abc.def.ghi"}}, "abc.def.ghi"},
		{"surrounding blanks", http.Header{"Authorization": {"  Bearer   abc.def.ghi  "}}, "abc.def.ghi"},
		{"Authorization Basic is not a token", http.Header{"Authorization": {"Basic dXNlcjpwYXNz"}}, ""},
		{"Authorization without scheme", http.Header{"Authorization": {"abc.def.ghi"}}, ""},
		{"Bearer without token", http.Header{"Authorization": {"Bearer "}}, ""},
		{"x-pico-authorization Bearer", http.Header{"X-Pico-Authorization": {"Bearer abc.def.ghi"}}, "abc.def.ghi"},
		{"x-pico-authorization bare", http.Header{"X-Pico-Authorization": {"abc.def.ghi"}}, "abc.def.ghi"},
		{"x-piko-authorization", http.Header{"X-Piko-Authorization": {"Bearer abc.def.ghi"}}, "abc.def.ghi"},
		{"x-pico wins over Authorization", http.Header{"X-Pico-Authorization": {"Bearer pico.tok.en"}, "Authorization": {"Bearer app.tok.en"}}, "pico.tok.en"},
		{"x-pico wins over x-piko", http.Header{"X-Pico-Authorization": {"pico.tok.en"}, "X-Piko-Authorization": {"piko.tok.en"}}, "pico.tok.en"},
		{"the service's own Basic credentials beside x-pico", http.Header{"X-Pico-Authorization": {"pico.tok.en"}, "Authorization": {"Basic dXNlcjpwYXNz"}}, "pico.tok.en"},
		{"malformed x-pico does not fall back", http.Header{"X-Pico-Authorization": {"Basic xyz"}, "Authorization": {"Bearer app.tok.en"}}, ""},
		{"padding allowed", http.Header{"Authorization": {"Bearer abc=="}}, "abc=="},
		{"only padding", http.Header{"Authorization": {"Bearer =="}}, ""},
		{"inner space", http.Header{"Authorization": {"Bearer abc def"}}, ""},
		{"control character", http.Header{"Authorization": {"Bearer abc\x00def"}}, ""},
		{"non-ASCII", http.Header{"Authorization": {"Bearer abcé"}}, ""},
		{"none", http.Header{}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.Header = tc.header
			got, ok := TokenFromRequest(r)
			require.Equal(t, tc.want, got)
			require.Equal(t, tc.want != "", ok)
		})
	}
}

func FuzzTokenFromRequest(f *testing.F) {
	f.Add("Authorization", "Bearer abc.def.ghi", "", "")
	f.Add("X-Pico-Authorization", "abc.def.ghi", "Authorization", "Basic dXNlcjpwYXNz")
	f.Add("X-Piko-Authorization", "Bearer  a.b.c= ", "X-Pico-Authorization", "")
	f.Add("Authorization", "bEaReR\t~+/=", "", "")
	f.Add("X-Pico-Authorization", "Bearer", "Authorization", "Bearer x")
	f.Fuzz(func(t *testing.T, name1, value1, name2, value2 string) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header = http.Header{}
		r.Header.Add(name1, value1)
		r.Header.Add(name2, value2)
		values := strings.Join(append(r.Header.Values(name1), r.Header.Values(name2)...), "\n")

		token, ok := TokenFromRequest(r)
		if ok != (token != "") {
			t.Fatalf("ok=%v with token %q", ok, token)
		}
		if !ok {
			return
		}
		if validToken(token) != token {
			t.Fatalf("token %q has characters outside RFC 6750's b64token", token)
		}
		if !strings.Contains(values, token) {
			t.Fatalf("token %q is not in the request's headers", token)
		}

		taken, takenOK := TakeToken(r)
		if taken != token || !takenOK {
			t.Fatalf("TakeToken = %q, %v; TokenFromRequest = %q", taken, takenOK, token)
		}
		if len(r.Header.Values("X-Pico-Authorization"))+len(r.Header.Values("X-Piko-Authorization")) != 0 {
			t.Fatal("Pico's credential headers are still in the request after TakeToken")
		}
	})
}

func TestTakeTokenRemovesOnlyPicoCredentials(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("X-Pico-Authorization", "Bearer pico.tok.en")
	r.Header.Set("X-Piko-Authorization", "Bearer piko.tok.en")
	r.Header.Set("Authorization", "Bearer the-services-own")
	tok, ok := TakeToken(r)
	require.True(t, ok)
	require.Equal(t, "pico.tok.en", tok)
	require.Empty(t, r.Header.Values("X-Pico-Authorization"))
	require.Empty(t, r.Header.Values("X-Piko-Authorization"))
	require.Equal(t, "Bearer the-services-own", r.Header.Get("Authorization"), "the service's own credentials pass through")

	r = httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("Authorization", "Bearer pico.tok.en")
	tok, ok = TakeToken(r)
	require.True(t, ok)
	require.Equal(t, "pico.tok.en", tok)
	require.Empty(t, r.Header.Values("Authorization"), "Pico's token does not reach the upstream")
}

func TestAuthorizeRequest(t *testing.T) {
	v := newVerifier(t, authConfig(func(c *config.Auth) { c.TokenHMACSecretKey = hmacSecret }))
	forA := sign(t, jwt.SigningMethodHS256, []byte(hmacSecret), tokenClaims(map[string]any{"pico": map[string]any{"endpoints": []string{"a"}}}), nil)
	expired := sign(t, jwt.SigningMethodHS256, []byte(hmacSecret), tokenClaims(map[string]any{"exp": 1}), nil)

	tests := []struct {
		name     string
		header   string
		value    string
		endpoint string
		status   int // 0: authorized
	}{
		{"permitted endpoint", "Authorization", "Bearer " + forA, "a", 0},
		{"permitted via x-piko-authorization", "X-Piko-Authorization", "Bearer " + forA, "a", 0},
		{"endpoint not permitted", "Authorization", "Bearer " + forA, "b", http.StatusForbidden},
		{"no token", "", "", "a", http.StatusUnauthorized},
		{"expired token", "X-Pico-Authorization", expired, "a", http.StatusUnauthorized},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/pico/v1/upstream/"+tc.endpoint, nil)
			if tc.header != "" {
				r.Header.Set(tc.header, tc.value)
			}
			tok, err := v.AuthorizeRequest(r, tc.endpoint)
			if tc.status == 0 {
				require.NoError(t, err)
				require.True(t, tok.Allows(tc.endpoint))
				require.Empty(t, r.Header.Get(tc.header), "the credential is removed from the request")
				return
			}
			require.Error(t, err)
			require.Nil(t, tok)
			require.Equal(t, tc.status, HTTPStatus(err))
			requireNoTokenText(t, err, tc.value)

			w := httptest.NewRecorder()
			WriteError(w, err)
			require.Equal(t, tc.status, w.Code)
			require.Equal(t, "application/json", w.Header().Get("Content-Type"))
			var body map[string]string
			require.NoError(t, json.Unmarshal(w.Body.Bytes(), &body))
			require.Equal(t, err.Error(), body["error"])
			if tc.status == http.StatusUnauthorized {
				require.Contains(t, w.Header().Get("WWW-Authenticate"), "Bearer")
			}
		})
	}

	disabled := newVerifier(t, config.DefaultAuth())
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("X-Pico-Authorization", "whatever")
	tok, err := disabled.AuthorizeRequest(r, "a")
	require.NoError(t, err)
	require.Nil(t, tok)
	require.Equal(t, "whatever", r.Header.Get("X-Pico-Authorization"), "a disabled verifier leaves the request alone")
}

func TestAdminMiddlewareKeepsProbesOpen(t *testing.T) {
	v := newVerifier(t, authConfig(func(c *config.Auth) {
		c.TokenHMACSecretKey = hmacSecret
		c.TokenAudience = "pico-admin"
	}))
	mux := http.NewServeMux()
	for _, p := range []string{"/health", "/ready", "/metrics", "/status/cluster/nodes"} {
		mux.HandleFunc("GET "+p, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok "+p) })
	}
	srv := httptest.NewServer(v.AdminMiddleware(mux))
	defer srv.Close()

	good := sign(t, jwt.SigningMethodHS256, []byte(hmacSecret), tokenClaims(map[string]any{"aud": "pico-admin"}), nil)
	otherAudience := sign(t, jwt.SigningMethodHS256, []byte(hmacSecret), tokenClaims(map[string]any{"aud": "upstreams"}), nil)
	tests := []struct {
		path   string
		token  string
		status int
	}{
		{"/health", "", http.StatusOK},
		{"/ready", "", http.StatusOK},
		{"/ready?verbose=1", "", http.StatusOK},
		{"/health", "garbage", http.StatusOK},
		{"/metrics", "", http.StatusUnauthorized},
		{"/status/cluster/nodes", "", http.StatusUnauthorized},
		{"/status/cluster/nodes", otherAudience, http.StatusUnauthorized},
		{"/health/../status/cluster/nodes", "", http.StatusUnauthorized},
		{"/ready/", "", http.StatusUnauthorized},
		{"/metrics", good, http.StatusOK},
		{"/status/cluster/nodes", good, http.StatusOK},
	}
	for _, tc := range tests {
		req, err := http.NewRequest(http.MethodGet, srv.URL+tc.path, nil)
		require.NoError(t, err)
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		resp, err := srv.Client().Do(req)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, tc.status, resp.StatusCode, "%s with token=%v: %s", tc.path, tc.token != "", body)
		if tc.token != "" {
			require.NotContains(t, string(body), tc.token)
		}
	}

	disabled := newVerifier(t, config.DefaultAuth())
	open := httptest.NewServer(disabled.AdminMiddleware(mux))
	defer open.Close()
	resp, err := open.Client().Get(open.URL + "/status/cluster/nodes")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "without keys the admin API stays open")
}
