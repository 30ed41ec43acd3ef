package testutil

import (
	"io"
	"net"
	"testing"

	"github.com/stretchr/testify/require"
)

// RequireEcho writes msg to c and requires the same bytes back, as an
// echo service through a tunnel answers.
func RequireEcho(t testing.TB, c net.Conn, msg string, msgAndArgs ...any) {
	t.Helper()
	_, err := io.WriteString(c, msg)
	require.NoError(t, err)
	got := make([]byte, len(msg))
	_, err = io.ReadFull(c, got)
	require.NoError(t, err)
	require.Equal(t, msg, string(got), msgAndArgs...)
}

// Closed reports whether ch is closed, without waiting.
func Closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
