package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	kubeletconfigv1 "k8s.io/kubelet/config/v1"
)

const (
	hostBinDir    = "/usr/libexec/kubernetes/kubelet-plugins/credential-provider/exec"
	hostConfigDir = "/etc/kubernetes/tcr-assistant"
	clusterIP     = "https://10.96.0.42:443"
)

// wantConfig is the CredentialProviderConfig install writes for installArgs.
const wantConfig = `# Written by tcr-credential-provider install; changes are overwritten. The kubelet reads it when
# started with --image-credential-provider-config=/etc/kubernetes/tcr-assistant/credential-provider-config.yaml
# and --image-credential-provider-bin-dir=/usr/libexec/kubernetes/kubelet-plugins/credential-provider/exec.
apiVersion: kubelet.config.k8s.io/v1
kind: CredentialProviderConfig
providers:
- apiVersion: credentialprovider.kubelet.k8s.io/v1
  args:
  - --endpoint=https://10.96.0.42:443
  - --server-name=tcr-assistant-credentials.tcr-assistant-system.svc
  - --ca-file=/etc/kubernetes/tcr-assistant/ca.crt
  defaultCacheDuration: 5m0s
  matchImages:
  - tcr.example.com
  - '*.tencentcloudcr.com'
  name: tcr-credential-provider
  tokenAttributes:
    cacheType: ServiceAccount
    requireServiceAccount: true
    serviceAccountTokenAudience: tcr-assistant.tcr.tencentcloudcr.com
`

// node is a node's two directories as the DaemonSet mounts them, and the mounted CA.
type node struct {
	binDir, configDir, caFile string
}

func newNode(t *testing.T) node {
	t.Helper()
	dir := t.TempDir()
	n := node{binDir: filepath.Join(dir, "bin"), configDir: filepath.Join(dir, "config"), caFile: filepath.Join(dir, "ca", "ca.crt")}
	for _, d := range []string{n.binDir, n.configDir, filepath.Dir(n.caFile)} {
		require.NoError(t, os.Mkdir(d, 0o755))
	}
	_, _, ca := newCA(t, "manager CA")
	require.NoError(t, os.WriteFile(n.caFile, ca, 0o644))
	return n
}

func (n node) args(extra ...string) []string {
	return append([]string{"install",
		"--bin-dir", n.binDir, "--config-dir", n.configDir,
		"--host-bin-dir", hostBinDir, "--host-config-dir", hostConfigDir,
		"--endpoint", clusterIP, "--server-name", serverName, "--ca-file", n.caFile,
		"--match-images", "tcr.example.com, *.tencentcloudcr.com"}, extra...)
}

func (n node) files() []string {
	return []string{filepath.Join(n.binDir, name), filepath.Join(n.configDir, "ca.crt"), filepath.Join(n.configDir, "credential-provider-config.yaml")}
}

// written returns the files the log says were written, in order.
func written(stderr string) []string {
	var files []string
	for _, line := range strings.Split(strings.TrimSpace(stderr), "\n") {
		if strings.Contains(line, `msg="Wrote file"`) {
			f := strings.Fields(line[strings.Index(line, " file=")+len(" file="):])[0]
			files = append(files, f)
		}
	}
	return files
}

func TestInstall(t *testing.T) {
	n := newNode(t)
	_, stderr, code := run(t, nil, n.args()...)
	require.Equal(t, 0, code, stderr)
	require.Equal(t, n.files(), written(stderr), stderr)
	require.Len(t, strings.Split(strings.TrimSpace(stderr), "\n"), 3, "one line per file written")
	require.Contains(t, stderr, "hostPath="+hostBinDir+"/"+name+" ")

	self, err := os.ReadFile(binary)
	require.NoError(t, err)
	bin, err := os.ReadFile(n.files()[0])
	require.NoError(t, err)
	require.True(t, bytes.Equal(self, bin), "the plugin is this executable")
	ca, err := os.ReadFile(n.caFile)
	require.NoError(t, err)
	copied, err := os.ReadFile(n.files()[1])
	require.NoError(t, err)
	require.Equal(t, string(ca), string(copied))
	config, err := os.ReadFile(n.files()[2])
	require.NoError(t, err)
	require.Equal(t, wantConfig, string(config))
	for file, mode := range map[string]os.FileMode{n.files()[0]: 0o755, n.files()[1]: 0o644, n.files()[2]: 0o644} {
		st, err := os.Stat(file)
		require.NoError(t, err)
		require.Equal(t, mode, st.Mode(), file)
	}
	// No temporary file is left behind.
	for _, dir := range []string{n.binDir, n.configDir} {
		entries, err := os.ReadDir(dir)
		require.NoError(t, err)
		require.LessOrEqual(t, len(entries), 2, dir)
	}

	// The kubelet decodes the config strictly into its v1 type.
	scheme := runtime.NewScheme()
	require.NoError(t, kubeletconfigv1.AddToScheme(scheme))
	obj, _, err := serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer().Decode(config, nil, nil)
	require.NoError(t, err)
	p := obj.(*kubeletconfigv1.CredentialProviderConfig).Providers[0]
	require.Equal(t, "tcr-assistant.tcr.tencentcloudcr.com", p.TokenAttributes.ServiceAccountTokenAudience)
	require.True(t, *p.TokenAttributes.RequireServiceAccount)

	// A second run writes nothing: the files keep their times.
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	for _, f := range n.files() {
		require.NoError(t, os.Chtimes(f, old, old))
	}
	_, stderr, code = run(t, nil, n.args()...)
	require.Equal(t, 0, code, stderr)
	require.Empty(t, stderr)
	for _, f := range n.files() {
		st, err := os.Stat(f)
		require.NoError(t, err)
		require.True(t, st.ModTime().Equal(old), "%s was rewritten", f)
	}

	// A changed flag rewrites the config, and only the config.
	_, stderr, code = run(t, nil, n.args("--cache-duration", "1m")...)
	require.Equal(t, 0, code, stderr)
	require.Equal(t, n.files()[2:], written(stderr))
	config, err = os.ReadFile(n.files()[2])
	require.NoError(t, err)
	require.Equal(t, strings.Replace(wantConfig, "defaultCacheDuration: 5m0s", "defaultCacheDuration: 1m0s", 1), string(config))
}

// TestInstallWatch runs install --watch as the DaemonSet does: the CA rotates and is copied
// again, a removed plugin comes back, the config is left alone, and SIGTERM ends it with 0.
func TestInstallWatch(t *testing.T) {
	n := newNode(t)
	cmd := exec.Command(binary, n.args("--watch", "--interval=50ms")...)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	eventually(t, func() bool { return len(written(stderr.String())) == 3 }, "the first pass writes the three files")
	st, err := os.Stat(n.files()[2])
	require.NoError(t, err)
	configTime := st.ModTime()

	// The mounted CA rotates, as a Secret volume does it: a new file renamed over the old.
	_, _, rotated := newCA(t, "manager CA, rotated")
	tmp := n.caFile + ".new"
	require.NoError(t, os.WriteFile(tmp, rotated, 0o644))
	require.NoError(t, os.Rename(tmp, n.caFile))
	eventually(t, func() bool {
		got, _ := os.ReadFile(n.files()[1])
		return bytes.Equal(got, rotated)
	}, "the rotated CA is copied")

	require.NoError(t, os.Remove(n.files()[0]))
	eventually(t, func() bool { _, err := os.Stat(n.files()[0]); return err == nil }, "the removed plugin is copied again")

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, cmd.Wait(), stderr.String())
	require.Equal(t, append(n.files(), n.files()[1], n.files()[0]), written(stderr.String()), stderr.String())
	st, err = os.Stat(n.files()[2])
	require.NoError(t, err)
	require.True(t, st.ModTime().Equal(configTime), "the config was not rewritten")
}

// TestInstallRefused checks that bad flags or a bad CA fail with one line and write nothing.
func TestInstallRefused(t *testing.T) {
	n := newNode(t)
	notPEM := filepath.Join(t.TempDir(), "ca.crt")
	require.NoError(t, os.WriteFile(notPEM, []byte("not a certificate\n"), 0o644))
	replace := func(flag, value string) []string {
		args := n.args()
		for i := range args {
			if args[i] == flag {
				args[i+1] = value
			}
		}
		return args
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no match-images", replace("--match-images", " , "), `--match-images " , " names no image`},
		{"http endpoint", replace("--endpoint", "http://10.96.0.42"), `--endpoint "http://10.96.0.42" is not https://HOST[:PORT]`},
		{"an endpoint the kubelet did not expand", replace("--endpoint", "https://$(TCR_ASSISTANT_WEBHOOK_SERVICE_SERVICE_HOST):$(TCR_ASSISTANT_WEBHOOK_SERVICE_SERVICE_PORT)"),
			`--endpoint "https://$(TCR_ASSISTANT_WEBHOOK_SERVICE_SERVICE_HOST):$(TCR_ASSISTANT_WEBHOOK_SERVICE_SERVICE_PORT)" is not https://HOST[:PORT]`},
		{"relative host dir", replace("--host-config-dir", "etc/tcr"), "--host-bin-dir and --host-config-dir must be absolute paths"},
		{"no server name", replace("--server-name", ""), "--server-name is required"},
		{"a CA with no certificate", replace("--ca-file", notPEM), "the CA file " + notPEM + " holds no PEM certificate"},
		{"an unknown flag", append(n.args(), "--kubelet-config=/var/lib/kubelet/config.yaml"), "flag provided but not defined: -kubelet-config (see --help)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, code := run(t, nil, tc.args...)
			require.Equal(t, 1, code)
			require.Equal(t, name+" install: "+tc.want+"\n", stderr)
			for _, f := range n.files() {
				require.NoFileExists(t, f)
			}
		})
	}
}

func eventually(t *testing.T, cond func() bool, what string) {
	t.Helper()
	require.Eventually(t, cond, 10*time.Second, 20*time.Millisecond, what)
}

// syncBuffer is a bytes.Buffer the command writes while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
