package logging

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSubsystemOverridesLevel(t *testing.T) {
	var buf bytes.Buffer
	log := New(&buf, slog.LevelWarn, []string{"proxy"})

	log.With(SubsystemKey, "proxy").Debug("proxy debug")
	log.With(SubsystemKey, "cluster").Debug("cluster debug")
	log.With(SubsystemKey, "cluster").Warn("cluster warn")
	log.Info("root info")

	out := buf.String()
	require.Contains(t, out, "proxy debug")
	require.Contains(t, out, "cluster warn")
	require.NotContains(t, out, "cluster debug")
	require.NotContains(t, out, "root info")
	require.Equal(t, 2, strings.Count(out, "\n"))
}
