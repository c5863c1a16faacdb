package helm

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// earlierChart is charts/tcr-assistant as it was before it installed into the release namespace
// (commit d4ce0b2, packaged by chartutil.Save, what 'helm package' writes): it created
// tcr-assistant-system itself, as a release object, and refused to keep its release record
// there, so releases of it live in another namespace, default in the README of the time.
const earlierChart = "testdata/earlier-chart-d4ce0b2.tgz"

// earlierNS is where the README of the earlier chart kept the release record.
const earlierNS = "default"

func TestMovingAReleaseOfTheEarlierChart(t *testing.T) {
	startControlPlane(t)
	ctx := context.Background()
	deleteCRD(t)
	k := startKubelet(t, releaseNS, image(t))
	tenants(t, "earlier-a")
	vals := `
global:
  imagePullSecretsCrs:
  - name: earlier
    namespaces: earlier-a
    serviceAccounts: "*"
    docker: {server: e.tencentcloudcr.com, username: user-e, password: password-e}
  hosts:
  - {domain: e.tencentcloudcr.com, ip: 10.0.0.5}
`
	// A release of the earlier chart: 'helm install tcr-assistant charts/tcr-assistant -n
	// default' at d4ce0b2. (TakeOwnership only for when an earlier test of this run left
	// tcr-assistant-system behind, which this control plane never finishes deleting: the
	// earlier release then owns it as it would have created it.)
	earlier, err := loader.Load(filepath.Join("testdata", filepath.Base(earlierChart)))
	require.NoError(t, err)
	in := action.NewInstall(helmConfig(t, earlierNS))
	in.ReleaseName, in.Namespace, in.Timeout, in.TakeOwnership = releaseName, earlierNS, helmTimeout, true
	_, err = in.Run(earlier, values(t, vals))
	require.NoError(t, err)
	tenantSAs := map[string][]string{"earlier-a/default": {"keep-me", "tcr.ipsearlier"}, "earlier-a/builder": {"keep-me", "tcr.ipsearlier"}}
	requireReferences(t, tenantSAs)

	// What must survive the move, as the earlier release left it.
	_, secretUID := authOf(t, "earlier-a", "tcr.ipsearlier", "e.tencentcloudcr.com")
	var cert corev1.Secret
	require.NoError(t, env.Client.Get(ctx, client.ObjectKey{Namespace: releaseNS, Name: "tcr-assistant-webhook-server-cert"}, &cert))
	require.NotEmpty(t, cert.Data["tls.crt"])
	var deploy appsv1.Deployment
	require.NoError(t, env.Client.Get(ctx, client.ObjectKey{Namespace: releaseNS, Name: managerDeployment}, &deploy))
	hosts := []map[string]any{{"domain": "e.tencentcloudcr.com", "ip": "10.0.0.5"}}
	require.Equal(t, hosts, hostsYAML(t, releaseNS))
	var ns corev1.Namespace
	require.NoError(t, env.Client.Get(ctx, client.ObjectKey{Name: releaseNS}, &ns))
	require.Equal(t, "privileged", ns.Labels["pod-security.kubernetes.io/enforce"])

	t.Run("helm upgrade of the earlier release is refused, and changes nothing", func(t *testing.T) {
		unpointWebhook(t, releaseNS)
		up := action.NewUpgrade(helmConfig(t, earlierNS))
		up.Namespace, up.Timeout = earlierNS, helmTimeout
		_, err := up.Run(releaseName, loadChart(t), values(t, vals))
		assert.EqualError(t, err, "execution error at (tcr-assistant/templates/imagepullsecrets.yaml:1:4): release tcr-assistant "+
			"in namespace default was installed by an earlier chart, which created namespace tcr-assistant-system as a release object; "+
			"this chart installs into the release namespace and would delete tcr-assistant-system with everything in it: "+
			`move the release instead (README, "Moving a release of the earlier chart")`)
		assert.Equal(t, []string{"sh.helm.release.v1.tcr-assistant.v1"}, releaseRecords(t, earlierNS))
		err = env.Client.Get(ctx, client.ObjectKey{Namespace: earlierNS, Name: managerDeployment}, &appsv1.Deployment{})
		assert.True(t, apierrors.IsNotFound(err), "%v", err)
	})

	t.Run("helm install into tcr-assistant-system is refused while the earlier release owns the objects", func(t *testing.T) {
		in := action.NewInstall(helmConfig(t, releaseNS))
		in.ReleaseName, in.Namespace, in.Timeout = releaseName, releaseNS, helmTimeout
		_, err := in.Run(loadChart(t), values(t, vals))
		assert.EqualError(t, err, `Unable to continue with install: ServiceAccount "hosts-updater" in namespace "tcr-assistant-system" `+
			`exists and cannot be imported into the current release: invalid ownership metadata; annotation validation error: `+
			`key "meta.helm.sh/release-namespace" must equal "tcr-assistant-system": current value is "default"`)
		assert.Empty(t, releaseRecords(t, releaseNS))
	})

	t.Run("forgetting the earlier release and installing with --take-ownership moves it in place", func(t *testing.T) {
		// kubectl -n default delete secret -l owner=helm,name=tcr-assistant
		require.NoError(t, env.Client.DeleteAllOf(ctx, &corev1.Secret{}, client.InNamespace(earlierNS),
			client.MatchingLabels{"owner": "helm", "name": releaseName}))
		assert.Empty(t, releaseRecords(t, earlierNS))
		// helm install tcr-assistant charts/tcr-assistant -n tcr-assistant-system --take-ownership -f values.yaml
		unpointWebhook(t, releaseNS)
		in := action.NewInstall(helmConfig(t, releaseNS))
		in.ReleaseName, in.Namespace, in.Timeout, in.TakeOwnership = releaseName, releaseNS, helmTimeout, true
		rel, err := in.Run(loadChart(t), values(t, vals))
		require.NoError(t, err)
		assert.Equal(t, []string{"sh.helm.release.v1.tcr-assistant.v1"}, releaseRecords(t, releaseNS))

		// Every object is the new release's, updated in place: the distributed Secret, the
		// manager's certificate and caBundle, the Deployment and the hosts are the same.
		for _, o := range parseObjects(t, []byte(rel.Manifest)) {
			live := &unstructured.Unstructured{}
			live.SetGroupVersionKind(o.GroupVersionKind())
			require.NoError(t, env.Client.Get(ctx, client.ObjectKey{Namespace: o.GetNamespace(), Name: o.GetName()}, live))
			assert.Equal(t, releaseNS, live.GetAnnotations()["meta.helm.sh/release-namespace"], key(o))
		}
		requireReferences(t, tenantSAs)
		auth, uid := authOf(t, "earlier-a", "tcr.ipsearlier", "e.tencentcloudcr.com")
		assert.Equal(t, "user-e:password-e", auth)
		assert.Equal(t, secretUID, uid, "the distributed Secret was replaced")
		var certAfter corev1.Secret
		require.NoError(t, env.Client.Get(ctx, client.ObjectKeyFromObject(&cert), &certAfter))
		assert.Equal(t, cert.Data, certAfter.Data, "the manager's certificate was reset")
		var vwc admissionregistrationv1.ValidatingWebhookConfiguration
		require.NoError(t, env.Client.Get(ctx, client.ObjectKey{Name: webhookConfig}, &vwc))
		assert.Equal(t, cert.Data["ca.crt"], vwc.Webhooks[0].ClientConfig.CABundle, "the caBundle was reset")
		var deployAfter appsv1.Deployment
		require.NoError(t, env.Client.Get(ctx, client.ObjectKeyFromObject(&deploy), &deployAfter))
		assert.Equal(t, deploy.UID, deployAfter.UID)
		// The same spec, so no rollout: the Deployment's generation moves only because its
		// annotations (Helm's) changed, which the Deployment controller copies to the
		// ReplicaSet without replacing a pod.
		assert.Equal(t, deploy.Spec, deployAfter.Spec, "the manager's Deployment spec changed")
		assert.Equal(t, hosts, hostsYAML(t, releaseNS))
		// The namespace stays, with its Pod Security level; not the chart's any more.
		require.NoError(t, env.Client.Get(ctx, client.ObjectKey{Name: releaseNS}, &ns))
		assert.Equal(t, "privileged", ns.Labels["pod-security.kubernetes.io/enforce"])
	})

	t.Run("uninstall leaves nothing behind", func(t *testing.T) {
		uninstall(t, releaseNS)
		assert.Contains(t, k.jobLog("tcr-assistant-sync-delete"), "Deleted ImagePullSecret earlier")
		requireUninstalled(t, releaseNS, tenantSAs)
	})
}
