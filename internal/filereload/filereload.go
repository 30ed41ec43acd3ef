// Package filereload keeps a value parsed from files (certificates, keys,
// key sets) current while the files change underneath a running process.
//
// Checks are lazy: Get re-reads the files at most once per interval and
// re-parses them only when their content changed, so there is no goroutine
// to start or stop. Files are compared by content, not modification time,
// and read through their paths every time, which follows the symlink swaps
// Kubernetes uses to update mounted Secrets and ConfigMaps atomically. When
// new content fails to parse (for example a certificate written before its
// key), the previous value stays in use and the failure is logged once.
package filereload

import (
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultInterval is how often files are checked when no interval is given.
const DefaultInterval = 10 * time.Second

// ReadError reports a file that could not be read; Index is its position
// in the paths given to New, so callers can name the setting it came from.
type ReadError struct {
	Index int
	Err   error // from os.ReadFile; names the path
}

func (e *ReadError) Error() string { return e.Err.Error() }
func (e *ReadError) Unwrap() error { return e.Err }

// Value is a value parsed from the contents of a fixed list of files.
type Value[T any] struct {
	paths    []string
	parse    func(contents [][]byte) (T, error)
	interval time.Duration
	logger   *slog.Logger

	current   atomic.Pointer[T]
	nextCheck atomic.Int64 // unix nanoseconds

	mu         sync.Mutex // held while checking; guards the fields below
	digest     [sha256.Size]byte
	lastFailed string // the last failure logged, to log each one once
}

// New reads and parses paths once and returns the resulting Value, or the
// read or parse error. parse receives the contents in the order of paths.
// An interval of zero means DefaultInterval. Reloads and reload failures
// are logged to logger (nil discards them).
func New[T any](paths []string, interval time.Duration, parse func(contents [][]byte) (T, error), logger *slog.Logger) (*Value[T], error) {
	if interval <= 0 {
		interval = DefaultInterval
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	v := &Value[T]{paths: paths, parse: parse, interval: interval, logger: logger}
	contents, digest, err := v.read()
	if err != nil {
		return nil, err
	}
	value, err := parse(contents)
	if err != nil {
		return nil, err
	}
	v.digest = digest
	v.current.Store(&value)
	v.nextCheck.Store(time.Now().Add(interval).UnixNano())
	return v, nil
}

// Get returns the current value, first reloading it if the interval has
// passed since the last check and the files' content changed. Concurrent
// callers never wait for a check in progress: they get the current value.
func (v *Value[T]) Get() T {
	if time.Now().UnixNano() >= v.nextCheck.Load() && v.mu.TryLock() {
		v.check()
		v.mu.Unlock()
	}
	return *v.current.Load()
}

// check reloads the value if the files changed. v.mu must be held.
func (v *Value[T]) check() {
	now := time.Now()
	if now.UnixNano() < v.nextCheck.Load() {
		return // another caller checked while we waited for the lock
	}
	v.nextCheck.Store(now.Add(v.interval).UnixNano())
	contents, digest, err := v.read()
	if err != nil {
		v.logFailure(err)
		return
	}
	if digest == v.digest {
		return
	}
	value, err := v.parse(contents)
	if err != nil {
		v.logFailure(err)
		return
	}
	v.digest = digest
	v.lastFailed = ""
	v.current.Store(&value)
	v.logger.Info("reloaded after the files changed", "files", v.paths)
}

func (v *Value[T]) logFailure(err error) {
	if msg := err.Error(); msg != v.lastFailed {
		v.lastFailed = msg
		v.logger.Warn("reload failed; keeping the previous value", "files", v.paths, "error", err)
	}
}

// read returns the contents of all paths and a digest over them.
func (v *Value[T]) read() ([][]byte, [sha256.Size]byte, error) {
	h := sha256.New()
	contents := make([][]byte, len(v.paths))
	for i, p := range v.paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, [sha256.Size]byte{}, &ReadError{Index: i, Err: err}
		}
		contents[i] = data
		fmt.Fprintf(h, "%d:", len(data))
		h.Write(data)
	}
	var digest [sha256.Size]byte
	copy(digest[:], h.Sum(nil))
	return contents, digest, nil
}
