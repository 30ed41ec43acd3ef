// Package tlsconfig builds the TLS configurations of Pico's listeners and
// clients from PEM files.
//
// Server certificates, mutual-TLS client CAs, peer CAs and client
// certificates are re-read when their files change (see
// internal/filereload), so rotating a Kubernetes Secret (e.g. by
// cert-manager) takes effect without a restart: new handshakes use the new
// files, established connections are kept.
package tlsconfig

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/pico-proxy/pico/internal/config"
	"github.com/pico-proxy/pico/internal/filereload"
)

// Option changes how files are watched.
type Option func(*options)

type options struct{ reloadInterval time.Duration }

// WithReloadInterval sets how often the files are checked for changes
// (default filereload.DefaultInterval).
func WithReloadInterval(d time.Duration) Option {
	return func(o *options) { o.reloadInterval = d }
}

// Server is the TLS side of one listener.
type Server struct {
	material *filereload.Value[*serverMaterial]
	mutual   bool
}

// serverMaterial is one generation of the listener's files.
type serverMaterial struct {
	cert      *tls.Certificate
	leaf      *x509.Certificate
	clientCAs *x509.CertPool // nil without mutual TLS
	// peerRoots verifies other nodes' certificates: the system roots,
	// every certificate of our own chain, and the peer CAs.
	peerRoots *x509.CertPool
	// peerCAs holds only the peer CAs (nil without peer_cas), to check
	// that this node's own certificate chains to one.
	peerCAs *x509.CertPool
}

// serverFiles says which setting each file of a serverMaterial comes
// from: cert and key first, then the optional ones (index -1 when unset).
type serverFiles struct {
	keys, paths        []string
	clientCAs, peerCAs int
}

func (f *serverFiles) add(key, path string) int {
	if path == "" {
		return -1
	}
	f.keys = append(f.keys, key)
	f.paths = append(f.paths, path)
	return len(f.paths) - 1
}

// NewServer loads the certificate, key, and optional client CAs and peer
// CAs of cfg, a section named section (e.g. "proxy.tls") validated at load
// (config.TLS.Validate); errors reading its files name its keys. cfg must
// be enabled.
func NewServer(cfg config.TLS, section string, logger *slog.Logger, opts ...Option) (*Server, error) {
	if !cfg.Enabled() {
		return nil, fmt.Errorf("%s: TLS is not configured; set %s.cert and %s.key", section, section, section)
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("subsystem", "tls", "section", section)
	files := &serverFiles{keys: []string{section + ".cert", section + ".key"}, paths: []string{cfg.Cert, cfg.Key}}
	files.clientCAs = files.add(section+".client_cas", cfg.ClientCAs)
	files.peerCAs = files.add(section+".peer_cas", cfg.PeerCAs)
	parse := func(contents [][]byte) (*serverMaterial, error) { return parseServer(files, contents) }
	material, err := filereload.New(files.paths, o.reloadInterval, parse, logger)
	if err != nil {
		var re *filereload.ReadError
		if errors.As(err, &re) && re.Index == files.peerCAs {
			return nil, fmt.Errorf("%w; %s", nameFile(files.keys, err), peerCAsFix)
		}
		return nil, nameFile(files.keys, err)
	}
	m := material.Get()
	if time.Now().After(m.leaf.NotAfter) {
		logger.Warn("the certificate has expired; clients will refuse it", "not_after", m.leaf.NotAfter)
	}
	if problem := m.peerCAsProblem(); problem != "" {
		logger.Warn(describe(section+".peer_cas")+" will not help: "+problem, "dns_names", m.leaf.DNSNames)
	}
	return &Server{material: material, mutual: cfg.ClientCAs != ""}, nil
}

// peerCAsFix ends the errors about a peer_cas file.
const peerCAsFix = "set it to a PEM file of the CA certificate(s) that issue the members' certificates " +
	"(cert-manager: the Secret's ca.crt), or unset it; with the Helm chart, add the key named by " +
	"proxy.tls.caKey (default ca.crt) to tls.existingSecret, or set proxy.tls.peerCAs=false"

// nameFile prefixes a read error with the setting of the file.
func nameFile(keys []string, err error) error {
	var re *filereload.ReadError
	if errors.As(err, &re) {
		return fmt.Errorf("%s: %w", describe(keys[re.Index]), re.Err)
	}
	return err
}

func describe(key string) string { return key + " (" + config.FlagName(key) + ")" }

func parseServer(files *serverFiles, contents [][]byte) (*serverMaterial, error) {
	keys := files.keys
	pair, err := loadKeyPair(keys, contents[0], contents[1])
	if err != nil {
		return nil, err
	}
	m := &serverMaterial{cert: pair, leaf: pair.Leaf}
	if i := files.clientCAs; i >= 0 {
		m.clientCAs = x509.NewCertPool()
		if !m.clientCAs.AppendCertsFromPEM(contents[i]) {
			return nil, fmt.Errorf("%s: no PEM certificates found", describe(keys[i]))
		}
	}
	m.peerRoots, err = x509.SystemCertPool()
	if err != nil {
		m.peerRoots = x509.NewCertPool()
	}
	for _, der := range pair.Certificate {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", describe(keys[0]), err)
		}
		m.peerRoots.AddCert(c)
	}
	if i := files.peerCAs; i >= 0 {
		cas, err := parseCertificates(contents[i])
		if err != nil {
			return nil, fmt.Errorf("%s: %w; %s", describe(keys[i]), err, peerCAsFix)
		}
		m.peerCAs = x509.NewCertPool()
		for _, ca := range cas {
			m.peerCAs.AddCert(ca)
			m.peerRoots.AddCert(ca)
		}
	}
	return m, nil
}

// parseCertificates returns the certificates of the PEM CERTIFICATE blocks
// in data, refusing data with none or with one that does not parse.
func parseCertificates(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificates found")
	}
	return certs, nil
}

// peerCAsProblem says why the peer CAs cannot recognise other members as
// configured, "" when they can (or are not set): peers are recognised by
// name, and a CA that did not issue this node's certificate is most
// likely not the members' CA.
func (m *serverMaterial) peerCAsProblem() string {
	if m.peerCAs == nil {
		return ""
	}
	if len(m.leaf.DNSNames) == 0 {
		return "this node's certificate names no DNS name, and a peer must name one of this node's names"
	}
	opts := x509.VerifyOptions{Roots: m.peerCAs, Intermediates: x509.NewCertPool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
	for _, der := range m.cert.Certificate[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			opts.Intermediates.AddCert(c)
		}
	}
	if _, err := m.leaf.Verify(opts); err != nil {
		return "this node's own certificate does not chain to any of these CAs (" + err.Error() + "); the file should hold the CA that issues the members' certificates"
	}
	return ""
}

// loadKeyPair parses a certificate chain and its private key; keys name
// the two settings.
func loadKeyPair(keys []string, certPEM, keyPEM []byte) (*tls.Certificate, error) {
	if !hasPEMBlock(certPEM, "CERTIFICATE") {
		return nil, fmt.Errorf("%s: no PEM CERTIFICATE block found", describe(keys[0]))
	}
	if !hasPEMBlock(keyPEM, "PRIVATE KEY") {
		return nil, fmt.Errorf("%s: no PEM PRIVATE KEY block found", describe(keys[1]))
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s and %s: %w", describe(keys[0]), describe(keys[1]), err)
	}
	return &pair, nil
}

// hasPEMBlock reports whether data holds a PEM block whose type ends in
// suffix ("PRIVATE KEY" matches RSA, EC and PKCS#8 keys).
func hasPEMBlock(data []byte, suffix string) bool {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return false
		}
		if bytes.HasSuffix([]byte(block.Type), []byte(suffix)) {
			return true
		}
	}
}

// Config returns a configuration for the listener: TLS 1.2 or later, the
// current certificate, and with client_cas a client certificate signed by
// one of the current client CAs required. Each call returns a new
// *tls.Config the caller may adjust (e.g. NextProtos; keep the upstream
// listener on HTTP/1.1, which WebSocket upgrades need).
func (s *Server) Config() *tls.Config {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.material.Get().cert, nil
		},
	}
	if s.mutual {
		// crypto/tls would verify against a fixed ClientCAs pool; verifying
		// in VerifyConnection uses the pool of the moment, also for resumed
		// sessions, so replacing the CA file revokes old clients.
		cfg.ClientAuth = tls.RequireAnyClientCert
		cfg.VerifyConnection = s.verifyClient
	}
	return cfg
}

// verifyClient accepts a client certificate chain signed by a current
// client CA, or a certificate identifying another node of the cluster
// forwarding a request (see PeerClientConfig).
func (s *Server) verifyClient(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("tls: a client certificate is required")
	}
	m := s.material.Get()
	if m.verifyNode(cs.PeerCertificates, x509.ExtKeyUsageAny) == nil {
		return nil
	}
	if _, err := cs.PeerCertificates[0].Verify(verifyOptions(m.clientCAs, cs.PeerCertificates, x509.ExtKeyUsageClientAuth)); err != nil {
		return fmt.Errorf("tls: client certificate refused: %w", err)
	}
	return nil
}

func verifyOptions(roots *x509.CertPool, chain []*x509.Certificate, usage x509.ExtKeyUsage) x509.VerifyOptions {
	opts := x509.VerifyOptions{Roots: roots, Intermediates: x509.NewCertPool(), KeyUsages: []x509.ExtKeyUsage{usage}}
	for _, c := range chain[1:] {
		opts.Intermediates.AddCert(c)
	}
	return opts
}

// verifyNode checks that chain identifies a node of the cluster: it is
// this node's certificate, or it chains to the system roots, this node's
// own chain or a peer CA, and names one of this node's DNS names.
func (m *serverMaterial) verifyNode(chain []*x509.Certificate, usage x509.ExtKeyUsage) error {
	leaf := chain[0]
	if leaf.Equal(m.leaf) {
		return nil
	}
	if _, err := leaf.Verify(verifyOptions(m.peerRoots, chain, usage)); err != nil {
		return err
	}
	for _, name := range leaf.DNSNames {
		if slices.Contains(m.leaf.DNSNames, name) {
			return nil
		}
	}
	return fmt.Errorf("it names none of this node's names %v", m.leaf.DNSNames)
}

// PeerClientConfig returns the client configuration for forwarding to
// other nodes' listeners of the same kind. Nodes are dialled by IP address,
// so a peer is verified by identity instead of host name: its certificate
// must chain to the system roots, to a certificate of this node's own
// chain or to a CA of peer_cas, and name at least one DNS name this node's
// certificate names (or be this node's certificate). All nodes normally
// serve the same Secret; peer_cas covers the moments they do not (a
// renewed certificate reaches the pods one after the other). The node's
// certificate is presented as client certificate, which this package's
// servers with client_cas accept from peers by the same rule.
func (s *Server) PeerClientConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Replaced by VerifyConnection: the host name cannot be checked.
		InsecureSkipVerify: true,
		VerifyConnection:   s.verifyPeer,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return s.material.Get().cert, nil
		},
	}
}

func (s *Server) verifyPeer(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("tls: the peer sent no certificate")
	}
	if err := s.material.Get().verifyNode(cs.PeerCertificates, x509.ExtKeyUsageServerAuth); err != nil {
		return fmt.Errorf("tls: peer certificate refused: %w", err)
	}
	return nil
}
