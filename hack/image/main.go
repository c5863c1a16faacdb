// Command image builds the add-on's image without Docker and pushes it ('make image',
// 'make image-push'; see internal/image):
//
//	go run ./hack/image build [--out bin/image] [--arch GOARCH] [--ca-bundle FILE] [--go GO] [--binaries DIR]
//	go run ./hack/image push [--layout bin/image] REGISTRY/REPOSITORY:TAG
//
// build runs the Dockerfile's go build of /manager, /hosts-updater, /kubectl-ips and
// /tcr-credential-provider (unless --binaries names a folder that already holds them) and writes
// the image as an OCI image layout.
// SOURCE_DATE_EPOCH, when set, is the time of every file and of the image (else Unix 0).
//
// push sends that image to a registry, with the credential of the docker config
// ($DOCKER_CONFIG/config.json, else ~/.docker/config.json, as 'docker login' writes it) and, when
// REGISTRY_CA names a PEM file, its certificates trusted besides the system's.
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
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/tcr-assistant/tcr-assistant/internal/image"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `usage:
  image build [--out DIR] [--arch GOARCH] [--ca-bundle FILE] [--go GO] [--binaries DIR]
  image push [--layout DIR] REGISTRY/REPOSITORY:TAG
`

// run is the command: its exit code, with errors as one line on stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "build":
		err = build(ctx, args[1:], stdout, stderr)
	case "push":
		err = push(ctx, args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "image: unknown command %q\n%s", args[0], usage)
		return 2
	}
	var parseErr flagError
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &parseErr):
		return 2 // the flag set has printed the error and the flags
	}
	if err != nil {
		var usageErr usageError
		fmt.Fprintf(stderr, "image %s: %v\n", args[0], err)
		if errors.As(err, &usageErr) {
			return 2
		}
		return 1
	}
	return 0
}

type usageError struct{ error }

// flagError is an error of a flag set, which prints it itself.
type flagError struct{ error }

func (e flagError) Unwrap() error { return e.error }

func build(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("image build", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "bin/image", "the OCI image layout to write (replaced)")
	arch := fs.String("arch", runtime.GOARCH, "the GOARCH of the image (its OS is linux)")
	caBundle := fs.String("ca-bundle", image.DefaultCABundle, "the PEM CA bundle copied to "+image.CABundle)
	goTool := fs.String("go", "go", "the go command that builds the binaries")
	binaries := fs.String("binaries", "", "a folder holding "+strings.Join(image.Binaries, ", ")+" already built; by default they are built with the Dockerfile's go build")
	if err := fs.Parse(args); err != nil {
		return flagError{err}
	}
	if fs.NArg() != 0 {
		return usageError{fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	created, err := sourceDateEpoch()
	if err != nil {
		return err
	}
	binDir := *binaries
	if binDir == "" {
		// Next to the layout, so that the binaries stay on the disk of bin/.
		if err := os.MkdirAll(filepath.Dir(filepath.Clean(*out)), 0o755); err != nil {
			return err
		}
		tmp, err := os.MkdirTemp(filepath.Dir(filepath.Clean(*out)), ".image-binaries-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		cmd := image.BuildCommand(ctx, *goTool, tmp, *arch)
		cmd.Stdout, cmd.Stderr = stderr, stderr
		fmt.Fprintf(stdout, "CGO_ENABLED=0 GOOS=linux GOARCH=%s %s\n", *arch, shellJoin(cmd.Args))
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("go build: %w", err)
		}
		binDir = tmp
	}
	img, err := image.Build(image.Options{BinDir: binDir, Arch: *arch, CABundle: *caBundle, Created: created})
	if err != nil {
		return err
	}
	digest, err := image.WriteLayout(*out, img)
	if err != nil {
		return err
	}
	size, err := compressedSize(img)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Wrote the image linux/%s %s (%.1f MiB compressed) to %s\n", *arch, digest, float64(size)/(1<<20), *out)
	return nil
}

func push(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("image push", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("layout", "bin/image", "the OCI image layout to push")
	if err := fs.Parse(args); err != nil {
		return flagError{err}
	}
	if fs.NArg() != 1 || fs.Arg(0) == "" {
		return usageError{errors.New("give the image reference, REGISTRY/REPOSITORY:TAG")}
	}
	ref := fs.Arg(0)
	if _, err := image.ParseTag(ref); err != nil {
		return err
	}
	img, err := image.ReadLayout(*dir)
	if err != nil {
		return err
	}
	d, err := image.Push(ctx, img, ref, image.PushOptions{Keychain: authn.DefaultKeychain, CAFile: os.Getenv("REGISTRY_CA")})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Pushed %s as %s\n", *dir, d)
	return nil
}

// sourceDateEpoch is the time of SOURCE_DATE_EPOCH (reproducible-builds.org), else Unix 0.
func sourceDateEpoch() (time.Time, error) {
	v, ok := os.LookupEnv("SOURCE_DATE_EPOCH")
	if !ok || v == "" {
		return time.Unix(0, 0), nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH must be a whole number of seconds since 1970, not %q", v)
	}
	return time.Unix(n, 0), nil
}

// shellJoin quotes the arguments that need it, for a command line to copy.
func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = a
		if strings.ContainsAny(a, " \t'\"$\\") {
			q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(q, " ")
}

// compressedSize is what a registry stores of img: its config and compressed layers.
func compressedSize(img v1.Image) (int64, error) {
	m, err := img.Manifest()
	if err != nil {
		return 0, err
	}
	n := m.Config.Size
	for _, l := range m.Layers {
		n += l.Size
	}
	return n, nil
}
