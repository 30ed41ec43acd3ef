package agent

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"testing"

	"github.com/pico-proxy/pico/internal/protocol"
	"github.com/pico-proxy/pico/internal/yamux"
	"github.com/stretchr/testify/require"
)

func TestGoAwayWatcherSeesOnlyRealGoAwayFrames(t *testing.T) {
	serverConn, agentConn := net.Pipe()
	cfg := protocol.YamuxConfig(slog.New(slog.DiscardHandler))
	server, err := yamux.Server(serverConn, cfg)
	require.NoError(t, err)
	defer server.Close()
	watcher := newGoAwayWatcher(agentConn)
	agentSess, err := yamux.Client(watcher, cfg)
	require.NoError(t, err)
	defer agentSess.Close()

	// Data whose bytes look like yamux GoAway headers, split across many
	// frames and reads, must not be mistaken for one.
	fake := bytes.Repeat([]byte{0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 20000)
	stream, err := server.OpenStream()
	require.NoError(t, err)
	go func() {
		stream.Write(fake)
		stream.Close()
	}()
	accepted, err := agentSess.AcceptStream()
	require.NoError(t, err)
	got, err := io.ReadAll(accepted)
	require.NoError(t, err)
	require.Equal(t, fake, got)
	_, err = server.Ping()
	require.NoError(t, err)
	select {
	case <-watcher.goingAway:
		t.Fatal("stream data was taken for a GoAway frame")
	default:
	}

	require.NoError(t, server.GoAway())
	require.Eventually(t, func() bool {
		select {
		case <-watcher.goingAway:
			return true
		default:
			return false
		}
	}, waitFor, tick)
	require.False(t, agentSess.IsClosed(), "GoAway leaves the session open for in-flight streams")
}
