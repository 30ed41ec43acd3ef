package main

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestSelftestUsageErrors(t *testing.T) {
	full := []string{"--expect-members", "1", "--admin-url", "http://a:8002", "--proxy-url", "http://p:8000", "--upstream-url", "http://u:8001"}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no flags", nil, 2, "--expect-members is required"},
		{"unknown flag", append([]string{"--nope"}, full...), 2, "unknown flag: --nope"},
		{"missing proxy", []string{"--expect-members", "1", "--admin-url", "http://a:8002", "--upstream-url", "http://u:8001"}, 2, "--proxy-url is required"},
		{"extra argument", append(full, "extra"), 2, `unexpected argument "extra"`},
		{"bad timeout", append(full, "--timeout", "0s"), 2, "--timeout 0s: it must be positive"},
		{"bad URL", []string{"--expect-members", "1", "--admin-url", "a:8002", "--proxy-url", "http://p:8000", "--upstream-url", "http://u:8001"}, 1, `--admin-url "a:8002"`},
		{"bad member count", append([]string{"--expect-members", "0"}, full[2:]...), 1, "--expect-members is 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			assert.Equal(t, tc.code, runSelftest(tc.args, &stdout, &stderr))
			assert.Contains(t, stderr.String(), tc.want)
		})
	}
	var stdout bytes.Buffer
	assert.Equal(t, 0, runSelftest([]string{"--help"}, &stdout, &bytes.Buffer{}))
	assert.Contains(t, stdout.String(), "Usage: pico selftest")
}
