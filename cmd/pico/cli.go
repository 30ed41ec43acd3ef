package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/pflag"

	"github.com/pico-proxy/pico/internal/config"
)

// commandLine is what every subcommand shares: its name, usage text and
// outputs, and the handling of --help (usage on stdout, exit 0), of usage
// errors (the message and usage on stderr, exit 2) and of failures (one
// line on stderr, exit 1).
type commandLine struct {
	name           string // e.g. "bootstrap"
	usageText      string
	flagUsages     func() string // the flags' help, after usageText
	stdout, stderr io.Writer
}

// newFlagCommand is the command line of a subcommand with a plain flag
// set (fs's output is silenced: commandLine prints the usage).
func newFlagCommand(name, usageText string, fs *pflag.FlagSet, stdout, stderr io.Writer) *commandLine {
	fs.SetOutput(io.Discard)
	fs.SortFlags = false
	return &commandLine{name: name, usageText: usageText, flagUsages: fs.FlagUsages, stdout: stdout, stderr: stderr}
}

// configCommand is the command line of a subcommand configured by
// config.Load (defaults < YAML file < flags): its flags are those of the
// configuration and the --config.* flags.
type configCommand[T config.Target] struct {
	*commandLine
	newDefault func() T
}

// newConfigCommand returns the command line of a subcommand whose
// configuration newDefault returns with its defaults.
func newConfigCommand[T config.Target](name, usageText string, newDefault func() T, stdout, stderr io.Writer) *configCommand[T] {
	flagUsages := func() string {
		fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
		fs.SortFlags = false
		newDefault().RegisterFlags(fs)
		(&config.FileFlags{}).RegisterFlags(fs)
		return fs.FlagUsages()
	}
	return &configCommand[T]{
		commandLine: &commandLine{name: name, usageText: usageText, flagUsages: flagUsages, stdout: stdout, stderr: stderr},
		newDefault:  newDefault,
	}
}

// usage prints the usage text and the flags to w.
func (c *commandLine) usage(w io.Writer) {
	fmt.Fprint(w, c.usageText)
	fmt.Fprint(w, c.flagUsages())
}

// usageError prints msg and the usage to stderr and returns exit code 2.
func (c *commandLine) usageError(msg string) int {
	fmt.Fprintf(c.stderr, "pico %s: %s\n\n", c.name, msg)
	c.usage(c.stderr)
	return 2
}

// fail prints err on one line (an errors.Join list joined with "; ") to
// stderr and returns exit code 1.
func (c *commandLine) fail(err error) int {
	fmt.Fprintf(c.stderr, "pico %s: %s\n", c.name, errorLine(err))
	return 1
}

// parse parses args into fs; when ok is false the command exits with code.
func (c *commandLine) parse(fs *pflag.FlagSet, args []string) (code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		return c.flagError(err), false
	}
	return 0, true
}

// flagError answers a failed parse: usage on stdout for --help, a usage
// error otherwise.
func (c *commandLine) flagError(err error) int {
	if errors.Is(err, pflag.ErrHelp) {
		c.usage(c.stdout)
		return 0
	}
	return c.usageError(err.Error())
}

// load loads the configuration. When ok is false the command exits with
// code: 0 after --help, 2 for a usage error, 1 for a bad configuration.
func (c *configCommand[T]) load(args []string) (cfg T, fs *pflag.FlagSet, code int, ok bool) {
	cfg, fs, err := config.Load(c.name, args, c.newDefault, io.Discard)
	var usage *config.UsageError
	switch {
	case err == nil:
		return cfg, fs, 0, true
	case errors.Is(err, pflag.ErrHelp), errors.As(err, &usage):
		return cfg, fs, c.flagError(err), false
	default:
		return cfg, fs, c.fail(err), false
	}
}

// errorLine joins a multi-line error (errors.Join) into one line.
func errorLine(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}
