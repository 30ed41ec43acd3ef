package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/pico-proxy/pico/internal/config"
)

// Wire format of Pico's gossip payloads. Everything a node tells others
// beyond memberlist's own membership travels in two places:
//
//   - node metadata (memberlist's 512-byte per-node field, gossiped with
//     every alive message): the node's addresses, its forwarding secret and
//     the version of its routing state;
//   - user messages (broadcasts, direct packets, TCP messages and push/pull
//     state): the routing state itself, as deltas between versions or as
//     full snapshots.
//
// Integers are unsigned varints, strings are a varint length followed by
// the bytes. Every message starts with a type byte; unknown types are
// ignored so that a newer node can add messages.

// Message types.
const (
	msgDelta    byte = 1 // deltaMsg
	msgAnnounce byte = 2 // announceMsg: "my state is now at version V" (delta too big)
	msgPull     byte = 3 // pullMsg: "send me your full state"
	msgStates   byte = 4 // []nodeState: full snapshots
)

// metaFormat is the first byte of node metadata.
const metaFormat byte = 1

// secretSize is the size of a node's forwarding secret.
const secretSize = 32

// Decoder limits; they keep a malformed message from allocating much.
const (
	maxEndpointLength = 255
	maxAddrLength     = 128
	maxCount          = math.MaxInt32
)

// nodeMeta is the small per-node metadata published through memberlist.
type nodeMeta struct {
	StateVersion uint64
	Secret       []byte
	ProxyAddr    string
	AdminAddr    string
	UpstreamAddr string
}

// nodeState is a full snapshot of one node's routing state.
type nodeState struct {
	Node      string
	Version   uint64
	Leaving   bool
	Endpoints map[string]int
}

// deltaMsg turns a node's state at version From into version To.
// Changes maps an endpoint to its new upstream count; 0 removes it.
type deltaMsg struct {
	Node    string
	From    uint64
	To      uint64
	Leaving bool
	Changes map[string]int
}

// announceMsg says a node's state reached Version; receivers that are
// behind pull the full state.
type announceMsg struct {
	Node    string
	Version uint64
}

// pullMsg asks the receiver for its full state; Node is the requester.
type pullMsg struct {
	Node string
}

func encodeMeta(m nodeMeta) []byte {
	b := []byte{metaFormat}
	b = binary.AppendUvarint(b, m.StateVersion)
	b = appendBytes(b, m.Secret)
	b = appendString(b, m.ProxyAddr)
	b = appendString(b, m.AdminAddr)
	b = appendString(b, m.UpstreamAddr)
	return b
}

func decodeMeta(b []byte) (nodeMeta, error) {
	var m nodeMeta
	r := reader{b: b}
	if f := r.byte(); r.err == nil && f != metaFormat {
		return m, fmt.Errorf("node metadata format %d is not supported", f)
	}
	m.StateVersion = r.uvarint()
	m.Secret = r.bytes(secretSize)
	m.ProxyAddr = r.string(maxAddrLength)
	m.AdminAddr = r.string(maxAddrLength)
	m.UpstreamAddr = r.string(maxAddrLength)
	if err := r.done(); err != nil {
		return nodeMeta{}, fmt.Errorf("node metadata: %w", err)
	}
	if len(m.Secret) != secretSize {
		return nodeMeta{}, fmt.Errorf("node metadata: secret is %d bytes, want %d", len(m.Secret), secretSize)
	}
	return m, nil
}

func encodeDelta(d deltaMsg) []byte {
	b := []byte{msgDelta}
	b = appendString(b, d.Node)
	b = binary.AppendUvarint(b, d.From)
	b = binary.AppendUvarint(b, d.To)
	b = appendBool(b, d.Leaving)
	return appendCounts(b, d.Changes)
}

func encodeAnnounce(a announceMsg) []byte {
	b := []byte{msgAnnounce}
	b = appendString(b, a.Node)
	return binary.AppendUvarint(b, a.Version)
}

func encodePull(p pullMsg) []byte {
	return appendString([]byte{msgPull}, p.Node)
}

func encodeStates(states []nodeState) []byte {
	b := []byte{msgStates}
	b = binary.AppendUvarint(b, uint64(len(states)))
	for _, s := range states {
		b = appendString(b, s.Node)
		b = binary.AppendUvarint(b, s.Version)
		b = appendBool(b, s.Leaving)
		b = appendCounts(b, s.Endpoints)
	}
	return b
}

// decodeMessage decodes one user message into a deltaMsg, announceMsg,
// pullMsg or []nodeState.
func decodeMessage(b []byte) (any, error) {
	r := reader{b: b}
	typ := r.byte()
	if r.err != nil {
		return nil, errors.New("empty message")
	}
	var msg any
	switch typ {
	case msgDelta:
		d := deltaMsg{Node: r.nodeID()}
		d.From = r.uvarint()
		d.To = r.uvarint()
		d.Leaving = r.bool()
		d.Changes = r.counts(true)
		if r.err == nil && d.To <= d.From {
			r.err = fmt.Errorf("delta goes from version %d to %d", d.From, d.To)
		}
		msg = d
	case msgAnnounce:
		a := announceMsg{Node: r.nodeID()}
		a.Version = r.uvarint()
		msg = a
	case msgPull:
		msg = pullMsg{Node: r.nodeID()}
	case msgStates:
		n := r.count(3)
		states := make([]nodeState, 0, n)
		for i := 0; i < n && r.err == nil; i++ {
			s := nodeState{Node: r.nodeID()}
			s.Version = r.uvarint()
			s.Leaving = r.bool()
			s.Endpoints = r.counts(false)
			states = append(states, s)
		}
		msg = states
	default:
		return nil, fmt.Errorf("unknown message type %d", typ)
	}
	if err := r.done(); err != nil {
		return nil, fmt.Errorf("message type %d: %w", typ, err)
	}
	return msg, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBytes(b []byte, p []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(p)))
	return append(b, p...)
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

func appendCounts(b []byte, counts map[string]int) []byte {
	b = binary.AppendUvarint(b, uint64(len(counts)))
	for ep, n := range counts {
		b = appendString(b, ep)
		b = binary.AppendUvarint(b, uint64(max(n, 0)))
	}
	return b
}

// reader decodes the format above; the first error sticks and later reads
// return zero values.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf(format, args...)
	}
}

func (r *reader) byte() byte {
	if r.err != nil {
		return 0
	}
	if len(r.b) == 0 {
		r.fail("truncated")
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) bool() bool {
	switch c := r.byte(); c {
	case 0:
		return false
	case 1:
		return true
	default:
		r.fail("invalid boolean %d", c)
		return false
	}
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail("truncated or oversized integer")
		return 0
	}
	r.b = r.b[n:]
	return v
}

// count reads a number of items that each take at least minSize bytes, so
// that it cannot exceed what the rest of the message can hold.
func (r *reader) count(minSize int) int {
	n := r.uvarint()
	if r.err == nil && n > uint64(len(r.b)/minSize) {
		r.fail("count %d exceeds the message size", n)
		return 0
	}
	return int(n)
}

func (r *reader) bytes(maxLen int) []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(maxLen) || n > uint64(len(r.b)) {
		r.fail("field of %d bytes is too long or truncated", n)
		return nil
	}
	p := make([]byte, n)
	copy(p, r.b[:n])
	r.b = r.b[n:]
	return p
}

func (r *reader) string(maxLen int) string {
	return string(r.bytes(maxLen))
}

func (r *reader) nodeID() string {
	id := r.string(config.MaxNodeIDLength)
	if r.err == nil {
		if err := config.ValidateNodeID(id); err != nil {
			r.fail("node ID %q: %w", id, err)
		}
	}
	return id
}

// counts reads an endpoint → count map; zero counts are allowed only in
// deltas (where they remove the endpoint).
func (r *reader) counts(allowZero bool) map[string]int {
	n := r.count(2)
	m := make(map[string]int, n)
	for i := 0; i < n && r.err == nil; i++ {
		ep := r.string(maxEndpointLength)
		c := r.uvarint()
		switch {
		case r.err != nil:
		case ep == "":
			r.fail("empty endpoint ID")
		case c > maxCount || c == 0 && !allowZero:
			r.fail("endpoint %q has an invalid upstream count %d", ep, c)
		default:
			if _, dup := m[ep]; dup {
				r.fail("endpoint %q appears twice", ep)
			}
			m[ep] = int(c)
		}
	}
	return m
}

func (r *reader) done() error {
	if r.err == nil && len(r.b) != 0 {
		r.fail("%d unexpected trailing bytes", len(r.b))
	}
	return r.err
}
