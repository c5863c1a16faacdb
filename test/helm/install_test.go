package helm

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/kube"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
	"github.com/tcr-assistant/tcr-assistant/internal/rulesync"
	"github.com/tcr-assistant/tcr-assistant/internal/testenv"
)

const (
	waitTimeout  = 60 * time.Second
	waitInterval = 250 * time.Millisecond
	helmTimeout  = 3 * time.Minute
)

// env is the local control plane, started by the first test that needs one (startControlPlane):
// the render, schema and lint tests need none.
var (
	env     *testenv.Env
	envOnce sync.Once
	envErr  error
)

func startControlPlane(t *testing.T) {
	t.Helper()
	envOnce.Do(func() { env, envErr = testenv.Start() })
	require.NoError(t, envErr)
}

func TestMain(m *testing.M) {
	code := m.Run()
	if env != nil {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping the local control plane:", err)
		}
	}
	os.Exit(code)
}

// buildImage builds the image's binaries from the working tree, by their path in the image.
func buildImage(t *testing.T) map[string]string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-trimpath", "-o", dir+"/", "./cmd/manager", "./cmd/kubectl-ips")
	cmd.Dir = env.Root
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	return map[string]string{"/manager": filepath.Join(dir, "manager"), "/kubectl-ips": filepath.Join(dir, "kubectl-ips")}
}

func helmConfig(t *testing.T) *action.Configuration {
	t.Helper()
	cfg := &action.Configuration{}
	require.NoError(t, cfg.Init(kube.GetConfig(env.Kubeconfig, "", releaseNS), releaseNS, "secret", t.Logf))
	return cfg
}

func install(t *testing.T, vals string) {
	t.Helper()
	in := action.NewInstall(helmConfig(t))
	in.ReleaseName, in.Namespace, in.Timeout = releaseName, releaseNS, helmTimeout
	_, err := in.Run(loadChart(t), values(t, vals))
	require.NoError(t, err)
}

func upgrade(t *testing.T, vals string) {
	t.Helper()
	unpointWebhook(t)
	up := action.NewUpgrade(helmConfig(t))
	up.Namespace, up.Timeout = releaseNS, helmTimeout
	_, err := up.Run(releaseName, loadChart(t), values(t, vals))
	require.NoError(t, err)
}

// authOf returns "username:password" of server in a distributed Secret, and its UID.
func authOf(t *testing.T, ns, name, server string) (string, types.UID) {
	t.Helper()
	var s corev1.Secret
	require.NoError(t, env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &s))
	var cfg struct {
		Auths map[string]struct {
			Username string `json:"username"`
			Password string `json:"password"`
		} `json:"auths"`
	}
	require.NoError(t, json.Unmarshal(s.Data[corev1.DockerConfigJsonKey], &cfg))
	a := cfg.Auths[server]
	return a.Username + ":" + a.Password, s.UID
}

func pullSecrets(t *testing.T, ns, sa string) []string {
	t.Helper()
	var obj corev1.ServiceAccount
	require.NoError(t, env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: sa}, &obj))
	var out []string
	for _, r := range obj.ImagePullSecrets {
		out = append(out, r.Name)
	}
	return out
}

func hostsYAML(t *testing.T) []map[string]any {
	t.Helper()
	var cm corev1.ConfigMap
	require.NoError(t, env.Client.Get(context.Background(), client.ObjectKey{Namespace: ownNamespace, Name: "updater-config"}, &cm))
	var hosts []map[string]any
	require.NoError(t, yaml.Unmarshal([]byte(cm.Data["hosts.yaml"]), &hosts))
	return hosts
}

func TestInstallUpgradeAndUninstallWithHelm(t *testing.T) {
	startControlPlane(t)
	ctx := context.Background()
	// The chart installs the CRD, which the control plane came with: Helm adopts nothing.
	crd := &unstructured.Unstructured{}
	crd.SetAPIVersion("apiextensions.k8s.io/v1")
	crd.SetKind("CustomResourceDefinition")
	crd.SetName("imagepullsecrets.tcr.tencentcloudcr.com")
	require.NoError(t, env.Client.Delete(ctx, crd))
	requireGone(t, crd, "", crd.GetName())
	k := startKubelet(t, buildImage(t))

	// Two namespaces with ServiceAccounts (this control plane creates none), one reference of
	// the user's own that must survive everything.
	for _, ns := range []string{"helm-a", "helm-b"} {
		require.NoError(t, env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
		for _, sa := range []string{"default", "builder"} {
			require.NoError(t, env.Client.Create(ctx, &corev1.ServiceAccount{
				ObjectMeta:       metav1.ObjectMeta{Namespace: ns, Name: sa},
				ImagePullSecrets: []corev1.LocalObjectReference{{Name: "keep-me"}},
			}))
		}
	}

	// Install with two rules: the hook Job waits for the webhook and creates them; the manager
	// distributes them. No step but 'helm install'.
	install(t, twoRules("first-password", "10.0.0.2"))
	assert.Contains(t, k.jobLog("tcr-assistant-sync-apply"), "Applied ImagePullSecret team-a")
	t.Logf("the apply hook's output:\n%s", k.jobLog("tcr-assistant-sync-apply"))
	for _, name := range []string{"team-a", "team-b"} {
		var ips tcrv1.ImagePullSecret
		require.NoError(t, env.Client.Get(ctx, client.ObjectKey{Name: name}, &ips))
		assert.Equal(t, releaseName, ips.Labels[rulesync.InstanceLabel])
	}
	want := map[string][]string{
		"helm-a/default": {"keep-me", "tcr.ipsteam-a"},
		"helm-a/builder": {"keep-me", "tcr.ipsteam-a", "tcr.ipsteam-b"},
		"helm-b/default": {"keep-me"},
		"helm-b/builder": {"keep-me", "tcr.ipsteam-b"},
	}
	require.Eventually(t, func() bool {
		for nsSA, refs := range want {
			ns, sa, _ := cut(nsSA)
			if !assert.ObjectsAreEqual(refs, sorted(pullSecrets(t, ns, sa))) {
				return false
			}
		}
		return true
	}, waitTimeout, waitInterval, "the rules were never distributed")
	authA, uidA := authOf(t, "helm-a", "tcr.ipsteam-a", "a.tencentcloudcr.com")
	assert.Equal(t, "user-a:first-password", authA)
	authB, _ := authOf(t, "helm-b", "tcr.ipsteam-b", "b.tencentcloudcr.com")
	assert.Equal(t, "user-b:password-b", authB)
	assert.Equal(t, []map[string]any{
		{"domain": "a.tencentcloudcr.com", "ip": "10.0.0.2"},
		{"domain": "b.tencentcloudcr.com", "ip": "10.0.0.3", "disabled": true},
	}, hostsYAML(t))
	// The hook's Secret, which holds the credentials, and its Job are gone once they succeeded.
	requireGone(t, &corev1.Secret{}, ownNamespace, "tcr-assistant-sync")

	t.Run("an upgrade with a changed password rotates every copy in place", func(t *testing.T) {
		upgrade(t, twoRules("second-password", "10.0.0.2"))
		require.Eventually(t, func() bool {
			auth, _ := authOf(t, "helm-a", "tcr.ipsteam-a", "a.tencentcloudcr.com")
			return auth == "user-a:second-password"
		}, waitTimeout, waitInterval, "the copy was never rotated")
		_, uid := authOf(t, "helm-a", "tcr.ipsteam-a", "a.tencentcloudcr.com")
		assert.Equal(t, uidA, uid, "the Secret was replaced, not updated")
		assert.Equal(t, []string{"keep-me", "tcr.ipsteam-a", "tcr.ipsteam-b"}, sorted(pullSecrets(t, "helm-a", "builder")))
	})

	t.Run("an upgrade with changed hosts rewrites updater-config", func(t *testing.T) {
		upgrade(t, twoRules("second-password", "10.9.9.9"))
		assert.Equal(t, []map[string]any{
			{"domain": "a.tencentcloudcr.com", "ip": "10.9.9.9"},
			{"domain": "b.tencentcloudcr.com", "ip": "10.0.0.3", "disabled": true},
		}, hostsYAML(t))
	})

	t.Run("an upgrade with no rules deletes the release's rules and their Secrets", func(t *testing.T) {
		// A rule of the user's own, not in the values, is left alone.
		own := &tcrv1.ImagePullSecret{
			ObjectMeta: metav1.ObjectMeta{Name: "users-own"},
			Spec: tcrv1.ImagePullSecretSpec{Namespaces: "helm-b", ServiceAccounts: "default",
				Docker: tcrv1.DockerCredential{Server: "c.tencentcloudcr.com", Username: "u", Password: "p"}},
		}
		require.NoError(t, env.Client.Create(ctx, own))
		upgrade(t, "global:\n  hosts: []\n")
		requireGone(t, &tcrv1.ImagePullSecret{}, "", "team-a")
		requireGone(t, &tcrv1.ImagePullSecret{}, "", "team-b")
		require.NoError(t, env.Client.Get(ctx, client.ObjectKeyFromObject(own), own))
		require.Eventually(t, func() bool {
			return assert.ObjectsAreEqual([]string{"keep-me"}, pullSecrets(t, "helm-a", "builder")) &&
				assert.ObjectsAreEqual([]string{"keep-me", "tcr.ipsusers-own"}, sorted(pullSecrets(t, "helm-b", "default")))
		}, waitTimeout, waitInterval, "the dropped rules' references were never removed")
		assert.Equal(t, "[]\n", mustConfigMapHosts(t))
	})

	t.Run("uninstall leaves nothing behind", func(t *testing.T) {
		// Rules again, so that the release holds its pre-delete hook.
		upgrade(t, twoRules("second-password", "10.0.0.2"))
		unpointWebhook(t)
		un := action.NewUninstall(helmConfig(t))
		un.Timeout = helmTimeout
		_, err := un.Run(releaseName)
		require.NoError(t, err)
		assert.Contains(t, k.jobLog("tcr-assistant-sync-delete"), "Deleted ImagePullSecret users-own")

		// No distributed Secret, no reference but the user's own.
		var managed corev1.SecretList
		require.NoError(t, env.Client.List(ctx, &managed, client.MatchingLabels{tcrv1.ManagedByLabel: tcrv1.ManagedByValue}))
		assert.Empty(t, managed.Items)
		for nsSA := range want {
			ns, sa, _ := cut(nsSA)
			assert.Equal(t, []string{"keep-me"}, pullSecrets(t, ns, sa), nsSA)
		}
		// No object of the bundle, no object of the hooks; the namespace only waits for the
		// namespace controller, which this control plane does not run.
		data, err := os.ReadFile(filepath.Join(env.Root, "dist", "install.yaml"))
		require.NoError(t, err)
		for _, o := range parseObjects(t, data) {
			if o.GetKind() == "Namespace" {
				var ns corev1.Namespace
				require.NoError(t, env.Client.Get(ctx, client.ObjectKey{Name: o.GetName()}, &ns))
				assert.NotNil(t, ns.DeletionTimestamp, "namespace %s is not being deleted", o.GetName())
				continue
			}
			live := &unstructured.Unstructured{}
			live.SetGroupVersionKind(o.GroupVersionKind())
			requireGone(t, live, o.GetNamespace(), o.GetName())
		}
		requireGone(t, &rbacv1.ClusterRole{}, "", "tcr-assistant-sync")
		requireGone(t, &rbacv1.ClusterRoleBinding{}, "", "tcr-assistant-sync")
		// The release record is gone too.
		var records corev1.SecretList
		require.NoError(t, env.Client.List(ctx, &records, client.InNamespace(releaseNS), client.MatchingLabels{"owner": "helm"}))
		assert.Empty(t, records.Items)
	})
}

func mustConfigMapHosts(t *testing.T) string {
	t.Helper()
	var cm corev1.ConfigMap
	require.NoError(t, env.Client.Get(context.Background(), client.ObjectKey{Namespace: ownNamespace, Name: "updater-config"}, &cm))
	return cm.Data["hosts.yaml"]
}

// requireGone waits until the object is not found (the API server removes a CRD once its
// instances are gone, a rule once the manager has cleaned it up).
func requireGone(t *testing.T, obj client.Object, namespace, name string) {
	t.Helper()
	require.Eventually(t, func() bool {
		err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: namespace, Name: name}, obj)
		return apierrors.IsNotFound(err)
	}, waitTimeout, waitInterval, "%T %s/%s is left behind", obj, namespace, name)
}

func cut(nsSA string) (string, string, bool) {
	for i := range nsSA {
		if nsSA[i] == '/' {
			return nsSA[:i], nsSA[i+1:], true
		}
	}
	panic(fmt.Sprintf("not namespace/name: %q", nsSA))
}

func sorted(s []string) []string {
	out := append([]string{}, s...)
	sort.Strings(out)
	return out
}
