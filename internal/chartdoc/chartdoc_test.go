package chartdoc

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const chartDir = "../../charts/pico"

func TestChartREADMEIsCurrent(t *testing.T) {
	want, err := GenerateDir(chartDir)
	require.NoError(t, err)
	have, err := os.ReadFile(filepath.Join(chartDir, ReadmeFile))
	require.NoError(t, err)
	assert.Equal(t, string(want), string(have),
		"charts/pico/README.md is stale: run `go run ./internal/chartdoc/cmd/chartdoc`")
}

func TestChartREADMEListsEveryValue(t *testing.T) {
	values, err := os.ReadFile(filepath.Join(chartDir, ValuesFile))
	require.NoError(t, err)
	docs, err := ParseValues(values)
	require.NoError(t, err)
	keys := map[string]Value{}
	for _, v := range docs {
		keys[v.Key] = v
	}
	// The values the contract names, and a sample of the rest.
	for _, k := range []string{"replicaCount", "image.repository", "image.tag", "image.pullPolicy",
		"config", "config.log.level", "ports.gossip", "terminationGracePeriodSeconds", "networkPolicy.enabled",
		"auth.existingSecret", "tls.existingSecret", "ingress.upstream.hosts", "httpRoute.proxy.parentRefs"} {
		assert.Contains(t, keys, k)
	}
	assert.Equal(t, "int", keys["replicaCount"].Type)
	assert.Equal(t, "3", keys["replicaCount"].Default)
	assert.Equal(t, "int", keys["service.proxyNodePort"].Type, "(int) overrides the type of a null default")
	assert.Equal(t, "null", keys["service.proxyNodePort"].Default)
	assert.NotContains(t, keys, "resources.requests.cpu", "a mapping with undocumented children is one value")
}

func TestParseValues(t *testing.T) {
	values := `# free header comment, not a description

# -- Number of members.
replicaCount: 3

image:
  # -- Image name.
  repository: example/pico
  # -- (string) Tag; empty means appVersion.
  tag: null

# -- Resources, as one value:
# any ResourceRequirements.
resources:
  limits:
    memory: 1Gi

# -- A section with its own row.
config:
  log:
    # -- Level | with a pipe.
    level: info
`
	got, err := ParseValues([]byte(values))
	require.NoError(t, err)
	assert.Equal(t, []Value{
		{Key: "replicaCount", Type: "int", Default: "3", Description: "Number of members."},
		{Key: "image.repository", Type: "string", Default: `"example/pico"`, Description: "Image name."},
		{Key: "image.tag", Type: "string", Default: "null", Description: "Tag; empty means appVersion."},
		{Key: "resources", Type: "object", Default: `{"limits":{"memory":"1Gi"}}`, Description: "Resources, as one value: any ResourceRequirements."},
		{Key: "config", Type: "object", Default: `{"log":{"level":"info"}}`, Description: "A section with its own row."},
		{Key: "config.log.level", Type: "string", Default: `"info"`, Description: "Level | with a pipe."},
	}, got)
	assert.Contains(t, Table(got), "Level \\| with a pipe.")
}

func TestParseValuesRejectsUndocumented(t *testing.T) {
	_, err := ParseValues([]byte(`
# -- Documented.
a: 1
b: 2
section:
  # -- Documented.
  c: 1
  # a plain comment is not a description
  d: [x]
`))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "b (line 4)")
	assert.Contains(t, err.Error(), "section.d (line 9)")
	assert.NotContains(t, err.Error(), "section (")
}

func TestGenerateUsesTemplate(t *testing.T) {
	out, err := Generate([]byte("name: demo\nversion: 1.2.3\nappVersion: \"9\"\n"),
		[]byte("# -- Members.\nreplicaCount: 3\n"),
		[]byte("# {{ .Name }} {{ .Version }} ({{ .AppVersion }})\n{{ .ValuesTable }}"))
	require.NoError(t, err)
	assert.Equal(t, "# demo 1.2.3 (9)\n| Key | Type | Default | Description |\n|-----|------|---------|-------------|\n| `replicaCount` | int | `3` | Members. |\n", string(out))

	_, err = Generate([]byte("name: demo\n"), []byte("a: 1\n"), []byte("x"))
	assert.ErrorContains(t, err, "add a `# -- description` comment above: a (line 1)")
	_, err = Generate([]byte("name: demo\n"), []byte(""), []byte("{{ .Nope }}"))
	assert.ErrorContains(t, err, "README template")
}

func FuzzParseValues(f *testing.F) {
	f.Add("# -- a\na: 1\n")
	f.Add("s:\n  # -- b\n  b: [1, 2]\n")
	f.Add("# --\nx: {y: z}\n")
	f.Add("- 1\n")
	f.Fuzz(func(t *testing.T, doc string) {
		values, err := ParseValues([]byte(doc))
		if err != nil {
			return
		}
		table := Table(values)
		if got := strings.Count(table, "\n"); got != len(values)+2 {
			t.Fatalf("table has %d lines for %d values", got, len(values))
		}
	})
}
