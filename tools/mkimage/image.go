package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Where the binary lives in the image and who runs it (CONTRACT.md, Binary; the
// distroless "nonroot" user).
const (
	binaryPath = "/usr/local/bin/pico"
	nonRootUID = 65532
	caBundle   = "/etc/ssl/certs/ca-certificates.crt"
)

// Spec is what an image is built from.
type Spec struct {
	// Binaries are static Linux executables, one per platform; the platform of each is
	// read from its ELF header.
	Binaries []string
	// CACerts is a PEM bundle installed as /etc/ssl/certs/ca-certificates.crt (Go's
	// crypto/x509 reads it there), so the server can fetch JWKS and agents can dial https.
	// Empty: the image has no CA certificates.
	CACerts string
	// Labels are the image config's labels (org.opencontainers.image.*).
	Labels map[string]string
	// Created is the creation time in the config and of every file: a fixed time (the
	// commit's) makes the same binary always give the same image digest.
	Created time.Time
}

// Platform is an image built for one binary.
type Platform struct {
	Platform v1.Platform
	Image    v1.Image
}

// Build returns one image per binary.
func Build(spec Spec) ([]Platform, error) {
	if len(spec.Binaries) == 0 {
		return nil, errors.New("no binary: pass -binary PATH (a static linux binary of pico)")
	}
	var certs []byte
	if spec.CACerts != "" {
		var err error
		if certs, err = os.ReadFile(spec.CACerts); err != nil {
			return nil, fmt.Errorf("-ca-certs: %w (install Debian's ca-certificates, name another PEM bundle, or pass -ca-certs '' for an image without CA certificates)", err)
		}
		if !bytes.Contains(certs, []byte("-----BEGIN CERTIFICATE-----")) {
			return nil, fmt.Errorf("-ca-certs %s: no PEM certificate in the file", spec.CACerts)
		}
	}
	base, err := layer(baseFiles(certs), spec.Created)
	if err != nil {
		return nil, fmt.Errorf("base layer: %w", err)
	}
	var out []Platform
	seen := map[string]string{}
	for _, bin := range spec.Binaries {
		platform, err := staticLinuxPlatform(bin)
		if err != nil {
			return nil, err
		}
		if other, ok := seen[platform.String()]; ok {
			return nil, fmt.Errorf("-binary %s and %s are both %s: give one binary per platform", other, bin, platform)
		}
		seen[platform.String()] = bin
		data, err := os.ReadFile(bin)
		if err != nil {
			return nil, fmt.Errorf("-binary: %w", err)
		}
		img, err := image(base, data, platform, spec)
		if err != nil {
			return nil, fmt.Errorf("image for %s: %w", bin, err)
		}
		out = append(out, Platform{Platform: platform, Image: img})
	}
	return out, nil
}

// file is one entry of a layer.
type file struct {
	name     string // absolute path
	mode     int64
	dir      bool
	contents []byte
}

// baseFiles are what a static binary needs around it: the directories, a user database
// that names the non-root user (for tools that look it up), name-service order and the
// CA certificates.
func baseFiles(certs []byte) []file {
	files := []file{
		{name: "/etc", mode: 0o755, dir: true},
		{name: "/tmp", mode: 0o1777, dir: true},
		{name: "/home/nonroot", mode: 0o700, dir: true},
		{name: "/etc/passwd", mode: 0o644, contents: []byte(
			"root:x:0:0:root:/root:/sbin/nologin\n" +
				"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
				fmt.Sprintf("nonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", nonRootUID, nonRootUID))},
		{name: "/etc/group", mode: 0o644, contents: []byte(
			"root:x:0:\nnobody:x:65534:\n" + fmt.Sprintf("nonroot:x:%d:\n", nonRootUID))},
		{name: "/etc/nsswitch.conf", mode: 0o644, contents: []byte("hosts: files dns\n")},
	}
	if certs != nil {
		files = append(files, file{name: caBundle, mode: 0o644, contents: certs})
	}
	return files
}

// layer builds an uncompressed tar of files (parents created, sorted, owned by root, all
// times created) and wraps it as an OCI gzip layer.
func layer(files []file, created time.Time) (v1.Layer, error) {
	entries := map[string]file{}
	for _, f := range files {
		entries[f.name] = f
		for dir := path.Dir(f.name); dir != "/"; dir = path.Dir(dir) {
			if _, ok := entries[dir]; !ok {
				entries[dir] = file{name: dir, mode: 0o755, dir: true}
			}
		}
	}
	names := make([]string, 0, len(entries))
	for name := range entries {
		names = append(names, name)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, name := range names {
		f := entries[name]
		h := &tar.Header{Name: strings.TrimPrefix(name, "/"), Mode: f.mode, ModTime: created, Format: tar.FormatPAX}
		if f.dir {
			h.Typeflag, h.Name = tar.TypeDir, h.Name+"/"
			if strings.HasPrefix(name, "/home/nonroot") {
				h.Uid, h.Gid = nonRootUID, nonRootUID
			}
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.contents))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.contents); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(types.OCILayer))
}

// image is the base layer plus the binary's layer, with pico as the entrypoint.
func image(base v1.Layer, binary []byte, platform v1.Platform, spec Spec) (v1.Image, error) {
	bin, err := layer([]file{{name: binaryPath, mode: 0o755, contents: binary}}, spec.Created)
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	labels := map[string]string{"org.opencontainers.image.created": spec.Created.UTC().Format(time.RFC3339)}
	for k, v := range spec.Labels {
		labels[k] = v
	}
	env := []string{"PATH=/usr/local/bin:/usr/bin:/bin"}
	if spec.CACerts != "" {
		env = append(env, "SSL_CERT_FILE="+caBundle)
	}
	img, err = mutate.ConfigFile(img, &v1.ConfigFile{
		Architecture: platform.Architecture,
		OS:           platform.OS,
		Variant:      platform.Variant,
		Config: v1.Config{
			Entrypoint: []string{binaryPath},
			Cmd:        []string{"server"},
			User:       fmt.Sprintf("%d:%d", nonRootUID, nonRootUID),
			Env:        env,
			WorkingDir: "/home/nonroot",
			Labels:     labels,
			ExposedPorts: map[string]struct{}{
				"8000/tcp": {}, "8001/tcp": {}, "8002/tcp": {}, "8003/tcp": {}, "8003/udp": {},
			},
		},
	})
	if err != nil {
		return nil, err
	}
	created := v1.Time{Time: spec.Created.UTC()}
	img, err = mutate.Append(img,
		mutate.Addendum{Layer: base, MediaType: types.OCILayer, History: v1.History{
			Created: created, CreatedBy: "mkimage: /etc (passwd, group, nsswitch.conf, CA certificates), /tmp, /home/nonroot", Comment: "base",
		}},
		mutate.Addendum{Layer: bin, MediaType: types.OCILayer, History: v1.History{
			Created: created, CreatedBy: "mkimage: " + binaryPath, Comment: "pico",
		}},
	)
	if err != nil {
		return nil, err
	}
	return mutate.CreatedAt(img, created)
}

// staticLinuxPlatform reads a binary's ELF header: it must be a Linux executable without
// a dynamic loader (the image has no libc), and its machine gives the platform.
func staticLinuxPlatform(bin string) (v1.Platform, error) {
	f, err := elf.Open(bin)
	if err != nil {
		return v1.Platform{}, fmt.Errorf("-binary %s: not a Linux executable (%w): build it with GOOS=linux CGO_ENABLED=0", bin, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return v1.Platform{}, fmt.Errorf("-binary %s is dynamically linked, and the image has no C library: build it with CGO_ENABLED=0", bin)
		}
	}
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return v1.Platform{}, fmt.Errorf("-binary %s is an ELF %s, not an executable", bin, f.Type)
	}
	arch := map[elf.Machine]string{
		elf.EM_X86_64:  "amd64",
		elf.EM_AARCH64: "arm64",
		elf.EM_386:     "386",
		elf.EM_S390:    "s390x",
		elf.EM_RISCV:   "riscv64",
	}[f.Machine]
	if arch == "" {
		return v1.Platform{}, fmt.Errorf("-binary %s: machine %s has no image platform here", bin, f.Machine)
	}
	p := v1.Platform{OS: "linux", Architecture: arch}
	if arch == "arm64" {
		p.Variant = "v8"
	}
	return p, nil
}

// Index is the images of several platforms as one OCI image index.
func Index(images []Platform) v1.ImageIndex {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range images {
		platform := p.Platform
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        p.Image,
			Descriptor: v1.Descriptor{MediaType: types.OCIManifestSchema1, Platform: &platform},
		})
	}
	return idx
}
