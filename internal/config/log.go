package config

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/spf13/pflag"
)

// Log configures logging.
type Log struct {
	// Level is one of debug, info, warn, error (any case).
	Level string `yaml:"level"`
	// Subsystems are logged at debug regardless of Level.
	Subsystems []string `yaml:"subsystems"`

	level slog.Level // Level, parsed by Validate
}

// RegisterFlags registers the log.* flags.
func (l *Log) RegisterFlags(fs *pflag.FlagSet) {
	fs.StringVar(&l.Level, "log.level", l.Level, "minimum log level: debug, info, warn, error")
	fs.StringSliceVar(&l.Subsystems, "log.subsystems", l.Subsystems, "subsystems logged at debug regardless of --log.level")
}

// Validate checks the log section and parses its level.
func (l *Log) Validate() error {
	level, err := ParseLevel(l.Level)
	if err != nil {
		return fmt.Errorf("log.level (--log.level): %w", err)
	}
	l.level = level
	return nil
}

// SlogLevel is the level Validate parsed.
func (l Log) SlogLevel() slog.Level { return l.level }

// ParseLevel parses a log level: debug, info, warn or error, in any case.
// It is the one list of level names every command accepts.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("%q is not a level; use debug, info, warn or error", s)
}

// FlagName returns the flag for a YAML key: "a.b_c" becomes "--a.b-c".
func FlagName(key string) string {
	return "--" + strings.ReplaceAll(key, "_", "-")
}
