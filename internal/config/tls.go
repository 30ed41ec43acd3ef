package config

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/pflag"
)

// TLS configures TLS on one server listener. The YAML section is chosen by
// the embedding struct (e.g. `proxy.tls`); RegisterFlags and Validate take
// it as prefix. The files are re-read when they change (certificate
// rotation), so they may be Kubernetes Secret mounts.
type TLS struct {
	// Cert is the path of the PEM certificate chain served by the listener.
	Cert string `yaml:"cert"`
	// Key is the path of the PEM private key of Cert.
	Key string `yaml:"key"`
	// ClientCAs, when set, is the path of a PEM bundle of certificate
	// authorities; clients must then present a certificate signed by one
	// of them (mutual TLS).
	ClientCAs string `yaml:"client_cas"`
	// PeerCAs, when set, is the path of a PEM bundle of the certificate
	// authorities that issue the cluster members' certificates. A member
	// is then also recognised (when this node forwards to it, and when it
	// forwards to this node under ClientCAs) by a certificate that chains
	// to one of them and names one of this node's DNS names, so members
	// holding different certificates of a private CA — one renewed before
	// the other — still forward to each other. Only the section members
	// forward through has it (ForwardingSection).
	PeerCAs string `yaml:"peer_cas"`
}

// ForwardingSection is the TLS section of the listener members forward
// requests to each other through, the only one with peer_cas.
const ForwardingSection = "proxy.tls"

// Enabled reports whether the listener serves TLS.
func (t *TLS) Enabled() bool { return t.Cert != "" || t.Key != "" }

// RegisterFlags registers the <prefix>.* flags, e.g. --proxy.tls.cert for
// prefix "proxy.tls".
func (t *TLS) RegisterFlags(fs *pflag.FlagSet, prefix string) {
	flag := flagPrefix(prefix)
	fs.StringVar(&t.Cert, flag+".cert", t.Cert, "PEM certificate (chain) file; enables TLS on this listener (reloaded when the file changes)")
	fs.StringVar(&t.Key, flag+".key", t.Key, "PEM private key file of --"+flag+".cert")
	fs.StringVar(&t.ClientCAs, flag+".client-cas", t.ClientCAs, "PEM CA bundle file; when set, clients must present a certificate signed by one of these CAs (mutual TLS)")
	if prefix == ForwardingSection {
		fs.StringVar(&t.PeerCAs, flag+".peer-cas", t.PeerCAs, "PEM CA bundle file of the CAs that issue the members' certificates; a member's certificate that chains to one and names one of this node's DNS names is trusted for forwarding, so members holding different certificates (a renewal) still reach each other (reloaded when the file changes)")
	}
}

// Validate checks the <prefix> section. Whether the files exist and parse
// is checked when they are loaded, with errors naming these keys.
func (t *TLS) Validate(prefix string) error {
	var errs []error
	if t.Cert != "" && t.Key == "" {
		errs = append(errs, fmt.Errorf("%s is set but %s is empty; set both to enable TLS", describeKey(prefix+".cert"), describeKey(prefix+".key")))
	}
	if t.Key != "" && t.Cert == "" {
		errs = append(errs, fmt.Errorf("%s is set but %s is empty; set both to enable TLS", describeKey(prefix+".key"), describeKey(prefix+".cert")))
	}
	if t.ClientCAs != "" && !t.Enabled() {
		errs = append(errs, fmt.Errorf("%s needs TLS; set %s and %s too", describeKey(prefix+".client_cas"), describeKey(prefix+".cert"), describeKey(prefix+".key")))
	}
	switch {
	case t.PeerCAs == "":
	case prefix != ForwardingSection:
		errs = append(errs, fmt.Errorf("%s.peer_cas is not a setting: members forward to each other's proxy ports only; set %s instead", prefix, describeKey(ForwardingSection+".peer_cas")))
	case !t.Enabled():
		errs = append(errs, fmt.Errorf("%s needs TLS; set %s and %s too", describeKey(prefix+".peer_cas"), describeKey(prefix+".cert"), describeKey(prefix+".key")))
	}
	return errors.Join(errs...)
}

// ClientTLS configures how a command (agent, forward, status) verifies the
// server it connects to over https:// or wss://, and optionally the client
// certificate it presents to a server that requires mutual TLS. The YAML
// section is chosen by the embedding struct (e.g. `connect.tls`).
type ClientTLS struct {
	// CA is the path of a PEM bundle of certificate authorities trusted
	// instead of the system roots.
	CA string `yaml:"ca"`
	// InsecureSkipVerify disables verification of the server's certificate.
	// For tests only: anyone on the path can then read and alter traffic.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
	// ServerName, when set, is the name verified in the server's
	// certificate (and sent as SNI) instead of the URL's host: for a
	// server reached by an address its certificate does not list, such
	// as a pod IP or a port-forward to localhost.
	ServerName string `yaml:"server_name"`
	// Cert and Key are the paths of a PEM client certificate and its key,
	// presented when the server asks for one (mutual TLS). They are
	// reloaded when the files change.
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// Enabled reports whether any option is set (otherwise the system roots
// verify the server and no client certificate is sent).
func (c *ClientTLS) Enabled() bool {
	return c.CA != "" || c.InsecureSkipVerify || c.ServerName != "" || c.Cert != "" || c.Key != ""
}

// RegisterFlags registers the <prefix>.* flags, e.g. --connect.tls.ca for
// prefix "connect.tls".
func (c *ClientTLS) RegisterFlags(fs *pflag.FlagSet, prefix string) {
	flag := flagPrefix(prefix)
	fs.StringVar(&c.CA, flag+".ca", c.CA, "PEM CA bundle file trusted to verify the server's certificate instead of the system roots")
	fs.BoolVar(&c.InsecureSkipVerify, flag+".insecure-skip-verify", c.InsecureSkipVerify, "do not verify the server's certificate (insecure; for tests only)")
	fs.StringVar(&c.ServerName, flag+".server-name", c.ServerName, "name verified in the server's certificate instead of the URL's host (e.g. when connecting through a port-forward)")
	fs.StringVar(&c.Cert, flag+".cert", c.Cert, "PEM client certificate file presented to servers that require mutual TLS")
	fs.StringVar(&c.Key, flag+".key", c.Key, "PEM private key file of --"+flag+".cert")
}

// Validate checks the <prefix> section.
func (c *ClientTLS) Validate(prefix string) error {
	var errs []error
	if c.CA != "" && c.InsecureSkipVerify {
		errs = append(errs, fmt.Errorf("%s and %s are both set; the CA would be ignored, so drop %s", describeKey(prefix+".ca"), describeKey(prefix+".insecure_skip_verify"), describeKey(prefix+".insecure_skip_verify")))
	}
	if (c.Cert == "") != (c.Key == "") {
		errs = append(errs, fmt.Errorf("%s and %s must be set together", describeKey(prefix+".cert"), describeKey(prefix+".key")))
	}
	return errors.Join(errs...)
}

// flagPrefix turns a YAML section into the prefix of its flags:
// "proxy.tls" stays "proxy.tls", "a.b_c" becomes "a.b-c".
func flagPrefix(section string) string {
	return strings.ReplaceAll(section, "_", "-")
}

// describeKey names a YAML key together with its flag: `a.b_c (--a.b-c)`.
func describeKey(key string) string {
	return key + " (" + FlagName(key) + ")"
}
