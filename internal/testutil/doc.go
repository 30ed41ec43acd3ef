// Package testutil holds the small helpers that the tests of several
// packages share: a goroutine-safe log sink, a command run in the
// background of a test, local services on loopback, a round-robin TCP
// balancer and a few checks (picoproc: pico processes for e2e/ and bench/). It
// is only for tests: no production code imports it.
package testutil

import "time"

// StopTimeout bounds how long a test waits for something it stopped
// (a background run, a listener's connections) before it fails.
const StopTimeout = 10 * time.Second
