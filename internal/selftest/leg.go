package selftest

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/pico-proxy/pico/internal/config"
)

// leg is one port of the cluster the selftest talks to, with the credentials it presents
// there. Its fields word the errors that tell which setting to change when the port refuses
// the selftest or the selftest refuses the port's certificate.
type leg struct {
	// port is "admin", "proxy" or "upstream": the port's name, the prefix of the selftest's
	// credential flags (--proxy.token-file, --proxy.tls.ca, ...) and of the server's TLS keys
	// (proxy.tls.cert, ...).
	port string
	// service names what answers there in errors: "admin API", "proxy port", ...
	service string
	// urlFlag is the flag giving the port's URL(s).
	urlFlag string
	// httpURLs and httpsURLs tell to switch the URL scheme, e.g. "http:// admin URLs".
	httpURLs, httpsURLs string
	// authKey is the server's section verifying tokens on the port.
	authKey string
	// creds are what the selftest presents.
	creds config.Credentials
}

func adminLeg(c config.Credentials) leg {
	return leg{port: "admin", service: "admin API", urlFlag: "--admin-url",
		httpURLs: "http:// admin URLs", httpsURLs: "https:// admin URLs", authKey: "admin.auth", creds: c}
}

func proxyLeg(c config.Credentials) leg {
	return leg{port: "proxy", service: "proxy port", urlFlag: "--proxy-url",
		httpURLs: "an http:// --proxy-url", httpsURLs: "an https:// --proxy-url", authKey: "proxy.auth", creds: c}
}

func upstreamLeg(c config.Credentials) leg {
	return leg{port: "upstream", service: "upstream port", urlFlag: "--upstream-url",
		httpURLs: "an http:// --upstream-url", httpsURLs: "an https:// --upstream-url", authKey: "auth", creds: c}
}

// token returns the bearer token to send (read again at every call, so a token file renewed
// in place is used); errors name the flag.
func (l leg) token() (string, error) { return l.creds.BearerToken(l.port) }

// errRefused marks an answer that waiting will not change: the port refused the
// credentials, or the selftest refused the port's certificate.
var errRefused = errors.New("refused")

// refusal is an errRefused with the reason and the fix.
type refusal struct {
	err error  // what happened
	fix string // which setting to change; "" when err names it
}

func (r *refusal) Error() string {
	if r.fix == "" {
		return r.err.Error()
	}
	return r.err.Error() + "; " + r.fix
}

func (r *refusal) Unwrap() []error { return []error{r.err, errRefused} }

func refused(err error, fix string) error { return &refusal{err: err, fix: fix} }

// classify returns err as a refusal when it is a failed TLS handshake that waiting will not
// heal, naming the setting to change; other errors are returned unchanged.
func (l leg) classify(err error) error {
	if fix := l.tlsFix(err); fix != "" {
		return refused(err, fix)
	}
	return err
}

// tlsFix names the setting that fixes a failed TLS handshake with the port, or "" when err is
// not a refused certificate or a TLS mismatch.
func (l leg) tlsFix(err error) string {
	var (
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		verify   *tls.CertificateVerificationError
	)
	// crypto/tls reports the server's alerts as a net.OpError "remote error" around an
	// unexported type, so they are told apart by their text.
	alert := ""
	if op := (*net.OpError)(nil); errors.As(err, &op) && op.Op == "remote error" && op.Err != nil {
		alert = op.Err.Error()
	}
	p := l.port
	switch {
	case strings.HasSuffix(alert, "bad certificate") && l.creds.TLS.Cert != "":
		return fmt.Sprintf("the %s port refused the client certificate of --%s.tls.cert: it must be signed by a CA of the server's %s.tls.client_cas", p, p, p)
	case strings.HasSuffix(alert, "certificate required"), strings.HasSuffix(alert, "bad certificate"):
		return fmt.Sprintf("the %s port requires a client certificate (%s.tls.client_cas): pass --%s.tls.cert and --%s.tls.key", p, p, p, p)
	case strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return fmt.Sprintf("the %s port does not serve TLS: use %s", p, l.httpURLs)
	case errors.As(err, &unknown):
		return fmt.Sprintf("trust the CA that signed the %s certificate with --%s.tls.ca", p, p)
	case errors.As(err, &hostname):
		return fmt.Sprintf("the %s certificate does not name the host of %s: give a name it lists with --%s.tls.server-name", p, l.urlFlag, p)
	case errors.As(err, &invalid), errors.As(err, &verify):
		return fmt.Sprintf("the %s certificate is not valid: check the certificate the members serve (%s.tls.cert)", p, p)
	}
	return ""
}

// statusFix names the setting that fixes an HTTP answer with status and body that waiting will
// not change, or "" for other answers. tokenSent tells whether the request carried a token,
// plain whether it went without TLS, and endpoint is the endpoint it was for ("" for the
// admin API).
func (l leg) statusFix(status int, body string, tokenSent, plain bool, endpoint string) string {
	p := l.port
	switch {
	case status == http.StatusUnauthorized && !tokenSent:
		return fmt.Sprintf("the %s requires a token (%s): pass --%s.token-file", l.service, l.authKey, p)
	case status == http.StatusForbidden && endpoint != "":
		return fmt.Sprintf("the %s refused the token of --%s.token-file or --%s.token for endpoint %s: its pico.endpoints claim must list that endpoint (choose the selftest's endpoint with --endpoint)", l.service, p, p, endpoint)
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return fmt.Sprintf("the %s refused the token of --%s.token-file or --%s.token: check its key, audience, issuer and expiry against %s", l.service, p, p, l.authKey)
	case status == http.StatusBadRequest && plain && strings.Contains(body, "HTTPS"):
		return fmt.Sprintf("the %s port serves TLS (%s.tls): use %s", p, p, l.httpsURLs)
	}
	return ""
}
