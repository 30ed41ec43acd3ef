// Command chartdoc regenerates a chart's README.md from the `# --` comments of its
// values.yaml (see package chartdoc):
//
//	go run ./internal/chartdoc/cmd/chartdoc            # writes charts/pico/README.md
//	go run ./internal/chartdoc/cmd/chartdoc -check     # exits 1 when README.md is stale
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/pico-proxy/pico/internal/chartdoc"
)

func main() {
	fs := flag.NewFlagSet("chartdoc", flag.ContinueOnError)
	dir := fs.String("chart", "charts/pico", "chart directory")
	check := fs.Bool("check", false, "do not write; exit 1 if README.md differs from the generated one")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	got, err := chartdoc.GenerateDir(*dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chartdoc:", err)
		os.Exit(1)
	}
	path := filepath.Join(*dir, chartdoc.ReadmeFile)
	if *check {
		have, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(have, got) {
			fmt.Fprintf(os.Stderr, "chartdoc: %s is stale: run `go run ./internal/chartdoc/cmd/chartdoc -chart %s`\n", path, *dir)
			os.Exit(1)
		}
		return
	}
	if err := os.WriteFile(path, got, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "chartdoc:", err)
		os.Exit(1)
	}
}
