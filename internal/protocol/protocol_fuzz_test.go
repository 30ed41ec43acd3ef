package protocol

import (
	"net/http"
	"strings"
	"testing"
)

// FuzzEndpointFromRequest: whatever the headers and Host, the result is
// either a valid endpoint ID taken from the first source that names one
// (x-pico-endpoint, x-piko-endpoint, the first label of a Host name with
// a dot) or an error, never a panic.
func FuzzEndpointFromRequest(f *testing.F) {
	for _, seed := range [][3]string{
		{"my-endpoint", "", ""},
		{"", "legacy", ""},
		{"", "", "my-endpoint.example.com"},
		{"", "", "my-endpoint.example.com:8000"},
		{"", "", "127.0.0.1:8000"},
		{"", "", "[::1]:8000"},
		{"", "", "localhost"},
		{"", "", "trailing.dot."},
		{"bad id!", "", "ok.example.com"},
		{"", "", ".leading.example.com"},
		{strings.Repeat("a", 64), "", ""},
		{"", "", "UPPER_case-1.example.com"},
		{"-x", "y", "z.example.com"},
		{"api.v1", "", ""},
		{"", "", "MiXeD.example.com"},
	} {
		f.Add(seed[0], seed[1], seed[2])
	}
	f.Fuzz(func(t *testing.T, pico, piko, host string) {
		r := &http.Request{Header: http.Header{}, Host: host}
		if pico != "" {
			r.Header.Set(EndpointHeader, pico)
		}
		if piko != "" {
			r.Header.Set(PikoEndpointHeader, piko)
		}
		id, err := EndpointFromRequest(r)
		if err != nil {
			if id != "" {
				t.Fatalf("error %v with id %q", err, id)
			}
			return
		}
		if verr := ValidateEndpointID(id); verr != nil {
			t.Fatalf("returned an invalid ID %q: %v", id, verr)
		}
		switch {
		case pico != "":
			if id != pico {
				t.Fatalf("x-pico-endpoint %q gave %q", pico, id)
			}
		case piko != "":
			if id != piko {
				t.Fatalf("x-piko-endpoint %q gave %q", piko, id)
			}
		default:
			if !strings.HasPrefix(strings.ToLower(host), id+".") || id != strings.ToLower(id) {
				t.Fatalf("host %q gave %q, which is not its first label lower-cased", host, id)
			}
		}
	})
}

// FuzzEndpointFromPath: a matched route yields the text after the prefix
// without a trailing slash.
func FuzzEndpointFromPath(f *testing.F) {
	for _, seed := range []string{"/pico/v1/upstream/ep", "/piko/v1/upstream/ep/", "/pico/v1/upstream/", "/other", "/pico/v1/upstream/a/b"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, path string) {
		id, ok := EndpointFromPath(path, UpstreamPathPrefix, PikoUpstreamPathPrefix)
		if !ok {
			if strings.HasPrefix(path, UpstreamPathPrefix) || strings.HasPrefix(path, PikoUpstreamPathPrefix) {
				t.Fatalf("%q not matched", path)
			}
			return
		}
		if strings.HasSuffix(id, "/") && !strings.HasSuffix(path, "//") {
			t.Fatalf("%q gave %q with a trailing slash", path, id)
		}
		if !strings.Contains(path, id) {
			t.Fatalf("%q gave %q", path, id)
		}
	})
}
