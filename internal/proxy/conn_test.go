package proxy

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestWriteRequestHead(t *testing.T) {
	for name, tc := range map[string]struct {
		method    string
		body      io.Reader
		length    int64
		ua        []string
		keepAlive bool
		want      []string
		wantNot   []string
	}{
		"get": {method: http.MethodGet, keepAlive: true,
			want:    []string{"GET /p?q=1 HTTP/1.1\r\nHost: ep.example.com\r\n", "X-Test: a\r\n"},
			wantNot: []string{"Content-Length", "Transfer-Encoding", "Connection", "User-Agent"}},
		"post with length": {method: http.MethodPost, body: strings.NewReader("abc"), length: 3,
			want: []string{"Content-Length: 3\r\n", "Connection: close\r\n"}},
		"post chunked": {method: http.MethodPost, body: strings.NewReader("abc"), length: -1, keepAlive: true,
			want: []string{"Transfer-Encoding: chunked\r\n"}, wantNot: []string{"Content-Length"}},
		"empty post":      {method: http.MethodPost, keepAlive: true, want: []string{"Content-Length: 0\r\n"}},
		"user agent kept": {method: http.MethodGet, ua: []string{"curl/8"}, keepAlive: true, want: []string{"User-Agent: curl/8\r\n"}},
	} {
		t.Run(name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, "http://ep.example.com/p?q=1", tc.body)
			require.NoError(t, err)
			req.ContentLength = tc.length
			req.Header.Set("X-Test", "a")
			if tc.ua != nil {
				req.Header["User-Agent"] = tc.ua
			}
			var buf bytes.Buffer
			bw := bufio.NewWriter(&buf)
			writeRequestHead(bw, req, tc.length < 0 && tc.body != nil, !tc.keepAlive)
			require.NoError(t, bw.Flush())
			head := buf.String()
			require.True(t, strings.HasSuffix(head, "\r\n\r\n"), head)
			for _, w := range tc.want {
				require.Contains(t, head, w)
			}
			for _, w := range tc.wantNot {
				require.NotContains(t, head, w)
			}
			// What we write parses as the request we meant.
			parsed, err := http.ReadRequest(bufio.NewReader(strings.NewReader(head)))
			require.NoError(t, err)
			require.Equal(t, tc.method, parsed.Method)
			require.Equal(t, "/p?q=1", parsed.RequestURI)
			require.Equal(t, "ep.example.com", parsed.Host)
		})
	}
}

func TestConnOpenProbe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	accepted := make(chan net.Conn, 3)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	dial := func() (net.Conn, net.Conn) {
		c, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)
		return c, <-accepted
	}

	idle, peer := dial()
	defer idle.Close()
	defer peer.Close()
	require.True(t, connOpen(idle), "an idle connection is reusable")

	closed, peer2 := dial()
	defer closed.Close()
	require.NoError(t, peer2.Close())
	require.Eventually(t, func() bool { return !connOpen(closed) }, 5*time.Second, time.Millisecond, "a connection the peer closed is not")

	chatty, peer3 := dial()
	defer chatty.Close()
	defer peer3.Close()
	_, err = peer3.Write([]byte("unasked"))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return !connOpen(chatty) }, 5*time.Second, time.Millisecond, "nor one with unasked data")
	// The probe only peeks.
	buf := make([]byte, 7)
	_, err = io.ReadFull(chatty, buf)
	require.NoError(t, err)
	require.Equal(t, "unasked", string(buf))
}

func TestNodePoolReusesOpenConnections(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	peers := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			peers <- c
		}
	}()
	np := newNodePool(nil)
	addr := ln.Addr().String()
	c1, reused, err := np.get(context.Background(), addr)
	require.NoError(t, err)
	require.False(t, reused)
	p1 := <-peers
	np.put(addr, c1)
	c2, reused, err := np.get(context.Background(), addr)
	require.NoError(t, err)
	require.True(t, reused)
	require.Same(t, c1, c2)

	np.put(addr, c2)
	require.NoError(t, p1.Close())
	// Probed once it idled past probeAfter.
	np.mu.Lock()
	np.idle[addr][0].since = time.Now().Add(-2 * probeAfter)
	np.mu.Unlock()
	require.Eventually(t, func() bool {
		_, err := c2.Read(make([]byte, 1)) // the peer's close has arrived
		return err != nil
	}, 5*time.Second, time.Millisecond)
	c3, reused, err := np.get(context.Background(), addr)
	require.NoError(t, err)
	require.False(t, reused, "a connection the peer closed is replaced by a new one")
	require.NotSame(t, c2, c3)
	<-peers
	np.put(addr, c3)

	np.closeIdle()
	_, err = c3.Write([]byte("x"))
	require.Error(t, err, "closeIdle closed it")
	c4, _, err := np.get(context.Background(), addr)
	require.NoError(t, err)
	np.put(addr, c4) // closed: the pool is shut
	_, err = c4.Write([]byte("x"))
	require.Error(t, err)
}

func TestGuardedBody(t *testing.T) {
	g := &guardedBody{rc: io.NopCloser(strings.NewReader("data"))}
	require.True(t, g.reusable(), "nothing read yet")
	_, err := g.Read(make([]byte, 1))
	require.ErrorIs(t, err, errBodySealed, "the attempt that held it can no longer read")

	next := g.next()
	b := make([]byte, 2)
	n, err := next.Read(b)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	require.False(t, next.reusable(), "bytes were consumed")
	var nilBody *guardedBody
	require.True(t, nilBody.reusable())
}
