package coalesce

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// gatedWriter holds every write until released, recording them.
type gatedWriter struct {
	mu     sync.Mutex
	gate   chan struct{}
	writes [][]byte
	err    error
}

func (g *gatedWriter) Write(p []byte) (int, error) {
	<-g.gate
	g.mu.Lock()
	defer g.mu.Unlock()
	g.writes = append(g.writes, bytes.Clone(p))
	return len(p), g.err
}

func (g *gatedWriter) joined() (string, int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return string(bytes.Join(g.writes, nil)), len(g.writes)
}

func TestWritesMadeDuringAWriteGoOutTogetherInOrder(t *testing.T) {
	g := &gatedWriter{gate: make(chan struct{})}
	w := NewWriter(g)
	var want bytes.Buffer
	for i := range 500 {
		line := fmt.Sprintf("line %03d\n", i)
		want.WriteString(line)
		_, err := w.Write([]byte(line))
		require.NoError(t, err, "writes return at once, the first one still held")
	}
	close(g.gate)
	require.NoError(t, w.Close(), "Close sends what is pending")
	got, n := g.joined()
	require.Equal(t, want.String(), got)
	require.LessOrEqual(t, n, 2, "the first write alone, then everything that came meanwhile")
	_, err := w.Write([]byte("late"))
	require.ErrorIs(t, err, ErrClosed)
}

func TestAFailedWriteIsReportedByTheNextWrites(t *testing.T) {
	broken := errors.New("disk full")
	g := &gatedWriter{gate: make(chan struct{}), err: broken}
	close(g.gate)
	w := NewWriter(g)
	_, err := w.Write([]byte("first"))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err := w.Write([]byte("more"))
		return errors.Is(err, broken)
	}, 5*time.Second, time.Millisecond)
	require.ErrorIs(t, w.Close(), broken)
}

func TestCloseGivesUpOnAWriterThatNeverReturns(t *testing.T) {
	g := &gatedWriter{gate: make(chan struct{})} // never released
	w := NewWriter(g)
	_, err := w.Write([]byte("stuck"))
	require.NoError(t, err)
	require.Error(t, w.Close(), "bounded by CloseFlush, and says so")
	close(g.gate)
}
