//go:build node

package node

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/kube"
	"helm.sh/helm/v3/pkg/releaseutil"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
)

const (
	releaseName = "tcr-assistant"
	helmTimeout = 5 * time.Minute
	helmDomain  = "helm.tencentcloudcr.com"
)

// TestHelm: 'helm install tcr-assistant charts/tcr-assistant -n tcr-assistant-system
// --create-namespace' with rules and hosts, through the Helm SDK, on the real node: the hook Job
// runs under the Job controller and creates the rules, which the manager distributes, and the
// DaemonSet writes the hosts entry into the node's hosts file; an upgrade keeps the entry; an
// uninstall removes every object the chart made.
func TestHelm(t *testing.T) {
	ctx := context.Background()
	_, c := admin(t)
	password := "helm-" + time.Now().Format("150405.000000")
	reg := startRegistry(t, password, true)
	img := pushAddOn(t, reg, password, "helm")
	require.NoError(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "helm-a"}}))
	t.Cleanup(func() {
		_ = c.Delete(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "helm-a"}})
	})
	t.Cleanup(func() {
		_ = c.Delete(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: system}})
	})

	vals := func(password string) map[string]any {
		v, err := chartutil.ReadValues([]byte(`
image: ` + img + `
global:
  imagePullSecretsCrs:
  - name: helm-rule
    namespaces: helm-a
    serviceAccounts: "*"
    docker:
      server: "` + reg.Host + `"
      username: "` + user + `"
      password: ` + password + `
  hosts:
  - domain: ` + helmDomain + `
    ip: 10.254.0.88
`))
		require.NoError(t, err)
		return v
	}
	chart, err := loader.Load(filepath.Join(repoRoot(t), "charts", "tcr-assistant"))
	require.NoError(t, err)
	helmConfig := func() *action.Configuration {
		cfg := &action.Configuration{}
		// Helm's debug log (each resource it waits for) is left out; its errors are returned.
		require.NoError(t, cfg.Init(kube.GetConfig(adminKubeconfig(), "", system), system, "secret", func(string, ...any) {}))
		return cfg
	}
	hostsEntry := "10.254.0.88 " + helmDomain + "\n"
	secretAuth := func(ct *assert.CollectT, password string) {
		s := &corev1.Secret{}
		if assert.NoError(ct, c.Get(ctx, client.ObjectKey{Namespace: "helm-a", Name: "tcr.ipshelm-rule"}, s)) {
			assert.Contains(ct, string(s.Data[corev1.DockerConfigJsonKey]), authOf(password))
		}
	}

	in := action.NewInstall(helmConfig())
	in.ReleaseName, in.Namespace, in.CreateNamespace, in.Timeout = releaseName, system, true, helmTimeout
	_, err = in.Run(chart, vals(password))
	require.NoError(t, err)
	uninstalled := false
	t.Cleanup(func() {
		if !uninstalled {
			_, _ = action.NewUninstall(helmConfig()).Run(releaseName)
		}
	})
	// The post-install hook Job ran under the Job controller (the Job is deleted once it
	// succeeded) and created the rule; the manager distributed it; the agent wrote the entry.
	ips := &tcrv1.ImagePullSecret{}
	require.NoError(t, c.Get(ctx, client.ObjectKey{Name: "helm-rule"}, ips))
	assert.Equal(t, releaseName, ips.Labels["app.kubernetes.io/instance"])
	require.EventuallyWithT(t, func(ct *assert.CollectT) { secretAuth(ct, password) }, timeout, tick, "the rule was never distributed")
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		assert.Contains(ct, hostsFile(t), hostsEntry)
	}, timeout, tick, "the chart's hosts entry never reached the node")
	out, err := inNode(t, "getent", "hosts", helmDomain)
	require.NoError(t, err, out)
	// The hook's Secret, which holds the credentials, went with the hook Job.
	require.True(t, apierrors.IsNotFound(c.Get(ctx, client.ObjectKey{Namespace: system, Name: "tcr-assistant-sync"}, &corev1.Secret{})),
		"the hook's Secret is left")

	up := action.NewUpgrade(helmConfig())
	up.Namespace, up.Timeout = system, helmTimeout
	rel, err := up.Run(releaseName, chart, vals(password+"-2"))
	require.NoError(t, err)
	require.EventuallyWithT(t, func(ct *assert.CollectT) { secretAuth(ct, password+"-2") }, timeout, tick, "the upgrade's password was never distributed")
	assert.Contains(t, hostsFile(t), hostsEntry, "the hosts entry after the upgrade")
	cm := &corev1.ConfigMap{}
	require.NoError(t, c.Get(ctx, client.ObjectKey{Namespace: system, Name: "updater-config"}, cm))
	assert.Contains(t, cm.Data["hosts.yaml"], helmDomain)

	un := action.NewUninstall(helmConfig())
	un.Timeout, un.Wait = helmTimeout, true
	_, err = un.Run(releaseName)
	require.NoError(t, err)
	uninstalled = true
	// Every object of the release's manifest is gone, and the rule the hook made with its Secret.
	var objs []*unstructured.Unstructured
	for _, doc := range releaseutil.SplitManifests(rel.Manifest) {
		o := &unstructured.Unstructured{}
		require.NoError(t, yaml.Unmarshal([]byte(doc), &o.Object))
		if len(o.Object) > 0 {
			objs = append(objs, o)
		}
	}
	require.NotEmpty(t, objs)
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		var left []string
		for _, o := range objs {
			got := &unstructured.Unstructured{}
			got.SetGroupVersionKind(o.GroupVersionKind())
			ns := o.GetNamespace()
			if ns == "" && isNamespaced(o.GetKind()) {
				ns = system
			}
			err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: o.GetName()}, got)
			if !apierrors.IsNotFound(err) {
				left = append(left, o.GetKind()+" "+o.GetName())
			}
		}
		assert.Empty(ct, left, "objects of the release left after 'helm uninstall'")
		err := c.Get(ctx, client.ObjectKey{Namespace: "helm-a", Name: "tcr.ipshelm-rule"}, &corev1.Secret{})
		assert.True(ct, apierrors.IsNotFound(err), "the rule's Secret: %v", err)
	}, timeout, tick, "'helm uninstall' left objects")
}

// isNamespaced tells whether an object of the chart's kind lives in the release namespace.
func isNamespaced(kind string) bool {
	switch kind {
	case "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "ValidatingWebhookConfiguration",
		"MutatingWebhookConfiguration", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "Namespace":
		return false
	}
	return true
}
