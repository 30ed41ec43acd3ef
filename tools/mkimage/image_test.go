package main

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"log"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

var (
	binariesOnce sync.Once
	binariesDir  string
	binariesErr  error
)

// staticBinary builds a tiny static Go program for linux/arch (once per test binary) and
// returns its path: a stand-in for bin/pico that builds in seconds.
func staticBinary(t *testing.T, arch string) string {
	t.Helper()
	binariesOnce.Do(func() {
		binariesDir, binariesErr = os.MkdirTemp("", "mkimage-test-")
		if binariesErr != nil {
			return
		}
		src := filepath.Join(binariesDir, "src")
		if binariesErr = os.MkdirAll(src, 0o755); binariesErr != nil {
			return
		}
		_ = os.WriteFile(filepath.Join(src, "go.mod"), []byte("module hello\n\ngo 1.22\n"), 0o644)
		_ = os.WriteFile(filepath.Join(src, "main.go"), []byte("package main\n\nfunc main() { println(\"hello\") }\n"), 0o644)
		for _, a := range []string{"amd64", "arm64"} {
			cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(binariesDir, a, "pico"), ".")
			cmd.Dir = src
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+a, "GOFLAGS=")
			if out, err := cmd.CombinedOutput(); err != nil {
				binariesErr = &exec.ExitError{ProcessState: cmd.ProcessState, Stderr: out}
				return
			}
		}
	})
	if binariesErr != nil {
		t.Fatalf("building the test binaries: %v", binariesErr)
	}
	return filepath.Join(binariesDir, arch, "pico")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binariesDir != "" {
		os.RemoveAll(binariesDir)
	}
	os.Exit(code)
}

// testCerts is a PEM bundle standing in for the build machine's.
func testCerts(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(p, []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// files flattens an image into path -> header (and regular files' contents).
func files(t *testing.T, img v1.Image) (map[string]*tar.Header, map[string][]byte) {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	headers, contents := map[string]*tar.Header{}, map[string][]byte{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		p := "/" + strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")
		headers[p] = h
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			contents[p] = b
		}
	}
	return headers, contents
}

func TestTarballHoldsPicoAsNonRootEntrypoint(t *testing.T) {
	bin := staticBinary(t, "amd64")
	certs := testCerts(t)
	out := filepath.Join(t.TempDir(), "pico-image.tar")
	o, err := parse([]string{"-binary", bin, "-tag", "registry.local/pico:test", "-out", out, "-ca-certs", certs,
		"-created", "1700000000", "-label", "org.opencontainers.image.version=1.2.3"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var stdout bytes.Buffer
	if err := run(context.Background(), o, &stdout); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout.String(), "registry.local/pico:test (linux/amd64) sha256:") {
		t.Errorf("report %q names no reference, platform and digest", stdout.String())
	}

	// Read it back as `docker load` / `ctr images import` would: by its tag.
	tag, err := name.NewTag("registry.local/pico:test")
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(out, &tag)
	if err != nil {
		t.Fatalf("the tarball does not hold registry.local/pico:test: %v", err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.OS != "linux" || cfg.Architecture != "amd64" {
		t.Errorf("platform %s/%s, want linux/amd64", cfg.OS, cfg.Architecture)
	}
	if !slices.Equal(cfg.Config.Entrypoint, []string{"/usr/local/bin/pico"}) {
		t.Errorf("entrypoint %q, want [/usr/local/bin/pico]", cfg.Config.Entrypoint)
	}
	if !slices.Equal(cfg.Config.Cmd, []string{"server"}) {
		t.Errorf("cmd %q, want [server]", cfg.Config.Cmd)
	}
	if cfg.Config.User != "65532:65532" {
		t.Errorf("user %q, want 65532:65532 (non-root)", cfg.Config.User)
	}
	for _, want := range []string{"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt", "PATH=/usr/local/bin:/usr/bin:/bin"} {
		if !slices.Contains(cfg.Config.Env, want) {
			t.Errorf("env %q lacks %s", cfg.Config.Env, want)
		}
	}
	for _, port := range []string{"8000/tcp", "8001/tcp", "8002/tcp", "8003/tcp", "8003/udp"} {
		if _, ok := cfg.Config.ExposedPorts[port]; !ok {
			t.Errorf("port %s not exposed", port)
		}
	}
	if got := cfg.Config.Labels["org.opencontainers.image.version"]; got != "1.2.3" {
		t.Errorf("version label %q", got)
	}
	if got := cfg.Config.Labels["org.opencontainers.image.created"]; got != "2023-11-14T22:13:20Z" {
		t.Errorf("created label %q, want the -created time", got)
	}
	if got := cfg.Created.UTC().Format("2006-01-02T15:04:05Z"); got != "2023-11-14T22:13:20Z" {
		t.Errorf("created %s, want the -created time", got)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 2 || len(cfg.History) != 2 {
		t.Errorf("%d layers and %d history entries, want 2 (base, binary)", len(layers), len(cfg.History))
	}

	headers, contents := files(t, img)
	want, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	h := headers["/usr/local/bin/pico"]
	switch {
	case h == nil:
		t.Fatalf("no /usr/local/bin/pico among %v", keys(headers))
	case h.Typeflag != tar.TypeReg || h.Mode&0o111 != 0o111:
		t.Errorf("/usr/local/bin/pico: type %c mode %o, want an executable regular file", h.Typeflag, h.Mode)
	case !bytes.Equal(contents["/usr/local/bin/pico"], want):
		t.Errorf("/usr/local/bin/pico is not the binary given (%d bytes, want %d)", len(contents["/usr/local/bin/pico"]), len(want))
	}
	if h := headers["/tmp"]; h == nil || h.Mode != 0o1777 {
		t.Errorf("/tmp: %+v, want a sticky world-writable directory", h)
	}
	if h := headers["/home/nonroot"]; h == nil || h.Uid != 65532 {
		t.Errorf("/home/nonroot: %+v, want a directory owned by 65532", h)
	}
	if !strings.Contains(string(contents["/etc/passwd"]), "nonroot:x:65532:65532:") {
		t.Errorf("/etc/passwd has no nonroot user 65532:\n%s", contents["/etc/passwd"])
	}
	pem, _ := os.ReadFile(certs)
	if !bytes.Equal(contents["/etc/ssl/certs/ca-certificates.crt"], pem) {
		t.Errorf("/etc/ssl/certs/ca-certificates.crt is not the -ca-certs bundle")
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func TestSameInputsGiveTheSameDigest(t *testing.T) {
	spec := Spec{Binaries: []string{staticBinary(t, "amd64")}, CACerts: testCerts(t)}
	digest := func(s Spec) v1.Hash {
		t.Helper()
		images, err := Build(s)
		if err != nil {
			t.Fatal(err)
		}
		d, err := images[0].Image.Digest()
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	first := digest(spec)
	if again := digest(spec); again != first {
		t.Errorf("two builds of the same binary: %s and %s", first, again)
	}
	spec.Labels = map[string]string{"org.opencontainers.image.revision": "abc"}
	if changed := digest(spec); changed == first {
		t.Errorf("a different label left the digest %s", first)
	}
}

func TestPushSendsAnIndexOfBothPlatforms(t *testing.T) {
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	u, _ := url.Parse(reg.URL)
	amd64, arm64 := staticBinary(t, "amd64"), staticBinary(t, "arm64")
	ref := u.Host + "/team/pico:1.0"
	o, err := parse([]string{"-binary", amd64, "-binary", arm64, "-tag", ref, "-push", "-insecure", "-ca-certs", ""}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var stdout bytes.Buffer
	if err := run(context.Background(), o, &stdout); err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Index(r)
	if err != nil {
		t.Fatalf("the registry has no index at %s: %v", ref, err)
	}
	digest, _ := idx.Digest()
	if !strings.Contains(stdout.String(), "@"+digest.String()) {
		t.Errorf("report %q does not name the pushed digest %s", stdout.String(), digest)
	}
	manifest, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var platforms []string
	for _, m := range manifest.Manifests {
		platforms = append(platforms, m.Platform.String())
		img, err := remote.Image(r.Context().Digest(m.Digest.String()))
		if err != nil {
			t.Fatalf("manifest %s of %s not in the registry: %v", m.Digest, m.Platform, err)
		}
		cfg, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Architecture != m.Platform.Architecture || !slices.Equal(cfg.Config.Entrypoint, []string{"/usr/local/bin/pico"}) {
			t.Errorf("%s: config arch %s entrypoint %q", m.Platform, cfg.Architecture, cfg.Config.Entrypoint)
		}
		if slices.ContainsFunc(cfg.Config.Env, func(e string) bool { return strings.HasPrefix(e, "SSL_CERT_FILE=") }) {
			t.Errorf("%s: -ca-certs '' still sets SSL_CERT_FILE", m.Platform)
		}
	}
	if !slices.Equal(platforms, []string{"linux/amd64", "linux/arm64/v8"}) {
		t.Errorf("index platforms %q, want linux/amd64 and linux/arm64/v8", platforms)
	}
}

func TestBadInputIsRefusedWithTheFix(t *testing.T) {
	bin := staticBinary(t, "amd64")
	notELF := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(notELF, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string // in the error
	}{
		{"no tag", []string{"-binary", bin, "-out", "x.tar"}, "-tag is required"},
		{"no output", []string{"-binary", bin, "-tag", "a/b:c"}, "pass -out FILE, -push"},
		{"two binaries to one tarball", []string{"-binary", bin, "-binary", bin, "-tag", "a/b:c", "-out", "x.tar"}, "-out writes one platform"},
		{"bad label", []string{"-binary", bin, "-tag", "a/b:c", "-out", "x.tar", "-label", "novalue"}, "want KEY=VALUE"},
		{"bad created", []string{"-binary", bin, "-tag", "a/b:c", "-out", "x.tar", "-created", "yesterday"}, "want Unix seconds"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parse(tc.args, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		name string
		spec Spec
		want string
	}{
		{"no binary", Spec{}, "pass -binary PATH"},
		{"not an executable", Spec{Binaries: []string{notELF}}, "build it with GOOS=linux CGO_ENABLED=0"},
		{"same platform twice", Spec{Binaries: []string{bin, bin}}, "give one binary per platform"},
		{"missing CA bundle", Spec{Binaries: []string{bin}, CACerts: "/nonexistent/ca.pem"}, "-ca-certs ''"},
		{"CA bundle without certificates", Spec{Binaries: []string{bin}, CACerts: notELF}, "no PEM certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Build(tc.spec)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	// A dynamically linked executable (from the build machine, when it has one) is refused:
	// the image has no C library to load it.
	if dyn, err := exec.LookPath("ls"); err == nil {
		if _, err := Build(Spec{Binaries: []string{dyn}}); err == nil || !strings.Contains(err.Error(), "CGO_ENABLED=0") {
			t.Errorf("%s: error %v, want the dynamically linked binary refused", dyn, err)
		}
	}
}
