package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/pico-proxy/pico/internal/yamux"
)

// noUpstreamError: no upstream for the endpoint anywhere (or, for a
// forwarded request, on this node). 502.
type noUpstreamError struct{ endpoint string }

func (e *noUpstreamError) Error() string {
	return fmt.Sprintf("no upstream for endpoint %q", e.endpoint)
}

// busyError: every upstream for the endpoint is at its stream limit. 503.
type busyError struct{ endpoint string }

func (e *busyError) Error() string {
	return fmt.Sprintf("every upstream for endpoint %q is at its stream limit; retry later", e.endpoint)
}

// gatewayTimeoutError: the upstream did not answer in time. 504.
type gatewayTimeoutError struct{ timeout time.Duration }

func (e *gatewayTimeoutError) Error() string {
	return fmt.Sprintf("upstream did not answer within %s", e.timeout)
}

// upstreamError: the upstream connection failed. 502.
type upstreamError struct{ err error }

func (e *upstreamError) Error() string { return "upstream connection failed: " + e.err.Error() }
func (e *upstreamError) Unwrap() error { return e.err }

// requestBodyError: the client's request body could not be read, most
// often because its chunked framing is broken. 400 (408 for a read
// timeout), and the client connection is closed after the answer: the
// bytes after broken framing are not a request (request smuggling).
type requestBodyError struct{ err error }

func (e *requestBodyError) Error() string { return "malformed request body: " + e.err.Error() }
func (e *requestBodyError) Unwrap() error { return e.err }

// statusClientClosedRequest is recorded (never sent) when the client went
// away before the answer, as nginx does.
const statusClientClosedRequest = 499

// classify maps a round-trip error to the status answered to the client.
func classify(err error) int {
	var (
		noUpstream *noUpstreamError
		busy       *busyError
		timeout    *gatewayTimeoutError
		badBody    *requestBodyError
		ne         net.Error
	)
	switch {
	case errors.Is(err, context.Canceled):
		return statusClientClosedRequest
	case errors.As(err, &badBody):
		if errors.As(err, &ne) && ne.Timeout() {
			return http.StatusRequestTimeout
		}
		return http.StatusBadRequest
	case errors.As(err, &noUpstream):
		return http.StatusBadGateway
	case errors.As(err, &busy):
		return http.StatusServiceUnavailable
	case errors.As(err, &timeout), errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	}
	if errors.As(err, &ne) && ne.Timeout() {
		return http.StatusGatewayTimeout
	}
	return http.StatusBadGateway
}

// nothingSent reports whether err happened before any byte of the request
// reached the upstream session (the session was gone or refused new
// streams), which makes a retry elsewhere safe for any request.
func nothingSent(err error) bool {
	return errors.Is(err, yamux.ErrSessionShutdown) ||
		errors.Is(err, yamux.ErrRemoteGoAway) ||
		errors.Is(err, yamux.ErrStreamsExhausted) ||
		errors.Is(err, yamux.ErrStreamClosed) ||
		errors.Is(err, yamux.ErrConnectionReset)
}

// isDialError reports whether err is a failure to connect (nothing sent).
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// idempotent reports whether a request may be replayed after a failure
// that happened before any response byte arrived: an idempotent method
// without a body.
func idempotent(r *http.Request) bool {
	if r.Body != nil && r.Body != http.NoBody {
		return false
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}
