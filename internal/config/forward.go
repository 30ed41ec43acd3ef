package config

import (
	"errors"
	"time"

	"github.com/spf13/pflag"
)

// Forward is the configuration of `pico forward tcp LOCAL_ADDR ENDPOINT`.
// The local address and the endpoint are command-line arguments; the
// YAML file (--config.path) holds the keys below:
//
//	connect:
//	  url: http://localhost:8000   # the server's proxy port
//	  token: ""
//	  timeout: 10s
//	grace_period: 1m
//	log: {level: info, subsystems: []}
type Forward struct {
	// Connect.URL points at the proxy port; each accepted TCP connection
	// opens a WebSocket to <url>/_pico/v1/tcp/<endpoint>.
	Connect Connect `yaml:"connect"`
	// GracePeriod bounds the SIGTERM drain: open connections get this long
	// to finish after the listener closes.
	GracePeriod time.Duration `yaml:"grace_period"`
	Log         Log           `yaml:"log"`
}

// DefaultForwardURL is the default connect.url of `pico forward`: the
// proxy port of a local server.
const DefaultForwardURL = "http://localhost:8000"

// DefaultForward returns the documented defaults.
func DefaultForward() *Forward {
	return &Forward{
		Connect:     DefaultConnect(DefaultForwardURL),
		GracePeriod: time.Minute,
		Log:         Log{Level: "info"},
	}
}

// RegisterFlags registers one flag per key.
func (f *Forward) RegisterFlags(fs *pflag.FlagSet) {
	f.Connect.RegisterFlags(fs, "the server's proxy port")
	fs.DurationVar(&f.GracePeriod, "grace-period", f.GracePeriod, "at SIGTERM, how long open connections may take to finish")
	f.Log.RegisterFlags(fs)
}

// Validate returns every problem found, joined.
func (f *Forward) Validate() error {
	return errors.Join(f.Connect.Validate(), positiveDuration("grace_period", f.GracePeriod), f.Log.Validate())
}
