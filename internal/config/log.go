package config

import (
	"fmt"
	"strings"

	"github.com/spf13/pflag"
)

// Log configures logging.
type Log struct {
	// Level is one of debug, info, warn, error.
	Level string `yaml:"level"`
	// Subsystems are logged at debug regardless of Level.
	Subsystems []string `yaml:"subsystems"`
}

// RegisterFlags registers the log.* flags.
func (l *Log) RegisterFlags(fs *pflag.FlagSet) {
	fs.StringVar(&l.Level, "log.level", l.Level, "minimum log level: debug, info, warn, error")
	fs.StringSliceVar(&l.Subsystems, "log.subsystems", l.Subsystems, "subsystems logged at debug regardless of --log.level")
}

// Validate checks the log section.
func (l *Log) Validate() error {
	switch strings.ToLower(l.Level) {
	case "debug", "info", "warn", "error":
		return nil
	}
	return fmt.Errorf("log.level (--log.level) %q is not a level; use debug, info, warn or error", l.Level)
}

// FlagName returns the flag for a YAML key: "a.b_c" becomes "--a.b-c".
func FlagName(key string) string {
	return "--" + strings.ReplaceAll(key, "_", "-")
}
