package config

import (
	"errors"
	"time"

	"github.com/spf13/pflag"
)

// Client is what the configurations of `pico agent` and `pico forward`
// share, at the top level of their files: how the command reaches the
// server (connect), how long it drains at SIGTERM (grace_period) and its
// logging (log).
type Client struct {
	Connect Connect `yaml:"connect"`
	// GracePeriod bounds the SIGTERM drain: what is in flight gets this
	// long to finish before its connection closes.
	GracePeriod time.Duration `yaml:"grace_period"`
	Log         Log           `yaml:"log"`
}

// defaultClient returns the defaults with connect.url set to url.
func defaultClient(url string) Client {
	return Client{
		Connect:     DefaultConnect(url),
		GracePeriod: time.Minute,
		Log:         Log{Level: "info"},
	}
}

// RegisterFlags registers --connect.*, --grace-period and --log.*; port
// describes the port connect.url points at, inFlight what the grace period
// lets finish.
func (c *Client) RegisterFlags(fs *pflag.FlagSet, port, inFlight string) {
	c.Connect.RegisterFlags(fs, port)
	fs.DurationVar(&c.GracePeriod, "grace-period", c.GracePeriod, "at SIGTERM, how long "+inFlight+" may take to finish")
	c.Log.RegisterFlags(fs)
}

// Validate checks connect, grace_period and log.
func (c *Client) Validate() error {
	return errors.Join(c.Connect.Validate(), positiveDuration("grace_period", c.GracePeriod), c.Log.Validate())
}
