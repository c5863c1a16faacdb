//go:build node

// Package node is the node suite: the add-on as users run it, its own image on a single-node
// cluster with a real kubelet, containerd and runc (hack/node/node.sh), pulling from a private
// registry. 'make test-node' (and 'make test', as root) runs it.
//
// TestMain is the suite's owner of the node. The test binary starts it (node.sh up, with a
// watcher that stops it if this process dies, however), runs itself again inside the node's
// network namespace, where every address of the suite is (the registry on its loopback, Pod and
// Service addresses), and stops the node whatever the tests did (node.sh down: processes,
// cgroups, iptables rules and the namespace with its bridge, mounts, sysctls).
package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/stretchr/testify/require"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/tcr-assistant/tcr-assistant/internal/testenv"
)

const (
	// inside marks the test process that runs in the node's network namespace.
	inside = "TCR_NODE_SUITE_INSIDE"
	netns  = "tcr-node"
	// nodeIP is the node's address, on the namespace's veth pair.
	nodeIP   = "10.254.0.1"
	nodeName = "tcr-node"

	timeout = 90 * time.Second
	tick    = 250 * time.Millisecond
)

func TestMain(m *testing.M) {
	if os.Getenv(inside) == "1" {
		ctrllog.SetLogger(logr.Discard())
		os.Exit(m.Run())
	}
	os.Exit(ownTheNode())
}

// ownTheNode starts the node, runs the tests inside its network namespace, and stops it.
func ownTheNode() int {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "node suite: it runs as root (network and mount namespaces, cgroups, iptables)")
		return 1
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "node suite:", err)
		return 1
	}
	nodeSh := func(cmd string) error {
		c := exec.Command(filepath.Join(root, "hack", "node", "node.sh"), cmd, nodeDir())
		c.Env = append(os.Environ(), fmt.Sprintf("NODE_OWNER=%d", os.Getpid()))
		c.Stdout, c.Stderr = os.Stderr, os.Stderr
		return c.Run()
	}
	defer func() { _ = nodeSh("down") }()
	if err := nodeSh("up"); err != nil {
		fmt.Fprintln(os.Stderr, "node suite: the node did not start:", err)
		return 1
	}
	// The child dies with this process (testenv.Command), and the node with it (the watcher).
	err = testenv.Command{Path: "ip", Args: append([]string{"netns", "exec", netns, os.Args[0]}, os.Args[1:]...),
		Env: append(os.Environ(), inside+"=1"), Output: os.Stdout, Stderr: os.Stderr, StopGrace: 10 * time.Second}.
		Run(context.Background())
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit) && exit.ExitCode() > 0:
		return exit.ExitCode()
	default:
		fmt.Fprintln(os.Stderr, "node suite:", err)
		return 1
	}
}

// nodeDir is the node's state directory (NODE_DIR of node.sh).
func nodeDir() string {
	if d := os.Getenv("NODE_DIR"); d != "" {
		return d
	}
	return "/tmp/tcr-node"
}

// adminKubeconfig is the cluster administrator's kubeconfig (system:masters).
func adminKubeconfig() string { return filepath.Join(nodeDir(), "admin.kubeconfig") }

// admin returns the administrator's REST config and client.
func admin(t *testing.T) (*rest.Config, client.Client) {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", adminKubeconfig())
	require.NoError(t, err)
	c, err := client.New(cfg, client.Options{Scheme: testenv.Scheme()})
	require.NoError(t, err)
	return cfg, c
}

// repoRoot is the repository's root directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := testenv.RepoRoot()
	require.NoError(t, err)
	return root
}

// run runs a command to its end and returns its output (stdout and stderr), failing the test
// when it fails.
func run(t *testing.T, path string, args ...string) string {
	t.Helper()
	out, err := runErr(path, args...)
	require.NoError(t, err, "%s %v:\n%s", path, args, out)
	return out
}

// runErr runs a command to its end and returns its output (stdout and stderr) and error.
func runErr(path string, args ...string) (string, error) {
	var out testenv.SyncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	err := testenv.Command{Path: path, Args: args, Output: &out}.Run(ctx)
	return out.String(), err
}

// kubectl runs kubectl as the administrator.
func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	return run(t, "kubectl", append([]string{"--kubeconfig", adminKubeconfig()}, args...)...)
}

// inNode runs a command in the mount namespace of the kubelet and containerd, where /etc/hosts
// is the node's hosts file.
func inNode(t *testing.T, args ...string) (string, error) {
	t.Helper()
	pid, err := os.ReadFile(filepath.Join(nodeDir(), "holder.pid"))
	require.NoError(t, err)
	return runErr("nsenter", append([]string{"-t", strings.TrimSpace(string(pid)), "-m", "--"}, args...)...)
}
