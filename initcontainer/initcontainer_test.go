package initcontainer_test

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/pico-proxy/pico/initcontainer"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

const service = "pico-headless.default.svc.cluster.local"

var threePods = initcontainer.Params{
	PodName:     "pico-1",
	ServiceFQDN: service,
	Peers:       []string{"pico-2." + service, "PICO-0." + service + "."},
}

// TestRenderGolden renders testdata/NAME.base.yaml (if present) and compares
// with testdata/NAME.golden.yaml. Run with -update to rewrite the goldens.
func TestRenderGolden(t *testing.T) {
	for _, tc := range []struct {
		name   string
		params initcontainer.Params
	}{
		{"no_base", threePods},
		{"first_pod", initcontainer.Params{PodName: "pico-0", ServiceFQDN: service}},
		{"full", threePods},
		{"no_cluster", threePods},
		{"null_cluster", threePods},
		{"flow", threePods},
		{"comments_only", threePods},
		{"addresses", initcontainer.Params{PodName: "pico-1", ServiceFQDN: service, Peers: []string{"10.0.0.3", "10.0.0.1", "fd00::1"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base, err := os.ReadFile(filepath.Join("testdata", tc.name+".base.yaml"))
			if !os.IsNotExist(err) {
				require.NoError(t, err)
			}
			got, err := initcontainer.Render(base, tc.params)
			require.NoError(t, err)

			golden := filepath.Join("testdata", tc.name+".golden.yaml")
			if *update {
				require.NoError(t, os.WriteFile(golden, got, 0o644))
			}
			want, err := os.ReadFile(golden)
			require.NoError(t, err, "run go test -update to create the golden file")
			assert.Equal(t, string(want), string(got))

			again, err := initcontainer.Render(base, tc.params)
			require.NoError(t, err)
			assert.Equal(t, got, again, "rendering is deterministic")
			rerendered, err := initcontainer.Render(got, tc.params)
			require.NoError(t, err)
			assert.Equal(t, string(got), string(rerendered), "rendering its own output changes nothing")
		})
	}
}

func TestRenderKeepsBaseKeys(t *testing.T) {
	base, err := os.ReadFile(filepath.Join("testdata", "full.base.yaml"))
	require.NoError(t, err)
	got, err := initcontainer.Render(base, threePods)
	require.NoError(t, err)

	var before, after map[string]any
	require.NoError(t, yaml.Unmarshal(base, &before))
	require.NoError(t, yaml.Unmarshal(got, &after))
	for key, value := range before {
		if key != "cluster" {
			assert.Equal(t, value, after[key], key)
		}
	}
	cluster := after["cluster"].(map[string]any)
	assert.Equal(t, "pico-1-", cluster["node_id_prefix"])
	assert.Equal(t, []any{"pico-0." + service, "pico-2." + service, service}, cluster["join"])
	assert.Equal(t, true, cluster["abort_if_join_fails"])
	assert.Equal(t, "${JOIN_TIMEOUT:-2m}", cluster["join_timeout"])
	assert.Contains(t, string(got), "advertise_addr: ${POD_IP}:8001", "environment references stay as written")
	assert.Contains(t, string(got), "# Pico server configuration shared by every pod.")

	var order yaml.Node
	require.NoError(t, yaml.Unmarshal(got, &order))
	var keys []string
	for i := 0; i < len(order.Content[0].Content); i += 2 {
		keys = append(keys, order.Content[0].Content[i].Value)
	}
	assert.Equal(t, []string{"proxy", "upstream", "cluster", "gossip", "log"}, keys)
}

func TestParamsJoin(t *testing.T) {
	p := initcontainer.Params{
		PodName:     "pico-3",
		ServiceFQDN: service + ".",
		Peers:       []string{"pico-2." + service, "pico-0." + service, "pico-2." + service + ".", service},
	}
	assert.Equal(t, []string{"pico-0." + service, "pico-2." + service, service}, p.Join())
	assert.Equal(t, "pico-3-", p.NodeIDPrefix())
	assert.Equal(t, []string{service}, initcontainer.Params{PodName: "pico-0", ServiceFQDN: service}.Join())
}

func TestRenderQuotesWhatCouldBeMisread(t *testing.T) {
	// A pod named "123" must give the string "123-", and a peer name that
	// looks like a number must stay a string.
	got, err := initcontainer.Render(nil, initcontainer.Params{PodName: "123", ServiceFQDN: "svc.ns", Peers: []string{"1.5"}})
	require.NoError(t, err)
	var v struct {
		Cluster struct {
			NodeIDPrefix string   `yaml:"node_id_prefix"`
			Join         []string `yaml:"join"`
		}
	}
	require.NoError(t, yaml.Unmarshal(got, &v))
	assert.Equal(t, "123-", v.Cluster.NodeIDPrefix)
	assert.Equal(t, []string{"1.5", "svc.ns"}, v.Cluster.Join)
}

func TestRenderRejectsBadInput(t *testing.T) {
	for _, tc := range []struct {
		name   string
		base   string
		params initcontainer.Params
		want   string
	}{
		{"invalid YAML", "proxy:\n  bind_addr: [\n", threePods, "invalid YAML: "},
		{"tab indentation", "proxy:\n\tbind_addr: x\n", threePods, "invalid YAML: "},
		{"duplicate keys", "log:\n  level: info\nlog:\n  level: debug\n", threePods, `invalid YAML: line 3: mapping key "log" already defined at line 1`},
		{"two documents", "log: {}\n---\nproxy: {}\n", threePods, "holds several documents (a second one starts at line 2)"},
		{"top level list", "- a\n- b\n", threePods, "the top level must be a mapping of keys, not a list (line 1)"},
		{"top level scalar", "hello\n", threePods, `the top level must be a mapping of keys, not the value "hello"`},
		{"cluster list", "cluster:\n  - a\n", threePods, "cluster must be a mapping of keys, not a list (line 1)"},
		{"cluster scalar", "log: {}\ncluster: yes\n", threePods, `cluster must be a mapping of keys, not the value "yes" (line 2)`},
		{"cluster alias", "x: &c {join_timeout: 1m}\ncluster: *c\n", threePods, "cluster must be a mapping of keys, not an alias (line 2)"},
		{"fixed node ID", "cluster:\n  node_id: ${POD_NAME}\n", threePods, "cluster.node_id is set (line 2)"},
		{"pod name with upper case", "", initcontainer.Params{PodName: "Pico-0", ServiceFQDN: service}, `pod name: "Pico-0" is not a DNS label`},
		{"pod name with dot", "", initcontainer.Params{PodName: "pico.0", ServiceFQDN: service}, `pod name: "pico.0" is not a DNS label`},
		{"empty pod name", "", initcontainer.Params{ServiceFQDN: service}, "pod name: must not be empty"},
		{"no service", "", initcontainer.Params{PodName: "pico-0"}, "service name: must not be empty"},
		{"bad peer", "", initcontainer.Params{PodName: "pico-0", ServiceFQDN: service, Peers: []string{"a b"}}, `peer: "a b" is not a DNS name`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := initcontainer.Render([]byte(tc.base), tc.params)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), "\n")
		})
	}
}

func TestRenderedFileIsIdempotent(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "server.yaml")
	base, err := os.ReadFile(filepath.Join("testdata", "full.base.yaml"))
	require.NoError(t, err)
	write := func(p initcontainer.Params) []byte {
		rendered, err := initcontainer.Render(base, p)
		require.NoError(t, err)
		require.NoError(t, initcontainer.WriteFileAtomic(out, rendered, 0o644))
		got, err := os.ReadFile(out)
		require.NoError(t, err)
		return got
	}
	first := write(threePods)
	reordered := threePods
	reordered.Peers = []string{threePods.Peers[1], threePods.Peers[0]}
	assert.Equal(t, first, write(reordered))

	info, err := os.Stat(out)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o644), info.Mode().Perm())
	assertOnlyFiles(t, dir, "server.yaml")
}

func TestWriteFileAtomicFailsWithoutHalfWrittenFiles(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "server.yaml")
	const previous = "log:\n  level: info\n"
	require.NoError(t, os.WriteFile(out, []byte(previous), 0o644))
	notAFile := filepath.Join(dir, "file")
	require.NoError(t, os.WriteFile(notAFile, nil, 0o644))
	require.NoError(t, os.Mkdir(filepath.Join(dir, "taken"), 0o755))

	for _, tc := range []struct{ name, output, want string }{
		{"missing output directory", filepath.Join(dir, "missing", "server.yaml"), "write " + filepath.Join(dir, "missing", "server.yaml") + ": cannot create a file in " + filepath.Join(dir, "missing") + ": no such file or directory"},
		{"output directory is a file", filepath.Join(notAFile, "server.yaml"), "cannot create a file in " + notAFile + ": not a directory"},
		{"output is a directory", filepath.Join(dir, "taken"), "write " + filepath.Join(dir, "taken") + ": file exists"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := initcontainer.WriteFileAtomic(tc.output, []byte("cluster: {}\n"), 0o644)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), "\n")

			got, err := os.ReadFile(out)
			require.NoError(t, err)
			assert.Equal(t, previous, string(got), "the old output is untouched")
			assertOnlyFiles(t, dir, "file", "server.yaml", "taken")
		})
	}
}

func TestWriteToReadOnlyDirectory(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root writes into read-only directories")
	}
	dir := t.TempDir()
	require.NoError(t, os.Chmod(dir, 0o555))
	t.Cleanup(func() { _ = os.Chmod(dir, 0o755) })
	err := initcontainer.WriteFileAtomic(filepath.Join(dir, "server.yaml"), nil, 0o644)
	assert.ErrorContains(t, err, "cannot create a file in "+dir+": permission denied")
}

func assertOnlyFiles(t *testing.T, dir string, want ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	assert.Equal(t, want, got, "no temporary files are left behind")
}

func FuzzRender(f *testing.F) {
	seeds, err := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	require.NoError(f, err)
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		require.NoError(f, err)
		f.Add(b)
	}
	for _, s := range []string{"", "~", "cluster:\n", "cluster: []\n", "a: &x 1\nb: *x\n", "<<: {cluster: {join: [a]}}\n", "cluster: {node_id_prefix: x, join: y}\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, base []byte) {
		got, err := initcontainer.Render(base, threePods)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
			return
		}
		var v struct {
			Cluster struct {
				NodeIDPrefix string   `yaml:"node_id_prefix"`
				Join         []string `yaml:"join"`
			}
		}
		if err := yaml.Unmarshal(got, &v); err != nil {
			t.Fatalf("output does not parse: %v\n%s", err, got)
		}
		if v.Cluster.NodeIDPrefix != "pico-1-" || !equal(v.Cluster.Join, threePods.Join()) {
			t.Fatalf("cluster keys not set: %+v\n%s", v.Cluster, got)
		}
		var before, after map[string]any
		if yaml.Unmarshal(base, &before) == nil && yaml.Unmarshal(got, &after) == nil {
			for key, value := range before {
				if key != "cluster" && !assert.ObjectsAreEqual(value, after[key]) {
					t.Fatalf("key %q changed from %#v to %#v", key, value, after[key])
				}
			}
		}
		again, err := initcontainer.Render(base, threePods)
		if err != nil || string(again) != string(got) {
			t.Fatalf("second render differs: %v", err)
		}
	})
}

func equal(a, b []string) bool { return strings.Join(a, "\n") == strings.Join(b, "\n") }

func BenchmarkRender(b *testing.B) {
	base, err := os.ReadFile(filepath.Join("testdata", "full.base.yaml"))
	require.NoError(b, err)
	for b.Loop() {
		if _, err := initcontainer.Render(base, threePods); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWriteFileAtomic is dominated by the two fsyncs (file and directory).
func BenchmarkWriteFileAtomic(b *testing.B) {
	out := filepath.Join(b.TempDir(), "server.yaml")
	data := []byte("cluster:\n  node_id_prefix: \"pico-1-\"\n")
	for b.Loop() {
		if err := initcontainer.WriteFileAtomic(out, data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
}
