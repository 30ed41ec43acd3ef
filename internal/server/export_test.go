package server

import (
	"time"

	"github.com/pico-proxy/pico/internal/upstream"
)

// withLiveness overrides how agents that stopped answering are found: a
// response head slower than suspectAfter has its upstream connection
// pinged, under probe (see upstream.ProbeOptions). Tests only: production
// uses the proxy's and upstream.DefaultProbe's timings.
func withLiveness(suspectAfter time.Duration, probe upstream.ProbeOptions) Option {
	return func(o *options) { o.suspectAfter, o.probe = suspectAfter, probe }
}
