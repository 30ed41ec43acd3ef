package agent

import "time"

// Reconnect backoff bounds.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 15 * time.Second
)

// backoff returns how long to wait before reconnect attempt number
// attempt (1 for the first retry after a failure): 100 ms doubling with
// every attempt up to 15 s, less a random 0-25% (random returns a number
// in [0, 1)) so that agents that lost their server together do not
// reconnect in lockstep.
func backoff(attempt int, random func() float64) time.Duration {
	if attempt < 1 {
		return 0
	}
	d := maxBackoff
	if attempt <= 16 {
		if exp := minBackoff << (attempt - 1); exp < maxBackoff {
			d = exp
		}
	}
	return d - time.Duration(random()*float64(d)/4)
}
