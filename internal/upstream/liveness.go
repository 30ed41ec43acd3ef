package upstream

import (
	"fmt"
	"time"

	"github.com/pico-proxy/pico/internal/protocol"
)

// Liveness of sessions. yamux's keepalive (the stock 30 s interval, which
// Piko's agents also use) notices an agent that stopped answering — a
// frozen process, a host gone without a TCP reset — only up to 40 s
// later, and until then round robin keeps sending it requests that
// nobody answers. So the proxy reports a session whose response head is
// slow (Suspect) and the session is pinged at once:
//
//   - while that ping is unanswered for longer than Probe.Unresponsive,
//     Acquire prefers the endpoint's other sessions;
//   - an answered ping clears the suspicion, and Suspect then does
//     nothing for Probe.Quiet (a slow service costs at most one ping per
//     Quiet);
//   - a ping unanswered for Probe.Timeout closes the session, which ends
//     its streams: requests still waiting on it fail over as any other
//     broken upstream connection does (replayable ones are retried on
//     another session).
//
// Nothing changes on the wire: a ping is the same yamux frame the
// keepalive sends.

// ProbeOptions tunes the check of suspected sessions. Zero fields take
// DefaultProbe's values.
type ProbeOptions struct {
	// Unresponsive is how long a ping may go unanswered before Acquire
	// prefers other sessions.
	Unresponsive time.Duration
	// Timeout is how long a ping may go unanswered before the session is
	// closed.
	Timeout time.Duration
	// Quiet is how long after an answered ping Suspect does nothing.
	Quiet time.Duration
}

// DefaultProbe: a healthy agent answers a ping within milliseconds, a far
// one within its round trip; Timeout is yamux's own keepalive wait
// (ConnectionWriteTimeout), so a session is closed for no less than the
// keepalive would close it for.
var DefaultProbe = ProbeOptions{Unresponsive: time.Second, Timeout: 10 * time.Second, Quiet: 5 * time.Second}

func (o ProbeOptions) withDefaults() ProbeOptions {
	if o.Unresponsive <= 0 {
		o.Unresponsive = DefaultProbe.Unresponsive
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultProbe.Timeout
	}
	if o.Quiet <= 0 {
		o.Quiet = DefaultProbe.Quiet
	}
	return o
}

// Suspect reports that the session may have stopped answering (a response
// head is slow): it is pinged unless a ping is already out or one was
// answered within Probe.Quiet. It never blocks.
func (s *Session) Suspect() {
	now := time.Now().UnixNano()
	if now-s.pingAnswered.Load() < int64(s.registry.probe.Quiet) {
		return
	}
	if !s.pingSent.CompareAndSwap(0, now) {
		return
	}
	go s.ping()
}

// ping pings the agent, bounded by Probe.Timeout, and closes the session
// if no answer comes.
func (s *Session) ping() {
	answered := make(chan error, 1)
	go func() {
		_, err := s.mux.Ping()
		answered <- err
	}()
	timer := time.NewTimer(s.registry.probe.Timeout)
	defer timer.Stop()
	var err error
	select {
	case err = <-answered:
		if err == nil {
			s.pingAnswered.Store(time.Now().UnixNano())
			s.pingSent.Store(0)
			return
		}
	case <-timer.C:
		err = fmt.Errorf("no answer to a ping within %s", s.registry.probe.Timeout)
	}
	if s.mux.IsClosed() {
		return // it ended meanwhile, for its own reasons
	}
	r := s.registry
	r.metrics.unresponsive.Inc()
	r.logger.Warn("upstream stopped answering; closing its connection", "endpoint", s.endpoint, "session", s.id,
		"remote_addr", s.remoteAddr, "error", err)
	// At once: a WebSocket close handshake would wait seconds for this
	// agent's answer, and yamux ends the session's streams only after
	// its connection is closed.
	_ = protocol.CloseNow(s.conn.Conn)
	s.shut()
}

// unresponsive reports whether a ping has been out for longer than
// Probe.Unresponsive at now (Unix nanoseconds).
func (s *Session) unresponsive(now int64) bool {
	sent := s.pingSent.Load()
	return sent != 0 && now-sent > int64(s.registry.probe.Unresponsive)
}
