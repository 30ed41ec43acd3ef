package yamux

import (
	"io"
	"runtime"
	"sync"
	"time"
)

// Bounds of a session's frame writer.
const (
	// maxPendingBytes is how many bytes of frames may wait behind a write
	// in progress before senders block (flow control bounds each stream
	// to its window; this bounds the session).
	maxPendingBytes = 1 << 20
	// keepWriteBuffer is the largest write buffer kept for reuse.
	keepWriteBuffer = 256 << 10
	// writeChunk is the most written to the connection at once (frames
	// may span writes: the connection is a byte stream).
	writeChunk = 256 << 10
	// lazyDelay is the longest a lazy frame waits for another frame to
	// go out with.
	lazyDelay = 2 * time.Millisecond
	// maxLazyBytes is how many bytes of lazy frames are held at most.
	maxLazyBytes = 4 << 10
)

// frameWriter writes a session's frames to its connection from the
// goroutines that send them, instead of handing every frame to a sender
// goroutine and waiting for it (upstream yamux's sendLoop): a frame sent
// while the connection is free is written at once by its sender; frames
// sent while a write is in progress are appended to a pending buffer and
// go out together in the next write, made by the goroutine already
// writing before it returns. Nothing is delayed, a lone frame costs one
// write and no goroutine switch, and a burst of frames from many streams
// costs one write.
//
// Every frame (header and body) is one contiguous append, so frames
// never interleave. A sender returns once its frame is written or queued
// behind a write in progress; an error writing ends the session, and
// every later send fails with it. Senders that must never block on the
// connection (the receive loop) queue asynchronously: if nobody is
// writing, a short-lived goroutine writes for them.
//
// Lazy frames are control frames nobody waits for (a stream's ACK, the
// FIN that completes a stream the peer already closed): they go out with
// the next frame sent, or after lazyDelay, whichever comes first. Under
// load they ride in writes made anyway; a stream costs one write each
// way. Every frame sent after a lazy frame goes out after it.
type frameWriter struct {
	conn    io.Writer
	timeout time.Duration // bound of one write to conn; 0 means none
	// onError is called (in its own goroutine) with the first write
	// error or write timeout; the session shuts down.
	onError func(error)

	mu      sync.Mutex
	changed *sync.Cond // a write finished, or the writer failed
	pending []byte     // frames queued behind the write in progress
	spare   []byte     // the buffer of the last write, reused
	writing bool       // a goroutine is writing; it writes pending before it stops
	err     error      // the first error; every later send fails with it
	stuck   *time.Timer
	lazy    []byte      // lazy frames waiting for the next send
	lazyDue *time.Timer // sends the lazy frames when nothing else did
	// lazyArmed: lazyDue is running. A send that takes the lazy frames
	// leaves it running (it then finds nothing to send): stopping and
	// restarting a timer for every stream costs more than one idle fire
	// per lazyDelay.
	lazyArmed bool
}

func newFrameWriter(conn io.Writer, timeout time.Duration, onError func(error)) *frameWriter {
	w := &frameWriter{conn: conn, timeout: timeout, onError: onError}
	w.changed = sync.NewCond(&w.mu)
	return w
}

// send writes hdr and body as one frame (see frameWriter). A caller that
// must not block on the connection passes async.
func (w *frameWriter) send(hdr header, body []byte, async bool) error {
	return w.sendFrames(hdr, body, nil, async)
}

// sendFrames writes the frame hdr+body followed, if next is not nil, by
// the bodiless frame next, in the same write.
func (w *frameWriter) sendFrames(hdr header, body []byte, next header, async bool) error {
	w.mu.Lock()
	// Control frames of the receive loop are never held back: blocking
	// it would stop the window updates that let writes drain.
	for !async && w.err == nil && len(w.pending) >= maxPendingBytes {
		w.changed.Wait()
	}
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return err
	}
	w.takeLazyLocked()
	w.pending = append(w.pending, hdr...)
	w.pending = append(w.pending, body...)
	w.pending = append(w.pending, next...)
	if async {
		return w.startLocked(byGoroutine)
	}
	return w.startLocked(byCaller)
}

// takeLazyLocked moves the lazy frames to pending, ahead of what is
// appended next.
func (w *frameWriter) takeLazyLocked() {
	w.pending = append(w.pending, w.lazy...)
	w.lazy = w.lazy[:0]
}

// writer is who writes what is pending when nobody is writing yet.
type writer int

const (
	byCaller    writer = iota // the sender, after yielding once
	byGoroutine               // a goroutine of its own (the sender must not block)
	byTimer                   // the lazy-frame timer's goroutine, at once
)

// startLocked makes sure what is pending gets written: by the goroutine
// already writing, or else as by says. Called with w.mu held; returns with
// it released.
func (w *frameWriter) startLocked(by writer) error {
	if w.writing {
		w.mu.Unlock()
		return nil
	}
	w.writing = true
	switch by {
	case byGoroutine:
		w.mu.Unlock()
		go w.writeQueued()
		return nil
	case byCaller:
		// Let the goroutines that are ready to run go first: under load
		// they are other streams about to send, whose frames then go in
		// this write; when nothing else is ready this returns at once.
		w.mu.Unlock()
		runtime.Gosched()
		w.mu.Lock()
		return w.writePending(maxWriteRounds)
	default:
		return w.writePending(0)
	}
}

// sendLazy queues the bodiless frame hdr to go out with the next frame
// sent, or after lazyDelay.
func (w *frameWriter) sendLazy(hdr header) error {
	w.mu.Lock()
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return err
	}
	w.lazy = append(w.lazy, hdr...)
	switch {
	case len(w.lazy) >= maxLazyBytes:
		w.mu.Unlock()
		w.sendDueLazy()
	case !w.lazyArmed:
		w.lazyArmed = true
		if w.lazyDue == nil {
			w.lazyDue = time.AfterFunc(lazyDelay, w.lazyTimer)
		} else {
			w.lazyDue.Reset(lazyDelay)
		}
		w.mu.Unlock()
	default:
		w.mu.Unlock()
	}
	return nil
}

func (w *frameWriter) lazyTimer() {
	w.mu.Lock()
	w.lazyArmed = false
	w.sendDueLazyLocked()
}

// sendDueLazy writes the lazy frames now.
func (w *frameWriter) sendDueLazy() {
	w.mu.Lock()
	w.sendDueLazyLocked()
}

func (w *frameWriter) sendDueLazyLocked() {
	if len(w.lazy) == 0 || w.err != nil {
		w.mu.Unlock()
		return
	}
	w.takeLazyLocked()
	_ = w.startLocked(byTimer)
}

func (w *frameWriter) writeQueued() {
	w.mu.Lock()
	_ = w.writePending(0)
}

// maxWriteRounds bounds how many writes a sender makes for others before
// it leaves the rest to a goroutine and returns to its own work.
const maxWriteRounds = 4

// writePending writes pending until nothing is left, with w.mu held and
// w.writing set; it returns with w.mu released. With rounds > 0, it
// makes at most that many writes and hands what is still pending to a
// goroutine.
func (w *frameWriter) writePending(rounds int) error {
	for n := 0; len(w.pending) > 0 && w.err == nil; n++ {
		if rounds > 0 && n == rounds {
			w.mu.Unlock()
			go w.writeQueued()
			return nil
		}
		buf := w.pending
		w.pending = w.spare[:0]
		w.spare = nil
		w.mu.Unlock()

		err := w.write(buf)

		w.mu.Lock()
		if cap(buf) <= keepWriteBuffer {
			w.spare = buf[:0]
		}
		if err != nil {
			w.failLocked(err)
		}
		w.changed.Broadcast()
	}
	w.writing = false
	err := w.err
	w.changed.Broadcast()
	w.mu.Unlock()
	return err
}

// write writes buf to conn in chunks of at most writeChunk bytes, each
// bounded by the timeout: on a slow link, a large batch makes progress
// chunk by chunk rather than racing one deadline.
func (w *frameWriter) write(buf []byte) error {
	for len(buf) > 0 {
		chunk := buf[:min(len(buf), writeChunk)]
		buf = buf[len(chunk):]
		if w.timeout > 0 {
			w.armStuckTimer()
		}
		_, err := w.conn.Write(chunk)
		if w.timeout > 0 {
			w.stuck.Stop()
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// armStuckTimer starts the bound of the write about to be made. Only the
// goroutine writing touches the timer.
func (w *frameWriter) armStuckTimer() {
	if w.stuck == nil {
		w.stuck = time.AfterFunc(w.timeout, func() { w.fail(ErrConnectionWriteTimeout) })
		return
	}
	w.stuck.Reset(w.timeout)
}

// fail ends the writer with err (unless it already ended): later sends
// fail with it, what is pending is dropped and the session is told.
func (w *frameWriter) fail(err error) {
	w.mu.Lock()
	w.failLocked(err)
	w.changed.Broadcast()
	w.mu.Unlock()
}

func (w *frameWriter) failLocked(err error) {
	if w.err != nil {
		return
	}
	w.err = err
	w.pending = nil
	w.lazy = nil
	if w.lazyDue != nil {
		w.lazyDue.Stop()
	}
	if w.onError != nil && err != ErrSessionShutdown {
		go w.onError(err)
	}
}

// flush waits until what is pending has been written, the writer failed,
// or the timeout passed. Session.Close uses it so that frames queued
// behind a write (a response's last bytes) are not dropped.
func (w *frameWriter) flush(timeout time.Duration) {
	w.sendDueLazy()
	timedOut := false
	deadline := time.AfterFunc(timeout, func() {
		w.mu.Lock()
		timedOut = true
		w.changed.Broadcast()
		w.mu.Unlock()
	})
	defer deadline.Stop()
	w.mu.Lock()
	for w.writing && w.err == nil && !timedOut {
		w.changed.Wait()
	}
	w.mu.Unlock()
}
