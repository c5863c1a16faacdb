package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/stretchr/testify/require"

	"github.com/tcr-assistant/tcr-assistant/internal/image"
	"github.com/tcr-assistant/tcr-assistant/internal/testregistry"
)

// result is what one run of the command did.
type result struct {
	code           int
	stdout, stderr string
}

func runImage(t *testing.T, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, &stdout, &stderr)
	return result{code, stdout.String(), stderr.String()}
}

// buildStandIn runs 'image build' over small stand-in binaries (the real ones take minutes to
// build from cold caches) and returns the layout and its digest.
func buildStandIn(t *testing.T, caBundle string) (string, string) {
	t.Helper()
	bins := t.TempDir()
	for _, b := range image.Binaries {
		require.NoError(t, os.WriteFile(filepath.Join(bins, b), []byte("stand-in for /"+b+"\n"), 0o755))
	}
	out := filepath.Join(t.TempDir(), "bin", "image")
	res := runImage(t, "build", "--binaries", bins, "--ca-bundle", caBundle, "--arch", "amd64", "--out", out)
	require.Equal(t, 0, res.code, res.stderr)
	require.Empty(t, res.stderr)
	img, err := image.ReadLayout(out)
	require.NoError(t, err)
	d, err := img.Digest()
	require.NoError(t, err)
	// The one line a build prints names the layout and its digest.
	require.Regexp(t, `^Wrote the image linux/amd64 `+d.String()+` \([0-9.]+ MiB compressed\) to `+out+"\n$", res.stdout)
	return out, d.String()
}

// dockerConfig writes a docker config directory whose config.json holds a credential for host, and
// makes it the only one the default keychain can find.
func dockerConfig(t *testing.T, host, user, password string) string {
	t.Helper()
	dir := t.TempDir()
	auths := map[string]any{}
	if user != "" {
		auths[host] = map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(user + ":" + password))}
	}
	b, err := json.Marshal(map[string]any{"auths": auths})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config.json"), b, 0o600))
	// ~/.docker/config.json, Podman's auth files: none of the machine's may answer instead.
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(home, ".config"))
	t.Setenv("XDG_RUNTIME_DIR", filepath.Join(home, "run"))
	t.Setenv("REGISTRY_AUTH_FILE", "")
	t.Setenv("DOCKER_CONFIG", dir)
	return dir
}

// TestPush pushes a built layout to a registry with TLS from a test CA and TCR's token auth, with
// the credential of a DOCKER_CONFIG and the CA of REGISTRY_CA, as 'make image-push' does, pulls
// it back, and checks what a wrong password, a missing credential and a missing or bad CA say.
func TestPush(t *testing.T) {
	reg := testregistry.Start(t, testregistry.Options{Users: map[string]string{"pusher": "right-password"}})
	layout, digest := buildStandIn(t, reg.CAFile)
	ref := reg.Host + "/tcr-assistant:v0.1.1"

	dockerConfig(t, reg.Host, "pusher", "right-password")
	t.Setenv("REGISTRY_CA", reg.CAFile)
	res := runImage(t, "push", "--layout", layout, ref)
	require.Equal(t, result{0, "Pushed " + layout + " as " + reg.Host + "/tcr-assistant@" + digest + "\n", ""}, res)

	// Pulled back, by tag, with another client: the same image.
	tag, err := name.NewTag(ref)
	require.NoError(t, err)
	pulled, err := remote.Image(tag, remote.WithAuth(&authn.Basic{Username: "pusher", Password: "right-password"}),
		remote.WithTransport(reg.Transport()))
	require.NoError(t, err)
	got, err := pulled.Digest()
	require.NoError(t, err)
	require.Equal(t, digest, got.String())
	cf, err := pulled.ConfigFile()
	require.NoError(t, err)
	require.Equal(t, "65532:65532", cf.Config.User)
	require.Equal(t, []string{"/manager"}, cf.Config.Entrypoint)

	refused := func(who string) string {
		return "image push: pushing " + ref + ": the registry refused " + who + ": UNAUTHORIZED: authentication required\n"
	}
	dockerConfig(t, reg.Host, "pusher", "wrong-password")
	res = runImage(t, "push", "--layout", layout, ref)
	require.Equal(t, result{1, "", refused(`the credential of "pusher" from the docker config`)}, res)
	require.NotContains(t, res.stderr, "wrong-password")

	dockerConfig(t, "other.example.com", "pusher", "right-password")
	res = runImage(t, "push", "--layout", layout, ref)
	require.Equal(t, result{1, "", refused("the anonymous push (no credential for " + reg.Host + " in the docker config)")}, res)

	dockerConfig(t, reg.Host, "pusher", "right-password")
	t.Setenv("REGISTRY_CA", "")
	res = runImage(t, "push", "--layout", layout, ref)
	require.Equal(t, result{1, "", "image push: pushing " + ref + ": the TLS certificate of " + reg.Host +
		" is not trusted (x509: certificate signed by unknown authority): REGISTRY_CA=<PEM file> adds the CA that signed it\n"}, res)

	otherCA := filepath.Join(t.TempDir(), "other-ca.pem")
	require.NoError(t, os.WriteFile(otherCA, selfSigned(t), 0o600))
	t.Setenv("REGISTRY_CA", otherCA)
	res = runImage(t, "push", "--layout", layout, ref)
	require.Equal(t, result{1, "", "image push: pushing " + ref + ": the TLS certificate of " + reg.Host +
		" is not trusted (x509: certificate signed by unknown authority): neither a CA of the system nor one of REGISTRY_CA " + otherCA + " signed it\n"}, res)

	// A certificate for another name: REGISTRY_CA would not help.
	t.Setenv("REGISTRY_CA", reg.CAFile)
	byName := strings.Replace(ref, "127.0.0.1:", "localhost:", 1)
	res = runImage(t, "push", "--layout", layout, byName)
	require.Equal(t, result{1, "", "image push: pushing " + byName + ": the TLS certificate of " + strings.Replace(reg.Host, "127.0.0.1:", "localhost:", 1) +
		" is not valid for it: x509: certificate is not valid for any names, but wanted to match localhost\n"}, res)

	// A docker config that does not parse is reported as such.
	t.Setenv("REGISTRY_CA", reg.CAFile)
	require.NoError(t, os.WriteFile(filepath.Join(os.Getenv("DOCKER_CONFIG"), "config.json"), []byte("{"), 0o600))
	res = runImage(t, "push", "--layout", layout, ref)
	require.Equal(t, result{1, "", "image push: reading the credential for " + reg.Host + " from the docker config: parsing config file (" +
		filepath.Join(os.Getenv("DOCKER_CONFIG"), "config.json") + "): unexpected EOF\n"}, res)

	missing := filepath.Join(t.TempDir(), "ca.pem")
	t.Setenv("REGISTRY_CA", missing)
	res = runImage(t, "push", "--layout", layout, ref)
	require.Equal(t, result{1, "", "image push: REGISTRY_CA: reading the registry CA file: open " + missing + ": no such file or directory\n"}, res)

	require.NoError(t, os.WriteFile(missing, []byte("not a certificate"), 0o600))
	res = runImage(t, "push", "--layout", layout, ref)
	require.Equal(t, result{1, "", "image push: REGISTRY_CA: registry CA file " + missing + " holds no PEM certificate\n"}, res)
}

// TestPushArguments: a reference without a registry or a tag, or no layout, is refused before
// anything is sent.
func TestPushArguments(t *testing.T) {
	dockerConfig(t, "registry.example.com", "", "")
	t.Setenv("REGISTRY_CA", "")
	empty := t.TempDir()
	for _, tc := range []struct {
		args []string
		want result
	}{
		{[]string{"push", "tcr-assistant:v0.1.0"}, result{1, "", `image push: image reference "tcr-assistant:v0.1.0" names no registry: give registry/repository:tag, e.g. registry.example.com/tcr-assistant:v0.1.1` + "\n"}},
		{[]string{"push", "team/tcr-assistant:v0.1.0"}, result{1, "", `image push: image reference "team/tcr-assistant:v0.1.0" names no registry: give registry/repository:tag, e.g. registry.example.com/tcr-assistant:v0.1.1` + "\n"}},
		{[]string{"push", "127.0.0.1:5000/tcr-assistant"}, result{1, "", `image push: image reference "127.0.0.1:5000/tcr-assistant" has no tag: give registry/repository:tag, e.g. 127.0.0.1:5000/tcr-assistant:v0.1.1` + "\n"}},
		{[]string{"push", "registry.example.com/tcr-assistant@sha256:" + strings.Repeat("0", 64)}, result{1, "", `image push: image reference "registry.example.com/tcr-assistant@sha256:` + strings.Repeat("0", 64) + `" is not registry/repository:tag` + "\n"}},
		{[]string{"push", "registry.example.com/Tcr-Assistant:v1"}, result{1, "", `image push: image reference "registry.example.com/Tcr-Assistant:v1" is not registry/repository:tag: repository can only contain the characters ` + "`abcdefghijklmnopqrstuvwxyz0123456789_-./`: Tcr-Assistant\n"}},
		{[]string{"push"}, result{2, "", "image push: give the image reference, REGISTRY/REPOSITORY:TAG\n"}},
		{[]string{"push", "--layout", empty, "registry.example.com/tcr-assistant:v0.1.1"}, result{1, "", "image push: " + empty + " holds no OCI image layout (" + filepath.Join(empty, "index.json") + ": no such file or directory): build one first (make image)\n"}},
		{[]string{"deploy"}, result{2, "", "image: unknown command \"deploy\"\n" + usage}},
		{[]string{"push", "--insecure", "registry.example.com/tcr-assistant:v0.1.1"}, result{2, "", "flag provided but not defined: -insecure\n" +
			"Usage of image push:\n  -layout string\n    \tthe OCI image layout to push (default \"bin/image\")\n"}},
		{[]string{"push", "-h"}, result{0, "", "Usage of image push:\n  -layout string\n    \tthe OCI image layout to push (default \"bin/image\")\n"}},
	} {
		require.Equal(t, tc.want, runImage(t, tc.args...), "%q", tc.args)
	}
}

// selfSigned returns a PEM certificate, a CA bundle of one.
func selfSigned(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "image test CA"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// TestBuildArguments: SOURCE_DATE_EPOCH sets every time in the image; a bad one is refused.
func TestBuildArguments(t *testing.T) {
	ca := filepath.Join(t.TempDir(), "ca.crt")
	require.NoError(t, os.WriteFile(ca, selfSigned(t), 0o644))

	t.Setenv("SOURCE_DATE_EPOCH", "1767225600")
	layout, _ := buildStandIn(t, ca)
	img, err := image.ReadLayout(layout)
	require.NoError(t, err)
	cf, err := img.ConfigFile()
	require.NoError(t, err)
	require.Equal(t, "2026-01-01T00:00:00Z", cf.Created.UTC().Format("2006-01-02T15:04:05Z07:00"))

	t.Setenv("SOURCE_DATE_EPOCH", "yesterday")
	res := runImage(t, "build", "--binaries", t.TempDir(), "--ca-bundle", ca, "--out", filepath.Join(t.TempDir(), "image"))
	require.Equal(t, result{1, "", `image build: SOURCE_DATE_EPOCH must be a whole number of seconds since 1970, not "yesterday"` + "\n"}, res)
}

// TestPushBasicAuth: a registry that checks the password itself (htpasswd), without a token
// service, takes the same docker config.
func TestPushBasicAuth(t *testing.T) {
	reg := testregistry.Start(t, testregistry.Options{Auth: testregistry.Basic, Users: map[string]string{"pusher": "right-password"}})
	layout, digest := buildStandIn(t, reg.CAFile)
	ref := reg.Host + "/team/tcr-assistant:v0.1.1"
	t.Setenv("REGISTRY_CA", reg.CAFile)

	dockerConfig(t, reg.Host, "pusher", "wrong-password")
	res := runImage(t, "push", "--layout", layout, ref)
	require.Equal(t, result{1, "", "image push: pushing " + ref + `: the registry refused the credential of "pusher" from the docker config: HTTP 401 Unauthorized` + "\n"}, res)

	dockerConfig(t, reg.Host, "pusher", "right-password")
	res = runImage(t, "push", "--layout", layout, ref)
	require.Equal(t, result{0, "Pushed " + layout + " as " + reg.Host + "/team/tcr-assistant@" + digest + "\n", ""}, res)
}
