package upstream

import (
	"errors"
	"time"

	"github.com/pico-proxy/pico/internal/yamux"
)

// Streams of a session are reused for further HTTP/1.1 requests (HTTP
// keep-alive, as on any connection): an agent serves each stream with an
// HTTP/1.1 server, which keeps the stream open after a response unless it
// answers "Connection: close". Reuse saves opening and closing a stream
// (four yamux frames and the agent's per-connection setup) per request.
const (
	// MaxIdleStreams caps the idle streams kept per session.
	MaxIdleStreams = 128
	// StreamIdleTimeout closes streams idle for longer (well below the
	// agents' own idle timeouts, so that it is Pico that closes them).
	StreamIdleTimeout = 30 * time.Second
)

// streamIdleTimeout is StreamIdleTimeout (tests shorten it).
var streamIdleTimeout = StreamIdleTimeout

type idleStream struct {
	stream *yamux.Stream
	since  time.Time
}

// OpenReusable returns an idle stream that the agent has kept open, or a
// new stream. reused tells which. Call it only on an acquired session.
func (s *Session) OpenReusable() (stream *yamux.Stream, reused bool, err error) {
	for {
		s.poolMu.Lock()
		n := len(s.idle)
		if n == 0 {
			s.poolMu.Unlock()
			break
		}
		idle := s.idle[n-1]
		s.idle[n-1] = idleStream{}
		s.idle = s.idle[:n-1]
		s.poolMu.Unlock()
		if time.Since(idle.since) < streamIdleTimeout && streamOpen(idle.stream) {
			return idle.stream, true, nil
		}
		_ = idle.stream.Close()
	}
	// The request is written at once: its first frame opens the stream.
	stream, err = s.mux.OpenStreamDeferred()
	return stream, false, err
}

// longAgo is a deadline in the past.
var longAgo = time.Unix(1, 0)

// streamOpen reports whether an idle stream can carry another request:
// the agent has not closed it (no FIN, no reset) and sent nothing
// unasked.
func streamOpen(stream *yamux.Stream) bool {
	_ = stream.SetReadDeadline(longAgo)
	var b [1]byte
	n, err := stream.Read(b[:])
	_ = stream.SetReadDeadline(time.Time{})
	return n == 0 && errors.Is(err, yamux.ErrTimeout)
}

// PutIdle keeps a stream whose exchange completed cleanly for another
// request, or closes it when the session is going away or has enough idle
// streams. The stream keeps its receive buffer (reused by the next
// response); call stream.Shrink first after large responses.
func (s *Session) PutIdle(stream *yamux.Stream) {
	s.poolMu.Lock()
	if s.closing.Load() || len(s.idle) >= MaxIdleStreams || s.mux.IsClosed() {
		s.poolMu.Unlock()
		_ = stream.Close()
		return
	}
	s.idle = append(s.idle, idleStream{stream: stream, since: time.Now()})
	if s.sweep == nil {
		s.sweep = time.AfterFunc(streamIdleTimeout, s.sweepIdle)
	}
	s.poolMu.Unlock()
}

// sweepIdle closes the streams idle for streamIdleTimeout.
func (s *Session) sweepIdle() {
	s.poolMu.Lock()
	cutoff := time.Now().Add(-streamIdleTimeout)
	i := 0
	for i < len(s.idle) && !s.idle[i].since.After(cutoff) {
		i++
	}
	expired := make([]idleStream, i)
	copy(expired, s.idle[:i])
	n := copy(s.idle, s.idle[i:])
	clear(s.idle[n:])
	s.idle = s.idle[:n]
	if n > 0 {
		s.sweep.Reset(time.Until(s.idle[0].since.Add(streamIdleTimeout)) + time.Millisecond)
	} else {
		s.sweep = nil
	}
	s.poolMu.Unlock()
	for _, idle := range expired {
		_ = idle.stream.Close()
	}
}

// closeIdle closes every idle stream.
func (s *Session) closeIdle() {
	s.poolMu.Lock()
	idle := s.idle
	s.idle = nil
	if s.sweep != nil {
		s.sweep.Stop()
		s.sweep = nil
	}
	s.poolMu.Unlock()
	for _, i := range idle {
		_ = i.stream.Close()
	}
}

// IdleStreams returns the number of idle streams kept.
func (s *Session) IdleStreams() int {
	s.poolMu.Lock()
	defer s.poolMu.Unlock()
	return len(s.idle)
}
