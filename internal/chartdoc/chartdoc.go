// Package chartdoc generates a Helm chart's README from the comments in its values.yaml:
// every value is documented by a `# -- description` comment right above its key, and the
// README's values table lists each one with its type and default.
//
// Rules: a mapping whose children carry `# --` comments is a section and is walked into
// (its own `# --` comment, if any, gives it a row too); any other value, including a mapping
// whose children are undocumented, is one documented value and must have a comment. A
// description may start with a type in parentheses, `# -- (int) ...`, to override the type
// inferred from the default (useful for `null` defaults).
package chartdoc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"text/template"

	"gopkg.in/yaml.v3"
)

// Value is one documented value of the chart.
type Value struct {
	// Key is the dotted path, e.g. `image.tag`.
	Key         string
	Type        string
	Default     string
	Description string
}

// Chart is what the README template can use.
type Chart struct {
	Name        string `yaml:"name"`
	Version     string `yaml:"version"`
	AppVersion  string `yaml:"appVersion"`
	Description string `yaml:"description"`
	KubeVersion string `yaml:"kubeVersion"`
	// Values is the parsed values documentation, in file order.
	Values []Value `yaml:"-"`
	// ValuesTable is Values as a Markdown table.
	ValuesTable string `yaml:"-"`
}

const marker = "-- "

var typeOverride = regexp.MustCompile(`^\(([a-zA-Z][a-zA-Z0-9 ]*)\)\s*`)

// ParseValues returns the documented values of a values.yaml in file order, or an error
// naming every value that lacks a `# --` description.
func ParseValues(valuesYAML []byte) ([]Value, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(valuesYAML, &doc); err != nil {
		return nil, fmt.Errorf("values.yaml: %w", err)
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, errors.New("values.yaml: the top level must be a mapping")
	}
	var (
		out     []Value
		missing []string
	)
	var walk func(prefix string, m *yaml.Node)
	walk = func(prefix string, m *yaml.Node) {
		for i := 0; i+1 < len(m.Content); i += 2 {
			keyNode, valNode := m.Content[i], m.Content[i+1]
			key := prefix + keyNode.Value
			desc, documented := description(keyNode)
			section := valNode.Kind == yaml.MappingNode && hasDocumentedDescendant(valNode)
			if documented || !section {
				if !documented {
					missing = append(missing, fmt.Sprintf("%s (line %d)", key, keyNode.Line))
				} else {
					v, err := newValue(key, desc, valNode)
					if err != nil {
						missing = append(missing, fmt.Sprintf("%s (line %d): %v", key, keyNode.Line, err))
					} else {
						out = append(out, v)
					}
				}
			}
			if section {
				walk(key+".", valNode)
			}
		}
	}
	walk("", root)
	if len(missing) > 0 {
		return nil, fmt.Errorf("values.yaml: add a `# -- description` comment above: %s", strings.Join(missing, ", "))
	}
	return out, nil
}

// description returns the `# --` comment of a key, joined into one line.
func description(key *yaml.Node) (string, bool) {
	lines := strings.Split(key.HeadComment, "\n")
	// Only the last comment block right above the key counts; an earlier block separated by
	// a blank line is a free comment.
	start := -1
	for i, l := range lines {
		l = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "#"))
		if strings.HasPrefix(l, marker) || l == strings.TrimSpace(marker) {
			start = i
		}
	}
	if start < 0 {
		return "", false
	}
	var parts []string
	for _, l := range lines[start:] {
		l = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "#"))
		if l == "" {
			break
		}
		parts = append(parts, l)
	}
	parts[0] = strings.TrimSpace(strings.TrimPrefix(parts[0], strings.TrimSpace(marker)))
	return strings.TrimSpace(strings.Join(parts, " ")), true
}

func hasDocumentedDescendant(m *yaml.Node) bool {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if _, ok := description(m.Content[i]); ok {
			return true
		}
		if v := m.Content[i+1]; v.Kind == yaml.MappingNode && hasDocumentedDescendant(v) {
			return true
		}
	}
	return false
}

func newValue(key, desc string, node *yaml.Node) (Value, error) {
	v := Value{Key: key, Description: desc, Type: inferType(node)}
	if m := typeOverride.FindStringSubmatch(desc); m != nil {
		v.Type = m[1]
		v.Description = desc[len(m[0]):]
	}
	var decoded any
	if err := node.Decode(&decoded); err != nil {
		return Value{}, fmt.Errorf("decode default: %w", err)
	}
	raw, err := json.Marshal(normalize(decoded))
	if err != nil {
		return Value{}, fmt.Errorf("encode default: %w", err)
	}
	v.Default = string(raw)
	return v, nil
}

func inferType(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "object"
	case yaml.SequenceNode:
		return "list"
	}
	switch n.ShortTag() {
	case "!!int":
		return "int"
	case "!!float":
		return "float"
	case "!!bool":
		return "bool"
	case "!!null":
		return "null"
	}
	return "string"
}

// normalize turns the map[string]any/map[any]any mix yaml.v3 decodes into JSON-encodable
// values.
func normalize(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, x := range t {
			t[k] = normalize(x)
		}
		return t
	case map[any]any:
		out := make(map[string]any, len(t))
		for k, x := range t {
			out[fmt.Sprint(k)] = normalize(x)
		}
		return out
	case []any:
		for i, x := range t {
			t[i] = normalize(x)
		}
		return t
	}
	return v
}

// Table renders values as a Markdown table.
func Table(values []Value) string {
	var b strings.Builder
	b.WriteString("| Key | Type | Default | Description |\n|-----|------|---------|-------------|\n")
	for _, v := range values {
		fmt.Fprintf(&b, "| `%s` | %s | `%s` | %s |\n", cell(v.Key), cell(v.Type), cell(v.Default), cell(v.Description))
	}
	return b.String()
}

// cell makes s safe inside one Markdown table cell.
func cell(s string) string {
	return strings.NewReplacer("|", `\|`, "\r\n", " ", "\n", " ", "\r", " ").Replace(s)
}

// Generate renders the README template (Go text/template over Chart) for a chart's
// Chart.yaml and values.yaml.
func Generate(chartYAML, valuesYAML, readmeTemplate []byte) ([]byte, error) {
	var c Chart
	if err := yaml.Unmarshal(chartYAML, &c); err != nil {
		return nil, fmt.Errorf("Chart.yaml: %w", err)
	}
	values, err := ParseValues(valuesYAML)
	if err != nil {
		return nil, err
	}
	c.Values = values
	c.ValuesTable = Table(values)
	tmpl, err := template.New("README.md.gotmpl").Option("missingkey=error").Parse(string(readmeTemplate))
	if err != nil {
		return nil, fmt.Errorf("README template: %w", err)
	}
	var out bytes.Buffer
	if err := tmpl.Execute(&out, c); err != nil {
		return nil, fmt.Errorf("README template: %w", err)
	}
	return out.Bytes(), nil
}
