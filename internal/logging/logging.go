// Package logging builds Pico's structured loggers: log/slog, JSON to
// stderr, a minimum level, and per-subsystem debug overrides. Components
// tag their records with a "subsystem" attribute (logger.With("subsystem",
// "proxy")); subsystems listed in log.subsystems log at debug whatever the
// level.
package logging

import (
	"context"
	"io"
	"log/slog"
	"slices"
)

// SubsystemKey is the attribute that names a record's subsystem.
const SubsystemKey = "subsystem"

// New returns a JSON logger writing to w at level, with subsystems logged
// at debug regardless of level.
func New(w io.Writer, level slog.Level, subsystems []string) *slog.Logger {
	inner := slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})
	return slog.New(&handler{inner: inner, level: level, debug: slices.Clone(subsystems)})
}

// handler filters records by level unless their subsystem is in debug.
type handler struct {
	inner     slog.Handler
	level     slog.Level
	debug     []string
	subsystem string
}

func (h *handler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.level || (h.subsystem != "" && slices.Contains(h.debug, h.subsystem))
}

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	return h.inner.Handle(ctx, r)
}

func (h *handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.inner = h.inner.WithAttrs(attrs)
	for _, a := range attrs {
		if a.Key == SubsystemKey {
			c.subsystem = a.Value.String()
		}
	}
	return &c
}

func (h *handler) WithGroup(name string) slog.Handler {
	c := *h
	c.inner = h.inner.WithGroup(name)
	return &c
}
