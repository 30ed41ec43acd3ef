package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/pico-proxy/pico/internal/protocol"
)

// Pico's own credential headers, looked at before Authorization so that a
// proxied service can keep using Authorization for its own credentials.
var credentialHeaders = []string{protocol.AuthorizationHeader, protocol.PikoAuthorizationHeader}

// TokenFromRequest returns the bearer token of r: from x-pico-authorization,
// else x-piko-authorization (each `Bearer <token>` or the bare token),
// else `Authorization: Bearer <token>`. The first of these headers present
// decides: if it is malformed there is no token. A token holds only the
// characters RFC 6750 allows.
func TokenFromRequest(r *http.Request) (string, bool) {
	token, _ := findToken(r.Header)
	return token, token != ""
}

// TakeToken is TokenFromRequest that also removes Pico's credentials from
// r so they are not passed on to the upstream: the x-pico-authorization and
// x-piko-authorization headers always, Authorization only when it carried
// the token.
func TakeToken(r *http.Request) (string, bool) {
	token, header := findToken(r.Header)
	for _, h := range credentialHeaders {
		r.Header.Del(h)
	}
	if header == "Authorization" {
		r.Header.Del("Authorization")
	}
	return token, token != ""
}

// findToken returns the token and the header it came from.
func findToken(h http.Header) (token, header string) {
	for _, name := range credentialHeaders {
		if v := h.Get(name); v != "" {
			if scheme, rest, found := strings.Cut(strings.TrimSpace(v), " "); found {
				if !strings.EqualFold(scheme, "Bearer") {
					return "", name
				}
				v = rest
			}
			return validToken(v), name
		}
	}
	if v := h.Get("Authorization"); v != "" {
		scheme, rest, found := strings.Cut(strings.TrimSpace(v), " ")
		if found && strings.EqualFold(scheme, "Bearer") {
			return validToken(rest), "Authorization"
		}
	}
	return "", ""
}

// validToken returns s without surrounding blanks if it is an RFC 6750
// b64token (1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="),
// else "".
func validToken(s string) string {
	s = strings.Trim(s, " \t")
	body := strings.TrimRight(s, "=")
	if body == "" || len(s) > maxTokenBytes {
		return ""
	}
	for i := 0; i < len(body); i++ {
		c := body[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/'
		if !ok {
			return ""
		}
	}
	return s
}

// AuthorizeRequest authenticates a request for endpoint: it takes the token
// from r (see TakeToken), verifies it and checks that it permits endpoint.
// With authentication disabled it returns (nil, nil) and leaves r alone.
// Errors are for WriteError.
func (v *Verifier) AuthorizeRequest(r *http.Request, endpoint string) (*Token, error) {
	if !v.Enabled() {
		return nil, nil
	}
	raw, ok := TakeToken(r)
	if !ok {
		return nil, ErrNoToken
	}
	tok, err := v.Verify(raw)
	if err != nil {
		return nil, err
	}
	if !tok.Allows(endpoint) {
		return nil, fmt.Errorf("%w: %q", ErrEndpointNotPermitted, endpoint)
	}
	return tok, nil
}

// HTTPStatus is the status answering err: 403 for ErrEndpointNotPermitted,
// 401 for a missing or invalid token, 500 otherwise.
func HTTPStatus(err error) int {
	switch {
	case errors.Is(err, ErrEndpointNotPermitted):
		return http.StatusForbidden
	case errors.Is(err, ErrNoToken), errors.Is(err, ErrInvalidToken):
		return http.StatusUnauthorized
	}
	return http.StatusInternalServerError
}

// WriteError answers an authentication error as JSON {"error": "..."}
// with HTTPStatus(err) and, for 401, a WWW-Authenticate challenge.
func WriteError(w http.ResponseWriter, err error) {
	status := HTTPStatus(err)
	switch {
	case errors.Is(err, ErrInvalidToken):
		w.Header().Set("WWW-Authenticate", `Bearer realm="pico", error="invalid_token"`)
	case status == http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Bearer realm="pico"`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
}

// Paths of the admin API that stay open so Kubernetes probes work.
var probePaths = map[string]bool{"/health": true, "/ready": true}

// AdminMiddleware requires a valid token for every admin API request except
// the /health and /ready probes. With authentication disabled it returns
// next unchanged.
func (v *Verifier) AdminMiddleware(next http.Handler) http.Handler {
	if !v.Enabled() {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if probePaths[r.URL.Path] {
			next.ServeHTTP(w, r)
			return
		}
		raw, ok := TokenFromRequest(r)
		if !ok {
			WriteError(w, ErrNoToken)
			return
		}
		if _, err := v.Verify(raw); err != nil {
			WriteError(w, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}
