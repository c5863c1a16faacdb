package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubeletconfigv1 "k8s.io/kubelet/config/v1"
	credentialproviderv1 "k8s.io/kubelet/pkg/apis/credentialprovider/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/tcr-assistant/tcr-assistant/credprovider/wire"
)

const (
	// caName and configName are the files install writes in --config-dir, next to nothing else.
	caName     = "ca.crt"
	configName = "credential-provider-config.yaml"
)

const installUsage = `Usage:
  tcr-credential-provider install --bin-dir DIR --config-dir DIR --host-bin-dir DIR --host-config-dir DIR
      --endpoint https://HOST:PORT --server-name NAME --ca-file FILE --match-images LIST [--cache-duration 5m] [--watch]

Copies this executable to --bin-dir, the CA to --config-dir/` + caName + ` and writes
--config-dir/` + configName + `, a CredentialProviderConfig naming the plugin, each
file only when its content differs. --bin-dir and --config-dir are where the node's directories
are mounted; --host-bin-dir and --host-config-dir are the same directories as the kubelet sees
them. The kubelet uses the plugin once started with
  --image-credential-provider-config=HOST-CONFIG-DIR/` + configName + `
  --image-credential-provider-bin-dir=HOST-BIN-DIR
which install never sets: it does not restart or reconfigure the kubelet.

Flags:
`

// installer keeps the plugin's three files on the node.
type installer struct {
	log *slog.Logger
	// self is this executable, and selfSum its SHA-256.
	self    string
	selfSum [sha256.Size]byte
	// caFile is the mounted CA, read on every check because it may rotate.
	caFile string
	// bin, ca and config are the files written, as the container sees them; hostBin, hostCA and
	// hostConfig the same as the kubelet does.
	bin, ca, config             string
	hostBin, hostCA, hostConfig string
	// configData is the CredentialProviderConfig.
	configData []byte
	// binSeen is the binary's size, mode and time when last found equal to self: an unchanged
	// stat spares reading it again.
	binSeen os.FileInfo
}

// install runs the install subcommand and returns the exit code.
func install(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet(name+" install", flag.ContinueOnError)
	binDir := fs.String("bin-dir", "", "where the node's kubelet plugin directory is mounted (required)")
	configDir := fs.String("config-dir", "", "where the node's directory for the config and the CA is mounted (required)")
	hostBinDir := fs.String("host-bin-dir", "", "the kubelet's --image-credential-provider-bin-dir, the path of --bin-dir on the node (required)")
	hostConfigDir := fs.String("host-config-dir", "", "the path of --config-dir on the node, which the config names (required)")
	endpoint := fs.String("endpoint", "", "the manager's address for the plugin, https://HOST:PORT with the Service's ClusterIP (required)")
	serverName := fs.String("server-name", "", "the Service's DNS name, which the manager's certificate is verified for (required)")
	caFile := fs.String("ca-file", "", "the PEM file of the manager's CA, copied to the node (required)")
	matchImages := fs.String("match-images", "", "comma-separated images the kubelet runs the plugin for, in the kubelet's matchImages syntax (required)")
	cacheDur := fs.Duration("cache-duration", 5*time.Minute, "the config's defaultCacheDuration (the plugin always sends its own)")
	watch := fs.Bool("watch", false, "keep running, re-checking the files, until SIGTERM")
	interval := fs.Duration("interval", 10*time.Second, "how often --watch re-checks (hidden, for tests)")
	if code, done := parseFlags(fs, args, stderr, installUsage, map[string]bool{"interval": true}); done {
		return code
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	in, err := newInstaller(log, installFlags{
		binDir: *binDir, configDir: *configDir, hostBinDir: *hostBinDir, hostConfigDir: *hostConfigDir,
		endpoint: *endpoint, serverName: *serverName, caFile: *caFile, matchImages: *matchImages, cacheDuration: *cacheDur,
	})
	if err == nil && *interval <= 0 {
		err = fmt.Errorf("--interval must be positive, got %s", *interval)
	}
	// The first check fails the command: a wrong mount or CA is seen at once, not every 10 s.
	if err == nil {
		err = in.check()
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s install: %v\n", name, err)
		return 1
	}
	if !*watch {
		return 0
	}
	ticker := time.NewTicker(*interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return 0
		case <-ticker.C:
			if err := in.check(); err != nil {
				log.Error("Could not check the files; trying again", "interval", *interval, "err", err)
			}
		}
	}
}

type installFlags struct {
	binDir, configDir, hostBinDir, hostConfigDir string
	endpoint, serverName, caFile, matchImages    string
	cacheDuration                                time.Duration
}

// newInstaller checks the flags and renders the config.
func newInstaller(log *slog.Logger, f installFlags) (*installer, error) {
	for _, req := range []struct{ flag, value string }{
		{"bin-dir", f.binDir}, {"config-dir", f.configDir}, {"host-bin-dir", f.hostBinDir}, {"host-config-dir", f.hostConfigDir},
		{"server-name", f.serverName}, {"ca-file", f.caFile}, {"match-images", f.matchImages},
	} {
		if req.value == "" {
			return nil, fmt.Errorf("--%s is required", req.flag)
		}
	}
	if !path.IsAbs(f.hostBinDir) || !path.IsAbs(f.hostConfigDir) {
		return nil, errors.New("--host-bin-dir and --host-config-dir must be absolute paths")
	}
	if _, err := credentialURL(f.endpoint); err != nil {
		return nil, err
	}
	if f.cacheDuration < 0 {
		return nil, fmt.Errorf("--cache-duration must not be negative, got %s", f.cacheDuration)
	}
	var images []string
	for _, m := range strings.Split(f.matchImages, ",") {
		if m = strings.TrimSpace(m); m != "" {
			images = append(images, m)
		}
	}
	if len(images) == 0 {
		return nil, fmt.Errorf("--match-images %q names no image", f.matchImages)
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding this executable: %w", err)
	}
	sum, err := fileSum(self)
	if err != nil {
		return nil, fmt.Errorf("reading this executable: %w", err)
	}
	in := &installer{
		log: log, self: self, selfSum: sum, caFile: f.caFile,
		bin:     filepath.Join(f.binDir, name),
		ca:      filepath.Join(f.configDir, caName),
		config:  filepath.Join(f.configDir, configName),
		hostBin: path.Join(f.hostBinDir, name),
		hostCA:  path.Join(f.hostConfigDir, caName), hostConfig: path.Join(f.hostConfigDir, configName),
	}
	in.configData, err = renderConfig(images, f.cacheDuration, f.endpoint, f.serverName, in.hostCA, in.hostConfig, f.hostBinDir)
	return in, err
}

// renderConfig returns the kubelet's CredentialProviderConfig: one provider, this plugin, given
// a ServiceAccount token for the add-on's audience and cached per ServiceAccount. Its paths are
// the node's.
func renderConfig(images []string, cacheDuration time.Duration, endpoint, serverName, hostCA, hostConfig, hostBinDir string) ([]byte, error) {
	cfg := kubeletconfigv1.CredentialProviderConfig{
		TypeMeta: metav1.TypeMeta{APIVersion: kubeletconfigv1.SchemeGroupVersion.String(), Kind: "CredentialProviderConfig"},
		Providers: []kubeletconfigv1.CredentialProvider{{
			Name:                 name,
			MatchImages:          images,
			DefaultCacheDuration: &metav1.Duration{Duration: cacheDuration},
			APIVersion:           credentialproviderv1.SchemeGroupVersion.String(),
			Args:                 []string{"--endpoint=" + endpoint, "--server-name=" + serverName, "--ca-file=" + hostCA},
			TokenAttributes: &kubeletconfigv1.ServiceAccountTokenAttributes{
				ServiceAccountTokenAudience: wire.Audience,
				CacheType:                   kubeletconfigv1.ServiceAccountServiceAccountTokenCacheType,
				RequireServiceAccount:       ptr.To(true),
			},
		}},
	}
	data, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	header := "# Written by tcr-credential-provider install; changes are overwritten. The kubelet reads it when\n" +
		"# started with --image-credential-provider-config=" + hostConfig + "\n" +
		"# and --image-credential-provider-bin-dir=" + hostBinDir + ".\n"
	return append([]byte(header), data...), nil
}

// check writes each file whose content differs from what it should be, once the CA is known
// good, and the config last since it names the others.
func (in *installer) check() error {
	ca, err := os.ReadFile(in.caFile)
	if err != nil {
		return fmt.Errorf("reading the CA: %w", err)
	}
	if _, err := caPool(in.caFile, ca); err != nil {
		return err
	}
	if err := in.checkBinary(); err != nil {
		return err
	}
	if err := in.ensure(in.ca, in.hostCA, ca, 0o644); err != nil {
		return err
	}
	return in.ensure(in.config, in.hostConfig, in.configData, 0o644)
}

// ensure writes data to file unless it holds data with mode already.
func (in *installer) ensure(file, hostFile string, data []byte, mode os.FileMode) error {
	if cur, err := os.ReadFile(file); err == nil && bytes.Equal(cur, data) && fileMode(file) == mode {
		return nil
	}
	if err := writeAtomic(file, bytes.NewReader(data), mode); err != nil {
		return err
	}
	in.log.Info("Wrote file", "file", file, "hostPath", hostFile, "bytes", len(data))
	return nil
}

// checkBinary copies this executable over the plugin unless they are equal.
func (in *installer) checkBinary() error {
	st, err := os.Stat(in.bin)
	if err == nil && in.binSeen != nil && sameStat(st, in.binSeen) {
		return nil
	}
	if err == nil && st.Mode().IsRegular() && st.Mode().Perm() == 0o755 {
		if sum, err := fileSum(in.bin); err == nil && sum == in.selfSum {
			in.binSeen = st
			return nil
		}
	}
	self, err := os.Open(in.self)
	if err != nil {
		return fmt.Errorf("reading this executable: %w", err)
	}
	defer self.Close()
	if err := writeAtomic(in.bin, self, 0o755); err != nil {
		return err
	}
	if in.binSeen, err = os.Stat(in.bin); err != nil {
		return err
	}
	in.log.Info("Wrote file", "file", in.bin, "hostPath", in.hostBin, "bytes", in.binSeen.Size())
	return nil
}

// writeAtomic writes file through a temporary file in its directory renamed over it, so that
// the kubelet reads the old content or the new, never part of it (and a running plugin keeps its
// executable).
func writeAtomic(file string, r io.Reader, mode os.FileMode) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", file, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
			err = fmt.Errorf("writing %s: %w", file, err)
		}
	}()
	if _, err = io.Copy(tmp, r); err != nil {
		return err
	}
	if err = tmp.Chmod(mode); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), file)
}

// fileSum is the SHA-256 of a file's content.
func fileSum(file string) (sum [sha256.Size]byte, err error) {
	f, err := os.Open(file)
	if err != nil {
		return sum, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return sum, err
	}
	copy(sum[:], h.Sum(nil))
	return sum, nil
}

// fileMode is a file's permission bits, or an impossible mode when it cannot be read.
func fileMode(file string) os.FileMode {
	st, err := os.Stat(file)
	if err != nil || !st.Mode().IsRegular() {
		return os.ModeIrregular
	}
	return st.Mode().Perm()
}

// sameStat reports whether two stats of a file show the same size, mode, time and inode.
func sameStat(a, b os.FileInfo) bool {
	return a.Size() == b.Size() && a.Mode() == b.Mode() && a.ModTime().Equal(b.ModTime()) && os.SameFile(a, b)
}
