package main

import (
	"fmt"
	"io"
	"runtime"

	"github.com/pico-proxy/pico/internal/version"
)

func runVersion(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		fmt.Fprintln(stderr, "Usage: pico version")
		return 2
	}
	fmt.Fprintf(stdout, "pico %s (%s, %s/%s)\n", version.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return 0
}
