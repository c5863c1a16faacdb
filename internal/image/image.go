// Package image builds the add-on's container image without Docker, as an OCI image layout, and
// pushes it to a registry: what 'make image' and 'make image-push' run (hack/image).
//
// The image is the Dockerfile's: the static binaries (Binaries, built as BuildCommand says) at /,
// over a base layer made here in the likeness of gcr.io/distroless/static:nonroot (the users root
// and nonroot in /etc/passwd and /etc/group, /home/nonroot, /root, /tmp at 1777 and the build
// machine's CA bundle), user 65532:65532, entrypoint /manager. Every time in it is Created (Unix 0
// unless SOURCE_DATE_EPOCH says otherwise) and every tar is written in sorted order, so the same
// binaries and CA bundle give the same digest.
package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Binaries are the add-on's programs, each built from ./cmd/<name> and shipped as /<name>, in the
// order of the Dockerfile's COPY.
var Binaries = []string{"manager", "hosts-updater", "kubectl-ips", "tcr-credential-provider"}

const (
	// User is the image's user, distroless' nonroot (the hosts-updater DaemonSet overrides it).
	User = "65532:65532"
	// WorkingDir is distroless static:nonroot's working directory.
	WorkingDir = "/home/nonroot"
	// CABundle is where the image holds the CA bundle, as Debian and distroless have it.
	CABundle = "/etc/ssl/certs/ca-certificates.crt"
	// DefaultCABundle is the build machine's bundle the image takes (Debian's ca-certificates).
	DefaultCABundle = "/etc/ssl/certs/ca-certificates.crt"

	nonroot = 65532
)

// Entrypoint is the image's entrypoint: the manager (the DaemonSet and the hook Jobs name their
// own command).
var Entrypoint = []string{"/manager"}

// Env is distroless static's environment.
var Env = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"SSL_CERT_FILE=" + CABundle,
}

// Passwd and Group are distroless' /etc/passwd and /etc/group.
const (
	Passwd = "root:x:0:0:root:/root:/sbin/nologin\n" +
		"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
		"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
	Group = "root:x:0:\n" +
		"nobody:x:65534:\n" +
		"tty:x:5:\n" +
		"staff:x:50:\n" +
		"nonroot:x:65532:\n"
)

// GoBuildFlags are the flags of the Dockerfile's go build, which BuildBinaries uses too.
var GoBuildFlags = []string{"-trimpath", "-ldflags=-s -w"}

// BuildCommand is the go build of the binaries for linux/arch into dir: the Dockerfile's
// (CGO_ENABLED=0, GoBuildFlags, the packages ./cmd/<name> of Binaries).
func BuildCommand(ctx context.Context, goTool, dir, arch string) *exec.Cmd {
	args := append([]string{"build"}, GoBuildFlags...)
	args = append(args, "-o", dir+string(filepath.Separator))
	for _, b := range Binaries {
		args = append(args, "./cmd/"+b)
	}
	cmd := exec.CommandContext(ctx, goTool, args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
	return cmd
}

// Options say what Build puts in the image.
type Options struct {
	// BinDir holds the Binaries, static Linux executables for Arch.
	BinDir string
	// Arch is the GOARCH of the binaries, the image's architecture (its OS is linux).
	Arch string
	// CABundle is the PEM file copied to CABundle in the image; DefaultCABundle when empty.
	CABundle string
	// Created is the image's creation time and the mtime of every file in it, in whole seconds.
	Created time.Time
}

// Build assembles the image from opts. Its layers are held in memory (the binaries' compressed
// tar, some tens of MiB).
func Build(opts Options) (v1.Image, error) {
	if opts.Arch == "" {
		return nil, errors.New("image: no architecture given")
	}
	caFile := opts.CABundle
	if caFile == "" {
		caFile = DefaultCABundle
	}
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("reading the CA bundle: %w", err)
	}
	if !x509.NewCertPool().AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("CA bundle %s holds no PEM certificate", caFile)
	}
	created := opts.Created.UTC().Truncate(time.Second)

	base, err := layer(baseEntries(ca), created)
	if err != nil {
		return nil, err
	}
	var bins []entry
	for _, b := range Binaries {
		p := filepath.Join(opts.BinDir, b)
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("binary %s: %w", b, unwrapPath(err))
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("binary %s: %s is not a regular file", b, p)
		}
		bins = append(bins, entry{name: b, mode: 0o755, file: p})
	}
	binLayer, err := layer(bins, created)
	if err != nil {
		return nil, err
	}

	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img,
		mutate.Addendum{Layer: base, MediaType: types.OCILayer, History: v1.History{
			Created:   v1.Time{Time: created},
			CreatedBy: "tcr-assistant base: /etc/passwd, /etc/group, /home/nonroot, /root, /tmp, " + CABundle,
		}},
		mutate.Addendum{Layer: binLayer, MediaType: types.OCILayer, History: v1.History{
			Created:   v1.Time{Time: created},
			CreatedBy: "COPY " + strings.Join(Binaries, " ") + " /",
		}},
	)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture = opts.Arch
	cf.OS = "linux"
	cf.Created = v1.Time{Time: created}
	cf.Config = v1.Config{
		User:       User,
		Entrypoint: slices.Clone(Entrypoint),
		Env:        slices.Clone(Env),
		WorkingDir: WorkingDir,
	}
	return mutate.ConfigFile(img, cf)
}

// unwrapPath drops the *PathError's operation, so that "binary manager: stat bin/x/manager: no
// such file or directory" reads "binary manager: bin/x/manager: no such file or directory".
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Path, pe.Err)
	}
	return err
}

// entry is one file or directory of a layer.
type entry struct {
	name     string // without a leading "/"; a directory's ends in "/"
	mode     int64  // permission bits with setuid, setgid and sticky (tar's c_IS* bits)
	uid, gid int
	data     []byte // a file's content, or
	file     string // the path of the file to copy
}

// baseEntries are the base layer's entries: distroless static:nonroot's users, their homes, /tmp
// and the CA bundle.
func baseEntries(ca []byte) []entry {
	return []entry{
		{name: "etc/", mode: 0o755},
		{name: "etc/group", mode: 0o644, data: []byte(Group)},
		{name: "etc/passwd", mode: 0o644, data: []byte(Passwd)},
		{name: "etc/ssl/", mode: 0o755},
		{name: "etc/ssl/certs/", mode: 0o755},
		{name: strings.TrimPrefix(CABundle, "/"), mode: 0o644, data: ca},
		{name: "home/", mode: 0o755},
		{name: "home/nonroot/", mode: 0o700, uid: nonroot, gid: nonroot},
		{name: "root/", mode: 0o700},
		{name: "tmp/", mode: 0o1777},
	}
}

// layer writes entries, sorted by name, as a gzip-compressed tar with every mtime at created.
func layer(entries []entry, created time.Time) (v1.Layer, error) {
	entries = slices.Clone(entries)
	slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(a.name, b.name) })
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.DefaultCompression)
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		if err := writeEntry(tw, e, created); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	gz := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(gz)), nil
	}, tarball.WithMediaType(types.OCILayer))
}

// writeEntry writes one entry; a file to copy must keep its size while it is read.
func writeEntry(tw *tar.Writer, e entry, created time.Time) error {
	h := &tar.Header{
		Name: e.name, Mode: e.mode, Uid: e.uid, Gid: e.gid, ModTime: created,
		Typeflag: tar.TypeReg, Size: int64(len(e.data)), Format: tar.FormatPAX,
	}
	if strings.HasSuffix(e.name, "/") {
		h.Typeflag = tar.TypeDir
	}
	if e.file == "" {
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("layer entry %s: %w", e.name, err)
		}
		_, err := tw.Write(e.data)
		return err
	}
	f, err := os.Open(e.file)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	h.Size = fi.Size()
	if err := tw.WriteHeader(h); err != nil {
		return fmt.Errorf("layer entry %s: %w", e.name, err)
	}
	// The tar writer refuses more than Size bytes, and Flush fewer.
	if _, err := io.Copy(tw, f); err != nil {
		return fmt.Errorf("copying %s: %w (did it change while it was read?)", e.file, err)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("copying %s: %w (did it change while it was read?)", e.file, err)
	}
	return nil
}

// WriteLayout writes img as the only image of an OCI image layout at dir, replacing the layout dir
// held (dir must be absent, empty or a layout): the new one is written next to it first, so a
// failed write leaves dir as it was.
func WriteLayout(dir string, img v1.Image) (v1.Hash, error) {
	digest, err := img.Digest()
	if err != nil {
		return v1.Hash{}, err
	}
	dir = filepath.Clean(dir)
	if entries, err := os.ReadDir(dir); err == nil && len(entries) != 0 {
		if _, err := os.Stat(filepath.Join(dir, "oci-layout")); err != nil {
			return v1.Hash{}, fmt.Errorf("%s is neither empty nor an OCI image layout: not replacing it", dir)
		}
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return v1.Hash{}, err
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return v1.Hash{}, err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "."+filepath.Base(dir)+".tmp-")
	if err != nil {
		return v1.Hash{}, err
	}
	defer os.RemoveAll(tmp)
	p, err := layout.Write(tmp, empty.Index)
	if err != nil {
		return v1.Hash{}, err
	}
	if err := p.AppendImage(img); err != nil {
		return v1.Hash{}, fmt.Errorf("writing the image layout: %w", err)
	}
	// MkdirTemp made tmp 0700 and the layout writes some blobs 0600, others 0755: make it as
	// readable as the rest of bin/, and none of it executable.
	err = filepath.WalkDir(tmp, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.Chmod(p, 0o755)
		}
		return os.Chmod(p, 0o644)
	})
	if err != nil {
		return v1.Hash{}, err
	}
	if err := os.RemoveAll(dir); err != nil {
		return v1.Hash{}, err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return v1.Hash{}, err
	}
	return digest, nil
}

// ReadLayout returns the only image of the OCI image layout at dir.
func ReadLayout(dir string) (v1.Image, error) {
	if _, err := os.Stat(filepath.Join(dir, "index.json")); err != nil {
		return nil, fmt.Errorf("%s holds no OCI image layout (%w): build one first (make image)", dir, unwrapPath(err))
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("reading the image layout %s: %w", dir, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("reading the image layout %s: %w", dir, err)
	}
	if len(im.Manifests) != 1 || !im.Manifests[0].MediaType.IsImage() {
		return nil, fmt.Errorf("the image layout %s holds %d manifests; one image is expected: build it again (make image)", dir, len(im.Manifests))
	}
	return idx.Image(im.Manifests[0].Digest)
}

// Program returns an image of the one static program at path, shipped as /name and run as its
// entrypoint (as root), for linux/arch: the single-node cluster's sandbox image and the test
// images it pulls (hack/node, test/node). Its layer is written like the add-on image's.
func Program(path, name, arch string) (v1.Image, error) {
	if strings.Contains(name, "/") || name == "" {
		return nil, fmt.Errorf("image: program name %q is not a file name", name)
	}
	created := time.Unix(0, 0).UTC()
	l, err := layer([]entry{{name: name, mode: 0o755, file: path}}, created)
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON), l)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Created = "linux", arch, v1.Time{Time: created}
	cf.Config = v1.Config{Entrypoint: []string{"/" + name}}
	return mutate.ConfigFile(img, cf)
}
