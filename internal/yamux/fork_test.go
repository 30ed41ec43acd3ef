package yamux

// Tests of what Pico's fork changes (see doc.go); upstream's behaviour
// is covered by upstream's tests in the other files.

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// frameLog records every write made to a connection, split into the
// frames it carries (headers only; bodies are skipped).
type frameLog struct {
	io.ReadWriteCloser
	mu     sync.Mutex
	writes [][]header
}

func (f *frameLog) Write(p []byte) (int, error) {
	var frames []header
	for rest := p; len(rest) >= headerSize; {
		hdr := header(bytes.Clone(rest[:headerSize]))
		frames = append(frames, hdr)
		n := headerSize
		if hdr.MsgType() == typeData {
			n += int(hdr.Length())
		}
		if n > len(rest) {
			break
		}
		rest = rest[n:]
	}
	f.mu.Lock()
	f.writes = append(f.writes, frames)
	f.mu.Unlock()
	return f.ReadWriteCloser.Write(p)
}

// take returns the writes recorded since the last take.
func (f *frameLog) take() [][]header {
	f.mu.Lock()
	defer f.mu.Unlock()
	w := f.writes
	f.writes = nil
	return w
}

func forkPair(t *testing.T) (client, server *Session, clientLog, serverLog *frameLog) {
	t.Helper()
	c, s := testConnPipe(t)
	clientLog, serverLog = &frameLog{ReadWriteCloser: c}, &frameLog{ReadWriteCloser: s}
	conf := testConfNoKeepAlive()
	conf.LazyControlFrames = true
	client, server = testClientServerConfig(t, clientLog, serverLog, conf, conf.Clone())
	return client, server, clientLog, serverLog
}

func describe(writes [][]header) []string {
	var out []string
	for _, w := range writes {
		s := ""
		for _, h := range w {
			s += h.String() + ";"
		}
		out = append(out, s)
	}
	return out
}

// A proxied request's exchange: the opener writes once (SYN with the
// request), the acceptor writes once (ACK, response, FIN), and the
// opener's closing FIN waits for the session's next frame.
func TestAnExchangeIsOneWriteEachWay(t *testing.T) {
	client, server, clientLog, serverLog := forkPair(t)

	stream, err := client.OpenStreamDeferred()
	require.NoError(t, err)
	require.Empty(t, clientLog.take(), "a deferred stream sends nothing before its first write")

	_, err = stream.Write([]byte("request"))
	require.NoError(t, err)
	writes := clientLog.take()
	require.Len(t, writes, 1, describe(writes))
	require.Len(t, writes[0], 1)
	require.Equal(t, typeData, writes[0][0].MsgType())
	require.Equal(t, flagSYN, writes[0][0].Flags())

	accepted, err := server.AcceptStream()
	require.NoError(t, err)
	buf := make([]byte, 7)
	_, err = io.ReadFull(accepted, buf)
	require.NoError(t, err)
	require.Equal(t, "request", string(buf))

	_, err = accepted.WriteClose([]byte("response"))
	require.NoError(t, err)
	writes = serverLog.take()
	require.Len(t, writes, 1, "ACK, data and FIN in one write: %v", describe(writes))
	frames := writes[0]
	require.Len(t, frames, 3, describe(writes))
	require.Equal(t, flagACK, frames[0].Flags(), "the lazy ACK goes first")
	require.Equal(t, typeData, frames[1].MsgType())
	require.Equal(t, uint16(0), frames[1].Flags())
	require.Equal(t, typeWindowUpdate, frames[2].MsgType())
	require.Equal(t, flagFIN, frames[2].Flags())

	got, err := io.ReadAll(stream)
	require.NoError(t, err)
	require.Equal(t, "response", string(got))

	// Closing the opener completes the stream: its FIN is lazy.
	require.NoError(t, stream.Close())
	require.Empty(t, clientLog.take())
	require.Eventually(t, func() bool { return server.NumStreams() == 0 }, time.Second, time.Millisecond,
		"the lazy FIN is sent within lazyDelay when nothing else is")
	writes = clientLog.take()
	require.Len(t, writes, 1)
	require.Equal(t, flagFIN, writes[0][0].Flags())
}

// A lazy frame goes out in the next write of the session, before that
// write's own frames.
func TestLazyFramesGoWithTheNextFrame(t *testing.T) {
	client, server, clientLog, _ := forkPair(t)

	first, err := client.OpenStream()
	require.NoError(t, err)
	_, err = first.Write([]byte("x"))
	require.NoError(t, err)
	accepted, err := server.AcceptStream()
	require.NoError(t, err)
	require.NoError(t, accepted.Close())
	require.Eventually(t, func() bool {
		_, err := first.Read(make([]byte, 1))
		return err == io.EOF
	}, time.Second, time.Millisecond)
	clientLog.take()

	require.NoError(t, first.Close()) // lazy FIN
	second, err := client.OpenStreamDeferred()
	require.NoError(t, err)
	_, err = second.Write([]byte("y"))
	require.NoError(t, err)

	writes := clientLog.take()
	require.Len(t, writes, 1, describe(writes))
	require.Len(t, writes[0], 2, describe(writes))
	require.Equal(t, first.StreamID(), writes[0][0].StreamID())
	require.Equal(t, flagFIN, writes[0][0].Flags())
	require.Equal(t, second.StreamID(), writes[0][1].StreamID())
	require.Equal(t, flagSYN, writes[0][1].Flags())
}

// A deferred stream closed before it wrote announces itself with its
// FIN; the peer sees an empty stream.
func TestDeferredStreamClosedUnwritten(t *testing.T) {
	client, server, clientLog, _ := forkPair(t)
	stream, err := client.OpenStreamDeferred()
	require.NoError(t, err)
	require.NoError(t, stream.Close())
	writes := clientLog.take()
	require.Len(t, writes, 1)
	require.Equal(t, flagSYN|flagFIN, writes[0][0].Flags())

	accepted, err := server.AcceptStream()
	require.NoError(t, err)
	got, err := io.ReadAll(accepted)
	require.NoError(t, err)
	require.Empty(t, got)
}

// Frames sent while a write is in progress go out together in the next
// write, in the order they were sent.
func TestFramesSentDuringAWriteGoInOneWrite(t *testing.T) {
	client, server, clientLog, _ := forkPair(t)
	const streams = 8
	var opened []*Stream
	for i := 0; i < streams; i++ {
		s, err := client.OpenStreamDeferred()
		require.NoError(t, err)
		opened = append(opened, s)
	}
	pipe := clientLog.ReadWriteCloser.(*pipeConn)
	pipe.writeBlocker.Lock()
	firstDone := make(chan error, 1)
	go func() { _, err := opened[0].Write([]byte("first")); firstDone <- err }()
	// The first write is now blocked in the connection; the others queue.
	require.Eventually(t, func() bool {
		clientLog.mu.Lock()
		defer clientLog.mu.Unlock()
		return len(clientLog.writes) == 1
	}, time.Second, time.Millisecond)
	for i := 1; i < streams; i++ {
		_, err := opened[i].Write([]byte{byte('0' + i)})
		require.NoError(t, err, "a frame queued behind a write returns at once")
	}
	pipe.writeBlocker.Unlock()
	require.NoError(t, <-firstDone)

	for i := 0; i < streams; i++ {
		accepted, err := server.AcceptStream()
		require.NoError(t, err)
		require.Equal(t, opened[i].StreamID(), accepted.StreamID(), "streams arrive in the order they were sent")
	}
	writes := clientLog.take()
	require.Len(t, writes, 2, describe(writes))
	require.Len(t, writes[1], streams-1)
}

// A write the connection does not take for ConnectionWriteTimeout ends
// the session, and the blocked writer returns.
func TestAStuckWriteEndsTheSession(t *testing.T) {
	client, _, clientLog, _ := forkPair(t)
	stream, err := client.OpenStream()
	require.NoError(t, err)
	clientLog.ReadWriteCloser.(*pipeConn).writeBlocker.Lock()
	done := make(chan error, 1)
	go func() { _, err := stream.Write([]byte("stuck")); done <- err }()
	select {
	case err := <-done:
		require.True(t, errors.Is(err, ErrConnectionWriteTimeout), "err: %v", err)
	case <-time.After(10 * client.config.ConnectionWriteTimeout):
		t.Fatal("the stuck write never returned")
	}
	require.True(t, client.IsClosed())
}

// Close sends what is queued behind a write in progress: a Write that
// returned is not lost.
func TestCloseSendsWhatIsQueued(t *testing.T) {
	client, server, clientLog, _ := forkPair(t)
	a, err := client.OpenStream()
	require.NoError(t, err)
	b, err := client.OpenStream()
	require.NoError(t, err)
	sa, err := server.AcceptStream()
	require.NoError(t, err)
	sb, err := server.AcceptStream()
	require.NoError(t, err)

	pipe := clientLog.ReadWriteCloser.(*pipeConn)
	clientLog.take()
	pipe.writeBlocker.Lock()
	go func() { _, _ = a.Write([]byte("a")) }()
	require.Eventually(t, func() bool {
		clientLog.mu.Lock()
		defer clientLog.mu.Unlock()
		return len(clientLog.writes) > 0
	}, time.Second, time.Millisecond)
	_, err = b.Write([]byte("queued"))
	require.NoError(t, err)
	closed := make(chan struct{})
	go func() { _ = client.Close(); close(closed) }()
	time.Sleep(10 * time.Millisecond)
	pipe.writeBlocker.Unlock()
	<-closed

	got := make([]byte, 6)
	_, err = io.ReadFull(sb, got)
	require.NoError(t, err)
	require.Equal(t, "queued", string(got))
	_, err = io.ReadFull(sa, got[:1])
	require.NoError(t, err)
}

// An idle session runs one goroutine (its receive loop), keepalive
// included; upstream ran three.
func TestAnIdleSessionRunsOneGoroutine(t *testing.T) {
	before := runtime.NumGoroutine()
	const pairs = 20
	for i := 0; i < pairs; i++ {
		c, s := testConnPipe(t)
		conf := testConf()
		testClientServerConfig(t, c, s, conf, conf.Clone())
	}
	// Over three keepalive intervals (a ping runs in a goroutine of its
	// own while it waits for its answer), the fewest goroutines seen.
	fewest := runtime.NumGoroutine()
	for end := time.Now().Add(3 * testConf().KeepAliveInterval); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		fewest = min(fewest, runtime.NumGoroutine())
	}
	require.LessOrEqual(t, fewest-before, 2*pairs+2)
}

// A session with RefuseStreams resets the peer's streams as they open
// and keeps nothing of them.
func TestRefuseStreamsResetsThePeersStreams(t *testing.T) {
	c, s := testConnPipe(t)
	serverConf := testConfNoKeepAlive()
	serverConf.RefuseStreams = true
	client, server := testClientServerConfig(t, c, s, testConfNoKeepAlive(), serverConf)

	stream, err := client.OpenStream()
	require.NoError(t, err)
	_, err = stream.Write(bytes.Repeat([]byte("x"), 64<<10))
	if err == nil {
		_, err = stream.Read(make([]byte, 1))
	}
	require.ErrorIs(t, err, ErrConnectionReset)
	require.Equal(t, 0, server.NumStreams())
	require.Nil(t, server.acceptCh)

	// The session still opens streams of its own.
	mine, err := server.OpenStream()
	require.NoError(t, err)
	_, err = mine.Write([]byte("ok"))
	require.NoError(t, err)
	accepted, err := client.AcceptStream()
	require.NoError(t, err)
	got := make([]byte, 2)
	_, err = io.ReadFull(accepted, got)
	require.NoError(t, err)
	require.Equal(t, "ok", string(got))
}
