package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tcr-assistant/tcr-assistant/agent"
	"github.com/tcr-assistant/tcr-assistant/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { os.Exit(testenv.Main(m, &env)) }

const (
	namespace = "tcr-assistant-system"
	// agentUser is the identity of the DaemonSet's ServiceAccount, so that the tests run the
	// agent under the Role of config/agent.
	agentUser = "system:serviceaccount:" + namespace + ":hosts-updater"
	waitFor   = 60 * time.Second
	tick      = 10 * time.Millisecond
)

var installOnce sync.Once

// install applies config/agent (namespace, ServiceAccount, Role, RoleBinding, the empty
// ConfigMap and the DaemonSet) to the control plane, once.
func install(t *testing.T) {
	t.Helper()
	installOnce.Do(func() {
		_, _, err := env.Kubectl("", "create", "namespace", namespace)
		require.NoError(t, err)
		_, _, err = env.Kubectl("", "apply", "--server-side", "--field-manager=tcr-assistant-test", "-k", filepath.Join(env.Root, "config", "agent"))
		require.NoError(t, err)
	})
}

// startAgent runs the command in-process as the agent's ServiceAccount against hostsFile, and
// returns the base URLs of its metrics and probe endpoints.
func startAgent(t *testing.T, hostsFile string, extraArgs ...string) (metricsURL, probesURL string) {
	t.Helper()
	install(t)
	cfg, err := env.AddUser(agentUser, "system:serviceaccounts", "system:serviceaccounts:"+namespace)
	require.NoError(t, err)
	args := append([]string{
		"--kubeconfig", testenv.WriteKubeconfig(t, cfg),
		"--namespace", namespace,
		"--hosts-file", hostsFile,
		"--metrics-bind-address", "127.0.0.1:0",
		"--health-probe-bind-address", "127.0.0.1:0",
		"--node-name", "test-node",
	}, extraArgs...)
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan *servers, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, args, testLogWriter{t}, func(_ *agent.Agent, s *servers) { started <- s })
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err, "the agent's exit")
		case <-time.After(waitFor):
			t.Error("the agent did not stop")
		}
	})
	select {
	case s := <-started:
		return "http://" + s.metrics.String(), "http://" + s.probes.String()
	case err := <-done:
		require.NoError(t, err)
		t.Fatal("the agent stopped at once")
	case <-time.After(waitFor):
		t.Fatal("the agent did not start")
	}
	return "", ""
}

type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func admin(t testing.TB) kubernetes.Interface {
	t.Helper()
	c, err := kubernetes.NewForConfig(env.Config)
	require.NoError(t, err)
	return c
}

// setHosts writes doc as the ConfigMap's hosts.yaml, creating the ConfigMap if needed.
func setHosts(t testing.TB, doc string) {
	t.Helper()
	ctx := context.Background()
	cms := admin(t).CoreV1().ConfigMaps(namespace)
	cm, err := cms.Get(ctx, agent.ConfigMapName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = cms.Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: agent.ConfigMapName, Namespace: namespace},
			Data:       map[string]string{agent.ConfigKey: doc},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		return
	}
	require.NoError(t, err)
	cm.Data = map[string]string{agent.ConfigKey: doc}
	_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
	require.NoError(t, err)
}

func deleteConfigMap(t *testing.T) {
	t.Helper()
	err := admin(t).CoreV1().ConfigMaps(namespace).Delete(context.Background(), agent.ConfigMapName, metav1.DeleteOptions{})
	require.NoError(t, err)
}

func fileContent(t require.TestingT, path string) string {
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(data)
}

// requireFile waits until the file at path holds want.
func requireFile(t *testing.T, path, want string) {
	t.Helper()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Equal(c, want, fileContent(c, path))
	}, waitFor, tick)
}

// writeLocked rewrites the file as a cooperating writer does, under an exclusive flock, so the
// agent never reads it half written.
func writeLocked(t *testing.T, path, content string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	require.NoError(t, syscall.Flock(int(f.Fd()), syscall.LOCK_EX))
	require.NoError(t, f.Truncate(0))
	_, err = f.WriteAt([]byte(content), 0)
	require.NoError(t, err)
}

func get(t require.TestingT, url string) (int, string) {
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

func block(lines ...string) string {
	return agent.BeginMarker + "\n" + strings.Join(lines, "\n") + "\n" + agent.EndMarker + "\n"
}

// TestAgentFollowsTheConfigMap runs the agent, as its ServiceAccount under the Role of
// config/agent, against a temporary hosts file, and edits the ConfigMap through the API.
func TestAgentFollowsTheConfigMap(t *testing.T) {
	const original = "127.0.0.1 localhost\n# cloud-init managed\n10.1.2.3\tnode-1\n"
	hosts := filepath.Join(t.TempDir(), "hosts")
	require.NoError(t, os.WriteFile(hosts, []byte(original), 0o644))
	install(t)
	setHosts(t, "[]")

	metrics, probes := startAgent(t, hosts, "--resync", "1s")

	require.EventuallyWithT(t, func(c *assert.CollectT) {
		code, _ := get(c, probes+"/readyz")
		assert.Equal(c, http.StatusOK, code)
	}, waitFor, tick)
	code, body := get(t, probes+"/healthz")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "ok", body)
	assert.Equal(t, original, fileContent(t, hosts), "an empty list leaves the file alone")

	t.Log("Create entries")
	setHosts(t, "- domain: demo.tencentcloudcr.com\n  ip: 10.0.0.2\n  disabled: false\n- domain: v6.tencentcloudcr.com\n  ip: 'FD00::0002'\n")
	requireFile(t, hosts, original+block("10.0.0.2 demo.tencentcloudcr.com", "fd00::2 v6.tencentcloudcr.com"))

	t.Log("Edit an entry")
	setHosts(t, "- domain: demo.tencentcloudcr.com\n  ip: 10.0.0.3\n- domain: v6.tencentcloudcr.com\n  ip: 'fd00::2'\n")
	requireFile(t, hosts, original+block("10.0.0.3 demo.tencentcloudcr.com", "fd00::2 v6.tencentcloudcr.com"))

	t.Log("Disable an entry")
	setHosts(t, "- domain: demo.tencentcloudcr.com\n  ip: 10.0.0.3\n  disabled: true\n- domain: v6.tencentcloudcr.com\n  ip: 'fd00::2'\n")
	requireFile(t, hosts, original+block("fd00::2 v6.tencentcloudcr.com"))

	t.Log("An invalid entry is skipped and counted")
	setHosts(t, "- domain: '*.tencentcloudcr.com'\n  ip: 10.0.0.4\n- domain: v6.tencentcloudcr.com\n  ip: 'fd00::2'\n")
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		_, m := get(c, metrics+"/metrics")
		assert.Contains(c, m, "tcr_assistant_hosts_updater_invalid_entries 1\n")
	}, waitFor, tick)
	assert.Equal(t, original+block("fd00::2 v6.tencentcloudcr.com"), fileContent(t, hosts))

	t.Log("A document that does not parse keeps the last applied state")
	setHosts(t, "- domain: [broken\n")
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		_, m := get(c, metrics+"/metrics")
		assert.Contains(c, m, "tcr_assistant_hosts_updater_parse_errors_total 1\n")
	}, waitFor, tick)
	assert.Equal(t, original+block("fd00::2 v6.tencentcloudcr.com"), fileContent(t, hosts))

	t.Log("Another writer removes the block; the resync repairs it")
	writeLocked(t, hosts, original+"10.9.9.9 added-by-cloud-init\n")
	requireFile(t, hosts, original+"10.9.9.9 added-by-cloud-init\n"+block("fd00::2 v6.tencentcloudcr.com"))

	t.Log("A managed domain outside the block is reported")
	writeLocked(t, hosts, original+"10.9.9.9 v6.tencentcloudcr.com\n"+block("fd00::2 v6.tencentcloudcr.com"))
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		_, m := get(c, metrics+"/metrics")
		assert.Contains(c, m, "tcr_assistant_hosts_updater_domains_outside_block 1\n")
	}, waitFor, tick)
	writeLocked(t, hosts, original+block("fd00::2 v6.tencentcloudcr.com"))

	t.Log("Delete the ConfigMap: the entries stay, and an Event says so")
	deleteConfigMap(t)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		_, m := get(c, metrics+"/metrics")
		assert.Contains(c, m, "tcr_assistant_hosts_updater_configmap_missing 1\n")
	}, waitFor, tick)
	require.Never(t, func() bool {
		data, err := os.ReadFile(hosts)
		return err != nil || string(data) != original+block("fd00::2 v6.tencentcloudcr.com")
	}, 2500*time.Millisecond, 50*time.Millisecond, "the deletion changed the hosts file")
	events, err := admin(t).CoreV1().Events(namespace).List(context.Background(), metav1.ListOptions{
		FieldSelector: "involvedObject.kind=ConfigMap,involvedObject.name=" + agent.ConfigMapName + ",reason=ConfigMapNotFound"})
	require.NoError(t, err)
	require.Len(t, events.Items, 1)
	assert.Equal(t, "updater-config not found; keeping 1 entries", events.Items[0].Message)
	assert.Equal(t, "test-node", events.Items[0].Source.Host)

	t.Log("Recreate it")
	setHosts(t, "- domain: demo.tencentcloudcr.com\n  ip: 10.0.0.5\n")
	requireFile(t, hosts, original+block("10.0.0.5 demo.tencentcloudcr.com"))

	// The metrics follow the file's write.
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		_, m := get(c, metrics+"/metrics")
		for _, want := range []string{
			"tcr_assistant_hosts_updater_entries_applied 1\n",
			"tcr_assistant_hosts_updater_invalid_entries 0\n",
			"tcr_assistant_hosts_updater_write_errors_total 0\n",
			"tcr_assistant_hosts_updater_parse_errors_total 1\n", // once per bad document, not per resync
			"tcr_assistant_hosts_updater_last_apply_timestamp_seconds ",
			"tcr_assistant_hosts_updater_configmap_missing 0\n",
		} {
			assert.Contains(c, m, want)
		}
	}, waitFor, tick)

	t.Log("An explicit empty list removes the entries")
	setHosts(t, "[]")
	requireFile(t, hosts, original)
}

// TestAgentRoleIsLimitedToItsConfigMap checks that the Role of config/agent, which the agent
// above works under, grants nothing but the one ConfigMap.
func TestAgentRoleIsLimitedToItsConfigMap(t *testing.T) {
	install(t)
	ctx := context.Background()
	cfg, err := env.AddUser(agentUser, "system:serviceaccounts", "system:serviceaccounts:"+namespace)
	require.NoError(t, err)
	c, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)

	_, err = admin(t).CoreV1().ConfigMaps(namespace).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "someone-elses", Namespace: namespace},
	}, metav1.CreateOptions{})
	require.NoError(t, err)

	_, err = c.CoreV1().ConfigMaps(namespace).List(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + agent.ConfigMapName})
	require.NoError(t, err, "listing the agent's ConfigMap by field selector")
	_, err = c.CoreV1().ConfigMaps(namespace).List(ctx, metav1.ListOptions{})
	require.EqualError(t, err, `configmaps is forbidden: User "`+agentUser+`" cannot list resource "configmaps" in API group "" in the namespace "`+namespace+`"`)
	_, err = c.CoreV1().ConfigMaps(namespace).Get(ctx, "someone-elses", metav1.GetOptions{})
	require.EqualError(t, err, `configmaps "someone-elses" is forbidden: User "`+agentUser+`" cannot get resource "configmaps" in API group "" in the namespace "`+namespace+`"`)
	_, err = c.CoreV1().Secrets(namespace).List(ctx, metav1.ListOptions{})
	require.EqualError(t, err, `secrets is forbidden: User "`+agentUser+`" cannot list resource "secrets" in API group "" in the namespace "`+namespace+`"`)
}

func TestSubcommands(t *testing.T) {
	dir := t.TempDir()
	doc := filepath.Join(dir, "hosts.yaml")
	require.NoError(t, os.WriteFile(doc, []byte("- domain: demo.tencentcloudcr.com\n  ip: 10.0.0.2\n  disabled: false\n"), 0o644))
	broken := filepath.Join(dir, "broken.yaml")
	require.NoError(t, os.WriteFile(broken, []byte("domain: x\n"), 0o644))
	const original = "127.0.0.1 localhost\r\n::1 localhost"
	t.Setenv("KUBERNETES_SERVICE_HOST", "") // as outside a cluster, even when the tests run in a pod

	tests := map[string]struct {
		args    func(hosts string) []string
		start   string
		want    string
		wantErr string
	}{
		"apply writes the block": {
			args:  func(h string) []string { return []string{"apply", "--from-file", doc, "--hosts-file", h} },
			start: original,
			want:  "127.0.0.1 localhost\r\n::1 localhost\r\n" + agent.BeginMarker + "\r\n10.0.0.2 demo.tencentcloudcr.com\r\n" + agent.EndMarker,
		},
		"cleanup removes the block and nothing else": {
			args:  func(h string) []string { return []string{"cleanup", "--hosts-file", h} },
			start: "127.0.0.1 localhost\r\n::1 localhost\r\n" + agent.BeginMarker + "\r\n10.0.0.2 demo.tencentcloudcr.com\r\n" + agent.EndMarker,
			want:  original,
		},
		"apply refuses a document that does not parse and leaves the file alone": {
			args:    func(h string) []string { return []string{"apply", "--from-file", broken, "--hosts-file", h} },
			start:   original,
			want:    original,
			wantErr: broken + ": parsing hosts.yaml: want a YAML list of {domain, ip, disabled}, got a mapping",
		},
		"apply needs --from-file": {
			args:    func(h string) []string { return []string{"apply", "--hosts-file", h} },
			start:   original,
			want:    original,
			wantErr: "apply needs --from-file",
		},
		"the watch refuses a resync that is not positive before touching anything": {
			args:    func(h string) []string { return []string{"--resync", "0s", "--hosts-file", h} },
			start:   original,
			want:    original,
			wantErr: "--resync must be positive, got 0s",
		},
		"the watch outside a cluster needs a kubeconfig": {
			args:    func(h string) []string { return []string{"--hosts-file", h} },
			start:   original,
			want:    original,
			wantErr: "loading the in-cluster configuration (or pass --kubeconfig): unable to load in-cluster configuration, KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be defined",
		},
		"an unknown flag is refused": {
			args:    func(h string) []string { return []string{"cleanup", "--bogus", "--hosts-file", h} },
			start:   original,
			want:    original,
			wantErr: "flag provided but not defined: -bogus",
		},
		"a stray argument is refused": {
			args:    func(h string) []string { return []string{"cleanup", "--hosts-file", h, "extra"} },
			start:   original,
			want:    original,
			wantErr: `unexpected argument "extra"`,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			hosts := filepath.Join(t.TempDir(), "hosts")
			require.NoError(t, os.WriteFile(hosts, []byte(tc.start), 0o644))
			var stderr bytes.Buffer
			err := run(context.Background(), tc.args(hosts), &stderr, nil)
			if tc.wantErr != "" {
				require.EqualError(t, err, tc.wantErr)
			} else {
				require.NoError(t, err, stderr.String())
			}
			assert.Equal(t, tc.want, fileContent(t, hosts))
		})
	}
}
