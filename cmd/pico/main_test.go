package main

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
)

// Every subcommand answers --help alike: its usage and flags on stdout,
// nothing on stderr, exit 0; and an unknown flag alike: the problem and
// the usage on stderr, exit 2.
func TestEverySubcommandHandlesHelpAndUsageErrorsAlike(t *testing.T) {
	for _, c := range commands() {
		if c.name == "version" {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			assert.Equal(t, 0, run([]string{c.name, "--help"}, &stdout, &stderr))
			assert.Contains(t, stdout.String(), "pico "+c.name)
			assert.Contains(t, stdout.String(), "--", "the flags are listed")
			assert.Empty(t, stderr.String())

			stdout.Reset()
			stderr.Reset()
			assert.Equal(t, 2, run([]string{c.name, "--no-such-flag"}, &stdout, &stderr))
			assert.Empty(t, stdout.String())
			assert.Contains(t, stderr.String(), "pico "+c.name+": unknown flag: --no-such-flag")
			assert.Contains(t, stderr.String(), "Usage:")
		})
	}
}
