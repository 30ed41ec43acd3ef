package chartdoc

import (
	"fmt"
	"os"
	"path/filepath"
)

// Files of a chart directory the generator reads and writes.
const (
	ChartFile    = "Chart.yaml"
	ValuesFile   = "values.yaml"
	TemplateFile = "README.md.gotmpl"
	ReadmeFile   = "README.md"
)

// GenerateDir generates the README of the chart in dir from its Chart.yaml, values.yaml and
// README.md.gotmpl.
func GenerateDir(dir string) ([]byte, error) {
	read := func(name string) ([]byte, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("read chart file: %w", err)
		}
		return b, nil
	}
	chart, err := read(ChartFile)
	if err != nil {
		return nil, err
	}
	values, err := read(ValuesFile)
	if err != nil {
		return nil, err
	}
	tmpl, err := read(TemplateFile)
	if err != nil {
		return nil, err
	}
	return Generate(chart, values, tmpl)
}
