package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pico-proxy/pico/internal/config"
	"github.com/stretchr/testify/require"
)

const fastReload = 20 * time.Millisecond

func TestTLSRoundTrip(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, "test CA")
	certPEM, keyPEM := ca.issue(t, serverLeaf("server"))
	srv, err := NewServer(config.TLS{Cert: writeTemp(t, dir, "tls.crt", certPEM), Key: writeTemp(t, dir, "tls.key", keyPEM)}, "proxy.tls", nil)
	require.NoError(t, err)
	addr := serveHTTPS(t, srv.Config())
	caFile := writeTemp(t, dir, "ca.crt", ca.pem)

	trusting, err := ClientConfig(caFile, false)
	require.NoError(t, err)
	body, err := get(trusting, addr)
	require.NoError(t, err)
	require.Equal(t, "-", body)

	systemRoots, err := ClientConfig("", false)
	require.NoError(t, err)
	_, err = get(systemRoots, addr)
	var unknown x509.UnknownAuthorityError
	require.ErrorAs(t, err, &unknown, "a private CA is not trusted without --connect.tls.ca")

	otherCA, err := ClientConfig(writeTemp(t, dir, "other.crt", newCA(t, "other").pem), false)
	require.NoError(t, err)
	_, err = get(otherCA, addr)
	require.ErrorAs(t, err, &unknown)

	insecure, err := ClientConfig("", true)
	require.NoError(t, err)
	_, err = get(insecure, addr)
	require.NoError(t, err)

	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS11})
	if err == nil {
		conn.Close()
	}
	require.Error(t, err, "TLS 1.1 is refused")
}

// TestClientServerName checks connect.tls.server_name: a server reached by
// an address its certificate does not list (a pod IP, a port-forward) is
// verified against the configured name instead.
func TestClientServerName(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, "test CA")
	certPEM, keyPEM := ca.issue(t, leaf{cn: "pico-0", dnsNames: []string{"pico-0.pico-headless.ns.svc"}, usage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	srv, err := NewServer(config.TLS{Cert: writeTemp(t, dir, "tls.crt", certPEM), Key: writeTemp(t, dir, "tls.key", keyPEM)}, "admin.tls", nil)
	require.NoError(t, err)
	addr := serveHTTPS(t, srv.Config())
	caFile := writeTemp(t, dir, "ca.crt", ca.pem)

	byAddress, err := NewClient(config.ClientTLS{CA: caFile}, "connect.tls", nil)
	require.NoError(t, err)
	_, err = get(byAddress, addr)
	var hostname x509.HostnameError
	require.ErrorAs(t, err, &hostname, "the certificate does not list 127.0.0.1")

	named, err := NewClient(config.ClientTLS{CA: caFile, ServerName: "pico-0.pico-headless.ns.svc"}, "connect.tls", nil)
	require.NoError(t, err)
	body, err := get(named, addr)
	require.NoError(t, err)
	require.Equal(t, "-", body)

	wrong, err := NewClient(config.ClientTLS{CA: caFile, ServerName: "pico-1.pico-headless.ns.svc"}, "connect.tls", nil)
	require.NoError(t, err)
	_, err = get(wrong, addr)
	require.ErrorAs(t, err, &hostname)
	require.Equal(t, "pico-1.pico-headless.ns.svc", hostname.Host)

	hc, err := HTTPClient(config.ClientTLS{CA: caFile, ServerName: "pico-0.pico-headless.ns.svc"}, "connect.tls", 10*time.Second, nil)
	require.NoError(t, err)
	resp, err := hc.Get("https://" + addr + "/")
	require.NoError(t, err, "HTTPClient uses the server name")
	require.NoError(t, resp.Body.Close())
	hc.CloseIdleConnections()
}

func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	serverCA, clientCA, strangerCA := newCA(t, "server CA"), newCA(t, "client CA"), newCA(t, "stranger CA")
	certPEM, keyPEM := serverCA.issue(t, serverLeaf("server"))
	srv, err := NewServer(config.TLS{
		Cert:      writeTemp(t, dir, "tls.crt", certPEM),
		Key:       writeTemp(t, dir, "tls.key", keyPEM),
		ClientCAs: writeTemp(t, dir, "clients.crt", clientCA.pem),
	}, "upstream.tls", nil)
	require.NoError(t, err)
	addr := serveHTTPS(t, srv.Config())
	caFile := writeTemp(t, dir, "ca.crt", serverCA.pem)

	client := func(ca *testCA, l leaf) *tls.Config {
		certPEM, keyPEM := ca.issue(t, l)
		sub := t.TempDir()
		cfg, err := NewClient(config.ClientTLS{CA: caFile, Cert: writeTemp(t, sub, "c.crt", certPEM), Key: writeTemp(t, sub, "c.key", keyPEM)}, "connect.tls", nil)
		require.NoError(t, err)
		return cfg
	}

	body, err := get(client(clientCA, clientLeaf("agent-1")), addr)
	require.NoError(t, err)
	require.Equal(t, "agent-1", body, "the server sees the client's identity")

	noCert, err := ClientConfig(caFile, false)
	require.NoError(t, err)
	for name, cfg := range map[string]*tls.Config{
		"no client certificate":         noCert,
		"certificate of another CA":     client(strangerCA, clientLeaf("intruder")),
		"certificate not for clients":   client(clientCA, serverLeaf("server-only")),
		"expired client certificate":    client(clientCA, leaf{cn: "old", usage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, expired: true}),
		"the server's certificate's CA": client(serverCA, clientLeaf("wrong-ca")),
	} {
		_, err := get(cfg, addr)
		require.Error(t, err, name)
	}
}

// Kubernetes (and so cert-manager) updates a mounted Secret by swapping the
// ..data symlink to a new directory; the file names stay symlinks into it.
type secretMount struct {
	t   *testing.T
	dir string
	gen int
}

func newSecretMount(t *testing.T, files map[string][]byte) *secretMount {
	m := &secretMount{t: t, dir: t.TempDir()}
	m.update(files)
	for name := range files {
		require.NoError(t, os.Symlink(filepath.Join("..data", name), filepath.Join(m.dir, name)))
	}
	return m
}

func (m *secretMount) path(name string) string { return filepath.Join(m.dir, name) }

func (m *secretMount) update(files map[string][]byte) {
	m.gen++
	gen := filepath.Join(m.dir, "..gen"+string(rune('0'+m.gen)))
	require.NoError(m.t, os.Mkdir(gen, 0o700))
	for name, data := range files {
		require.NoError(m.t, os.WriteFile(filepath.Join(gen, name), data, 0o600))
	}
	tmp := filepath.Join(m.dir, "..data_tmp")
	require.NoError(m.t, os.Symlink(filepath.Base(gen), tmp))
	require.NoError(m.t, os.Rename(tmp, filepath.Join(m.dir, "..data")))
}

func TestCertificateAndClientCAReload(t *testing.T) {
	serverCA, clientCA1, clientCA2 := newCA(t, "server CA"), newCA(t, "client CA 1"), newCA(t, "client CA 2")
	cert1, key1 := serverCA.issue(t, serverLeaf("generation-1"))
	mount := newSecretMount(t, map[string][]byte{"tls.crt": cert1, "tls.key": key1, "ca.crt": clientCA1.pem})
	srv, err := NewServer(config.TLS{Cert: mount.path("tls.crt"), Key: mount.path("tls.key"), ClientCAs: mount.path("ca.crt")}, "proxy.tls", nil, WithReloadInterval(fastReload))
	require.NoError(t, err)
	addr := serveHTTPS(t, srv.Config())
	require.Equal(t, "generation-1", servedName(t, addr))

	dir := t.TempDir()
	caFile := writeTemp(t, dir, "server-ca.crt", serverCA.pem)
	clientOf := func(ca *testCA, cn string) *tls.Config {
		certPEM, keyPEM := ca.issue(t, clientLeaf(cn))
		cfg, err := NewClient(config.ClientTLS{CA: caFile, Cert: writeTemp(t, dir, cn+".crt", certPEM), Key: writeTemp(t, dir, cn+".key", keyPEM)}, "connect.tls", nil)
		require.NoError(t, err)
		return cfg
	}
	old, renewed := clientOf(clientCA1, "old-client"), clientOf(clientCA2, "new-client")
	old.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	_, err = get(old, addr)
	require.NoError(t, err)
	_, state, err := getState(old, addr)
	require.NoError(t, err)
	require.True(t, state.DidResume, "the old client resumes its session")
	_, err = get(renewed, addr)
	require.Error(t, err)

	// cert-manager renews the certificate and the CA is rotated.
	cert2, key2 := serverCA.issue(t, serverLeaf("generation-2"))
	mount.update(map[string][]byte{"tls.crt": cert2, "tls.key": key2, "ca.crt": clientCA2.pem})
	require.Eventually(t, func() bool { return servedName(t, addr) == "generation-2" }, 10*time.Second, 10*time.Millisecond)
	_, err = get(renewed, addr)
	require.NoError(t, err, "clients of the new CA are accepted")
	_, err = get(old, addr)
	require.Error(t, err, "clients of the replaced CA are refused, even resuming a session")

	// A half-written update (certificate without its key) keeps serving
	// the previous pair.
	cert3, _ := serverCA.issue(t, serverLeaf("generation-3"))
	mount.update(map[string][]byte{"tls.crt": cert3, "tls.key": key2, "ca.crt": clientCA2.pem})
	require.Never(t, func() bool { return servedName(t, addr) != "generation-2" }, 200*time.Millisecond, 20*time.Millisecond)
}

func TestClientCertificateReload(t *testing.T) {
	dir := t.TempDir()
	serverCA, clientCA := newCA(t, "server CA"), newCA(t, "client CA")
	certPEM, keyPEM := serverCA.issue(t, serverLeaf("server"))
	srv, err := NewServer(config.TLS{Cert: writeTemp(t, dir, "tls.crt", certPEM), Key: writeTemp(t, dir, "tls.key", keyPEM), ClientCAs: writeTemp(t, dir, "clients.crt", clientCA.pem)}, "upstream.tls", nil)
	require.NoError(t, err)
	addr := serveHTTPS(t, srv.Config())

	c1, k1 := clientCA.issue(t, clientLeaf("agent-gen-1"))
	mount := newSecretMount(t, map[string][]byte{"tls.crt": c1, "tls.key": k1})
	client, err := NewClient(config.ClientTLS{CA: writeTemp(t, dir, "ca.crt", serverCA.pem), Cert: mount.path("tls.crt"), Key: mount.path("tls.key")}, "connect.tls", nil, WithReloadInterval(fastReload))
	require.NoError(t, err)
	body, err := get(client, addr)
	require.NoError(t, err)
	require.Equal(t, "agent-gen-1", body)

	c2, k2 := clientCA.issue(t, clientLeaf("agent-gen-2"))
	mount.update(map[string][]byte{"tls.crt": c2, "tls.key": k2})
	require.Eventually(t, func() bool {
		body, err := get(client, addr)
		return err == nil && body == "agent-gen-2"
	}, 10*time.Second, 10*time.Millisecond)
}

func TestPeerClientConfig(t *testing.T) {
	ca, stranger := newCA(t, "cluster CA"), newCA(t, "stranger CA")
	peerLeaf := func(cn string, names ...string) leaf {
		return leaf{cn: cn, dnsNames: names, usage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	}
	// node builds a node whose proxy certificate file holds the leaf and
	// the CA (the chain), optionally requiring client certificates.
	node := func(l leaf, issuer *testCA, clientCAs []byte) *Server {
		dir := t.TempDir()
		certPEM, keyPEM := issuer.issue(t, l)
		cfg := config.TLS{Cert: writeTemp(t, dir, "tls.crt", append(certPEM, issuer.pem...)), Key: writeTemp(t, dir, "tls.key", keyPEM)}
		if clientCAs != nil {
			cfg.ClientCAs = writeTemp(t, dir, "clients.crt", clientCAs)
		}
		s, err := NewServer(cfg, "proxy.tls", nil)
		require.NoError(t, err)
		return s
	}
	sender := node(peerLeaf("node-a", "pico.example.test"), ca, nil)

	tests := []struct {
		name string
		peer *Server
		ok   bool
		seen string // the client identity the peer sees
	}{
		{"same name, same CA", node(peerLeaf("node-b", "pico.example.test", "b.pico.example.test"), ca, nil), true, "-"},
		{"peer requiring client certificates", node(peerLeaf("node-c", "pico.example.test"), ca, newCA(t, "client CA").pem), true, "node-a"},
		{"other name, same CA", node(peerLeaf("node-d", "other.example.test"), ca, nil), false, ""},
		{"same name, unknown CA", node(peerLeaf("node-e", "pico.example.test"), stranger, nil), false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr := serveHTTPS(t, tc.peer.Config())
			body, err := get(sender.PeerClientConfig(), addr)
			if !tc.ok {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.seen, body)
		})
	}

	// Nodes sharing one Secret: identical certificates, even self-signed.
	dir := t.TempDir()
	self := newCA(t, "self-signed")
	shared := config.TLS{Cert: writeTemp(t, dir, "tls.crt", self.pem), Key: writeTemp(t, dir, "tls.key", mustKeyPEM(t, self))}
	a, err := NewServer(shared, "proxy.tls", nil)
	require.NoError(t, err)
	b, err := NewServer(shared, "proxy.tls", nil)
	require.NoError(t, err)
	_, err = get(a.PeerClientConfig(), serveHTTPS(t, b.Config()))
	require.NoError(t, err)
}

func mustKeyPEM(t *testing.T, ca *testCA) []byte {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(ca.key)
	require.NoError(t, err)
	return pemBlock("EC PRIVATE KEY", der)
}

func TestConfigurationErrorsNameTheKey(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, "CA")
	certPEM, keyPEM := ca.issue(t, serverLeaf("server"))
	_, otherKey := ca.issue(t, serverLeaf("other"))
	cert := writeTemp(t, dir, "tls.crt", certPEM)
	key := writeTemp(t, dir, "tls.key", keyPEM)
	garbage := writeTemp(t, dir, "garbage", []byte("not PEM"))

	servers := []struct {
		name string
		cfg  config.TLS
		want string
	}{
		{"missing cert", config.TLS{Cert: filepath.Join(dir, "missing.crt"), Key: key}, "proxy.tls.cert (--proxy.tls.cert): open " + filepath.Join(dir, "missing.crt") + ": no such file"},
		{"missing key", config.TLS{Cert: cert, Key: filepath.Join(dir, "missing.key")}, "proxy.tls.key (--proxy.tls.key): open"},
		{"cert is a key", config.TLS{Cert: key, Key: key}, "proxy.tls.cert (--proxy.tls.cert): no PEM CERTIFICATE block found"},
		{"key is a cert", config.TLS{Cert: cert, Key: cert}, "proxy.tls.key (--proxy.tls.key): no PEM PRIVATE KEY block found"},
		{"key of another cert", config.TLS{Cert: cert, Key: writeTemp(t, dir, "other.key", otherKey)}, "proxy.tls.cert (--proxy.tls.cert) and proxy.tls.key (--proxy.tls.key): tls: private key does not match public key"},
		{"garbage client CAs", config.TLS{Cert: cert, Key: key, ClientCAs: garbage}, "proxy.tls.client_cas (--proxy.tls.client-cas): no PEM certificates found"},
		{"missing client CAs", config.TLS{Cert: cert, Key: key, ClientCAs: filepath.Join(dir, "nope")}, "proxy.tls.client_cas (--proxy.tls.client-cas): open"},
		{"not enabled", config.TLS{}, "proxy.tls: TLS is not configured"},
	}
	for _, tc := range servers {
		_, err := NewServer(tc.cfg, "proxy.tls", nil)
		require.ErrorContains(t, err, tc.want, tc.name)
	}

	clients := []struct {
		name string
		cfg  config.ClientTLS
		want string
	}{
		{"missing CA", config.ClientTLS{CA: filepath.Join(dir, "nope")}, "connect.tls.ca (--connect.tls.ca): open"},
		{"garbage CA", config.ClientTLS{CA: garbage}, "connect.tls.ca (--connect.tls.ca): no PEM certificates found"},
		{"mismatched pair", config.ClientTLS{Cert: cert, Key: writeTemp(t, dir, "other2.key", otherKey)}, "connect.tls.cert (--connect.tls.cert) and connect.tls.key (--connect.tls.key): tls: private key does not match"},
	}
	for _, tc := range clients {
		_, err := NewClient(tc.cfg, "connect.tls", nil)
		require.ErrorContains(t, err, tc.want, tc.name)
	}
	_, err := NewServer(config.TLS{Cert: cert, Key: key}, "proxy.tls", nil)
	require.NoError(t, err)
}
