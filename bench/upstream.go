package main

import (
	"bytes"
	"net"
	"net/http"
)

var body1KiB = bytes.Repeat([]byte("x"), 1024)

// startUpstream serves a 1 KiB body to every request on a loopback port
// and returns its address.
func startUpstream() (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(body1KiB)
	})}
	go func() { _ = srv.Serve(ln) }()
	return ln.Addr().String(), func() { _ = srv.Close() }, nil
}
