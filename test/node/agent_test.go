//go:build node

package node

import (
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tcr-assistant/tcr-assistant/agent"
)

const (
	agentDomain = "node-suite.tencentcloudcr.com"
	agentIP     = "10.254.0.77"
)

// hostsFile is the node's hosts file: /etc/hosts in the kubelet's mount namespace.
func hostsFile(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(nodeDir(), "hosts"))
	require.NoError(t, err)
	return string(b)
}

func basicAuth(user, password string) string {
	return base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
}

// agentOnTheNode: the bundle's hosts-updater runs in its container as the bundle says (root
// without a capability, no new privileges, seccomp, /etc and its root read-only), and an edit of
// updater-config is in the node's hosts file within 2 s, resolvable on the node, with the node's
// own lines kept.
func agentOnTheNode(t *testing.T, c client.Client) {
	ctx := context.Background()
	before := hostsFile(t)
	require.NotContains(t, before, agent.BeginMarker)

	pid, err := process("/hosts-updater")
	require.NoError(t, err, "the hosts-updater's process")
	status, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	require.NoError(t, err)
	for _, want := range []string{"Uid:\t0\t0\t0\t0", "CapEff:\t0000000000000000", "CapPrm:\t0000000000000000", "NoNewPrivs:\t1", "Seccomp:\t2"} {
		assert.Contains(t, string(status), want+"\n", "/proc/%d/status", pid)
	}
	root := filepath.Join("/proc", strconv.Itoa(pid), "root")
	for _, dir := range []string{"/etc", "/host/etc", "/"} {
		err := writable(filepath.Join(root, dir, "node-suite-probe"))
		assert.ErrorIs(t, err, syscall.EROFS, "a file created in the container's %s", dir)
	}

	cm := &corev1.ConfigMap{}
	require.NoError(t, c.Get(ctx, client.ObjectKey{Namespace: system, Name: "updater-config"}, cm))
	cm.Data = map[string]string{"hosts.yaml": "- domain: " + agentDomain + "\n  ip: " + agentIP + "\n"}
	edited := time.Now()
	require.NoError(t, c.Update(ctx, cm))
	want := agent.BeginMarker + "\n" + agentIP + " " + agentDomain + "\n" + agent.EndMarker + "\n"
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		assert.Contains(ct, hostsFile(t), want)
	}, 2*time.Second, 20*time.Millisecond, "the entry was not in the node's hosts file within 2 s")
	t.Logf("the entry was in the node's hosts file %s after the ConfigMap's update", time.Since(edited).Round(time.Millisecond))
	assert.True(t, strings.HasPrefix(hostsFile(t), before), "the node's own lines were changed:\n%s", hostsFile(t))

	out, err := inNode(t, "getent", "hosts", agentDomain)
	require.NoError(t, err, out)
	assert.Equal(t, []string{agentIP, agentDomain}, strings.Fields(out), "getent hosts on the node")
}
