package httpwire

import (
	"bufio"
	"io"
	"sync"
)

// CopyBufferSize is the size of the buffers GetBuffer returns.
const CopyBufferSize = 32 << 10

// bufioSize is the size of pooled bufio readers and writers: a request or
// response head and a small body fit in one.
const bufioSize = 4 << 10

var (
	buffers = sync.Pool{New: func() any { return new([CopyBufferSize]byte) }}
	readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, bufioSize) }}
	writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, bufioSize) }}
)

// Buffers recycles the 32 KiB buffers that copy bodies; it satisfies
// httputil.BufferPool.
var Buffers bufferPool

type bufferPool struct{}

// Get returns a buffer of CopyBufferSize bytes.
func (bufferPool) Get() []byte { return buffers.Get().(*[CopyBufferSize]byte)[:] }

// Put returns a buffer that Get returned (pooled as the array it slices,
// so that putting it back allocates nothing).
func (bufferPool) Put(b []byte) {
	if cap(b) == CopyBufferSize {
		buffers.Put((*[CopyBufferSize]byte)(b[:CopyBufferSize]))
	}
}

// GetReader returns a pooled 4 KiB reader reading from r.
func GetReader(r io.Reader) *bufio.Reader {
	br := readers.Get().(*bufio.Reader)
	br.Reset(r)
	return br
}

// PutReader returns br to the pool; it must no longer be used.
func PutReader(br *bufio.Reader) {
	br.Reset(nil)
	readers.Put(br)
}

// GetWriter returns a pooled 4 KiB writer writing to w.
func GetWriter(w io.Writer) *bufio.Writer {
	bw := writers.Get().(*bufio.Writer)
	bw.Reset(w)
	return bw
}

// PutWriter returns bw to the pool; it must no longer be used.
func PutWriter(bw *bufio.Writer) {
	bw.Reset(nil)
	writers.Put(bw)
}
