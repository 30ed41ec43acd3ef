package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/a8m/envsubst"
	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"
)

// Target is a configuration struct that can be filled from YAML and flags.
type Target interface {
	RegisterFlags(fs *pflag.FlagSet)
	Validate() error
}

// UsageError is a command-line problem (unknown flag, bad flag value):
// callers print usage and exit 2.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// FileFlags are the --config.* flags every configurable command accepts.
type FileFlags struct {
	Path      string
	ExpandEnv bool
}

// RegisterFlags registers --config.path and --config.expand-env.
func (f *FileFlags) RegisterFlags(fs *pflag.FlagSet) {
	fs.StringVar(&f.Path, "config.path", f.Path, "YAML configuration file")
	fs.BoolVar(&f.ExpandEnv, "config.expand-env", f.ExpandEnv, "expand $VAR, ${VAR} and ${VAR:-default} in the configuration file (an unset variable without a default is an error)")
}

// Load builds a configuration with precedence defaults < YAML file < flags
// and validates it. newDefault returns a fresh configuration holding the
// defaults. The returned flag set holds the remaining positional
// arguments. A *UsageError reports a command-line mistake; pflag.ErrHelp
// means --help was given (usage was printed to output).
func Load[T Target](name string, args []string, newDefault func() T, output io.Writer) (T, *pflag.FlagSet, error) {
	var zero T
	// First pass: validate the command line and find the file.
	var file FileFlags
	first := newFlagSet(name, output)
	newDefault().RegisterFlags(first)
	file.RegisterFlags(first)
	if err := first.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return zero, first, err
		}
		return zero, first, &UsageError{Err: err}
	}

	cfg := newDefault()
	if file.Path != "" {
		if err := LoadFile(file.Path, file.ExpandEnv, cfg); err != nil {
			return zero, first, err
		}
	}
	// Second pass: flags override the file.
	second := newFlagSet(name, io.Discard)
	cfg.RegisterFlags(second)
	(&FileFlags{}).RegisterFlags(second)
	if err := second.Parse(args); err != nil {
		return zero, second, &UsageError{Err: err}
	}
	if err := cfg.Validate(); err != nil {
		return zero, second, err
	}
	return cfg, second, nil
}

func newFlagSet(name string, output io.Writer) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(output)
	fs.SortFlags = false
	return fs
}

// LoadFile decodes the YAML file at path into cfg, optionally expanding
// environment variables first. Unknown keys are errors.
func LoadFile(path string, expandEnv bool, cfg any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	if err := Decode(data, expandEnv, cfg); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	return nil
}

// Decode decodes YAML into cfg strictly; errors name the offending key.
func Decode(data []byte, expandEnv bool, cfg any) error {
	if expandEnv {
		expanded, err := expandVariables(data)
		if err != nil {
			return err
		}
		data = expanded
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return fmt.Errorf("invalid YAML: %w", err)
	}
	if len(bytes.TrimSpace(data)) == 0 || root.Kind == 0 {
		return nil
	}
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 && root.Content[0].Kind == yaml.ScalarNode && root.Content[0].Tag == "!!null" {
		return nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return describeYAMLError(err, &root)
	}
	return nil
}

// expandVariables expands $VAR, ${VAR} and ${VAR:-default} in data. A variable
// that is unset and has no default is an error naming it and the key it
// is under (a silently empty bind_addr would bind every interface). A
// variable set to the empty string is accepted; envsubst counts an empty
// default (${VAR:-}) as no default.
func expandVariables(data []byte) ([]byte, error) {
	expanded, err := envsubst.BytesRestricted(data, true, false)
	if err == nil {
		return expanded, nil
	}
	if msgs := unsetVariables(data); len(msgs) > 0 {
		return nil, errors.New(strings.Join(msgs, "; "))
	}
	return nil, fmt.Errorf("expanding environment variables: %w", err)
}

var unsetRE = regexp.MustCompile(`variable \$\{(\w+)\} not set`)

// unsetVariables describes each unset variable of data with its line and
// key: the lines are expanded one by one to find them, and the keys are
// read from the unexpanded YAML (a reference is a plain scalar there).
func unsetVariables(data []byte) []string {
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil {
		root = yaml.Node{}
	}
	var msgs []string
	for i, line := range strings.Split(string(data), "\n") {
		_, err := envsubst.StringRestricted(line, true, false)
		if err == nil {
			continue
		}
		m := unsetRE.FindStringSubmatch(err.Error())
		if m == nil {
			continue
		}
		where := fmt.Sprintf("line %d", i+1)
		if key := keyAtLine(&root, i+1, ""); key != "" {
			where += fmt.Sprintf(": key %q", key)
		}
		msgs = append(msgs, fmt.Sprintf("%s: environment variable %s is not set (--config.expand-env); set it (to empty if that is meant), or give a default with ${%s:-value}", where, m[1], m[1]))
	}
	return msgs
}

var (
	lineRE    = regexp.MustCompile(`line (\d+): `)
	unknownRE = regexp.MustCompile(`line (\d+): field (\S+) not found in type \S+`)
)

// describeYAMLError rewrites yaml.v3's errors, which name lines and Go
// types, into messages that name the dotted key.
func describeYAMLError(err error, root *yaml.Node) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return fmt.Errorf("invalid YAML: %w", err)
	}
	msgs := make([]string, 0, len(te.Errors))
	for _, e := range te.Errors {
		if m := unknownRE.FindStringSubmatch(e); m != nil {
			line, _ := strconv.Atoi(m[1])
			key := keyAtLine(root, line, m[2])
			if key == "" {
				key = m[2]
			}
			msgs = append(msgs, fmt.Sprintf("line %d: unknown key %q; check the spelling against the documented keys", line, key))
			continue
		}
		if m := lineRE.FindStringSubmatch(e); m != nil {
			line, _ := strconv.Atoi(m[1])
			rest := strings.TrimPrefix(e, m[0])
			rest = strings.Replace(rest, "into time.Duration", "into a duration (use a value such as \"15s\" or \"1m\")", 1)
			if key := keyAtLine(root, line, ""); key != "" {
				msgs = append(msgs, fmt.Sprintf("line %d: key %q: %s", line, key, rest))
				continue
			}
		}
		msgs = append(msgs, e)
	}
	return errors.New(strings.Join(msgs, "; "))
}

// keyAtLine returns the dotted path of the mapping key or value on line;
// a non-empty name selects the key of that name (a flow mapping such as
// "{id: a, adr: b}" has several keys on one line).
func keyAtLine(n *yaml.Node, line int, name string) string {
	var walk func(n *yaml.Node, prefix string) string
	walk = func(n *yaml.Node, prefix string) string {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				if k := walk(c, prefix); k != "" {
					return k
				}
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				path := k.Value
				if prefix != "" {
					path = prefix + "." + k.Value
				}
				if found := walk(v, path); found != "" {
					return found
				}
				if (k.Line == line || v.Line == line) && (name == "" || k.Value == name) {
					return path
				}
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				if found := walk(c, fmt.Sprintf("%s[%d]", prefix, i)); found != "" {
					return found
				}
			}
			if n.Line == line {
				return prefix
			}
		}
		return ""
	}
	return walk(n, "")
}
