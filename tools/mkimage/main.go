// Command mkimage builds Pico's container image without a Docker daemon, with
// go-containerregistry: the static pico binary as /usr/local/bin/pico (the entrypoint,
// CONTRACT.md), run as the non-root user 65532, on a base layer with /etc/passwd, /tmp
// and the CA certificates of the build machine.
//
//	mkimage -binary bin/pico -tag ghcr.io/pico-proxy/pico:dev -out bin/pico-image.tar
//	mkimage -binary bin/linux-amd64/pico -binary bin/linux-arm64/pico -tag registry.example.com/pico:1.0 -push
//
// -out writes a tarball that `docker load`, `podman load` and `ctr images import` read
// (one platform); -push sends the image (one binary) or an OCI image index (several) to
// the registry of -tag, with the credentials of the Docker config (~/.docker/config.json,
// $DOCKER_CONFIG, credential helpers). It lives in its own Go module so that
// go-containerregistry and its dependencies stay out of Pico's.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

// options are the command line.
type options struct {
	spec     Spec
	tag      string
	out      string
	push     bool
	insecure bool
}

func parse(args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("mkimage", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	var binaries, labels listFlag
	fs.Var(&binaries, "binary", "static Linux pico binary, one per platform (repeatable; the platform is read from the binary)")
	fs.StringVar(&o.spec.CACerts, "ca-certs", "/etc/ssl/certs/ca-certificates.crt", "PEM bundle installed as /etc/ssl/certs/ca-certificates.crt; empty for none")
	fs.Var(&labels, "label", "config label KEY=VALUE (repeatable)")
	created := fs.String("created", os.Getenv("SOURCE_DATE_EPOCH"), "creation time, Unix seconds (default $SOURCE_DATE_EPOCH, else 0): the same inputs give the same digest")
	fs.StringVar(&o.tag, "tag", "", "image reference, e.g. ghcr.io/pico-proxy/pico:0.1.0 (required)")
	fs.StringVar(&o.out, "out", "", "write a docker-archive/OCI tarball here (one binary)")
	fs.BoolVar(&o.push, "push", false, "push to the registry of -tag (an image index for several binaries)")
	fs.BoolVar(&o.insecure, "insecure", false, "allow a plain-HTTP registry")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	var errs []error
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	if o.tag == "" {
		errs = append(errs, errors.New("-tag is required (e.g. -tag registry.example.com/pico:dev)"))
	}
	if o.out == "" && !o.push {
		errs = append(errs, errors.New("nothing to do: pass -out FILE, -push, or both"))
	}
	if o.out != "" && len(binaries) > 1 {
		errs = append(errs, fmt.Errorf("-out writes one platform's image, got %d -binary flags: push several with -push", len(binaries)))
	}
	o.spec.Binaries = binaries
	o.spec.Labels = map[string]string{}
	for _, l := range labels {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			errs = append(errs, fmt.Errorf("-label %q: want KEY=VALUE", l))
			continue
		}
		o.spec.Labels[k] = v
	}
	if *created != "" {
		secs, err := strconv.ParseInt(*created, 10, 64)
		if err != nil || secs < 0 {
			errs = append(errs, fmt.Errorf("-created %q: want Unix seconds (e.g. $(git log -1 --format=%%ct))", *created))
		}
		o.spec.Created = time.Unix(secs, 0).UTC()
	} else {
		o.spec.Created = time.Unix(0, 0).UTC()
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &o, nil
}

func (o *options) reference() (name.Reference, error) {
	var opts []name.Option
	if o.insecure {
		opts = append(opts, name.Insecure)
	}
	ref, err := name.ParseReference(o.tag, opts...)
	if err != nil {
		return nil, fmt.Errorf("-tag: %w", err)
	}
	return ref, nil
}

// run builds the images and writes or pushes them, reporting each result on stdout.
func run(ctx context.Context, o *options, stdout io.Writer) error {
	ref, err := o.reference()
	if err != nil {
		return err
	}
	images, err := Build(o.spec)
	if err != nil {
		return err
	}
	if o.out != "" {
		if err := writeTarball(o.out, ref, images[0].Image); err != nil {
			return err
		}
		digest, err := images[0].Image.Digest()
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s: %s (%s) %s\n", o.out, ref, images[0].Platform, digest)
	}
	if o.push {
		digest, err := push(ctx, ref, images, remote.WithAuthFromKeychain(authn.DefaultKeychain))
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "pushed %s@%s\n", ref.Context(), digest)
	}
	return nil
}

// writeTarball writes the image atomically: a failed build never leaves a partial file.
func writeTarball(out string, ref name.Reference, img v1.Image) error {
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), ".mkimage-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tarball.Write(ref, img, tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", out, err)
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), out)
}

// push sends one image as itself, several as an index, and returns the pushed digest.
func push(ctx context.Context, ref name.Reference, images []Platform, opts ...remote.Option) (v1.Hash, error) {
	opts = append(opts, remote.WithContext(ctx))
	if len(images) == 1 {
		if err := remote.Write(ref, images[0].Image, opts...); err != nil {
			return v1.Hash{}, fmt.Errorf("push %s: %w", ref, err)
		}
		return images[0].Image.Digest()
	}
	idx := Index(images)
	if err := remote.WriteIndex(ref, idx, opts...); err != nil {
		return v1.Hash{}, fmt.Errorf("push %s: %w", ref, err)
	}
	return idx.Digest()
}

func main() {
	o, err := parse(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}
