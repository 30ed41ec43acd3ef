package testutil

import (
	"context"
	"testing"
	"time"
)

// Running is a function running in the background of a test until its
// context is cancelled, the way a command runs until SIGTERM.
type Running struct {
	name   string
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// Go runs run in the background with a context that Cancel cancels. When
// the test ends, the context is cancelled and the test fails unless run
// returns within StopTimeout. name says what runs, in failure messages.
func Go(t testing.TB, name string, run func(context.Context) error) *Running {
	ctx, cancel := context.WithCancel(context.Background())
	r := &Running{name: name, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(StopTimeout):
			t.Errorf("%s did not stop", name)
		}
	})
	return r
}

// Cancel cancels run's context (SIGTERM).
func (r *Running) Cancel() { r.cancel() }

// Done is closed once run has returned.
func (r *Running) Done() <-chan struct{} { return r.done }

// Wait returns run's result. The test fails at once unless run returns
// within StopTimeout.
func (r *Running) Wait(t testing.TB) error {
	t.Helper()
	select {
	case <-r.done:
		return r.err
	case <-time.After(StopTimeout):
		t.Fatalf("%s did not stop", r.name)
		return nil
	}
}

// Stop cancels run's context and returns its result, as Wait.
func (r *Running) Stop(t testing.TB) error {
	t.Helper()
	r.Cancel()
	return r.Wait(t)
}
