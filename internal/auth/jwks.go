package auth

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/pico-proxy/pico/internal/filereload"
	"golang.org/x/time/rate"
)

const (
	// jwksHTTPTimeout bounds one fetch of a remote key set.
	jwksHTTPTimeout = 10 * time.Second
	// jwksUnknownKIDRefresh is the least time between two refreshes
	// triggered by tokens naming an unknown key ID, so garbage tokens
	// cannot make Pico hammer the issuer.
	jwksUnknownKIDRefresh = 30 * time.Second
	// maxJWKSBytes bounds a key set document.
	maxJWKSBytes = 1 << 20
)

// jwks finds verification keys in a JSON Web Key Set.
type jwks interface {
	// lookup returns the key (or jwt.VerificationKeySet) for t.
	lookup(ctx context.Context, t *jwt.Token) (any, error)
	close()
}

// newJWKS loads the key set at rawURL (https:// or file://).
func newJWKS(s setting, rawURL string, refresh time.Duration, client *http.Client, logger *slog.Logger) (jwks, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s, err)
	}
	if u.Scheme == "file" {
		return newFileJWKS(s, u.Path, refresh, logger)
	}
	return newRemoteJWKS(s, rawURL, refresh, client, logger)
}

// remoteJWKS is a key set fetched over HTTPS by keyfunc, refreshed in the
// background every refresh interval and on demand (rate limited) when a
// token names a key ID it does not know.
type remoteJWKS struct {
	keys   keyfunc.Keyfunc
	cancel context.CancelFunc
}

func newRemoteJWKS(s setting, rawURL string, refresh time.Duration, client *http.Client, logger *slog.Logger) (*remoteJWKS, error) {
	if client == nil {
		client = &http.Client{}
	}
	limited := *client
	limited.Transport = limitBody{base: client.Transport, max: maxJWKSBytes}
	failFirst := false
	ctx, cancel := context.WithCancel(context.Background())
	keys, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{rawURL}, keyfunc.Override{
		Client:                    &limited,
		HTTPTimeout:               jwksHTTPTimeout,
		NoErrorReturnFirstHTTPReq: &failFirst,
		RefreshInterval:           refresh,
		RefreshUnknownKID:         rate.NewLimiter(rate.Every(jwksUnknownKIDRefresh), 1),
		RateLimitWaitMax:          jwksHTTPTimeout,
		RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
			return func(_ context.Context, err error) {
				logger.Warn("refreshing the JSON Web Key Set failed; keeping the cached keys", "url", u, "error", err)
			}
		},
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("%s: fetching the key set: %w", s, err)
	}
	if err := checkNotEmpty(s, keys); err != nil {
		cancel()
		return nil, err
	}
	return &remoteJWKS{keys: keys, cancel: cancel}, nil
}

func (r *remoteJWKS) lookup(ctx context.Context, t *jwt.Token) (any, error) {
	return r.keys.KeyfuncCtx(ctx)(t)
}

func (r *remoteJWKS) close() { r.cancel() }

// fileJWKS is a key set read from a file and re-read when it changes.
type fileJWKS struct {
	keys *filereload.Value[keyfunc.Keyfunc]
}

func newFileJWKS(s setting, path string, refresh time.Duration, logger *slog.Logger) (*fileJWKS, error) {
	parse := func(contents [][]byte) (keyfunc.Keyfunc, error) {
		keys, err := keyfunc.NewJWKSetJSON(contents[0])
		if err != nil {
			return nil, fmt.Errorf("%s: %s is not a JSON Web Key Set: %w", s, path, err)
		}
		if err := checkNotEmpty(s, keys); err != nil {
			return nil, err
		}
		return keys, nil
	}
	keys, err := filereload.New([]string{path}, min(refresh, filereload.DefaultInterval), parse, logger)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s, err)
	}
	return &fileJWKS{keys: keys}, nil
}

func (f *fileJWKS) lookup(ctx context.Context, t *jwt.Token) (any, error) {
	return f.keys.Get().KeyfuncCtx(ctx)(t)
}

func (f *fileJWKS) close() {}

func checkNotEmpty(s setting, keys keyfunc.Keyfunc) error {
	all, err := keys.Storage().KeyReadAll(context.Background())
	if err != nil {
		return fmt.Errorf("%s: reading the key set: %w", s, err)
	}
	if len(all) == 0 {
		return fmt.Errorf("%s: the key set has no usable keys", s)
	}
	return nil
}

// limitBody caps the size of response bodies.
type limitBody struct {
	base http.RoundTripper
	max  int64
}

func (l limitBody) RoundTrip(req *http.Request) (*http.Response, error) {
	base := l.base
	if base == nil {
		base = http.DefaultTransport
	}
	resp, err := base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resp.Body = limitedReadCloser{Reader: io.LimitReader(resp.Body, l.max), Closer: resp.Body}
	return resp, nil
}

type limitedReadCloser struct {
	io.Reader
	io.Closer
}
