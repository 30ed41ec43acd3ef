//go:build pprof

package main

// Built with -tags pprof, every pico process started with
// PICO_PPROF_ADDR=host:port serves net/http/pprof there: a developer's
// tool for profiling the proxy path (make bench explains where time goes;
// this shows why). Release builds do not contain it.

import (
	"log/slog"
	"net/http"
	_ "net/http/pprof"
	"os"
)

func init() {
	addr := os.Getenv("PICO_PPROF_ADDR")
	if addr == "" {
		return
	}
	go func() {
		if err := http.ListenAndServe(addr, nil); err != nil {
			slog.Error("pprof listener failed", "addr", addr, "error", err)
		}
	}()
}
