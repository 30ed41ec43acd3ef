package httpwire

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"

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
			WriteRequestHead(bw, req, req.URL.RequestURI(), tc.length < 0 && tc.body != nil, !tc.keepAlive)
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

func TestWriteRequestHeadAnnouncesTrailers(t *testing.T) {
	req, err := http.NewRequest(http.MethodPost, "http://ep.example.com/up", strings.NewReader("abc"))
	require.NoError(t, err)
	req.ContentLength = -1
	req.Trailer = http.Header{"X-Sum": nil, "X-Count": nil}
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	WriteRequestHead(bw, req, "/prefix/up", true, false)
	require.NoError(t, bw.Flush())
	require.Contains(t, buf.String(), "POST /prefix/up HTTP/1.1\r\n")
	require.Contains(t, buf.String(), "Trailer: X-Count, X-Sum\r\n")
}

func TestWriteResponseHead(t *testing.T) {
	for name, tc := range map[string]struct {
		resp      *http.Response
		chunked   bool
		closeConn bool
		want      []string
		wantNot   []string
	}{
		"known length keeps the reason phrase": {
			resp: &http.Response{StatusCode: 201, Status: "201 Made It", ContentLength: 5},
			want: []string{"HTTP/1.1 201 Made It\r\n", "Content-Length: 5\r\n"},
		},
		"status without text": {
			resp: &http.Response{StatusCode: 404, ContentLength: 0},
			want: []string{"HTTP/1.1 404 Not Found\r\n", "Content-Length: 0\r\n"},
		},
		"chunked with trailers, closing": {
			resp:    &http.Response{StatusCode: 200, Status: "200 OK", ContentLength: -1, Trailer: http.Header{"X-Sum": nil}},
			chunked: true, closeConn: true,
			want:    []string{"Transfer-Encoding: chunked\r\n", "Trailer: X-Sum\r\n", "Connection: close\r\n"},
			wantNot: []string{"Content-Length"},
		},
		"no content has no length": {
			resp:    &http.Response{StatusCode: 204, Status: "204 No Content", ContentLength: 0},
			wantNot: []string{"Content-Length"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			tc.resp.Header = http.Header{"X-Test": {"a"}, "Content-Length": {"999"}, "Transfer-Encoding": {"gzip"}}
			var buf bytes.Buffer
			bw := bufio.NewWriter(&buf)
			WriteResponseHead(bw, tc.resp, tc.chunked, tc.closeConn)
			require.NoError(t, bw.Flush())
			head := buf.String()
			require.True(t, strings.HasSuffix(head, "\r\n\r\n"), head)
			require.Contains(t, head, "X-Test: a\r\n")
			require.NotContains(t, head, "999", "framing comes from the body, not copied headers")
			require.NotContains(t, head, "gzip")
			for _, w := range tc.want {
				require.Contains(t, head, w)
			}
			for _, w := range tc.wantNot {
				require.NotContains(t, head, w)
			}
			// What we write parses as the response we meant.
			parsed, err := http.ReadResponse(bufio.NewReader(strings.NewReader(head)), nil)
			require.NoError(t, err)
			require.Equal(t, tc.resp.StatusCode, parsed.StatusCode)
		})
	}
}

func TestReadResponseSkipsInformationalAnswers(t *testing.T) {
	raw := "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	req, _ := http.NewRequest(http.MethodGet, "http://x/", nil)
	resp, err := ReadResponse(bufio.NewReader(strings.NewReader(raw)), req)
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode)
	body, _ := io.ReadAll(resp.Body)
	require.Equal(t, "ok", string(body))

	resp, err = ReadResponse(bufio.NewReader(strings.NewReader("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")), req)
	require.NoError(t, err)
	require.Equal(t, 101, resp.StatusCode, "101 ends the exchange's head")
}

func TestRemoveHopByHop(t *testing.T) {
	h := http.Header{
		"Connection":     {"keep-alive, X-Private"},
		"X-Private":      {"1"},
		"Keep-Alive":     {"timeout=5"},
		"Te":             {"trailers"},
		"Upgrade":        {"websocket"},
		"X-Kept":         {"yes"},
		"Content-Length": {"3"},
	}
	RemoveHopByHop(h)
	require.Equal(t, http.Header{"X-Kept": {"yes"}, "Content-Length": {"3"}}, h)
}

func TestUpgradeTypeAndHasToken(t *testing.T) {
	require.Equal(t, "websocket", UpgradeType(http.Header{"Connection": {"keep-alive, Upgrade"}, "Upgrade": {"websocket"}}))
	require.Equal(t, "", UpgradeType(http.Header{"Upgrade": {"websocket"}}), "Upgrade without Connection: upgrade is no upgrade")
	require.True(t, HasToken([]string{"a", " B ,c"}, "b"))
	require.False(t, HasToken([]string{"ab"}, "a"))
}
