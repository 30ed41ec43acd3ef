package httpwire

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"sync"
)

// ReadError is a failure reading the body being sent (the sender's
// source broke), as opposed to a failure writing it.
type ReadError struct{ Err error }

func (e *ReadError) Error() string { return "reading the body: " + e.Err.Error() }
func (e *ReadError) Unwrap() error { return e.Err }

// chunkHeaderRoom is room for a chunk's size line before its data: the
// hex length of a 64-bit size plus CRLF.
const chunkHeaderRoom = 18

var bodyBuffers = sync.Pool{New: func() any {
	b := make([]byte, chunkHeaderRoom+CopyBufferSize+2)
	return &b
}}

// WriteBody copies src to dst as a message body, in chunked transfer
// encoding when chunked is set (ending with trailer, read once src is
// exhausted, so a header map that is filled at the end of src works).
// Every read from src becomes exactly one write to dst, framing
// included, so a body streams and a stream's writes stay whole frames.
//
// A failure reading src is returned as a *ReadError; a failure writing
// dst as is.
func WriteBody(dst io.Writer, src io.Reader, chunked bool, trailer http.Header) error {
	bufp := bodyBuffers.Get().(*[]byte)
	defer bodyBuffers.Put(bufp)
	buf := *bufp
	data := buf[chunkHeaderRoom : len(buf)-2]
	for {
		n, rerr := src.Read(data)
		if n > 0 {
			frame := buf[chunkHeaderRoom : chunkHeaderRoom+n]
			if chunked {
				var size [16]byte
				hdr := append(strconv.AppendInt(size[:0], int64(n), 16), '\r', '\n')
				start := chunkHeaderRoom - len(hdr)
				copy(buf[start:], hdr)
				buf[chunkHeaderRoom+n] = '\r'
				buf[chunkHeaderRoom+n+1] = '\n'
				frame = buf[start : chunkHeaderRoom+n+2]
			}
			if _, err := dst.Write(frame); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			if chunked {
				return writeLastChunk(dst, trailer)
			}
			return nil
		}
		if rerr != nil {
			return &ReadError{Err: rerr}
		}
	}
}

// writeLastChunk ends a chunked body: the zero-size chunk, the trailer
// fields, the final CRLF, in one write.
func writeLastChunk(dst io.Writer, trailer http.Header) error {
	if len(trailer) == 0 {
		_, err := io.WriteString(dst, "0\r\n\r\n")
		return err
	}
	var end bytes.Buffer
	end.WriteString("0\r\n")
	_ = trailer.Write(&end)
	end.WriteString("\r\n")
	_, err := dst.Write(end.Bytes())
	return err
}
