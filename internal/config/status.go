package config

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/pflag"
)

// Status is the configuration of `pico status`, the admin API client:
//
//	server:
//	  url: http://localhost:8002   # the server's admin port
//	  timeout: 10s
//	connect:                       # credentials, as for pico agent and forward
//	  token: ""                    # for an admin API with admin.auth
//	  token_file: ""
//	  tls: {ca: "", insecure_skip_verify: false, cert: "", key: ""}
//	output: text                   # or json
//
// The credentials are under `connect` (flags --connect.token,
// --connect.tls.ca, ...) like every client command's, while the address
// stays server.url.
type Status struct {
	Server StatusServer `yaml:"server"`
	// Connect holds the credentials presented to the admin API.
	Connect Credentials `yaml:"connect"`
	// Output is "text" (aligned tables) or "json" (the admin API's JSON,
	// indented).
	Output string `yaml:"output"`
}

// StatusServer is the admin API that `pico status` queries.
type StatusServer struct {
	// URL is the admin API's base URL.
	URL string `yaml:"url"`
	// Timeout bounds one request.
	Timeout time.Duration `yaml:"timeout"`
}

// Output formats of `pico status`.
const (
	OutputText = "text"
	OutputJSON = "json"
)

// DefaultStatus returns the documented defaults.
func DefaultStatus() *Status {
	return &Status{
		Server: StatusServer{URL: "http://localhost:8002", Timeout: 10 * time.Second},
		Output: OutputText,
	}
}

// RegisterFlags registers one flag per key.
func (s *Status) RegisterFlags(fs *pflag.FlagSet) {
	fs.StringVar(&s.Server.URL, "server.url", s.Server.URL, "URL of the server's admin API")
	fs.DurationVar(&s.Server.Timeout, "server.timeout", s.Server.Timeout, "bound on one admin API request")
	s.Connect.RegisterFlags(fs, "connect")
	fs.StringVar(&s.Output, "output", s.Output, "output format: text (tables) or json")
}

// Validate returns every problem found, joined.
func (s *Status) Validate() error {
	errs := []error{
		validateServerURL("server.url", s.Server.URL, "http", "https"),
		positiveDuration("server.timeout", s.Server.Timeout),
		s.Connect.Validate("connect", "server.url", s.Server.URL),
	}
	if s.Output != OutputText && s.Output != OutputJSON {
		errs = append(errs, fmt.Errorf("output (--output) is %q; use text or json", s.Output))
	}
	return errors.Join(errs...)
}
