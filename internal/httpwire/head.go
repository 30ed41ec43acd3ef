package httpwire

import (
	"bufio"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// framingHeaders are written from the body being sent, never copied.
var framingHeaders = map[string]bool{
	"Host":              true,
	"Content-Length":    true,
	"Transfer-Encoding": true,
	"Trailer":           true,
}

// WriteRequestHead writes the request line and headers of req to bw, with
// uri as the request target. Framing headers come from req's body:
// Content-Length, or chunked transfer encoding (announcing req.Trailer's
// keys) when chunked is set. closeConn adds "Connection: close".
func WriteRequestHead(bw *bufio.Writer, req *http.Request, uri string, chunked, closeConn bool) {
	bw.WriteString(req.Method)
	bw.WriteByte(' ')
	bw.WriteString(uri)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(req.Host)
	bw.WriteString("\r\n")
	length := int64(-1)
	switch {
	case req.ContentLength > 0:
		length = req.ContentLength
	case req.Method == http.MethodPost || req.Method == http.MethodPut || req.Method == http.MethodPatch:
		length = 0
	}
	writeHeaders(bw, req.Header, req.Trailer, chunked, length, closeConn)
}

// WriteResponseHead writes the status line and headers of resp to bw.
// Framing headers come from resp: chunked transfer encoding (announcing
// resp.Trailer's keys) when chunked is set, else its Content-Length when
// known and allowed. closeConn adds "Connection: close". Hop-by-hop
// headers are the caller's business (a 101 keeps Connection and Upgrade).
func WriteResponseHead(bw *bufio.Writer, resp *http.Response, chunked, closeConn bool) {
	bw.WriteString("HTTP/1.1 ")
	if status := resp.Status; len(status) > 4 && strings.HasPrefix(status, strconv.Itoa(resp.StatusCode)+" ") {
		bw.WriteString(status) // keeps the upstream's reason phrase
	} else {
		bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(resp.StatusCode), 10))
		bw.WriteByte(' ')
		bw.WriteString(http.StatusText(resp.StatusCode))
	}
	bw.WriteString("\r\n")
	length := resp.ContentLength
	if !bodyAllowed(resp.StatusCode) {
		length = -1
	}
	writeHeaders(bw, resp.Header, resp.Trailer, chunked, length, closeConn)
}

// writeHeaders ends a head: the header fields other than framing ones,
// then the framing (chunked announcing trailer's keys, else a
// Content-Length when length ≥ 0), "Connection: close" when closeConn, and
// the empty line.
func writeHeaders(bw *bufio.Writer, h, trailer http.Header, chunked bool, length int64, closeConn bool) {
	_ = h.WriteSubset(bw, framingHeaders)
	switch {
	case chunked:
		bw.WriteString("Transfer-Encoding: chunked\r\n")
		writeTrailerAnnouncement(bw, trailer)
	case length >= 0:
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(bw.AvailableBuffer(), length, 10))
		bw.WriteString("\r\n")
	}
	if closeConn {
		bw.WriteString("Connection: close\r\n")
	}
	bw.WriteString("\r\n")
}

// bodyAllowed reports whether a response with status code may carry a
// body and so a Content-Length (RFC 9110, 8.6).
func bodyAllowed(code int) bool {
	return code >= 200 && code != http.StatusNoContent
}

func writeTrailerAnnouncement(bw *bufio.Writer, trailer http.Header) {
	if len(trailer) == 0 {
		return
	}
	keys := make([]string, 0, len(trailer))
	for k := range trailer {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	bw.WriteString("Trailer: ")
	bw.WriteString(strings.Join(keys, ", "))
	bw.WriteString("\r\n")
}

// MaxInformationalResponses bounds the informational (1xx) answers that
// may precede a response (as net/http's client does): an endless stream
// of them would otherwise keep the reader busy forever.
const MaxInformationalResponses = 5

// ReadResponse reads the response to req from br, skipping informational
// (1xx) answers other than 101 Switching Protocols, at most
// MaxInformationalResponses of them.
func ReadResponse(br *bufio.Reader, req *http.Request) (*http.Response, error) {
	for skipped := 0; ; skipped++ {
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
			if skipped == MaxInformationalResponses {
				return nil, fmt.Errorf("more than %d informational (1xx) responses", MaxInformationalResponses)
			}
			continue
		}
		return resp, nil
	}
}
