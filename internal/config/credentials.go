package config

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/spf13/pflag"
)

// Credentials are what a client command (agent, forward, status) presents
// to a Pico server: a bearer token, and how it verifies the server's TLS
// certificate (plus an optional client certificate for mutual TLS). Every
// client command has them under `connect` (flags --connect.token,
// --connect.token-file, --connect.tls.*).
type Credentials struct {
	// Token, when set, is sent as "Authorization: Bearer <token>".
	Token string `yaml:"token"`
	// TokenFile, when set, is the path of a file holding the token. It is
	// read again before every connection, so a token that is renewed in
	// place (e.g. a mounted Secret) is picked up when the server closes a
	// connection whose token expired.
	TokenFile string `yaml:"token_file"`
	// TLS configures https:// and wss:// connections.
	TLS ClientTLS `yaml:"tls"`
}

// RegisterFlags registers the <prefix>.token, <prefix>.token-file and
// <prefix>.tls.* flags.
func (c *Credentials) RegisterFlags(fs *pflag.FlagSet, prefix string) {
	fs.StringVar(&c.Token, prefix+".token", c.Token, "token sent as \"Authorization: Bearer <token>\" (optional; prefer --"+prefix+".token-file, flags show in ps)")
	fs.StringVar(&c.TokenFile, prefix+".token-file", c.TokenFile, "file holding the token, read again before every connection (so a renewed token is used)")
	c.TLS.RegisterFlags(fs, prefix+".tls")
}

// Validate checks the <prefix> section; urlKey names the setting holding
// the server URL, urlValue its value, which must be https:// or wss://
// when TLS options are set.
func (c *Credentials) Validate(prefix, urlKey, urlValue string) error {
	errs := []error{c.TLS.Validate(prefix + ".tls")}
	if c.Token != "" && c.TokenFile != "" {
		errs = append(errs, fmt.Errorf("%s and %s are both set; set only one", describeKey(prefix+".token"), describeKey(prefix+".token_file")))
	}
	if c.TLS.Enabled() {
		if u, err := url.Parse(urlValue); err == nil && u.Scheme != "https" && u.Scheme != "wss" {
			errs = append(errs, fmt.Errorf("--%s.tls.* options are set but %s %q is not https:// or wss://, so they would not be used; use an https:// URL", flagPrefix(prefix), describeKey(urlKey), urlValue))
		}
	}
	return errors.Join(errs...)
}

// BearerToken returns the token to send: Token, or the contents of
// TokenFile (surrounding whitespace removed); "" when neither is set.
// Errors name the setting and never include the token.
func (c *Credentials) BearerToken(prefix string) (string, error) {
	if c.TokenFile == "" {
		return c.Token, nil
	}
	data, err := os.ReadFile(c.TokenFile)
	if err != nil {
		return "", fmt.Errorf("%s: %w", describeKey(prefix+".token_file"), err)
	}
	token := strings.TrimSpace(string(data))
	if token == "" {
		return "", fmt.Errorf("%s: %s is empty", describeKey(prefix+".token_file"), c.TokenFile)
	}
	return token, nil
}
