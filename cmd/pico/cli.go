package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/pflag"
)

// commandLine is a subcommand's flag set with its usage text: the shared
// handling of --help (usage on stdout, exit 0) and of usage errors (the
// message and usage on stderr, exit 2).
type commandLine struct {
	name           string // e.g. "bootstrap"
	usageText      string
	fs             *pflag.FlagSet
	stdout, stderr io.Writer
}

// usage prints the usage text and the flags to w.
func (c *commandLine) usage(w io.Writer) {
	fmt.Fprint(w, c.usageText)
	fmt.Fprint(w, c.fs.FlagUsages())
}

// usageError prints msg and the usage to stderr and returns exit code 2.
func (c *commandLine) usageError(msg string) int {
	fmt.Fprintf(c.stderr, "pico %s: %s\n\n", c.name, msg)
	c.usage(c.stderr)
	return 2
}

// parse parses args; when ok is false the command exits with code.
func (c *commandLine) parse(args []string) (code int, ok bool) {
	if err := c.fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			c.usage(c.stdout)
			return 0, false
		}
		return c.usageError(err.Error()), false
	}
	return 0, true
}
