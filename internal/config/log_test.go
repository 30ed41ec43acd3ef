package config

import (
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestLogLevelIsParsedOnceAtValidation(t *testing.T) {
	for in, want := range map[string]slog.Level{"debug": slog.LevelDebug, "INFO": slog.LevelInfo, "Warn": slog.LevelWarn, "error": slog.LevelError} {
		l := Log{Level: in}
		require.NoError(t, l.Validate(), in)
		require.Equal(t, want, l.SlogLevel(), in)
	}
	for _, bad := range []string{"", "verbose", "warning", "INFO+2"} {
		l := Log{Level: bad}
		err := l.Validate()
		require.ErrorContains(t, err, "log.level (--log.level)", bad)
		require.ErrorContains(t, err, "use debug, info, warn or error", bad)
	}
}
