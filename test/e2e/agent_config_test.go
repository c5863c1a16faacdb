package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tcr-assistant/tcr-assistant/internal/testenv"
)

const (
	agentConfigMap = "updater-config"
	agentBegin     = "# BEGIN tcr-assistant managed hosts (do not edit)"
	agentEnd       = "# END tcr-assistant managed hosts"
	// agentNode is the node name the agents of these tests report in their Events.
	agentNode = "e2e-node"
)

// userHosts is what a user puts into updater-config.
var userHosts = map[string]string{"hosts.yaml": "- domain: e2e-user.tencentcloudcr.com\n  ip: 10.0.0.11\n"}

const userBlock = agentBegin + "\n10.0.0.11 e2e-user.tencentcloudcr.com\n" + agentEnd + "\n"

// editConfigMap sets the data of updater-config as 'kubectl edit' would: an update under a field
// manager of the user's, creating it when it is gone.
func editConfigMap(t *testing.T, data map[string]string) {
	t.Helper()
	ctx := context.Background()
	cm := &corev1.ConfigMap{}
	err := env.Client.Get(ctx, client.ObjectKey{Namespace: ownNamespace, Name: agentConfigMap}, cm)
	if client.IgnoreNotFound(err) != nil {
		require.NoError(t, err)
	}
	if err != nil {
		cm = &corev1.ConfigMap{}
		cm.Namespace, cm.Name, cm.Data = ownNamespace, agentConfigMap, data
		require.NoError(t, env.Client.Create(ctx, cm, client.FieldOwner("kubectl-edit")))
		return
	}
	cm.Data = data
	require.NoError(t, env.Client.Update(ctx, cm, client.FieldOwner("kubectl-edit")))
}

// startAgent runs the hosts-updater binary as its ServiceAccount, with a resync of one second,
// and returns it with the base URL of its metrics once it is ready.
func startAgent(t *testing.T, hostsFile string) (*testenv.Process, string) {
	t.Helper()
	probePort, metricsPort := testenv.FreePort(t), testenv.FreePort(t)
	p := start(t, binary(t, "hosts-updater"),
		"--kubeconfig="+kubeconfigFor(t, agentSA),
		"--namespace="+ownNamespace,
		"--hosts-file="+hostsFile,
		"--node-name="+agentNode,
		"--resync=1s",
		"--metrics-bind-address=127.0.0.1:"+strconv.Itoa(metricsPort),
		"--health-probe-bind-address=127.0.0.1:"+strconv.Itoa(probePort))
	waitHealthy(t, p, probePort, "/readyz")
	return p, "http://127.0.0.1:" + strconv.Itoa(metricsPort) + "/metrics"
}

func metrics(t require.TestingT, url string) string {
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(body)
}

func readFile(t require.TestingT, path string) string {
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(data)
}

// requireFileStays checks that the file keeps want, byte for byte, over several of the agent's
// one-second resyncs.
func requireFileStays(t *testing.T, path, want string) {
	t.Helper()
	require.Never(t, func() bool {
		data, err := os.ReadFile(path)
		return err != nil || string(data) != want
	}, 3*time.Second, 50*time.Millisecond, "the hosts file changed")
	require.Equal(t, want, readFile(t, path))
}

// TestUpgradeKeepsTheUsersHostsEntries installs the bundle, edits updater-config as a user
// would, runs the agent, and upgrades (re-applies the bundle) the README's way and the GitOps
// way: the ConfigMap keeps the user's entries, and the agent leaves the hosts file alone.
func TestUpgradeKeepsTheUsersHostsEntries(t *testing.T) {
	for mode, args := range map[string][]string{
		"client-side apply": {"apply", "-f"},
		"server-side apply": {"apply", "--server-side", "--field-manager=e2e-gitops", "-f"},
	} {
		t.Run(mode, func(t *testing.T) {
			ownControlPlane(t)
			ctx := context.Background()
			apply := func() string {
				out, _, err := env.Kubectl("", append(args, filepath.Join(env.Root, installer))...)
				require.NoError(t, err)
				return out
			}
			apply()
			editConfigMap(t, userHosts)

			hosts := filepath.Join(t.TempDir(), "hosts")
			require.NoError(t, os.WriteFile(hosts, []byte("127.0.0.1 localhost\n"), 0o644))
			agent, metricsURL := startAgent(t, hosts)
			require.EventuallyWithT(t, func(c *assert.CollectT) { assert.Equal(c, "127.0.0.1 localhost\n"+userBlock, readFile(c, hosts)) },
				waitTimeout, waitInterval, "the agent never wrote the user's entries")
			managed := readFile(t, hosts)
			writes := metricLine(t, metricsURL, "tcr_assistant_hosts_updater_writes_total")

			out := apply()
			assert.Contains(t, out, "configmap/updater-config")
			cm := &corev1.ConfigMap{}
			require.NoError(t, env.Client.Get(ctx, client.ObjectKey{Namespace: ownNamespace, Name: agentConfigMap}, cm))
			assert.Equal(t, userHosts, cm.Data, "the upgrade reset the user's entries")
			requireFileStays(t, hosts, managed)
			assert.Equal(t, writes, metricLine(t, metricsURL, "tcr_assistant_hosts_updater_writes_total"))

			agent.Stop()
			assert.Empty(t, forbiddenLines(agent.Output()), "the agent's RBAC is not sufficient")
		})
	}
}

// metricLine returns the line of the agent's metrics that starts with name.
func metricLine(t require.TestingT, url, name string) string {
	for _, l := range strings.Split(metrics(t, url), "\n") {
		if strings.HasPrefix(l, name+" ") {
			return l
		}
	}
	require.Failf(t, "no such metric", "%s", name)
	return ""
}

// TestDeletedConfigMapKeepsTheEntries runs the agent as its ServiceAccount, deletes updater-config
// and sets a document that does not parse: the hosts file keeps its entries, and the agent says so
// in its log, its metrics and an Event; only an explicit empty list removes them.
func TestDeletedConfigMapKeepsTheEntries(t *testing.T) {
	ownControlPlane(t)
	ctx := context.Background()
	installBundle(t)
	editConfigMap(t, userHosts)
	hosts := filepath.Join(t.TempDir(), "hosts")
	require.NoError(t, os.WriteFile(hosts, []byte("127.0.0.1 localhost\n"), 0o644))
	agent, metricsURL := startAgent(t, hosts)
	want := "127.0.0.1 localhost\n" + userBlock
	require.EventuallyWithT(t, func(c *assert.CollectT) { assert.Equal(c, want, readFile(c, hosts)) }, waitTimeout, waitInterval)

	t.Log("Delete the ConfigMap")
	_, _, err := env.Kubectl("", "-n", ownNamespace, "delete", "configmap", agentConfigMap)
	require.NoError(t, err)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Equal(c, "tcr_assistant_hosts_updater_configmap_missing 1", metricLine(c, metricsURL, "tcr_assistant_hosts_updater_configmap_missing"))
	}, waitTimeout, waitInterval)
	requireFileStays(t, hosts, want)
	assert.Contains(t, agent.Output(), `level=WARN msg="updater-config not found; keeping 1 entries"`)
	var events corev1.EventList
	require.NoError(t, env.Client.List(ctx, &events, client.InNamespace(ownNamespace)))
	var got []string
	for _, e := range events.Items {
		if e.InvolvedObject.Kind == "ConfigMap" && e.InvolvedObject.Name == agentConfigMap {
			got = append(got, fmt.Sprintf("%s %s %s/%s: %s", e.Type, e.Reason, e.Source.Component, e.Source.Host, e.Message))
		}
	}
	assert.Equal(t, []string{"Warning ConfigMapNotFound hosts-updater/" + agentNode + ": updater-config not found; keeping 1 entries"}, got)

	t.Log("Recreate it with a document that does not parse")
	editConfigMap(t, map[string]string{"hosts.yaml": "- domain: [broken\n"})
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Equal(c, "tcr_assistant_hosts_updater_parse_errors_total 1", metricLine(c, metricsURL, "tcr_assistant_hosts_updater_parse_errors_total"))
	}, waitTimeout, waitInterval)
	requireFileStays(t, hosts, want)
	assert.Equal(t, "tcr_assistant_hosts_updater_configmap_missing 0", metricLine(t, metricsURL, "tcr_assistant_hosts_updater_configmap_missing"))

	t.Log("An explicit empty list removes the entries")
	editConfigMap(t, map[string]string{"hosts.yaml": "[]"})
	require.EventuallyWithT(t, func(c *assert.CollectT) { assert.Equal(c, "127.0.0.1 localhost\n", readFile(c, hosts)) }, waitTimeout, waitInterval)

	agent.Stop()
	assert.Empty(t, forbiddenLines(agent.Output()), "the agent's RBAC is not sufficient")
}

// TestAgentOnTheNodeWritesOnlyTheHostsFile runs the agent in a mount namespace of its own
// (unshare), with the mounts of the bundle's DaemonSet made of bind mounts of a fake node's
// /etc: /etc read-only, the hosts file alone writable. The agent cannot write /etc; it merges
// the in-place edits of other writers as before; and when the node's hosts file is replaced by
// rename, it exits with a clear message, and a new agent (as the kubelet would restart it)
// manages the new file.
func TestAgentOnTheNodeWritesOnlyTheHostsFile(t *testing.T) {
	installBundle(t)
	editConfigMap(t, userHosts)
	t.Cleanup(func() { editConfigMap(t, map[string]string{"hosts.yaml": "[]"}) })
	ds := typed[appsv1.DaemonSet](t, findObject(t, readBundle(t), "DaemonSet", "hosts-updater"))
	spec := ds.Spec.Template.Spec

	dir := t.TempDir()
	nodeEtc := filepath.Join(dir, "node", "etc")
	require.NoError(t, os.MkdirAll(nodeEtc, 0o755))
	nodeHosts := filepath.Join(nodeEtc, "hosts")
	require.NoError(t, os.WriteFile(nodeHosts, []byte("127.0.0.1 localhost\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(nodeEtc, "passwd"), []byte("root:x:0:0::/root:/bin/sh\n"), 0o644))
	container := filepath.Join(dir, "container")

	// The DaemonSet's mounts, as bind mounts under container/ of the volumes' paths under node/.
	var script strings.Builder
	script.WriteString("set -e\n")
	paths := map[string]string{}
	for _, m := range spec.Containers[0].VolumeMounts {
		var source string
		for _, v := range spec.Volumes {
			if v.Name == m.Name {
				require.NotNil(t, v.HostPath, "volume %s", v.Name)
				source = filepath.Join(dir, "node", v.HostPath.Path)
			}
		}
		require.NotEmpty(t, source, "mount %s", m.Name)
		target := filepath.Join(container, m.MountPath)
		paths[m.MountPath] = target
		fi, err := os.Stat(source)
		require.NoError(t, err)
		if fi.IsDir() {
			require.NoError(t, os.MkdirAll(target, 0o755))
		} else {
			require.NoError(t, os.MkdirAll(filepath.Dir(target), 0o755))
			require.NoError(t, os.WriteFile(target, nil, 0o644))
		}
		fmt.Fprintf(&script, "mount --bind %q %q\n", source, target)
		if m.ReadOnly {
			fmt.Fprintf(&script, "mount -o remount,bind,ro %q\n", target)
		}
	}
	// Root with every capability dropped in the pod, root here: either way the mounts decide.
	fmt.Fprintf(&script, "if echo 'x::0:0::/:/bin/sh' >> %q; then echo 'wrote the node /etc/passwd'; exit 97; fi\n",
		filepath.Join(container, "host", "etc", "passwd"))

	// The DaemonSet's arguments, with its paths under container/.
	probePort, metricsPort := testenv.FreePort(t), testenv.FreePort(t)
	args := []string{binary(t, "hosts-updater")}
	for _, a := range spec.Containers[0].Args {
		name, value, _ := strings.Cut(a, "=")
		switch name {
		case "--namespace":
			value = ownNamespace
		case "--node-name":
			value = agentNode
		case "--hosts-file", "--node-hosts-file":
			for mountPath, target := range paths {
				if value == mountPath || strings.HasPrefix(value, mountPath+"/") {
					value = target + strings.TrimPrefix(value, mountPath)
				}
			}
		case "--metrics-bind-address":
			value = "127.0.0.1:" + strconv.Itoa(metricsPort)
		case "--health-probe-bind-address":
			value = "127.0.0.1:" + strconv.Itoa(probePort)
		}
		args = append(args, name+"="+value)
	}
	args = append(args, "--kubeconfig="+kubeconfigFor(t, agentSA), "--resync=1s")
	script.WriteString("exec")
	for _, a := range args {
		fmt.Fprintf(&script, " %q", a)
	}
	script.WriteString("\n")
	run := func() *testenv.Process {
		p := start(t, "unshare", "--mount", "--propagation", "private", "sh", "-c", script.String())
		waitHealthy(t, p, probePort, "/readyz")
		return p
	}

	agent := run()
	require.EventuallyWithT(t, func(c *assert.CollectT) { assert.Equal(c, "127.0.0.1 localhost\n"+userBlock, readFile(c, nodeHosts)) },
		waitTimeout, waitInterval, "the agent never wrote the node's hosts file")
	assert.Equal(t, "root:x:0:0::/root:/bin/sh\n", readFile(t, filepath.Join(nodeEtc, "passwd")))

	t.Log("Another writer edits the file in place, under the lock; the agent merges it")
	edited := "127.0.0.1 localhost\n10.9.9.9 added-by-cloud-init\n"
	f, err := os.OpenFile(nodeHosts, os.O_RDWR, 0)
	require.NoError(t, err)
	require.NoError(t, syscall.Flock(int(f.Fd()), syscall.LOCK_EX))
	require.NoError(t, f.Truncate(0))
	_, err = f.WriteAt([]byte(edited), 0)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	require.EventuallyWithT(t, func(c *assert.CollectT) { assert.Equal(c, edited+userBlock, readFile(c, nodeHosts)) },
		waitTimeout, waitInterval, "the agent did not merge the in-place edit")

	t.Log("A node tool replaces the file by rename; the agent exits")
	held := inodeOf(t, nodeHosts)
	replacement := "127.0.0.1 localhost\n10.1.1.1 renamed\n"
	require.NoError(t, os.WriteFile(nodeHosts+".new", []byte(replacement), 0o644))
	require.NoError(t, os.Rename(nodeHosts+".new", nodeHosts))
	select {
	case <-agent.Done():
	case <-time.After(waitTimeout):
		t.Fatal("the agent did not exit")
	}
	assert.Equal(t, 1, agent.ExitCode())
	assert.Contains(t, agent.Output(), fmt.Sprintf(
		"hosts-updater: the node's hosts file was replaced by rename: %s is inode %d now, while %s, which the agent writes, is still inode %d; exiting so that the kubelet restarts the agent on the new file\n",
		paths["/host/etc"]+"/hosts", inodeOf(t, nodeHosts), paths["/host/hosts"], held))
	assert.Equal(t, replacement, readFile(t, nodeHosts), "the exiting agent wrote the new file")

	t.Log("Restarted, the agent manages the new file")
	agent = run()
	require.EventuallyWithT(t, func(c *assert.CollectT) { assert.Equal(c, replacement+userBlock, readFile(c, nodeHosts)) },
		waitTimeout, waitInterval, "the restarted agent never wrote the new file")
	agent.Stop()
	assert.Empty(t, forbiddenLines(agent.Output()), "the agent's RBAC is not sufficient")
}

func inodeOf(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	require.NoError(t, err)
	return fi.Sys().(*syscall.Stat_t).Ino
}
