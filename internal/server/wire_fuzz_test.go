package server

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pico-proxy/pico/internal/config"
	"github.com/pico-proxy/pico/internal/protocol"
)

// FuzzProxyNeverSmuggles sends raw bytes (any number of requests, well
// framed or not) over a TCP connection to a real proxy listener whose
// endpoint "raw" is served by a recording upstream, and checks that every
// request the upstream parsed from what it received is
//   - one the proxy logged: no request is smuggled past the proxy's
//     access log (and whatever checks run before it) by framing that the
//     proxy and the upstream read differently, and
//   - one a strict reading of the bytes finds (strictRequests): nothing
//     after broken or ambiguous framing on the client connection is
//     proxied.
func FuzzProxyNeverSmuggles(f *testing.F) {
	for _, seed := range []string{
		"GET / HTTP/1.1\r\nHost: raw.x\r\n\r\n",
		"GET /a HTTP/1.1\r\nHost: raw.x\r\n\r\nGET /b HTTP/1.1\r\nHost: raw.x\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: raw.x\r\nContent-Length: 2\r\n\r\nhiGET /b HTTP/1.1\r\nHost: raw.x\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: raw.x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhelloGET /smuggled HTTP/1.1\r\nHost: raw.x\r\n\r\n0\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: raw.x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: raw.x\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: raw.x\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: raw.x\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: raw.x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\nGET /b HTTP/1.1\r\nHost: raw.x\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: raw.x\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: raw.x\r\n\r\n",
		"POST /a HTTP/1.0\r\nHost: raw.x\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: raw.x\r\n\r\n",
		"GET /a HTTP/1.1\r\nHost: raw.x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: raw.x\r\n\r\n",
		tcpRouteUpgrade(protocol.TCPPathPrefix+"raw") + "GET /smuggled HTTP/1.1\r\nHost: raw.x\r\n\r\n",
		"GET /a HTTP/1.1\r\nX-Pico-Endpoint: raw\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
	} {
		f.Add([]byte(seed))
	}
	s := startServer(f, serverSetup{cfg: func(c *config.Server) {
		c.Proxy.ReadHeaderTimeout = 2 * time.Second
		c.Proxy.GatewayTimeout = 5 * time.Second
	}})
	f.Fuzz(func(t *testing.T, raw []byte) {
		// A fresh upstream and log for every input: nothing is left of
		// the one before.
		s.logs.Reset()
		rec, err := startRecording(s.Addrs().Upstream, "raw")
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			_ = rec.Close()
			require.Eventually(t, func() bool { return s.Registry().Counts()["raw"] == 0 }, 20*time.Second, time.Millisecond, "the upstream left the registry")
		}()

		c, err := net.Dial("tcp", s.Addrs().Proxy)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, _ = c.Write(raw) // the proxy may close the connection early
		_ = c.(*net.TCPConn).CloseWrite()
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		if _, err := io.Copy(io.Discard, c); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("the proxy did not close the connection after the client's last byte")
			}
		}
		// Every exchange over: the proxy logged its requests and the
		// upstream parsed everything it was sent.
		require.Eventually(t, func() bool {
			return s.proxy.InFlight() == 0 && rec.Session.NumStreams() == 0
		}, 20*time.Second, time.Millisecond, "the proxy and the upstream finished")

		strict := strictRequests(raw)
		strictAll := fmt.Sprint(strict)
		logged := map[string]int{}
		for _, r := range s.logs.Records("request") {
			if r["endpoint"] == "raw" {
				logged[fmt.Sprintf("%v %v", r["method"], r["path"])]++
			}
		}
		for _, req := range rec.Requests() {
			if logged[req] == 0 {
				t.Fatalf("the upstream received %q, which the proxy did not log; the proxy logged %v; the upstream received:\n%q", req, logged, rec.Raw())
			}
			if strict[req] == 0 {
				t.Fatalf("the upstream received %q, which follows broken or ambiguous framing; the client sent these before it: %v; the upstream received:\n%q", req, strictAll, rec.Raw())
			}
			logged[req]--
			strict[req]--
		}
	})
}

// strictRequests reads raw as the requests of one client connection the
// way net/http's server does, but stopping, as the proxy must, after a
// request whose body is broken, after a chunked or HTTP/1.0 request
// (whose framing may be read differently, RFC 9112 6.1) and after one
// that asks to close. It returns "METHOD /path" of each request read.
func strictRequests(raw []byte) map[string]int {
	found := map[string]int{}
	br := bufio.NewReader(bytes.NewReader(raw))
	afterPost := false
	for {
		if afterPost {
			// net/http's tolerance of a CRLF sent after a POST body.
			peek, _ := br.Peek(4)
			n := 0
			for n < len(peek) && (peek[n] == '\r' || peek[n] == '\n') {
				n++
			}
			_, _ = br.Discard(n)
		}
		req, err := http.ReadRequest(br)
		if err != nil {
			return found
		}
		found[req.Method+" "+req.URL.Path]++
		if _, err := io.Copy(io.Discard, req.Body); err != nil {
			return found
		}
		if req.Close || len(req.TransferEncoding) > 0 || !req.ProtoAtLeast(1, 1) {
			return found
		}
		afterPost = req.Method == http.MethodPost
	}
}
