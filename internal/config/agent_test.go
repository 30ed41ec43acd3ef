package config

import (
	"errors"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestAgentDefaultsAndPrecedence(t *testing.T) {
	cfg, _, err := Load("agent", nil, DefaultAgent, io.Discard)
	require.NoError(t, err)
	require.Equal(t, "http://localhost:8001", cfg.Connect.URL)
	require.Equal(t, 10*time.Second, cfg.Connect.Timeout)
	require.Equal(t, time.Minute, cfg.GracePeriod)
	require.Equal(t, DefaultKeepaliveInterval, cfg.KeepaliveInterval)
	require.Empty(t, cfg.Endpoints)

	path := writeFile(t, `
connect:
  url: http://pico.example.com:8001/base
  token: from-file
endpoints:
  - {id: web, protocol: http, addr: 3000}
  - id: db
    protocol: tcp
    addr: "db.internal:5432"
grace_period: 30s
keepalive_interval: 20s
log:
  level: warn
  subsystems: [agent]
`)
	cfg, fs, err := Load("agent", []string{"--config.path", path, "--connect.token", "from-flag", "http", "extra", "4000"}, DefaultAgent, io.Discard)
	require.NoError(t, err)
	require.Equal(t, []string{"http", "extra", "4000"}, fs.Args())
	require.Equal(t, "http://pico.example.com:8001/base", cfg.Connect.URL)
	require.Equal(t, "from-flag", cfg.Connect.Token)
	require.Equal(t, 30*time.Second, cfg.GracePeriod)
	require.Equal(t, 20*time.Second, cfg.KeepaliveInterval)
	require.Equal(t, []AgentEndpoint{{"web", "http", "3000"}, {"db", "tcp", "db.internal:5432"}}, cfg.Endpoints)
	require.Equal(t, []string{"agent"}, cfg.Log.Subsystems)
}

func TestAgentValidationNamesEveryProblem(t *testing.T) {
	path := writeFile(t, `
connect:
  url: localhost:8001
  timeout: 0s
endpoints:
  - {id: "-bad", protocol: http, addr: "3000"}
  - {id: ok, protocol: udp, addr: "3000"}
  - {id: ok, protocol: tcp, addr: "http://x:1/path"}
  - {id: web, protocol: http, addr: "99999"}
grace_period: -1s
keepalive_interval: 0s
`)
	_, _, err := Load("agent", []string{"--config.path", path}, DefaultAgent, io.Discard)
	require.Error(t, err)
	var usage *UsageError
	require.False(t, errors.As(err, &usage))
	for _, want := range []string{
		"connect.url (--connect.url)",
		"connect.timeout (--connect.timeout)",
		"endpoints[0].id",
		`endpoints[1].protocol is "udp"; use http or tcp`,
		"endpoints[2].addr",
		"has a path but the endpoint's protocol is tcp",
		`endpoints[2].id "ok" repeats endpoints[1].id`,
		`endpoints[3].addr: "99999": port "99999" is not a number from 1 to 65535`,
		"grace_period (--grace-period)",
		"keepalive_interval (--keepalive-interval)",
	} {
		require.ErrorContains(t, err, want)
	}
}

func TestAgentFileErrorsNameTheKey(t *testing.T) {
	_, _, err := Load("agent", []string{"--config.path", writeFile(t, "endpoints:\n  - {id: a, protocol: http, adr: \"1\"}\n")}, DefaultAgent, io.Discard)
	require.ErrorContains(t, err, `unknown key "endpoints[0].adr"`)
	_, _, err = Load("agent", []string{"--config.path", writeFile(t, "connect:\n  timeout: soon\n")}, DefaultAgent, io.Discard)
	require.ErrorContains(t, err, `key "connect.timeout"`)
}

func TestForwardAndStatusDefaults(t *testing.T) {
	fwd, _, err := Load("forward", nil, DefaultForward, io.Discard)
	require.NoError(t, err)
	require.Equal(t, "http://localhost:8000", fwd.Connect.URL)
	require.Equal(t, time.Minute, fwd.GracePeriod)

	st, _, err := Load("status", []string{"--output", "json"}, DefaultStatus, io.Discard)
	require.NoError(t, err)
	require.Equal(t, "http://localhost:8002", st.Server.URL)
	require.Equal(t, "json", st.Output)

	_, _, err = Load("status", []string{"--output", "yaml", "--server.url", "ws://x"}, DefaultStatus, io.Discard)
	require.ErrorContains(t, err, `output (--output) is "yaml"; use text or json`)
	require.ErrorContains(t, err, "server.url (--server.url)")
}

func TestForwardFileAndFlags(t *testing.T) {
	path := writeFile(t, `
connect:
  url: https://pico.example.com:8000
  token: from-file
  timeout: 5s
grace_period: 30s
log:
  level: debug
`)
	fwd, _, err := Load("forward", []string{"--config.path", path, "--grace-period", "45s"}, DefaultForward, io.Discard)
	require.NoError(t, err)
	require.Equal(t, "https://pico.example.com:8000", fwd.Connect.URL)
	require.Equal(t, "from-file", fwd.Connect.Token)
	require.Equal(t, 5*time.Second, fwd.Connect.Timeout)
	require.Equal(t, 45*time.Second, fwd.GracePeriod)
	require.Equal(t, "debug", fwd.Log.Level)

	_, _, err = Load("forward", []string{"--config.path", writeFile(t, "endpoints: []\n")}, DefaultForward, io.Discard)
	require.ErrorContains(t, err, `unknown key "endpoints"`)
	_, _, err = Load("forward", []string{"--grace-period", "0s", "--connect.timeout", "0s"}, DefaultForward, io.Discard)
	require.ErrorContains(t, err, "grace_period (--grace-period)")
	require.ErrorContains(t, err, "connect.timeout (--connect.timeout)")
}

func TestClientSettingsAreTopLevelKeys(t *testing.T) {
	// Agent and Forward share their connect, grace_period and log keys
	// through an inlined struct, which has no key of its own.
	for name, load := range map[string]func(path string) error{
		"agent": func(path string) error {
			_, _, err := Load("agent", []string{"--config.path", path}, DefaultAgent, io.Discard)
			return err
		},
		"forward": func(path string) error {
			_, _, err := Load("forward", []string{"--config.path", path}, DefaultForward, io.Discard)
			return err
		},
	} {
		require.ErrorContains(t, load(writeFile(t, "client:\n  grace_period: 1s\n")), `unknown key "client"`, name)
	}
}

func TestParseServiceAddr(t *testing.T) {
	for addr, want := range map[string]string{
		"3000":                       "http://localhost:3000",
		"03000":                      "http://localhost:3000",
		":3000":                      "http://localhost:3000",
		"localhost:3000":             "http://localhost:3000",
		"10.0.0.5:80":                "http://10.0.0.5:80",
		"[::1]:3000":                 "http://[::1]:3000",
		"web.internal:8080":          "http://web.internal:8080",
		"http://localhost:3000":      "http://localhost:3000",
		"http://localhost:3000/":     "http://localhost:3000",
		"HTTP://example.com":         "http://example.com:80",
		"https://example.com":        "https://example.com:443",
		"https://example.com/api/v1": "https://example.com:443/api/v1",
		"tcp://db:5432":              "tcp://db:5432",
	} {
		u, err := ParseServiceAddr(addr)
		require.NoError(t, err, addr)
		require.Equal(t, want, u.String(), addr)
	}
	for addr, want := range map[string]string{
		"":                      "empty address",
		"0":                     `port "0"`,
		"65536":                 `port "65536"`,
		"localhost":             "is not a port, host:port or URL",
		"localhost:http":        `port "http"`,
		"ftp://x:1":             `scheme "ftp" is not supported`,
		"tcp://db":              "has no port",
		"http://user:pw@x:1":    "credentials",
		"http://x:1/?q=1":       "query",
		"http://:3000":          "has no host",
		"http://x:99999":        `port "99999"`,
		"a b:3000":              "not a valid host",
		"http://%41:1":          "not a valid",
		"12345678901234567890":  "is not a number",
		"[::1%25eth0]:1":        "not a valid host",
		"tcp://db:5432#section": "fragment",
	} {
		_, err := ParseServiceAddr(addr)
		require.ErrorContains(t, err, want, addr)
	}
}

func FuzzParseServiceAddr(f *testing.F) {
	for _, seed := range []string{
		"3000", ":3000", "localhost:3000", "[::1]:1", "http://x:1/p", "https://example.com",
		"tcp://db:5432", "http://[fe80::1]:8080/a%2Fb", "0", "http://x:1/?", "::", "a:b:c", "http://%zz",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		u, err := ParseServiceAddr(addr)
		if err != nil {
			return
		}
		switch u.Scheme {
		case "http", "https", "tcp":
		default:
			t.Fatalf("%q gave scheme %q", addr, u.Scheme)
		}
		host, port, err := net.SplitHostPort(u.Host)
		if err != nil || host == "" {
			t.Fatalf("%q gave host %q without host:port", addr, u.Host)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			t.Fatalf("%q gave port %q", addr, port)
		}
		again, err := ParseServiceAddr(u.String())
		if err != nil {
			t.Fatalf("%q gave %q which does not parse again: %v", addr, u.String(), err)
		}
		if again.String() != u.String() {
			t.Fatalf("%q gave %q then %q", addr, u.String(), again.String())
		}
	})
}
