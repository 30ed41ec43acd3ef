package config

import (
	"strings"
	"testing"
)

// FuzzDecodeServer: any file content either decodes into the server
// configuration or gives an error with a message, never a panic; and
// what decodes can be validated.
func FuzzDecodeServer(f *testing.F) {
	for _, seed := range []string{
		"",
		"# comment only\n",
		"proxy:\n  bind_addr: \":9000\"\n  gateway_timeout: 5s\n",
		"cluster:\n  join: [a, b]\n  node_id_prefix: ${POD_NAME}-\n",
		"cluster:\n  join: ${JOIN:-pico-headless}\n",
		"proxy:\n  bind_adr: x\n",
		"proxy: [\n",
		"proxy:\n  gateway_timeout: soon\n",
		"log:\n  level: debug\n  subsystems: [proxy, upstream]\n",
		"server:\n  graceful_shutdown_timeout: -1s\n",
		"upstream:\n  max_streams_per_connection: 9999999999999999999999\n",
		"- a\n- b\n",
		"a: &x [*x]\n",
		"proxy: {bind_addr: 1, advertise_addr: {x: y}}\n",
		"null\n",
		"${UNSET:?required}\n",
	} {
		f.Add([]byte(seed), false)
		f.Add([]byte(seed), true)
	}
	f.Fuzz(func(t *testing.T, data []byte, expandEnv bool) {
		cfg := DefaultServer()
		if err := Decode(data, expandEnv, cfg); err != nil {
			if strings.TrimSpace(err.Error()) == "" {
				t.Fatalf("empty error message for %q", data)
			}
			return
		}
		_ = cfg.Validate()
	})
}
