package tlsconfig

import (
	"bytes"
	"crypto/x509"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pico-proxy/pico/internal/config"
)

// memberLeaf is a member's proxy certificate: one DNS name shared by
// the cluster (as a cert-manager Certificate for the headless Service
// gives every pod), usable as server and client certificate.
func memberLeaf(cn string, names ...string) leaf {
	if len(names) == 0 {
		names = []string{"pico.ns.svc"}
	}
	return leaf{cn: cn, dnsNames: names, usage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
}

// member is the proxy.tls section of one node: tls.crt holds only the
// leaf issued by issuer (cert-manager's CA Issuer writes the CA into
// ca.crt, not into tls.crt); peerCAs and clientCAs are written when set.
func member(t *testing.T, issuer *testCA, l leaf, peerCAs, clientCAs []byte) *Server {
	t.Helper()
	dir := t.TempDir()
	certPEM, keyPEM := issuer.issue(t, l)
	cfg := config.TLS{Cert: writeTemp(t, dir, "tls.crt", certPEM), Key: writeTemp(t, dir, "tls.key", keyPEM)}
	if peerCAs != nil {
		cfg.PeerCAs = writeTemp(t, dir, "ca.crt", peerCAs)
	}
	if clientCAs != nil {
		cfg.ClientCAs = writeTemp(t, dir, "clients.crt", clientCAs)
	}
	s, err := NewServer(cfg, "proxy.tls", nil)
	require.NoError(t, err)
	return s
}

// forward makes one request from node from to node to's proxy listener,
// as forwarding does, and returns the client identity to saw.
func forward(t *testing.T, from, to *Server) (string, error) {
	t.Helper()
	return get(from.PeerClientConfig(), serveHTTPS(t, to.Config()))
}

// TestPeerCAsAcceptMembersWithDifferentCertificates: two members whose
// tls.crt hold different leaves of one private CA (a renewal reaching the
// pods one after the other) cannot forward to each other in either
// direction — unless proxy.tls.peer_cas names the CA, with or without
// client_cas.
func TestPeerCAsAcceptMembersWithDifferentCertificates(t *testing.T) {
	ca := newCA(t, "cluster CA")
	clientCAs := newCA(t, "proxy clients CA").pem
	for _, mutual := range []bool{false, true} {
		var clients []byte
		name := "server certificate only"
		if mutual {
			clients, name = clientCAs, "with client_cas"
		}
		t.Run(name, func(t *testing.T) {
			// The identity the receiver reports: "-" when it asks for no
			// client certificate.
			seen := func(cn string) string {
				if mutual {
					return cn
				}
				return "-"
			}

			a, b := member(t, ca, memberLeaf("node-a"), nil, clients), member(t, ca, memberLeaf("node-b"), nil, clients)
			for _, pair := range [][2]*Server{{a, b}, {b, a}} {
				_, err := forward(t, pair[0], pair[1])
				require.ErrorContains(t, err, "peer certificate refused: x509: certificate signed by unknown authority",
					"without peer_cas the dialler cannot verify a leaf it does not hold")
			}

			a, b = member(t, ca, memberLeaf("node-a"), ca.pem, clients), member(t, ca, memberLeaf("node-b"), ca.pem, clients)
			got, err := forward(t, a, b)
			require.NoError(t, err, "a to b")
			require.Equal(t, seen("node-a"), got)
			got, err = forward(t, b, a)
			require.NoError(t, err, "b to a")
			require.Equal(t, seen("node-b"), got)

			if !mutual {
				return
			}
			// The receiver needs peer_cas too: c trusts b's certificate,
			// but b, without peer_cas, refuses c's client certificate.
			bWithout := member(t, ca, memberLeaf("node-b"), nil, clients)
			c := member(t, ca, memberLeaf("node-c"), ca.pem, clients)
			_, err = forward(t, c, bWithout)
			require.Error(t, err, "the receiver refuses the dialler's certificate")
			require.NotContains(t, err.Error(), "peer certificate refused", "the dialler itself accepted the receiver")
		})
	}
}

// TestPeerCAsKeepTheIdentityRule: peer_cas adds trust in a CA for
// certificates that name one of this node's DNS names, no more; another
// CA's certificate is refused whatever it names.
func TestPeerCAsKeepTheIdentityRule(t *testing.T) {
	ca, stranger := newCA(t, "cluster CA"), newCA(t, "stranger CA")
	clients := newCA(t, "proxy clients CA").pem
	for _, mutual := range []bool{false, true} {
		var clientCAs []byte
		if mutual {
			clientCAs = clients
		}
		a := member(t, ca, memberLeaf("node-a"), ca.pem, clientCAs)
		for name, peer := range map[string]*Server{
			"another CA, same name": member(t, stranger, memberLeaf("intruder"), ca.pem, clientCAs),
			"same CA, another name": member(t, ca, memberLeaf("other-service", "other.ns.svc"), ca.pem, clientCAs),
		} {
			_, err := forward(t, a, peer)
			require.ErrorContains(t, err, "peer certificate refused", "%s (client_cas %v): a refuses its server certificate", name, mutual)
			if mutual {
				// The intruder presents its certificate and accepts any
				// server: only a's refusal counts.
				cfg := peer.PeerClientConfig()
				cfg.VerifyConnection = nil
				_, err = get(cfg, serveHTTPS(t, a.Config()))
				require.Error(t, err, "%s: a refuses its client certificate", name)
			}
		}
	}

	// A peer CA is trusted for members' certificates only: a client
	// certificate it issued, naming nothing, does not pass as a member
	// (nor as a client: client_cas is another CA).
	a := member(t, ca, memberLeaf("node-a"), ca.pem, clients)
	certPEM, keyPEM := ca.issue(t, clientLeaf("client-of-the-member-ca"))
	dir := t.TempDir()
	client, err := NewClient(config.ClientTLS{InsecureSkipVerify: true, Cert: writeTemp(t, dir, "c.crt", certPEM), Key: writeTemp(t, dir, "c.key", keyPEM)}, "connect.tls", nil)
	require.NoError(t, err)
	_, err = get(client, serveHTTPS(t, a.Config()))
	require.Error(t, err)
}

// TestPeerCAsDuringARenewal follows cert-manager renewing the Secret every
// member mounts: member b has the new leaf while member a still serves the
// old one. tls.crt holds the leaf only, ca.crt the CA.
func TestPeerCAsDuringARenewal(t *testing.T) {
	ca := newCA(t, "cluster CA")
	clientCAs := newCA(t, "proxy clients CA").pem
	cert1, key1 := ca.issue(t, memberLeaf("generation-1"))
	secret := map[string][]byte{"tls.crt": cert1, "tls.key": key1, "ca.crt": ca.pem, "clients.crt": clientCAs}

	for _, withPeerCAs := range []bool{false, true} {
		mountA, mountB := newSecretMount(t, secret), newSecretMount(t, secret)
		start := func(m *secretMount) *Server {
			cfg := config.TLS{Cert: m.path("tls.crt"), Key: m.path("tls.key"), ClientCAs: m.path("clients.crt")}
			if withPeerCAs {
				cfg.PeerCAs = m.path("ca.crt")
			}
			s, err := NewServer(cfg, "proxy.tls", nil, WithReloadInterval(fastReload))
			require.NoError(t, err)
			return s
		}
		a, b := start(mountA), start(mountB)
		addrA, addrB := serveHTTPS(t, a.Config()), serveHTTPS(t, b.Config())
		for _, hop := range []struct {
			from *Server
			to   string
		}{{a, addrB}, {b, addrA}} {
			_, err := get(hop.from.PeerClientConfig(), hop.to)
			require.NoError(t, err, "the same certificate everywhere")
		}

		cert2, key2 := ca.issue(t, memberLeaf("generation-2"))
		mountB.update(map[string][]byte{"tls.crt": cert2, "tls.key": key2, "ca.crt": ca.pem, "clients.crt": clientCAs})
		require.Eventually(t, func() bool { return servedName(t, addrB) == "generation-2" }, 10*time.Second, 10*time.Millisecond)

		bodyAB, errAB := get(a.PeerClientConfig(), addrB)
		bodyBA, errBA := get(b.PeerClientConfig(), addrA)
		if !withPeerCAs {
			require.ErrorContains(t, errAB, "certificate signed by unknown authority", "a does not know b's new leaf")
			require.ErrorContains(t, errBA, "certificate signed by unknown authority", "b does not know a's old leaf")
			continue
		}
		require.NoError(t, errAB, "a to b during the renewal")
		require.Equal(t, "generation-1", bodyAB)
		require.NoError(t, errBA, "b to a during the renewal")
		require.Equal(t, "generation-2", bodyBA)
	}
}

// TestPeerCAsReload: a changed peer_cas file is used by new handshakes,
// like the other TLS files.
func TestPeerCAsReload(t *testing.T) {
	ca, otherCA := newCA(t, "cluster CA"), newCA(t, "previous CA")
	certA, keyA := ca.issue(t, memberLeaf("node-a"))
	mount := newSecretMount(t, map[string][]byte{"tls.crt": certA, "tls.key": keyA, "ca.crt": otherCA.pem})
	a, err := NewServer(config.TLS{Cert: mount.path("tls.crt"), Key: mount.path("tls.key"), PeerCAs: mount.path("ca.crt")}, "proxy.tls", nil, WithReloadInterval(fastReload))
	require.NoError(t, err)
	addrB := serveHTTPS(t, member(t, ca, memberLeaf("node-b"), ca.pem, nil).Config())
	_, err = get(a.PeerClientConfig(), addrB)
	require.ErrorContains(t, err, "certificate signed by unknown authority")

	mount.update(map[string][]byte{"tls.crt": certA, "tls.key": keyA, "ca.crt": append(otherCA.pem, ca.pem...)})
	require.Eventually(t, func() bool {
		_, err := get(a.PeerClientConfig(), addrB)
		return err == nil
	}, 10*time.Second, 10*time.Millisecond)

	// A broken update keeps the previous CAs.
	mount.update(map[string][]byte{"tls.crt": certA, "tls.key": keyA, "ca.crt": []byte("not PEM")})
	require.Never(t, func() bool {
		_, err := get(a.PeerClientConfig(), addrB)
		return err != nil
	}, 200*time.Millisecond, 20*time.Millisecond)
}

func TestPeerCAsErrorsNameTheKey(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, "CA")
	certPEM, keyPEM := ca.issue(t, memberLeaf("node"))
	cert, key := writeTemp(t, dir, "tls.crt", certPEM), writeTemp(t, dir, "tls.key", keyPEM)
	const fix = "set it to a PEM file of the CA certificate(s) that issue the members' certificates"
	for _, tc := range []struct {
		name    string
		section string
		cfg     config.TLS
		want    []string
	}{
		{"missing file", "proxy.tls", config.TLS{Cert: cert, Key: key, PeerCAs: filepath.Join(dir, "missing.crt")},
			[]string{"proxy.tls.peer_cas (--proxy.tls.peer-cas): open " + filepath.Join(dir, "missing.crt") + ": no such file or directory", fix, "proxy.tls.peerCAs=false"}},
		{"not PEM", "proxy.tls", config.TLS{Cert: cert, Key: key, PeerCAs: writeTemp(t, dir, "garbage", []byte("not PEM"))},
			[]string{"proxy.tls.peer_cas (--proxy.tls.peer-cas): no PEM certificates found", fix}},
		{"a key, no certificate", "proxy.tls", config.TLS{Cert: cert, Key: key, PeerCAs: key},
			[]string{"proxy.tls.peer_cas (--proxy.tls.peer-cas): no PEM certificates found"}},
		{"a broken certificate", "proxy.tls", config.TLS{Cert: cert, Key: key, PeerCAs: writeTemp(t, dir, "broken.crt", append(ca.pem, pemBlock("CERTIFICATE", []byte("junk"))...))},
			[]string{"proxy.tls.peer_cas (--proxy.tls.peer-cas): certificate 2: x509: malformed certificate"}},
	} {
		_, err := NewServer(tc.cfg, tc.section, nil)
		for _, want := range tc.want {
			require.ErrorContains(t, err, want, tc.name)
		}
	}
}

// TestPeerCAsWarnings: a peer_cas that cannot recognise any member is
// logged at start (it is not an error: members sharing one certificate
// still work).
func TestPeerCAsWarnings(t *testing.T) {
	ca, other := newCA(t, "cluster CA"), newCA(t, "other CA")
	for _, tc := range []struct {
		name    string
		leaf    leaf
		peerCAs []byte
		want    string
	}{
		{"fits", memberLeaf("node"), ca.pem, ""},
		{"another CA", memberLeaf("node"), other.pem, "this node's own certificate does not chain to any of these CAs"},
		{"no DNS name", leaf{cn: "ip-only", ips: []net.IP{net.IPv4(127, 0, 0, 1)}, usage: memberLeaf("").usage}, ca.pem, "this node's certificate names no DNS name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			certPEM, keyPEM := ca.issue(t, tc.leaf)
			var logs bytes.Buffer
			_, err := NewServer(config.TLS{Cert: writeTemp(t, dir, "tls.crt", certPEM), Key: writeTemp(t, dir, "tls.key", keyPEM), PeerCAs: writeTemp(t, dir, "ca.crt", tc.peerCAs)},
				"proxy.tls", slog.New(slog.NewTextHandler(&logs, nil)))
			require.NoError(t, err)
			if tc.want == "" {
				require.NotContains(t, logs.String(), "peer_cas")
				return
			}
			require.Contains(t, logs.String(), "proxy.tls.peer_cas (--proxy.tls.peer-cas) will not help")
			require.Contains(t, logs.String(), tc.want)
			require.Equal(t, 1, strings.Count(logs.String(), "\n"), "one warning")
		})
	}
}
