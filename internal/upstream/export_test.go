package upstream

import "time"

// SetStreamIdleTimeout shortens the idle stream timeout for a test.
func SetStreamIdleTimeout(d time.Duration) (restore func()) {
	old := streamIdleTimeout
	streamIdleTimeout = d
	return func() { streamIdleTimeout = old }
}

// PingOut reports whether a ping of s is unanswered.
func PingOut(s *Session) bool { return s.pingSent.Load() != 0 }
