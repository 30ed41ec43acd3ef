package peerfinder

import (
	"testing"
	"time"
)

// FastPauses shortens the pauses between lookups for the test.
func FastPauses(t testing.TB) {
	oldInitial, oldMax := initialPause, maxPause
	initialPause, maxPause = 5*time.Millisecond, 20*time.Millisecond
	t.Cleanup(func() { initialPause, maxPause = oldInitial, oldMax })
}
