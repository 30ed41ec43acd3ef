package proxy

import (
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestGuardedBody(t *testing.T) {
	g := &guardedBody{rc: io.NopCloser(strings.NewReader("data"))}
	require.True(t, g.reusable(), "nothing read yet")
	_, err := g.Read(make([]byte, 1))
	require.ErrorIs(t, err, errBodySealed, "the attempt that held it can no longer read")

	next := g.next()
	b := make([]byte, 2)
	n, err := next.Read(b)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	require.False(t, next.reusable(), "bytes were consumed")
	var nilBody *guardedBody
	require.True(t, nilBody.reusable())
}
