package image

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testCA is a self-signed certificate, standing in for the build machine's CA bundle so that the
// tests do not depend on it.
const testCA = `-----BEGIN CERTIFICATE-----
MIIBoDCCAUegAwIBAgIUMuYDFS1e5qmsJ1hUsqKrSzm1Lb4wCgYIKoZIzj0EAwIw
JjEkMCIGA1UEAwwbdGNyLWFzc2lzdGFudCBpbWFnZSB0ZXN0IENBMB4XDTI2MTIw
NzAyMDkyMFoXDTM2MTIwNDAyMDkyMFowJjEkMCIGA1UEAwwbdGNyLWFzc2lzdGFu
dCBpbWFnZSB0ZXN0IENBMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEKTZX9x9M
OR/QD8y0V4sJrmI5YDLXouip9UcRMe+Lq4eMf5XqvOP+PDegJul8iTU6ysqe8oV1
LhzwMxASNg4efaNTMFEwHQYDVR0OBBYEFM8UEFjFrshquBdIQdDHHhBK0aNzMB8G
A1UdIwQYMBaAFM8UEFjFrshquBdIQdDHHhBK0aNzMA8GA1UdEwEB/wQFMAMBAf8w
CgYIKoZIzj0EAwIDRwAwRAIgTWoT/KJ1Ud9VQ/ynupTp5yblxmabO4RUkV62AI/F
pFYCIBpatpJCFW9nWr29lC7MyIptGajowwnxHjF1RZZYb6Y7
-----END CERTIFICATE-----
`

// standInOptions returns Options over small stand-in binaries and testCA.
func standInOptions(t *testing.T) Options {
	t.Helper()
	dir := t.TempDir()
	for _, b := range Binaries {
		require.NoError(t, os.WriteFile(filepath.Join(dir, b), []byte("stand-in for /"+b+"\n"), 0o755))
	}
	ca := filepath.Join(dir, "ca.crt")
	require.NoError(t, os.WriteFile(ca, []byte(testCA), 0o644))
	return Options{BinDir: dir, Arch: "amd64", CABundle: ca, Created: time.Unix(0, 0)}
}

func buildStandIn(t *testing.T, opts Options) v1.Image {
	t.Helper()
	img, err := Build(opts)
	require.NoError(t, err)
	return img
}

// layerEntry is a tar entry with its content.
type layerEntry struct {
	header tar.Header
	data   string
}

func layerEntries(t *testing.T, l v1.Layer) []layerEntry {
	t.Helper()
	rc, err := l.Uncompressed()
	require.NoError(t, err)
	defer rc.Close()
	var out []layerEntry
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		require.NoError(t, err)
		data, err := io.ReadAll(tr)
		require.NoError(t, err)
		out = append(out, layerEntry{header: *h, data: string(data)})
	}
}

// TestImage pins the whole image: config, history and every entry of both layers.
func TestImage(t *testing.T) {
	opts := standInOptions(t)
	opts.Created = time.Unix(1767225600, 0) // 2026-01-01T00:00:00Z
	img := buildStandIn(t, opts)

	mt, err := img.MediaType()
	require.NoError(t, err)
	require.Equal(t, types.OCIManifestSchema1, mt)
	m, err := img.Manifest()
	require.NoError(t, err)
	require.Equal(t, types.OCIConfigJSON, m.Config.MediaType)
	require.Len(t, m.Layers, 2)
	for _, l := range m.Layers {
		require.Equal(t, types.OCILayer, l.MediaType)
	}

	cf, err := img.ConfigFile()
	require.NoError(t, err)
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	require.Equal(t, "amd64", cf.Architecture)
	require.Equal(t, "linux", cf.OS)
	require.Equal(t, created, cf.Created.Time)
	require.Equal(t, v1.Config{
		User:       "65532:65532",
		Entrypoint: []string{"/manager"},
		Env: []string{
			"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
		},
		WorkingDir: "/home/nonroot",
	}, cf.Config)
	require.Len(t, cf.History, 2)
	require.Equal(t, "tcr-assistant base: /etc/passwd, /etc/group, /home/nonroot, /root, /tmp, /etc/ssl/certs/ca-certificates.crt", cf.History[0].CreatedBy)
	require.Equal(t, "COPY manager hosts-updater kubectl-ips tcr-credential-provider /", cf.History[1].CreatedBy)
	require.Equal(t, created, cf.History[0].Created.Time)
	require.Equal(t, created, cf.History[1].Created.Time)

	layers, err := img.Layers()
	require.NoError(t, err)
	type file struct {
		name     string
		typ      byte
		mode     int64
		uid, gid int
		data     string
	}
	list := func(l v1.Layer) []file {
		var out []file
		for _, e := range layerEntries(t, l) {
			h := e.header
			require.True(t, h.ModTime.Equal(created), "%s: mtime %s", h.Name, h.ModTime)
			require.Empty(t, h.Uname+h.Gname+h.Linkname, h.Name)
			require.Empty(t, h.PAXRecords, h.Name)
			out = append(out, file{h.Name, h.Typeflag, h.Mode, h.Uid, h.Gid, e.data})
		}
		return out
	}
	require.Equal(t, []file{
		{"etc/", tar.TypeDir, 0o755, 0, 0, ""},
		{"etc/group", tar.TypeReg, 0o644, 0, 0, "root:x:0:\nnobody:x:65534:\ntty:x:5:\nstaff:x:50:\nnonroot:x:65532:\n"},
		{"etc/passwd", tar.TypeReg, 0o644, 0, 0, "root:x:0:0:root:/root:/sbin/nologin\n" +
			"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
			"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"},
		{"etc/ssl/", tar.TypeDir, 0o755, 0, 0, ""},
		{"etc/ssl/certs/", tar.TypeDir, 0o755, 0, 0, ""},
		{"etc/ssl/certs/ca-certificates.crt", tar.TypeReg, 0o644, 0, 0, testCA},
		{"home/", tar.TypeDir, 0o755, 0, 0, ""},
		{"home/nonroot/", tar.TypeDir, 0o700, 65532, 65532, ""},
		{"root/", tar.TypeDir, 0o700, 0, 0, ""},
		{"tmp/", tar.TypeDir, 0o1777, 0, 0, ""},
	}, list(layers[0]))
	require.Equal(t, []file{
		{"hosts-updater", tar.TypeReg, 0o755, 0, 0, "stand-in for /hosts-updater\n"},
		{"kubectl-ips", tar.TypeReg, 0o755, 0, 0, "stand-in for /kubectl-ips\n"},
		{"manager", tar.TypeReg, 0o755, 0, 0, "stand-in for /manager\n"},
		{"tcr-credential-provider", tar.TypeReg, 0o755, 0, 0, "stand-in for /tcr-credential-provider\n"},
	}, list(layers[1]))
}

// TestBuildIsDeterministic builds the same inputs twice, and again with only the binaries'
// metadata changed, and finds the same digest every time; a changed binary or time changes it.
func TestBuildIsDeterministic(t *testing.T) {
	opts := standInOptions(t)
	out := t.TempDir()
	first, err := WriteLayout(filepath.Join(out, "a"), buildStandIn(t, opts))
	require.NoError(t, err)
	second, err := WriteLayout(filepath.Join(out, "b"), buildStandIn(t, opts))
	require.NoError(t, err)
	require.Equal(t, first, second)
	require.Equal(t, readTree(t, filepath.Join(out, "a")), readTree(t, filepath.Join(out, "b")))

	// What a later checkout or copy changes of a file besides its content does not count.
	for _, b := range Binaries {
		p := filepath.Join(opts.BinDir, b)
		require.NoError(t, os.Chtimes(p, time.Now().Add(time.Hour), time.Now().Add(time.Hour)))
		require.NoError(t, os.Chmod(p, 0o700))
	}
	again, err := buildStandIn(t, opts).Digest()
	require.NoError(t, err)
	require.Equal(t, first, again, "the binaries' mtime and mode changed the digest")

	baseOf := func(img v1.Image) v1.Hash {
		layers, err := img.Layers()
		require.NoError(t, err)
		d, err := layers[0].Digest()
		require.NoError(t, err)
		return d
	}
	img := buildStandIn(t, opts)
	require.NoError(t, os.WriteFile(filepath.Join(opts.BinDir, "manager"), []byte("another manager\n"), 0o755))
	changed := buildStandIn(t, opts)
	d, err := changed.Digest()
	require.NoError(t, err)
	require.NotEqual(t, first, d, "a changed binary left the digest as it was")
	require.Equal(t, baseOf(img), baseOf(changed), "a changed binary changed the base layer")

	opts.Created = time.Unix(1, 0)
	d, err = buildStandIn(t, opts).Digest()
	require.NoError(t, err)
	require.NotEqual(t, first, d, "the creation time is not in the image")
}

// readTree returns every file under dir with its content.
func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	require.NoError(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		files[strings.TrimPrefix(p, dir)] = string(b)
		return err
	}))
	return files
}

func TestBuildErrors(t *testing.T) {
	opts := standInOptions(t)
	missing := opts
	missing.BinDir = t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(missing.BinDir, "manager"), nil, 0o755))
	require.NoError(t, os.Mkdir(filepath.Join(missing.BinDir, "hosts-updater"), 0o755))
	_, err := Build(missing)
	require.EqualError(t, err, "binary hosts-updater: "+filepath.Join(missing.BinDir, "hosts-updater")+" is not a regular file")
	require.NoError(t, os.Remove(filepath.Join(missing.BinDir, "hosts-updater")))
	require.NoError(t, os.WriteFile(filepath.Join(missing.BinDir, "hosts-updater"), nil, 0o755))
	_, err = Build(missing)
	require.EqualError(t, err, "binary kubectl-ips: "+filepath.Join(missing.BinDir, "kubectl-ips")+": no such file or directory")

	noCA := opts
	noCA.CABundle = filepath.Join(t.TempDir(), "ca-certificates.crt")
	_, err = Build(noCA)
	require.EqualError(t, err, "reading the CA bundle: open "+noCA.CABundle+": no such file or directory")
	require.NoError(t, os.WriteFile(noCA.CABundle, []byte("not a certificate\n"), 0o644))
	_, err = Build(noCA)
	require.EqualError(t, err, "CA bundle "+noCA.CABundle+" holds no PEM certificate")

	noArch := opts
	noArch.Arch = ""
	_, err = Build(noArch)
	require.EqualError(t, err, "image: no architecture given")
}

// TestBuildArch: the architecture given is the image's.
func TestBuildArch(t *testing.T) {
	opts := standInOptions(t)
	opts.Arch = "arm64"
	cf, err := buildStandIn(t, opts).ConfigFile()
	require.NoError(t, err)
	require.Equal(t, "arm64", cf.Architecture)
	require.Equal(t, v1.Platform{OS: "linux", Architecture: "arm64"}, *cf.Platform())
}

// TestWriteLayout: the layout holds exactly the last image written, readable by everyone.
func TestWriteLayout(t *testing.T) {
	opts := standInOptions(t)
	dir := filepath.Join(t.TempDir(), "bin", "image")
	_, err := ReadLayout(dir)
	require.EqualError(t, err, dir+" holds no OCI image layout ("+filepath.Join(dir, "index.json")+": no such file or directory): build one first (make image)")

	_, err = WriteLayout(dir, buildStandIn(t, opts))
	require.NoError(t, err)
	opts.Created = time.Unix(2, 0)
	img := buildStandIn(t, opts)
	want, err := WriteLayout(dir, img)
	require.NoError(t, err)

	got, err := ReadLayout(dir)
	require.NoError(t, err)
	d, err := got.Digest()
	require.NoError(t, err)
	require.Equal(t, want, d)
	raw, err := got.RawConfigFile()
	require.NoError(t, err)
	wantRaw, err := img.RawConfigFile()
	require.NoError(t, err)
	require.True(t, bytes.Equal(wantRaw, raw))

	entries, err := os.ReadDir(filepath.Dir(dir))
	require.NoError(t, err)
	require.Len(t, entries, 1, "a temporary folder was left next to the layout")
	var files []string
	require.NoError(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		want := fs.FileMode(0o644)
		if d.IsDir() {
			want = fs.ModeDir | 0o755
		} else {
			files = append(files, strings.TrimPrefix(p, dir+"/"))
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %s, want %s", p, fi.Mode(), want)
		}
		return nil
	}))
	// The first image's blobs are gone: index.json, oci-layout, manifest, config, two layers.
	require.Len(t, files, 6, "%q", files)
	require.True(t, slices.Contains(files, "blobs/sha256/"+want.Hex))

	// A folder that is not a layout is never replaced (--out pointed at the wrong place).
	other := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(other, "notes.txt"), []byte("mine"), 0o644))
	_, err = WriteLayout(other, img)
	require.EqualError(t, err, other+" is neither empty nor an OCI image layout: not replacing it")
	b, err := os.ReadFile(filepath.Join(other, "notes.txt"))
	require.NoError(t, err)
	require.Equal(t, "mine", string(b))
	_, err = WriteLayout(t.TempDir(), img)
	require.NoError(t, err, "an empty folder is written")
}

// TestProgram: the one-program image of the single-node cluster holds exactly /name, executable,
// with its content, runs it as its entrypoint, and is the same image for the same program.
func TestProgram(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pause")
	require.NoError(t, os.WriteFile(path, []byte("a static program\n"), 0o700))
	img, err := Program(path, "app", "arm64")
	require.NoError(t, err)
	cf, err := img.ConfigFile()
	require.NoError(t, err)
	assert.Equal(t, [3]string{"linux", "arm64", "/app"}, [3]string{cf.OS, cf.Architecture, strings.Join(cf.Config.Entrypoint, " ")})
	assert.Empty(t, cf.Config.User, "the sandbox runs as root")
	layers, err := img.Layers()
	require.NoError(t, err)
	require.Len(t, layers, 1)
	entries := layerEntries(t, layers[0])
	require.Len(t, entries, 1)
	assert.Equal(t, [3]string{"app", "-rwxr-xr-x", "a static program\n"},
		[3]string{entries[0].header.Name, entries[0].header.FileInfo().Mode().String(), entries[0].data})

	again, err := Program(path, "app", "arm64")
	require.NoError(t, err)
	d1, err := img.Digest()
	require.NoError(t, err)
	d2, err := again.Digest()
	require.NoError(t, err)
	assert.Equal(t, d1, d2)
	other, err := Program(path, "pause", "arm64")
	require.NoError(t, err)
	d3, err := other.Digest()
	require.NoError(t, err)
	assert.NotEqual(t, d1, d3, "another name is another image (the node's private test image must not be the sandbox's)")

	_, err = Program(path, "bin/app", "amd64")
	assert.EqualError(t, err, `image: program name "bin/app" is not a file name`)
	_, err = Program(filepath.Join(t.TempDir(), "missing"), "app", "amd64")
	assert.ErrorContains(t, err, "missing")
}
