package httpwire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httputil"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/require"
)

// writeRecorder records every Write separately.
type writeRecorder struct{ writes []string }

func (w *writeRecorder) Write(p []byte) (int, error) {
	w.writes = append(w.writes, string(p))
	return len(p), nil
}

func TestWriteBodyMakesOneWritePerRead(t *testing.T) {
	var w writeRecorder
	src := iotest.OneByteReader(strings.NewReader("abc"))
	require.NoError(t, WriteBody(&w, src, false, nil))
	require.Equal(t, []string{"a", "b", "c"}, w.writes)
}

func TestWriteBodyChunkedWithTrailers(t *testing.T) {
	var w writeRecorder
	trailer := http.Header{}
	src := &fillOnEOF{r: iotest.HalfReader(strings.NewReader("hello world")), fill: func() { trailer.Set("X-Sum", "42") }}
	require.NoError(t, WriteBody(&w, src, true, trailer))
	for _, frame := range w.writes[:len(w.writes)-1] {
		require.True(t, strings.HasSuffix(frame, "\r\n"), "every data write is a whole chunk: %q", frame)
	}
	// The whole thing decodes as the body plus the trailer.
	raw := "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n" + strings.Join(w.writes, "")
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(raw)), nil)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, "hello world", string(body))
	require.Equal(t, "42", resp.Trailer.Get("X-Sum"))
}

func TestWriteBodyChunkedDecodesWithTheStandardReader(t *testing.T) {
	var buf bytes.Buffer
	payload := strings.Repeat("0123456789", 10_000) // several buffers
	require.NoError(t, WriteBody(&buf, strings.NewReader(payload), true, nil))
	got, err := io.ReadAll(httputil.NewChunkedReader(&buf))
	require.NoError(t, err)
	require.Equal(t, payload, string(got))
}

func TestWriteBodyTellsReadFromWriteFailures(t *testing.T) {
	broken := errors.New("client went away")
	err := WriteBody(io.Discard, iotest.ErrReader(broken), false, nil)
	var readErr *ReadError
	require.ErrorAs(t, err, &readErr)
	require.ErrorIs(t, err, broken)

	err = WriteBody(failingWriter{}, strings.NewReader("x"), false, nil)
	require.ErrorIs(t, err, io.ErrClosedPipe)
	require.False(t, errors.As(err, &readErr), "a write failure is not a read failure")
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }

// fillOnEOF calls fill when r is exhausted, as net/http fills a request's
// trailer at the end of its body.
type fillOnEOF struct {
	r    io.Reader
	fill func()
}

func (f *fillOnEOF) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		f.fill()
	}
	return n, err
}
