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
	require.Equal(t, time.Minute, cfg.Server.GracefulShutdownTimeout)
	require.Equal(t, time.Minute, cfg.Cluster.JoinTimeout)
	require.Equal(t, 30*time.Second, cfg.Cluster.RejoinInterval)
	require.True(t, cfg.Cluster.AbortIfJoinFails)
	require.Equal(t, "info", cfg.Log.Level)
	require.Empty(t, cfg.Cluster.Join)
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
	cfg, err := loadServer(t, "--config.path", path, "--proxy.gateway-timeout", "7s", "--cluster.join", "c")
	require.NoError(t, err)
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

	cfg, err = loadServer(t, "--config.path", path)
	require.NoError(t, err)
	require.Equal(t, "${POD_NAME}-", cfg.Cluster.NodeIDPrefix, "no expansion without --config.expand-env")
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
log:
  level: loud
cluster:
  node_id: a
  node_id_prefix: b
`)
	_, err := loadServer(t, "--config.path", path)
	require.Error(t, err)
	for _, want := range []string{"proxy.bind_addr", "proxy.gateway_timeout", "log.level", "cluster.node_id and cluster.node_id_prefix"} {
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
	require.Equal(t, DefaultServer(), cfg)
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
	} {
		require.NotNil(t, fs.Lookup(FlagName(key)[2:]), "no flag for %s", key)
	}
}
