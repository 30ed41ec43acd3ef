package agent

import (
	"bufio"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pico-proxy/pico/internal/testutil"
	"github.com/stretchr/testify/require"
)

// countingService is a local HTTP service that counts the connections
// the agent opened to it.
func countingService(t *testing.T, handler http.HandlerFunc) (*httptest.Server, *atomic.Int32) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(handler)
	srv.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &conns
}

func TestLocalConnectionsAreKeptAlive(t *testing.T) {
	service, conns := countingService(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "%s %s", r.Method, r.URL.Path)
	})
	server, _ := serveEndpoint(t, Endpoint{ID: "ka", Protocol: "http", Addr: service.URL})
	c := client(server.session("ka", 1))

	for i := range 20 {
		var body io.Reader
		method := http.MethodGet
		if i%2 == 1 {
			method, body = http.MethodPost, strings.NewReader(strings.Repeat("b", 10_000)) // larger than a buffer
		}
		req, err := http.NewRequest(method, fmt.Sprintf("http://ka.example.com/%d", i), body)
		require.NoError(t, err)
		req.Close = i%3 == 0 // "Connection: close" ends the stream, not the local connection
		resp, err := c.Do(req)
		require.NoError(t, err)
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		require.Equal(t, fmt.Sprintf("%s /%d", method, i), string(got))
	}
	require.Equal(t, int32(1), conns.Load(), "one local connection carried every sequential request")
}

func TestLocalConnectionTheServiceClosedIsReplaced(t *testing.T) {
	// A service that closes every connection right after its response,
	// without saying so: the agent's kept connection is dead when reused.
	var accepted atomic.Int32
	service := testutil.ServeTCP(t, func(c net.Conn) {
		accepted.Add(1)
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(req.URL.Path), req.URL.Path)
	})
	server, _ := serveEndpoint(t, Endpoint{ID: "closer", Protocol: "http", Addr: service.Addr().String()})
	c := client(server.session("closer", 1))
	for i := range 5 {
		resp, err := c.Get(fmt.Sprintf("http://closer.example.com/r%d", i))
		require.NoError(t, err)
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, "request %d: %s", i, got)
		require.Equal(t, fmt.Sprintf("/r%d", i), string(got))
	}
	require.Equal(t, int32(5), accepted.Load())
}

func TestStreamCarriesSeveralRequestsWhenKeptAlive(t *testing.T) {
	service := echoService(t)
	server, _ := serveEndpoint(t, Endpoint{ID: "reuse", Protocol: "http", Addr: service.URL})

	stream, err := server.session("reuse", 1).OpenStream()
	require.NoError(t, err)
	defer stream.Close()
	br := bufio.NewReader(stream)
	for i := range 3 {
		last := i == 2
		req, err := http.NewRequest(http.MethodPost, fmt.Sprintf("http://reuse.example.com/%d", i), strings.NewReader("x"))
		require.NoError(t, err)
		req.Close = last
		require.NoError(t, req.Write(stream))
		resp, err := http.ReadResponse(br, req)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.Contains(t, string(body), fmt.Sprintf(`"path":"/%d"`, i))
		require.Equal(t, last, resp.Close, "the agent closes the stream only when asked")
	}
	_, err = br.ReadByte()
	require.ErrorIs(t, err, io.EOF, "the agent closed its side after the last request")
}

func TestTrailersPassBothWays(t *testing.T) {
	gotTrailer := make(chan string, 1)
	service := httpService(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		gotTrailer <- r.Trailer.Get("X-Request-Sum")
		w.Header().Set("Trailer", "X-Response-Sum")
		io.WriteString(w, "body")
		w.Header().Set("X-Response-Sum", "99")
	})
	server, _ := serveEndpoint(t, Endpoint{ID: "trailers", Protocol: "http", Addr: service.URL})

	req, err := http.NewRequest(http.MethodPost, "http://trailers.example.com/", io.NopCloser(strings.NewReader("payload")))
	require.NoError(t, err)
	req.ContentLength = -1
	req.Trailer = http.Header{"X-Request-Sum": {"42"}}
	resp, err := client(server.session("trailers", 1)).Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, "body", string(body))
	require.Equal(t, "99", resp.Trailer.Get("X-Response-Sum"))
	require.Equal(t, "42", <-gotTrailer)
}

func TestResponsesWithoutBody(t *testing.T) {
	service, conns := countingService(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/head":
			w.Header().Set("Content-Length", "1234")
		case "/no-content":
			w.WriteHeader(http.StatusNoContent)
		case "/not-modified":
			w.WriteHeader(http.StatusNotModified)
		}
	})
	server, _ := serveEndpoint(t, Endpoint{ID: "nobody", Protocol: "http", Addr: service.URL})
	c := client(server.session("nobody", 1))

	resp, err := c.Head("http://nobody.example.com/head")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, int64(1234), resp.ContentLength, "HEAD keeps the length of the body it did not get")
	for path, status := range map[string]int{"/no-content": http.StatusNoContent, "/not-modified": http.StatusNotModified} {
		resp, err := c.Get("http://nobody.example.com" + path)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, status, resp.StatusCode)
		require.Empty(t, body)
	}
	require.Equal(t, int32(1), conns.Load(), "bodiless answers keep the local connection usable")
}

func TestServiceAnsweringBeforeReadingTheBody(t *testing.T) {
	service := httpService(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/upload" {
			http.Error(w, "too large", http.StatusRequestEntityTooLarge) // body never read
			return
		}
		io.WriteString(w, "fine")
	})
	server, _ := serveEndpoint(t, Endpoint{ID: "early", Protocol: "http", Addr: service.URL})
	c := client(server.session("early", 1))

	resp, err := c.Post("http://early.example.com/upload", "application/octet-stream", strings.NewReader(strings.Repeat("x", 4<<20)))
	if err == nil { // the answer may also come as the upload is cut short
		resp.Body.Close()
		require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
	}
	resp, err = c.Get("http://early.example.com/after")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, "fine", string(body), "the endpoint keeps serving")
}

func TestBodyCutByTheServiceShowsAsTruncated(t *testing.T) {
	service := testutil.ServeTCP(t, func(c net.Conn) {
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		// An unknown length, then the connection ends mid-body.
		io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
	})
	server, _ := serveEndpoint(t, Endpoint{ID: "cut", Protocol: "http", Addr: service.Addr().String()})

	resp, err := client(server.session("cut", 1)).Get("http://cut.example.com/")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.Error(t, err, "a cut body must not look complete")
	require.Equal(t, "hello", string(body))
}

func TestHTTPSLocalService(t *testing.T) {
	service := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "tls %s %s", r.Proto, r.URL.Path)
	}))
	t.Cleanup(service.Close)
	roots := x509.NewCertPool()
	roots.AddCert(service.Certificate())
	server, _ := serveEndpoint(t, Endpoint{ID: "secure", Protocol: "http", Addr: service.URL + "/api"},
		func(a *Agent) { a.endpoints[0].server.(*httpServer).localTLS.RootCAs = roots })

	resp, err := client(server.session("secure", 1)).Get("http://secure.example.com/v1")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	require.Equal(t, "tls HTTP/1.1 /api/v1", string(body))
}

func TestTargetPathWithTrailingSlash(t *testing.T) {
	service := echoService(t)
	server, _ := serveEndpoint(t, Endpoint{ID: "slash", Protocol: "http", Addr: service.URL + "/base/"})
	c := client(server.session("slash", 1))
	for path, want := range map[string]string{"/p?a=1": `"path":"/base/p","query":"a=1"`, "/": `"path":"/base/","query":""`} {
		resp, err := c.Get("http://slash.example.com" + path)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Contains(t, string(body), want)
	}
}

func TestSmallBodyStillArrivingStreams(t *testing.T) {
	entered := make(chan struct{})
	service := httpService(t, func(w http.ResponseWriter, r *http.Request) {
		close(entered) // the head arrived before the whole body
		body, _ := io.ReadAll(r.Body)
		io.WriteString(w, string(body))
	})
	server, _ := serveEndpoint(t, Endpoint{ID: "slow-body", Protocol: "http", Addr: service.URL})

	stream, err := server.session("slow-body", 1).OpenStream()
	require.NoError(t, err)
	defer stream.Close()
	_, err = io.WriteString(stream, "POST /up HTTP/1.1\r\nHost: slow-body.example.com\r\nContent-Length: 10\r\nConnection: close\r\n\r\nhello")
	require.NoError(t, err)
	select {
	case <-entered:
	case <-time.After(waitFor):
		t.Fatal("the local service saw nothing before the rest of a small body arrived")
	}
	_, err = io.WriteString(stream, "world")
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(stream), nil)
	require.NoError(t, err)
	got, _ := io.ReadAll(resp.Body)
	require.Equal(t, "helloworld", string(got))
}
