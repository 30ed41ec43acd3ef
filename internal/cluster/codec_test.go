package cluster

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// encode encodes any message decodeMessage returns.
func encode(t *testing.T, msg any) []byte {
	t.Helper()
	switch m := msg.(type) {
	case deltaMsg:
		return encodeDelta(m)
	case announceMsg:
		return encodeAnnounce(m)
	case pullMsg:
		return encodePull(m)
	case []nodeState:
		return encodeStates(m)
	}
	t.Fatalf("unexpected message %T", msg)
	return nil
}

func TestMessagesRoundTrip(t *testing.T) {
	for _, msg := range []any{
		deltaMsg{Node: "n1", From: 3, To: 4, Leaving: true, Changes: map[string]int{"a": 0, "b": 7}},
		deltaMsg{Node: "n1", From: 0, To: 1, Changes: map[string]int{}},
		announceMsg{Node: "n-2", Version: 1 << 40},
		pullMsg{Node: "x.y_z"},
		[]nodeState{{Node: "a", Version: 9, Endpoints: map[string]int{"e": 1}}, {Node: "b", Version: 1, Leaving: true, Endpoints: map[string]int{}}},
		[]nodeState{},
	} {
		got, err := decodeMessage(encode(t, msg))
		require.NoError(t, err)
		require.Equal(t, msg, got)
	}
}

func TestMetaRoundTripAndLimits(t *testing.T) {
	m := nodeMeta{StateVersion: 12, Secret: bytes.Repeat([]byte{7}, secretSize), ProxyAddr: "10.0.0.1:8000", AdminAddr: "10.0.0.1:8002", UpstreamAddr: "10.0.0.1:8001"}
	got, err := decodeMeta(encodeMeta(m))
	require.NoError(t, err)
	require.Equal(t, m, got)

	_, err = decodeMeta(encodeMeta(nodeMeta{Secret: []byte("short")}))
	require.ErrorContains(t, err, "secret")
	_, err = decodeMeta(append([]byte{99}, encodeMeta(m)[1:]...))
	require.ErrorContains(t, err, "format 99")
	_, err = decodeMeta(append(encodeMeta(m), 0))
	require.ErrorContains(t, err, "trailing")

	// The largest metadata New accepts fits memberlist's 512 bytes.
	long := strings.Repeat("a", maxAddrLength)
	require.LessOrEqual(t, len(encodeMeta(nodeMeta{StateVersion: ^uint64(0), Secret: m.Secret, ProxyAddr: long, AdminAddr: long, UpstreamAddr: long})), 512)
}

func TestMalformedMessagesAreRejected(t *testing.T) {
	valid := encodeDelta(deltaMsg{Node: "n", From: 1, To: 2, Changes: map[string]int{"e": 1}})
	for name, b := range map[string][]byte{
		"empty":            {},
		"unknown type":     {99, 1, 2},
		"truncated":        valid[:len(valid)-1],
		"trailing":         append(append([]byte{}, valid...), 0),
		"backwards delta":  encodeDelta(deltaMsg{Node: "n", From: 2, To: 2}),
		"bad node id":      encodePull(pullMsg{Node: "a b"}),
		"empty node id":    encodePull(pullMsg{Node: ""}),
		"zero in a state":  encodeStates([]nodeState{{Node: "n", Version: 1, Endpoints: map[string]int{"e": 0}}}),
		"huge count":       {msgStates, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"bad boolean":      {msgDelta, 1, 'n', 1, 2, 5, 0},
		"oversized string": {msgPull, 0xff, 0x01, 'a'},
	} {
		_, err := decodeMessage(b)
		require.Error(t, err, name)
	}
}

func FuzzDecodeMessage(f *testing.F) {
	f.Add(encodeDelta(deltaMsg{Node: "n1", From: 3, To: 4, Changes: map[string]int{"a": 0, "b": 7}}))
	f.Add(encodeAnnounce(announceMsg{Node: "n", Version: 5}))
	f.Add(encodePull(pullMsg{Node: "n"}))
	f.Add(encodeStates([]nodeState{{Node: "a", Version: 9, Leaving: true, Endpoints: map[string]int{"e": 1}}}))
	f.Add([]byte{msgStates, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		msg, err := decodeMessage(b)
		if err != nil {
			return
		}
		// What decodes re-encodes to something that decodes the same.
		msg2, err := decodeMessage(encode(t, msg))
		require.NoError(t, err)
		require.Equal(t, msg, msg2)
	})
}

func FuzzDecodeMeta(f *testing.F) {
	f.Add(encodeMeta(nodeMeta{StateVersion: 1, Secret: make([]byte, secretSize), ProxyAddr: "1.2.3.4:8000"}))
	f.Add([]byte{metaFormat})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMeta(b)
		if err != nil {
			return
		}
		require.Len(t, m.Secret, secretSize)
		m2, err := decodeMeta(encodeMeta(m))
		require.NoError(t, err)
		require.Equal(t, m, m2)
	})
}

func TestMemberlistLogsBecomeDebugRecords(t *testing.T) {
	var buf bytes.Buffer
	w := &memberlistLogWriter{log: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	_, err := w.Write([]byte("[WARN] memberlist: Refuting a suspect message (from: x)\n"))
	require.NoError(t, err)
	require.Contains(t, buf.String(), `level=DEBUG msg="memberlist: Refuting a suspect message (from: x)" memberlist_level=WARN`)

	buf.Reset()
	quiet := &memberlistLogWriter{log: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	_, err = quiet.Write([]byte("[DEBUG] memberlist: noise\n"))
	require.NoError(t, err)
	require.Empty(t, buf.String())
}
