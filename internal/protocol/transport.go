package protocol

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"

	"github.com/coder/websocket"

	"github.com/pico-proxy/pico/internal/yamux"
)

// maxMessageSize bounds one WebSocket message. yamux writes frames of at
// most its stream window (256 KiB by default) plus a 12-byte header.
const maxMessageSize = 4 << 20

// AcceptWebSocket upgrades r and returns the connection as a byte stream:
// every binary message read is appended to the stream, every Write is sent
// as one binary message. The returned conn lives until it is closed.
func AcceptWebSocket(w http.ResponseWriter, r *http.Request) (net.Conn, error) {
	c, err := acceptWebSocket(w, r)
	if err != nil {
		return nil, err
	}
	return websocket.NetConn(context.Background(), c, websocket.MessageBinary), nil
}

// DialWebSocket dials a WebSocket URL (ws, wss, http or https) and returns
// the connection as a byte stream (see AcceptWebSocket). On an HTTP error
// answer the returned error includes the status and body.
func DialWebSocket(ctx context.Context, url string, header http.Header, client *http.Client) (net.Conn, error) {
	c, err := dialWebSocket(ctx, url, header, client)
	if err != nil {
		return nil, err
	}
	return websocket.NetConn(context.Background(), c, websocket.MessageBinary), nil
}

// AcceptSession upgrades r to the WebSocket of an upstream connection and
// returns the byte stream to run a yamux session over (the session's
// frame writer batches frames sent while a write is in progress, so a
// burst of frames costs one message).
func AcceptSession(w http.ResponseWriter, r *http.Request) (net.Conn, error) {
	c, err := acceptWebSocket(w, r)
	if err != nil {
		return nil, err
	}
	return newSessionConn(c), nil
}

// DialSession dials the WebSocket of an upstream connection and returns
// the byte stream to run a yamux session over (see AcceptSession). On an
// HTTP error answer the returned error is a *DialError.
func DialSession(ctx context.Context, url string, header http.Header, client *http.Client) (net.Conn, error) {
	c, err := dialWebSocket(ctx, url, header, client)
	if err != nil {
		return nil, err
	}
	return newSessionConn(c), nil
}

func acceptWebSocket(w http.ResponseWriter, r *http.Request) (*websocket.Conn, error) {
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		CompressionMode:    websocket.CompressionDisabled,
		InsecureSkipVerify: true, // agents are not browsers; no Origin check
	})
	if err != nil {
		return nil, fmt.Errorf("websocket upgrade: %w", err)
	}
	c.SetReadLimit(maxMessageSize)
	return c, nil
}

func dialWebSocket(ctx context.Context, url string, header http.Header, client *http.Client) (*websocket.Conn, error) {
	c, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{
		HTTPHeader:      header,
		HTTPClient:      client,
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
			return nil, &DialError{StatusCode: resp.StatusCode, Body: string(body), Err: err}
		}
		return nil, fmt.Errorf("websocket dial %s: %w", url, err)
	}
	c.SetReadLimit(maxMessageSize)
	return c, nil
}

// DialError is a WebSocket handshake the server refused with an HTTP status.
type DialError struct {
	StatusCode int
	Body       string
	Err        error
}

func (e *DialError) Error() string {
	return fmt.Sprintf("server refused the connection: %d %s", e.StatusCode, e.Body)
}

func (e *DialError) Unwrap() error { return e.Err }

// YamuxConfig returns yamux's default configuration (the stock wire
// behaviour Piko's clients expect, including the 30 s keepalive) with its
// logs sent to logger at debug level, and without the stream-open
// timeout: it costs the opening side a goroutine and a timer for every
// stream (every proxied request), and what it guards against, a peer
// that stopped answering, is caught by the keepalive for the session and
// by the gateway timeout for each request. Nothing on the wire changes.
func YamuxConfig(logger *slog.Logger) *yamux.Config {
	cfg := yamux.DefaultConfig()
	cfg.StreamOpenTimeout = 0
	// A WebSocket's message reader is buffered already, and its close is
	// a handshake: a frame that arrives after the peer closed is read and
	// dropped, not answered with a TCP reset, so ACKs and completing FINs
	// may wait for the next frame.
	cfg.UnbufferedRead = true
	cfg.LazyControlFrames = true
	cfg.LogOutput = nil
	cfg.Logger = slog.NewLogLogger(logger.Handler(), slog.LevelDebug)
	return cfg
}
