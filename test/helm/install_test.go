package helm

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/kube"
	"helm.sh/helm/v3/pkg/release"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"
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
	if imageDir != "" {
		_ = os.RemoveAll(imageDir)
	}
	if env != nil {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping the local control plane:", err)
		}
	}
	os.Exit(code)
}

// image is the image's binaries built from the working tree, by their path in the image; built
// once for every test (imageDir is removed by TestMain).
var (
	imageOnce sync.Once
	imageDir  string
	imageBins map[string]string
	imageErr  error
)

func image(t *testing.T) map[string]string {
	t.Helper()
	imageOnce.Do(func() {
		if imageDir, imageErr = os.MkdirTemp("", "tcr-helm-image-"); imageErr != nil {
			return
		}
		var bins map[string]string
		if bins, imageErr = testenv.BuildInto(imageDir, "./cmd/manager", "./cmd/kubectl-ips"); imageErr != nil {
			return
		}
		imageBins = map[string]string{"/manager": bins["manager"], "/kubectl-ips": bins["kubectl-ips"]}
	})
	require.NoError(t, imageErr)
	return imageBins
}

// helmConfig is the Helm SDK's configuration for release namespace ns, as 'helm -n ns' has it.
func helmConfig(t *testing.T, ns string) *action.Configuration {
	t.Helper()
	cfg := &action.Configuration{}
	require.NoError(t, cfg.Init(kube.GetConfig(env.Kubeconfig, "", ns), ns, "secret", t.Logf))
	return cfg
}

// install runs 'helm install tcr-assistant charts/tcr-assistant -n ns --create-namespace -f vals'.
func install(t *testing.T, ns, vals string) *release.Release {
	t.Helper()
	in := action.NewInstall(helmConfig(t, ns))
	in.ReleaseName, in.Namespace, in.CreateNamespace, in.Timeout = releaseName, ns, true, helmTimeout
	rel, err := in.Run(loadChart(t), values(t, vals))
	require.NoError(t, err)
	return rel
}

// upgrade runs 'helm upgrade tcr-assistant charts/tcr-assistant -n ns -f vals'.
func upgrade(t *testing.T, ns, vals string) {
	t.Helper()
	unpointWebhook(t, ns)
	up := action.NewUpgrade(helmConfig(t, ns))
	up.Namespace, up.Timeout = ns, helmTimeout
	_, err := up.Run(releaseName, loadChart(t), values(t, vals))
	require.NoError(t, err)
}

// uninstall runs 'helm uninstall tcr-assistant -n ns'.
func uninstall(t *testing.T, ns string) {
	t.Helper()
	unpointWebhook(t, ns)
	un := action.NewUninstall(helmConfig(t, ns))
	un.Timeout = helmTimeout
	_, err := un.Run(releaseName)
	require.NoError(t, err)
}

// deleteCRD deletes the CRD the control plane came with (or an earlier test left), since the
// chart installs it: Helm adopts nothing.
func deleteCRD(t *testing.T) {
	t.Helper()
	crd := &unstructured.Unstructured{}
	crd.SetAPIVersion("apiextensions.k8s.io/v1")
	crd.SetKind("CustomResourceDefinition")
	crd.SetName("imagepullsecrets.tcr.tencentcloudcr.com")
	require.NoError(t, client.IgnoreNotFound(env.Client.Delete(context.Background(), crd)))
	// The API server's CRD finalizer waits up to a minute for the instances to go before it
	// tries again, and a CI run under load once needed more than waitTimeout: wait for two of
	// those rounds, and say what held the CRD.
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		err := env.Client.Get(context.Background(), client.ObjectKey{Name: crd.GetName()}, crd)
		assert.True(c, apierrors.IsNotFound(err), "CRD %s is left behind: finalizers %v, status %v",
			crd.GetName(), crd.GetFinalizers(), crd.Object["status"])
	}, 2*time.Minute+waitTimeout, waitInterval)
}

// tenants creates namespaces, each with ServiceAccounts default and builder that reference a
// Secret keep-me of the user's own, which must survive everything.
func tenants(t *testing.T, namespaces ...string) {
	t.Helper()
	ctx := context.Background()
	for _, ns := range namespaces {
		require.NoError(t, env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
		for _, sa := range []string{"default", "builder"} {
			require.NoError(t, env.Client.Create(ctx, &corev1.ServiceAccount{
				ObjectMeta:       metav1.ObjectMeta{Namespace: ns, Name: sa},
				ImagePullSecrets: []corev1.LocalObjectReference{{Name: "keep-me"}},
			}))
		}
	}
}

// authOf returns "username:password" of server in a distributed Secret, and its UID.
func authOf(t require.TestingT, ns, name, server string) (string, types.UID) {
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

func pullSecrets(t require.TestingT, ns, sa string) []string {
	var obj corev1.ServiceAccount
	require.NoError(t, env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: sa}, &obj))
	var out []string
	for _, r := range obj.ImagePullSecrets {
		out = append(out, r.Name)
	}
	return out
}

func hostsYAML(t *testing.T, ns string) []map[string]any {
	t.Helper()
	var hosts []map[string]any
	require.NoError(t, yaml.Unmarshal([]byte(mustConfigMapHosts(t, ns)), &hosts))
	return hosts
}

func mustConfigMapHosts(t *testing.T, ns string) string {
	t.Helper()
	var cm corev1.ConfigMap
	require.NoError(t, env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "updater-config"}, &cm))
	return cm.Data["hosts.yaml"]
}

func TestInstallUpgradeAndUninstallWithHelm(t *testing.T) {
	startControlPlane(t)
	ctx := context.Background()
	deleteCRD(t)
	k := startKubelet(t, releaseNS, image(t))
	tenants(t, "helm-a", "helm-b")
	// The first test to install: the namespace does not exist yet ('--create-namespace').
	require.True(t, apierrors.IsNotFound(env.Client.Get(ctx, client.ObjectKey{Name: releaseNS}, &corev1.Namespace{})),
		"namespace %s exists before the first install", releaseNS)

	// 'helm install tcr-assistant charts/tcr-assistant -n tcr-assistant-system
	// --create-namespace' with two rules: the hook Job waits for the webhook and creates them;
	// the manager distributes them. No step but 'helm install'.
	install(t, releaseNS, twoRules("first-password", "10.0.0.2"))
	// Helm created the namespace, and keeps the release record in it.
	var ns corev1.Namespace
	require.NoError(t, env.Client.Get(ctx, client.ObjectKey{Name: releaseNS}, &ns))
	assert.Equal(t, map[string]string{"name": releaseNS, "kubernetes.io/metadata.name": releaseNS}, ns.Labels)
	assert.Empty(t, ns.Annotations, "the namespace is Helm's --create-namespace's, not a release object")
	assert.Equal(t, []string{"sh.helm.release.v1.tcr-assistant.v1"}, releaseRecords(t, releaseNS))
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
	requireReferences(t, want)
	authA, uidA := authOf(t, "helm-a", "tcr.ipsteam-a", "a.tencentcloudcr.com")
	assert.Equal(t, "user-a:first-password", authA)
	authB, _ := authOf(t, "helm-b", "tcr.ipsteam-b", "b.tencentcloudcr.com")
	assert.Equal(t, "user-b:password-b", authB)
	assert.Equal(t, []map[string]any{
		{"domain": "a.tencentcloudcr.com", "ip": "10.0.0.2"},
		{"domain": "b.tencentcloudcr.com", "ip": "10.0.0.3", "disabled": true},
	}, hostsYAML(t, releaseNS))
	// The hook's Secret, which holds the credentials, and its Job are gone once they succeeded.
	requireGone(t, &corev1.Secret{}, releaseNS, "tcr-assistant-sync")

	t.Run("an upgrade with a changed password rotates every copy in place and keeps the hosts", func(t *testing.T) {
		upgrade(t, releaseNS, twoRules("second-password", "10.0.0.2"))
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			auth, _ := authOf(c, "helm-a", "tcr.ipsteam-a", "a.tencentcloudcr.com")
			assert.Equal(c, "user-a:second-password", auth)
		}, waitTimeout, waitInterval, "the copy was never rotated")
		_, uid := authOf(t, "helm-a", "tcr.ipsteam-a", "a.tencentcloudcr.com")
		assert.Equal(t, uidA, uid, "the Secret was replaced, not updated")
		assert.Equal(t, []string{"keep-me", "tcr.ipsteam-a", "tcr.ipsteam-b"}, sorted(pullSecrets(t, "helm-a", "builder")))
		assert.Equal(t, []map[string]any{
			{"domain": "a.tencentcloudcr.com", "ip": "10.0.0.2"},
			{"domain": "b.tencentcloudcr.com", "ip": "10.0.0.3", "disabled": true},
		}, hostsYAML(t, releaseNS))
	})

	t.Run("an upgrade with changed hosts rewrites updater-config", func(t *testing.T) {
		upgrade(t, releaseNS, twoRules("second-password", "10.9.9.9"))
		assert.Equal(t, []map[string]any{
			{"domain": "a.tencentcloudcr.com", "ip": "10.9.9.9"},
			{"domain": "b.tencentcloudcr.com", "ip": "10.0.0.3", "disabled": true},
		}, hostsYAML(t, releaseNS))
	})

	t.Run("an upgrade with no rules deletes the release's rules and their Secrets", func(t *testing.T) {
		// A rule of the user's own, not in the values, is left alone.
		own := &tcrv1.ImagePullSecret{
			ObjectMeta: metav1.ObjectMeta{Name: "users-own"},
			Spec: tcrv1.ImagePullSecretSpec{Namespaces: "helm-b", ServiceAccounts: "default",
				Docker: tcrv1.DockerCredential{Server: "c.tencentcloudcr.com", Username: "u", Password: "p"}},
		}
		require.NoError(t, env.Client.Create(ctx, own))
		upgrade(t, releaseNS, "global:\n  hosts: []\n")
		requireGone(t, &tcrv1.ImagePullSecret{}, "", "team-a")
		requireGone(t, &tcrv1.ImagePullSecret{}, "", "team-b")
		require.NoError(t, env.Client.Get(ctx, client.ObjectKeyFromObject(own), own))
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			assert.Equal(c, []string{"keep-me"}, pullSecrets(c, "helm-a", "builder"))
			assert.Equal(c, []string{"keep-me", "tcr.ipsusers-own"}, sorted(pullSecrets(c, "helm-b", "default")))
		}, waitTimeout, waitInterval, "the dropped rules' references were never removed")
		assert.Equal(t, "[]\n", mustConfigMapHosts(t, releaseNS))
	})

	t.Run("uninstall leaves nothing behind", func(t *testing.T) {
		// Rules again, so that the release holds its pre-delete hook.
		upgrade(t, releaseNS, twoRules("second-password", "10.0.0.2"))
		uninstall(t, releaseNS)
		assert.Contains(t, k.jobLog("tcr-assistant-sync-delete"), "Deleted ImagePullSecret users-own")
		requireUninstalled(t, releaseNS, want)
	})
}

// requireReferences waits until each "namespace/ServiceAccount" references exactly its Secrets.
func requireReferences(t *testing.T, want map[string][]string) {
	t.Helper()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		for nsSA, refs := range want {
			ns, sa, _ := cut(nsSA)
			assert.Equal(c, refs, sorted(pullSecrets(c, ns, sa)), nsSA)
		}
	}, waitTimeout, waitInterval, "the rules were never distributed")
}

// releaseRecords returns the names of the Helm release records in ns.
func releaseRecords(t *testing.T, ns string) []string {
	t.Helper()
	var records corev1.SecretList
	require.NoError(t, env.Client.List(context.Background(), &records, client.InNamespace(ns), client.MatchingLabels{"owner": "helm"}))
	var names []string
	for _, r := range records.Items {
		names = append(names, r.Name)
	}
	sort.Strings(names)
	return names
}

// requireUninstalled checks what 'helm uninstall' of the release in ns left: no distributed
// Secret, no reference but the user's own (tenantSAs), no object of the bundle or of the hooks,
// no release record. The namespace stays, as Helm leaves every namespace it created with
// --create-namespace, with the manager's leader Lease, the one object in it the chart did not
// make.
func requireUninstalled(t *testing.T, ns string, tenantSAs map[string][]string) {
	t.Helper()
	ctx := context.Background()
	var managed corev1.SecretList
	require.NoError(t, env.Client.List(ctx, &managed, client.MatchingLabels{tcrv1.ManagedByLabel: tcrv1.ManagedByValue}))
	assert.Empty(t, managed.Items)
	for nsSA := range tenantSAs {
		tenant, sa, _ := cut(nsSA)
		assert.Equal(t, []string{"keep-me"}, pullSecrets(t, tenant, sa), nsSA)
	}
	for _, o := range bundleObjects(t) {
		live := &unstructured.Unstructured{}
		live.SetGroupVersionKind(o.GroupVersionKind())
		namespace := ""
		if o.GetNamespace() != "" {
			namespace = ns
		}
		requireGone(t, live, namespace, o.GetName())
	}
	requireGone(t, &corev1.ServiceAccount{}, ns, "tcr-assistant-sync")
	requireGone(t, &rbacv1.ClusterRole{}, "", "tcr-assistant-sync")
	requireGone(t, &rbacv1.ClusterRoleBinding{}, "", "tcr-assistant-sync")
	assert.Empty(t, releaseRecords(t, ns))
	// What is left in the namespace, kind by kind.
	var namespace corev1.Namespace
	require.NoError(t, env.Client.Get(ctx, client.ObjectKey{Name: ns}, &namespace))
	assert.Nil(t, namespace.DeletionTimestamp)
	for _, list := range []client.ObjectList{&corev1.SecretList{}, &corev1.ConfigMapList{}, &corev1.ServiceAccountList{},
		&corev1.ServiceList{}, &appsv1.DeploymentList{}, &appsv1.DaemonSetList{}, &batchv1.JobList{},
		&rbacv1.RoleList{}, &rbacv1.RoleBindingList{}} {
		require.NoError(t, env.Client.List(ctx, list, client.InNamespace(ns)))
		assert.Zero(t, meta.LenList(list), "%T left in %s", list, ns)
	}
	var leases coordinationv1.LeaseList
	require.NoError(t, env.Client.List(ctx, &leases, client.InNamespace(ns)))
	var leaseNames []string
	for _, l := range leases.Items {
		leaseNames = append(leaseNames, l.Name)
	}
	assert.Equal(t, []string{"tcr-assistant-leader"}, leaseNames)
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

func TestInstallIntoAnotherNamespace(t *testing.T) {
	startControlPlane(t)
	ctx := context.Background()
	deleteCRD(t)
	k := startKubelet(t, otherNS, image(t))
	tenants(t, "other-a")
	vals := `
global:
  imagePullSecretsCrs:
  - name: other
    namespaces: other-a
    serviceAccounts: "*"
    docker: {server: o.tencentcloudcr.com, username: user-o, password: password-o}
  hosts:
  - {domain: o.tencentcloudcr.com, ip: 10.0.0.9}
`
	// 'helm install tcr-assistant charts/tcr-assistant -n tcr-system --create-namespace'.
	rel := install(t, otherNS, vals)
	assert.Equal(t, []string{"sh.helm.release.v1.tcr-assistant.v1"}, releaseRecords(t, otherNS))
	assert.Contains(t, k.jobLog("tcr-assistant-sync-apply"), "Applied ImagePullSecret other")

	// The manager runs from tcr-system, as its ServiceAccount there, and works: it serves its
	// webhook with the certificate it keeps in tcr-system (which the Secret policy lets it
	// write there only), holds its Lease there, and distributes the rule.
	tenantSAs := map[string][]string{"other-a/default": {"keep-me", "tcr.ipsother"}, "other-a/builder": {"keep-me", "tcr.ipsother"}}
	requireReferences(t, tenantSAs)
	auth, _ := authOf(t, "other-a", "tcr.ipsother", "o.tencentcloudcr.com")
	assert.Equal(t, "user-o:password-o", auth)
	var cert corev1.Secret
	require.NoError(t, env.Client.Get(ctx, client.ObjectKey{Namespace: otherNS, Name: "tcr-assistant-webhook-server-cert"}, &cert))
	assert.NotEmpty(t, cert.Data["tls.crt"])
	var lease coordinationv1.Lease
	require.NoError(t, env.Client.Get(ctx, client.ObjectKey{Namespace: otherNS, Name: "tcr-assistant-leader"}, &lease))
	assert.Equal(t, []map[string]any{{"domain": "o.tencentcloudcr.com", "ip": "10.0.0.9"}}, hostsYAML(t, otherNS))

	t.Run("every object is installed as rendered, with each namespace reference in tcr-system", func(t *testing.T) {
		// What was rendered is dist/install.yaml's objects in tcr-system (the ConfigMap with the
		// values' hosts), and the rules' ServiceAccount and RBAC.
		manifest := parseObjects(t, []byte(rel.Manifest))
		for _, o := range bundleObjects(t) {
			want := inNamespace(t, o, otherNS)
			if want.GetKind() == "ConfigMap" {
				require.NoError(t, unstructured.SetNestedField(want.Object, "- domain: o.tencentcloudcr.com\n  ip: 10.0.0.9\n", "data", "hosts.yaml"))
			}
			assert.Equal(t, want.Object, find(t, manifest, want.GetKind(), want.GetName()).Object, key(want))
		}
		assert.Len(t, manifest, len(bundleObjects(t))+3)
		// Installed: each object holds every field as rendered; the API server's defaults, the
		// manager's certificate and caBundles and Helm's ownership metadata come on top.
		unpointWebhook(t, otherNS)
		for _, want := range manifest {
			live := &unstructured.Unstructured{}
			live.SetGroupVersionKind(want.GroupVersionKind())
			require.NoError(t, env.Client.Get(ctx, client.ObjectKey{Namespace: want.GetNamespace(), Name: want.GetName()}, live))
			assertHolds(t, key(want), normalized(t, want.Object), normalized(t, live.Object))
		}
		// Nothing went to tcr-assistant-system.
		for _, o := range manifest {
			if o.GetNamespace() != "" {
				live := &unstructured.Unstructured{}
				live.SetGroupVersionKind(o.GroupVersionKind())
				err := env.Client.Get(ctx, client.ObjectKey{Namespace: releaseNS, Name: o.GetName()}, live)
				assert.True(t, apierrors.IsNotFound(err), "%s %s/%s: %v", o.GetKind(), releaseNS, o.GetName(), err)
			}
		}
	})

	t.Run("the admission policies hold the manager's ServiceAccount in tcr-system", func(t *testing.T) {
		kubeconfig, err := kubeconfigFor(ctx, t, otherNS, managerDeployment)
		require.NoError(t, err)
		cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		require.NoError(t, err)
		manager, err := client.New(cfg, client.Options{Scheme: env.Scheme})
		require.NoError(t, err)
		// A Secret its RBAC lets it create and the policy does not: refused with the policy's
		// message (once the API server enforces the new policy, a moment after its creation).
		foreign := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "other-a", Name: "not-a-pull-secret"}, StringData: map[string]string{"k": "v"}}
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			assert.EqualError(c, manager.Create(ctx, foreign.DeepCopy(), client.DryRunAll),
				`secrets "not-a-pull-secret" is forbidden: ValidatingAdmissionPolicy 'tcr-assistant-manager-secrets' with binding `+
					`'tcr-assistant-manager-secrets' denied request: tcr-assistant's manager may write only Secrets named tcr.ips* `+
					`of type kubernetes.io/dockerconfigjson labelled app.kubernetes.io/managed-by=tcr-assistant, its webhook certificate Secret, `+
					`and the Opaque Secrets tcr-assistant-token-* of its own namespace`)
		}, waitTimeout, waitInterval)
	})

	t.Run("an upgrade without hosts empties the hosts of tcr-system's updater-config", func(t *testing.T) {
		upgrade(t, otherNS, strings.Replace(vals, "  hosts:\n  - {domain: o.tencentcloudcr.com, ip: 10.0.0.9}\n", "", 1))
		assert.Equal(t, "[]\n", mustConfigMapHosts(t, otherNS))
		requireReferences(t, tenantSAs)
	})

	t.Run("uninstall leaves nothing behind", func(t *testing.T) {
		uninstall(t, otherNS)
		assert.Contains(t, k.jobLog("tcr-assistant-sync-delete"), "Deleted ImagePullSecret other")
		requireUninstalled(t, otherNS, tenantSAs)
	})
}

// normalized returns obj as JSON reads it, so that numbers compare alike however they were read.
func normalized(t *testing.T, obj map[string]any) any {
	t.Helper()
	data, err := json.Marshal(obj)
	require.NoError(t, err)
	var out any
	require.NoError(t, json.Unmarshal(data, &out))
	return out
}

// assertHolds asserts that got holds every field of want with the same value: maps may have more
// keys, lists have the same items, each holding its counterpart.
func assertHolds(t *testing.T, path string, want, got any) {
	t.Helper()
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !assert.True(t, ok, "%s: want an object, got %v", path, got) {
			return
		}
		for k, v := range w {
			gv, found := g[k]
			if assert.True(t, found, "%s.%s is missing", path, k) {
				assertHolds(t, path+"."+k, v, gv)
			}
		}
	case []any:
		g, ok := got.([]any)
		if !assert.True(t, ok, "%s: want a list, got %v", path, got) || !assert.Len(t, g, len(w), path) {
			return
		}
		for i := range w {
			assertHolds(t, fmt.Sprintf("%s[%d]", path, i), w[i], g[i])
		}
	default:
		assert.Equal(t, want, got, path)
	}
}

func TestChartRefusesANamespaceThatRefusesTheAgent(t *testing.T) {
	startControlPlane(t)
	ctx := context.Background()
	deleteCRD(t)
	for _, level := range []string{"baseline", "restricted"} {
		t.Run(level, func(t *testing.T) {
			ns := "psa-" + level
			require.NoError(t, env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
				Name: ns, Labels: map[string]string{"pod-security.kubernetes.io/enforce": level}}}))
			in := action.NewInstall(helmConfig(t, ns))
			in.ReleaseName, in.Namespace, in.Timeout = releaseName, ns, helmTimeout
			_, err := in.Run(loadChart(t), nil)
			assert.EqualError(t, err, "execution error at (tcr-assistant/templates/imagepullsecrets.yaml:1:4): namespace "+ns+
				" enforces the Pod Security level "+level+", which refuses the hosts-updater DaemonSet's pods (hostPath volumes, root): "+
				"label it first with 'kubectl label namespace "+ns+" pod-security.kubernetes.io/enforce=privileged --overwrite'")
			// Refused before anything was made.
			assert.Empty(t, releaseRecords(t, ns))
			err = env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: managerDeployment}, &appsv1.Deployment{})
			assert.True(t, apierrors.IsNotFound(err), "%v", err)

			// Labelled as the message says, the namespace takes the chart (a server-side dry
			// run: rendered against the cluster, nothing created).
			var namespace corev1.Namespace
			require.NoError(t, env.Client.Get(ctx, client.ObjectKey{Name: ns}, &namespace))
			namespace.Labels["pod-security.kubernetes.io/enforce"] = "privileged"
			require.NoError(t, env.Client.Update(ctx, &namespace))
			in = action.NewInstall(helmConfig(t, ns))
			in.ReleaseName, in.Namespace, in.DryRunOption = releaseName, ns, "server"
			_, err = in.Run(loadChart(t), nil)
			assert.NoError(t, err)
			assert.Empty(t, releaseRecords(t, ns))
		})
	}
}
