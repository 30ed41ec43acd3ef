package config

import "github.com/spf13/pflag"

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
	// Client holds connect, grace_period and log. Connect.URL points at
	// the proxy port; each accepted TCP connection opens a WebSocket to
	// <url>/_pico/v1/tcp/<endpoint>. At SIGTERM open connections get the
	// grace period to finish after the listener closes.
	Client `yaml:",inline"`
}

// DefaultForwardURL is the default connect.url of `pico forward`: the
// proxy port of a local server.
const DefaultForwardURL = "http://localhost:8000"

// DefaultForward returns the documented defaults.
func DefaultForward() *Forward {
	return &Forward{Client: defaultClient(DefaultForwardURL)}
}

// RegisterFlags registers one flag per key.
func (f *Forward) RegisterFlags(fs *pflag.FlagSet) {
	f.Client.RegisterFlags(fs, "the server's proxy port", "open connections")
}

// Validate returns every problem found, joined.
func (f *Forward) Validate() error { return f.Client.Validate() }
