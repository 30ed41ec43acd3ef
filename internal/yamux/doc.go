// Package yamux is Pico's fork of github.com/hashicorp/yamux v0.1.2
// (MPL-2.0, see LICENSE; the files keep upstream's code and tests where
// nothing changed). The wire protocol is upstream's, byte for byte
// (spec: https://github.com/hashicorp/yamux/blob/master/spec.md), so
// sessions interoperate with any yamux peer, Piko's agents included.
//
// What the fork changes, and why (issue 15: CPU per proxied request,
// latency and memory per idle agent connection):
//
//   - Frames are written by the goroutines that send them
//     (writer.go), not handed to a sender goroutine that the caller
//     then waits on (two goroutine switches per frame upstream). Frames
//     sent while a write is in progress go out together in the next
//     write, made by the goroutine already writing; a sender that finds
//     the connection free first yields once (runtime.Gosched) so that
//     streams ready to run add their frames to the same write. A write
//     stuck for ConnectionWriteTimeout ends the session (upstream failed
//     only that send and left the session to its keepalive); Close sends
//     what is queued (for at most a second) before closing.
//   - Lazy control frames (Config.LazyControlFrames, for WebSocket
//     connections): an accepted stream's ACK and the FIN that completes
//     a stream the peer has already closed wait (at most 2 ms) for the
//     next frame of the session and go out in its write. Off by default:
//     over bare TCP a frame that arrives after the peer closed its
//     socket draws a reset, and the reset discards what this side had
//     not read yet; deferring frames would widen that window.
//   - Session.OpenStreamDeferred sends the SYN with the stream's first
//     frame instead of a frame of its own, and Stream.WriteClose sends
//     data and the FIN in one write (two frames: upstream processes a
//     data frame's FIN before its data, and could wake a reader to EOF
//     ahead of it). With both, a proxied request is one write each way.
//   - No goroutine per session besides the receive loop: the keepalive
//     runs from a timer, and Config.UnbufferedRead drops the session's
//     own 4 KiB read buffer for connections that are buffered already
//     (a WebSocket's message reader).
//   - Config.RefuseStreams resets the peer's streams as they open, for a
//     side that only opens streams: Pico's server neither allocates an
//     accept backlog per agent connection nor keeps up to 256 streams of
//     a hostile agent, with a 256 KiB receive window each, that nobody
//     would accept.
//
// Upstream's tests run unchanged except where the semantics changed on
// purpose (a stuck write ends the session; the tests' pipe connection
// releases blocked writes on Close, as a network connection does), and
// TestHalfCloseSessionShutdown, which now waits for the ACK before it
// closes: upstream's version races a TCP reset and failed in 86 of 200
// runs against upstream's own code.
package yamux
