package cluster

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pico-proxy/pico/internal/protocol"
)

// Headers of a request forwarded from one node to another.
const (
	// ForwardedByHeader names the node that forwarded the request.
	ForwardedByHeader = "X-Pico-Forwarded-By"
	// ForwardSignatureHeader proves it: "t=<unix seconds>,v1=<hex
	// HMAC-SHA256>".
	ForwardSignatureHeader = "X-Pico-Forward-Signature"
)

// ForwardWindow is how far a forwarded request's timestamp may be from the
// receiver's clock.
const ForwardWindow = 60 * time.Second

// ErrNotForwarded is returned by VerifyForward for a request that carries
// no forwarding headers at all (an ordinary client request).
var ErrNotForwarded = errors.New("request was not forwarded by a node")

// SignForward marks r, a request this node is about to forward to another
// node, as coming from this node: it sets X-Pico-Forwarded-By to the
// local ID and X-Pico-Forward-Signature to an HMAC-SHA256, keyed by this
// node's secret, over the node ID, the current time, the method, the
// request URI and the endpoint. Call it after r's URL, Host and endpoint
// headers have their final values.
func (c *Cluster) SignForward(r *http.Request) {
	ts := time.Now().Unix()
	host := r.Host
	if host == "" && r.URL != nil {
		host = r.URL.Host
	}
	uri := "/"
	if r.URL != nil {
		uri = r.URL.RequestURI()
	}
	mac := forwardMAC(c.secret, c.id, ts, methodOf(r), uri, endpointOf(r, host))
	r.Header.Set(ForwardedByHeader, c.id)
	r.Header.Set(ForwardSignatureHeader, "t="+strconv.FormatInt(ts, 10)+",v1="+hex.EncodeToString(mac))
}

// VerifyForward checks that r, received on the proxy port, was forwarded
// by a current member of the cluster and not changed on the way: the
// sender must be a live member whose secret (learned through gossip)
// produces the signature over this request, with a timestamp within
// ForwardWindow of this node's clock. It returns the sender's ID, or
// ErrNotForwarded for a request without forwarding headers, or an error
// that says why the claim was rejected (counted in
// pico_cluster_forward_verification_failures_total).
func (c *Cluster) VerifyForward(r *http.Request) (string, error) {
	from := r.Header.Get(ForwardedByHeader)
	sig := r.Header.Get(ForwardSignatureHeader)
	if from == "" && sig == "" {
		return "", ErrNotForwarded
	}
	reject := func(reason string, err error) (string, error) {
		c.metrics.verifyFailures.WithLabelValues(reason).Inc()
		return "", fmt.Errorf("forwarded request from %.64q rejected: %w", from, err)
	}
	if from == "" || sig == "" {
		return reject("malformed", errors.New("both "+ForwardedByHeader+" and "+ForwardSignatureHeader+" are required"))
	}
	ts, mac, err := parseForwardSignature(sig)
	if err != nil {
		return reject("malformed", err)
	}
	if skew := time.Since(time.Unix(ts, 0)); skew > ForwardWindow || skew < -ForwardWindow {
		return reject("stale", fmt.Errorf("timestamp is %s away from this node's clock (allowed: %s)", skew.Round(time.Second), ForwardWindow))
	}
	secret, ok := c.memberSecret(from)
	if !ok {
		return reject("unknown_node", errors.New("sender is not a member of the cluster"))
	}
	uri := r.RequestURI
	if uri == "" && r.URL != nil {
		uri = r.URL.RequestURI()
	}
	want := forwardMAC(secret, from, ts, methodOf(r), uri, endpointOf(r, r.Host))
	if !hmac.Equal(mac, want) {
		return reject("bad_signature", errors.New("signature does not match the request"))
	}
	return from, nil
}

// memberSecret returns the forwarding secret of a live member (or of this
// node).
func (c *Cluster) memberSecret(id string) ([]byte, bool) {
	if id == c.id {
		return c.secret, true
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	p, ok := c.peers[id]
	if !ok || p.member != memberAlive || !p.metaOK {
		return nil, false
	}
	return p.meta.Secret, true
}

func methodOf(r *http.Request) string {
	if r.Method == "" {
		return http.MethodGet
	}
	return r.Method
}

// endpointOf is the endpoint the receiving proxy will route r to (empty
// when r names none, e.g. a TCP tunnel whose endpoint is in the path).
func endpointOf(r *http.Request, host string) string {
	if r.Host == host {
		ep, _ := protocol.EndpointFromRequest(r)
		return ep
	}
	shallow := *r
	shallow.Host = host
	ep, _ := protocol.EndpointFromRequest(&shallow)
	return ep
}

// forwardMAC is HMAC-SHA256(secret, fields), each field length-prefixed so
// that no two different field lists encode alike.
func forwardMAC(secret []byte, nodeID string, ts int64, method, uri, endpoint string) []byte {
	var tsBuf [20]byte
	m := getMAC(secret)
	defer macs.Put(m)
	msg := m.msg[:0]
	for _, f := range [...]string{"pico-forward-v1", nodeID, string(strconv.AppendInt(tsBuf[:0], ts, 10)), method, uri, endpoint} {
		msg = binary.AppendUvarint(msg, uint64(len(f)))
		msg = append(msg, f...)
	}
	m.msg = msg
	m.h.Write(msg)
	return m.h.Sum(nil)
}

// keyedMAC is an HMAC-SHA256 state for one key with a message buffer,
// reused across forwarded requests: hmac.New costs a dozen allocations.
type keyedMAC struct {
	key []byte
	h   hash.Hash
	msg []byte
}

// macs holds keyedMACs for reuse. A node signs with its own key and
// verifies with its few peers' keys, so most reuses find the same key; a
// state built for another key is rebuilt.
var macs sync.Pool

func getMAC(secret []byte) *keyedMAC {
	if m, ok := macs.Get().(*keyedMAC); ok && bytes.Equal(m.key, secret) {
		m.h.Reset()
		return m
	}
	return &keyedMAC{key: bytes.Clone(secret), h: hmac.New(sha256.New, secret)}
}

// parseForwardSignature parses "t=<unix seconds>,v1=<64 hex digits>".
func parseForwardSignature(s string) (int64, []byte, error) {
	tPart, vPart, ok := strings.Cut(s, ",")
	tStr, okT := strings.CutPrefix(strings.TrimSpace(tPart), "t=")
	vStr, okV := strings.CutPrefix(strings.TrimSpace(vPart), "v1=")
	if !ok || !okT || !okV {
		return 0, nil, errors.New(ForwardSignatureHeader + " is not of the form t=<unix seconds>,v1=<hex>")
	}
	ts, err := strconv.ParseInt(tStr, 10, 64)
	if err != nil {
		return 0, nil, fmt.Errorf("%s timestamp %.20q is not a number", ForwardSignatureHeader, tStr)
	}
	mac, err := hex.DecodeString(vStr)
	if err != nil || len(mac) != sha256.Size {
		return 0, nil, errors.New(ForwardSignatureHeader + " signature is not 64 hex digits")
	}
	return ts, mac, nil
}
