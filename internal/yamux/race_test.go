//go:build race

package yamux

// raceEnabled: the race detector slows upstream's bulk-transfer tests
// past their timeouts; they run in the plain test run.
const raceEnabled = true
