package config

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/require"
)

func loadServer(t *testing.T, args ...string) (*Server, error) {
	t.Helper()
	cfg, _, err := Load("server", args, DefaultServer, io.Discard)
	return cfg, err
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "server.yaml")
	require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
	return path
}

func TestDefaultsMatchContract(t *testing.T) {
	cfg, err := loadServer(t)
	require.NoError(t, err)
	require.Equal(t, ":8000", cfg.Proxy.BindAddr)
	require.Equal(t, ":8001", cfg.Upstream.BindAddr)
	require.Equal(t, ":8002", cfg.Admin.BindAddr)
	require.Equal(t, ":8003", cfg.Gossip.BindAddr)
	require.Equal(t, 15*time.Second, cfg.Proxy.GatewayTimeout)
	require.Equal(t, 1<<20, cfg.Proxy.MaxResponseHeaderBytes)
	require.Equal(t, time.Minute, cfg.Server.GracefulShutdownTimeout)
	require.Equal(t, time.Minute, cfg.Cluster.JoinTimeout)
	require.Equal(t, 30*time.Second, cfg.Cluster.RejoinInterval)
	require.True(t, cfg.Cluster.AbortIfJoinFails)
	require.Equal(t, "info", cfg.Log.Level)
	require.Empty(t, cfg.Cluster.Join)
}

func TestRebalanceConfig(t *testing.T) {
	cfg, err := loadServer(t)
	require.NoError(t, err)
	require.Equal(t, Rebalance{Enabled: true, Tolerance: 0.1, MinTolerance: 2, MaxRate: 0.1, Interval: 3 * time.Second, NewMemberDelay: 5 * time.Second}, cfg.Cluster.Rebalance)

	path := writeFile(t, `
cluster:
  rebalance:
    enabled: false
    tolerance: 0.2
    max_rate: 0.05
`)
	cfg, err = loadServer(t, "--config.path", path, "--cluster.rebalance.interval", "10s", "--cluster.rebalance.min-tolerance", "5")
	require.NoError(t, err)
	require.Equal(t, Rebalance{Enabled: false, Tolerance: 0.2, MinTolerance: 5, MaxRate: 0.05, Interval: 10 * time.Second, NewMemberDelay: 5 * time.Second}, cfg.Cluster.Rebalance)

	path = writeFile(t, `
cluster:
  rebalance:
    tolerance: 1.5
    min_tolerance: -1
    max_rate: 0
    interval: 0s
    new_member_delay: -1s
`)
	_, err = loadServer(t, "--config.path", path)
	for _, want := range []string{
		"cluster.rebalance.tolerance (--cluster.rebalance.tolerance) is 1.5; use a fraction between 0 and 1",
		"cluster.rebalance.min_tolerance (--cluster.rebalance.min-tolerance) is -1",
		"cluster.rebalance.max_rate (--cluster.rebalance.max-rate) is 0; use a fraction above 0",
		"cluster.rebalance.interval (--cluster.rebalance.interval) is 0s",
		"cluster.rebalance.new_member_delay (--cluster.rebalance.new-member-delay) is -1s",
	} {
		require.ErrorContains(t, err, want)
	}
}

func TestPrecedenceDefaultsFileFlags(t *testing.T) {
	path := writeFile(t, `
proxy:
  bind_addr: ":9000"
  gateway_timeout: 5s
cluster:
  join: [a, b]
  node_id_prefix: pico-0-
log:
  level: debug
`)
	cfg, err := loadServer(t, "--config.path", path, "--proxy.gateway-timeout", "7s", "--cluster.join", "c", "--proxy.upstream-wait", "0")
	require.NoError(t, err)
	require.Zero(t, cfg.Proxy.UpstreamWait, "0 answers at once")
	require.Equal(t, ":9000", cfg.Proxy.BindAddr, "file overrides default")
	require.Equal(t, 7*time.Second, cfg.Proxy.GatewayTimeout, "flag overrides file")
	require.Equal(t, []string{"c"}, cfg.Cluster.Join, "flag replaces the file's list")
	require.Equal(t, "pico-0-", cfg.Cluster.NodeIDPrefix)
	require.Equal(t, "debug", cfg.Log.Level)
	require.Equal(t, ":8001", cfg.Upstream.BindAddr, "untouched keys keep defaults")
}

func TestExpandEnv(t *testing.T) {
	t.Setenv("POD_NAME", "pico-2")
	path := writeFile(t, "cluster:\n  node_id_prefix: ${POD_NAME}-\n  join: [\"${JOIN:-pico-headless}\"]\n")

	cfg, err := loadServer(t, "--config.path", path, "--config.expand-env")
	require.NoError(t, err)
	require.Equal(t, "pico-2-", cfg.Cluster.NodeIDPrefix)
	require.Equal(t, []string{"pico-headless"}, cfg.Cluster.Join)

	// Without expansion the literal text reaches validation, which now
	// refuses it at load (before, the cluster did at start).
	_, err = loadServer(t, "--config.path", path)
	require.ErrorContains(t, err, `cluster.node_id_prefix (--cluster.node-id-prefix) "${POD_NAME}-"`, "no expansion without --config.expand-env")
	require.ErrorContains(t, err, `cluster.join[0] (--cluster.join) "${JOIN:-pico-headless}"`)
}

func TestExpandEnvRefusesUnsetVariables(t *testing.T) {
	t.Setenv("PICO_TEST_SET", "10.0.0.7")
	t.Setenv("PICO_TEST_EMPTY", "")
	path := writeFile(t, "proxy:\n  bind_addr: ${PICO_TEST_UNSET_A}\n  advertise_addr: ${PICO_TEST_SET}:8000\n"+
		"upstream:\n  bind_addr: $PICO_TEST_UNSET_B\n"+
		"admin:\n  bind_addr: \"${PICO_TEST_EMPTY}:8002\"\n"+
		"gossip:\n  advertise_addr: ${PICO_TEST_UNSET_C:-127.0.0.1:8003}\n")

	_, err := loadServer(t, "--config.path", path, "--config.expand-env")
	require.Error(t, err)
	msg := err.Error()
	require.Contains(t, msg, `line 2: key "proxy.bind_addr": environment variable PICO_TEST_UNSET_A is not set`)
	require.Contains(t, msg, `line 5: key "upstream.bind_addr": environment variable PICO_TEST_UNSET_B is not set`)
	require.Contains(t, msg, "${PICO_TEST_UNSET_A:-value}", "the fix is named")
	require.NotContains(t, msg, "PICO_TEST_SET", "a set variable is fine")
	require.NotContains(t, msg, "PICO_TEST_EMPTY", "an empty variable is set")
	require.NotContains(t, msg, "PICO_TEST_UNSET_C", "a variable with a default is fine")

	t.Setenv("PICO_TEST_UNSET_A", "127.0.0.1:9000")
	t.Setenv("PICO_TEST_UNSET_B", "127.0.0.1:9001")
	cfg, err := loadServer(t, "--config.path", path, "--config.expand-env")
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:9000", cfg.Proxy.BindAddr)
	require.Equal(t, "10.0.0.7:8000", cfg.Proxy.AdvertiseAddr)
	require.Equal(t, ":8002", cfg.Admin.BindAddr)
	require.Equal(t, "127.0.0.1:8003", cfg.Gossip.AdvertiseAddr)
}

func TestFileErrorsNameTheKey(t *testing.T) {
	for name, tc := range map[string]struct{ yaml, want string }{
		"unknown key":      {"proxy:\n  bind_adr: \":1\"\n", `unknown key "proxy.bind_adr"`},
		"unknown section":  {"proxxy:\n  bind_addr: \":1\"\n", `unknown key "proxxy"`},
		"invalid duration": {"proxy:\n  gateway_timeout: soon\n", `key "proxy.gateway_timeout"`},
		"wrong type":       {"cluster:\n  join: 3\n", `key "cluster.join"`},
		"malformed":        {"proxy: [\n", "invalid YAML"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := loadServer(t, "--config.path", writeFile(t, tc.yaml))
			require.ErrorContains(t, err, tc.want)
			var usage *UsageError
			require.False(t, errors.As(err, &usage), "a bad file is a config error, not a usage error")
		})
	}
}

func TestValidationReportsEveryProblem(t *testing.T) {
	path := writeFile(t, `
proxy:
  bind_addr: "8000"
  gateway_timeout: -1s
  upstream_wait: -2s
  max_response_header_bytes: 0
log:
  level: loud
cluster:
  node_id: a
  node_id_prefix: b
`)
	_, err := loadServer(t, "--config.path", path)
	require.Error(t, err)
	for _, want := range []string{"proxy.bind_addr", "proxy.gateway_timeout", "proxy.upstream_wait (--proxy.upstream-wait) is -2s; use 0 or", "proxy.max_response_header_bytes (--proxy.max-response-header-bytes) is 0; use a positive number", "log.level", "cluster.node_id and cluster.node_id_prefix"} {
		require.ErrorContains(t, err, want)
	}
}

func TestFlagErrorsAreUsageErrors(t *testing.T) {
	_, err := loadServer(t, "--no-such-flag")
	var usage *UsageError
	require.ErrorAs(t, err, &usage)

	_, err = loadServer(t, "--proxy.gateway-timeout", "soon")
	require.ErrorAs(t, err, &usage)
	require.ErrorContains(t, err, "proxy.gateway-timeout")

	_, err = loadServer(t, "--help")
	require.ErrorIs(t, err, pflag.ErrHelp)
}

func TestMissingFile(t *testing.T) {
	_, err := loadServer(t, "--config.path", filepath.Join(t.TempDir(), "nope.yaml"))
	require.ErrorContains(t, err, "nope.yaml")
}

func TestEmptyFileKeepsDefaults(t *testing.T) {
	cfg, err := loadServer(t, "--config.path", writeFile(t, "# nothing\n"))
	require.NoError(t, err)
	defaults := DefaultServer()
	require.NoError(t, defaults.Validate()) // as loaded: validated
	require.Equal(t, defaults, cfg)
}

func TestEveryKeyHasAFlag(t *testing.T) {
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	DefaultServer().RegisterFlags(fs)
	for _, key := range []string{
		"proxy.bind_addr", "proxy.advertise_addr", "proxy.gateway_timeout",
		"upstream.bind_addr", "upstream.advertise_addr",
		"admin.bind_addr", "admin.advertise_addr",
		"gossip.bind_addr", "gossip.advertise_addr",
		"cluster.node_id", "cluster.node_id_prefix", "cluster.join", "cluster.abort_if_join_fails",
		"cluster.join_timeout", "cluster.rejoin_interval",
		"server.graceful_shutdown_timeout", "log.level", "log.subsystems",
		"proxy.read_header_timeout", "proxy.idle_timeout", "proxy.max_header_bytes",
		"proxy.max_response_header_bytes", "upstream.max_streams_per_connection", "gossip.secret_key",
		"cluster.rebalance.enabled", "cluster.rebalance.tolerance", "cluster.rebalance.min_tolerance",
		"cluster.rebalance.max_rate", "cluster.rebalance.interval", "cluster.rebalance.new_member_delay",
	} {
		require.NotNil(t, fs.Lookup(FlagName(key)[2:]), "no flag for %s", key)
	}
	for _, section := range []string{"auth", "proxy.auth", "admin.auth"} {
		for _, key := range []string{
			"token_hmac_secret_key", "token_rsa_public_key", "token_ecdsa_public_key",
			"jwks_url", "jwks_refresh_interval", "token_audience", "token_issuer",
			"require_endpoints_claim", "disconnect_on_expiry",
		} {
			require.NotNil(t, fs.Lookup(FlagName(section + "." + key)[2:]), "no flag for %s.%s", section, key)
		}
	}
	for _, section := range []string{"proxy.tls", "upstream.tls", "admin.tls"} {
		for _, key := range []string{"cert", "key", "client_cas"} {
			require.NotNil(t, fs.Lookup(FlagName(section + "." + key)[2:]), "no flag for %s.%s", section, key)
		}
	}
	require.NotNil(t, fs.Lookup("proxy.tls.peer-cas"), "no flag for proxy.tls.peer_cas")
}

func TestSecurityKeysOfTheServer(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "gossip.key")
	require.NoError(t, os.WriteFile(keyFile, []byte("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n"), 0o600))
	path := writeFile(t, `
auth:
  token_hmac_secret_key: /etc/pico-auth/upstream-hmac
  token_audience: pico-upstream
  require_endpoints_claim: true
  disconnect_on_expiry: false
proxy:
  auth:
    jwks_url: https://issuer.example/.well-known/jwks.json
  tls:
    cert: /etc/pico-tls/tls.crt
    key: /etc/pico-tls/tls.key
upstream:
  tls:
    cert: /etc/pico-tls/tls.crt
    key: /etc/pico-tls/tls.key
    client_cas: /etc/pico-tls/ca.crt
admin:
  auth:
    token_rsa_public_key: /etc/pico-auth/admin.pem
  tls:
    cert: /etc/pico-tls/tls.crt
    key: /etc/pico-tls/tls.key
gossip:
  secret_key: `+keyFile+`
`)
	cfg, err := loadServer(t, "--config.path", path, "--admin.auth.token-audience", "pico-admin")
	require.NoError(t, err)
	require.Equal(t, "/etc/pico-auth/upstream-hmac", cfg.Auth.TokenHMACSecretKey)
	require.Equal(t, "pico-upstream", cfg.Auth.TokenAudience)
	require.True(t, cfg.Auth.RequireEndpointsClaim)
	require.False(t, cfg.Auth.DisconnectOnExpiry)
	require.Equal(t, "https://issuer.example/.well-known/jwks.json", cfg.Proxy.Auth.JWKSURL)
	require.True(t, cfg.Proxy.Auth.DisconnectOnExpiry, "defaults kept in a section the file only partly sets")
	require.Equal(t, 5*time.Minute, cfg.Proxy.Auth.JWKSRefreshInterval)
	require.Equal(t, TLS{Cert: "/etc/pico-tls/tls.crt", Key: "/etc/pico-tls/tls.key"}, cfg.Proxy.TLS)
	require.Equal(t, "/etc/pico-tls/ca.crt", cfg.Upstream.TLS.ClientCAs)
	require.Equal(t, "/etc/pico-auth/admin.pem", cfg.Admin.Auth.TokenRSAPublicKey)
	require.Equal(t, "pico-admin", cfg.Admin.Auth.TokenAudience, "flag")
	require.True(t, cfg.Admin.TLS.Enabled())
	require.Equal(t, keyFile, cfg.Gossip.SecretKey)
}

func TestSecurityDefaultsOfTheServer(t *testing.T) {
	cfg, err := loadServer(t)
	require.NoError(t, err)
	for name, a := range map[string]Auth{"auth": cfg.Auth, "proxy.auth": cfg.Proxy.Auth, "admin.auth": cfg.Admin.Auth} {
		require.Equal(t, DefaultAuth(), a, name)
		require.False(t, a.Enabled(), name)
	}
	for name, tls := range map[string]TLS{"proxy.tls": cfg.Proxy.TLS, "upstream.tls": cfg.Upstream.TLS, "admin.tls": cfg.Admin.TLS} {
		require.False(t, tls.Enabled(), name)
	}
	require.Empty(t, cfg.Gossip.SecretKey)
}

func TestSecurityValidationOfTheServer(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--auth.require-endpoints-claim"}, "auth.require_endpoints_claim (--auth.require-endpoints-claim) is set but no verification key is"},
		{[]string{"--auth.jwks-url", "http://issuer/jwks"}, "auth.jwks_url (--auth.jwks-url): plain http"},
		{[]string{"--proxy.auth.token-audience", "x"}, "proxy.auth.token_audience (--proxy.auth.token-audience) is set but no verification key is"},
		{[]string{"--admin.auth.token-issuer", "x"}, "admin.auth.token_issuer (--admin.auth.token-issuer) is set but no verification key is"},
		{[]string{"--proxy.tls.cert", "c.pem"}, "proxy.tls.key (--proxy.tls.key) is empty"},
		{[]string{"--upstream.tls.key", "k.pem"}, "upstream.tls.cert (--upstream.tls.cert) is empty"},
		{[]string{"--admin.tls.client-cas", "ca.pem"}, "admin.tls.client_cas (--admin.tls.client-cas) needs TLS"},
		{[]string{"--gossip.secret-key", "c2hvcnQ="}, "gossip.secret_key (--gossip.secret-key): the value decodes to 5 bytes"},
		{[]string{"--gossip.secret-key", "/etc/pico/no-such-gossip.key"}, "file /etc/pico/no-such-gossip.key does not exist"},
	} {
		_, err := loadServer(t, tc.args...)
		require.ErrorContains(t, err, tc.want, "args %v", tc.args)
	}
	// Every problem at once.
	_, err := loadServer(t, "--auth.token-issuer", "x", "--admin.tls.cert", "c", "--gossip.secret-key", "!")
	for _, want := range []string{"auth.token_issuer", "admin.tls.key", "gossip.secret_key"} {
		require.ErrorContains(t, err, want)
	}
}
