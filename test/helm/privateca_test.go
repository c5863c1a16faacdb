package helm

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
	"github.com/tcr-assistant/tcr-assistant/internal/testenv"
	"github.com/tcr-assistant/tcr-assistant/internal/testregistry"
)

// privateCAFile is where the value privateCA, like config/components/private-ca, puts the CA
// bundle in the manager, and what both flags name.
const privateCAFile = "/etc/tcr-assistant/ca/ca.crt"

// withPrivateCA is the manager's Deployment d with what privateCA adds: both flags at the end of
// the manager's args, the read-only mount of the folder at the end of its volumeMounts, and the
// ConfigMap's key as ca.crt at the end of the pod's volumes.
func withPrivateCA(t *testing.T, d *unstructured.Unstructured, configMap, key string) *unstructured.Unstructured {
	t.Helper()
	out := d.DeepCopy()
	containers, _, err := unstructured.NestedSlice(out.Object, "spec", "template", "spec", "containers")
	require.NoError(t, err)
	require.Len(t, containers, 1)
	c := containers[0].(map[string]any)
	c["args"] = append(c["args"].([]any), "--registry-ca-file="+privateCAFile, "--tcr-api-ca-file="+privateCAFile)
	c["volumeMounts"] = append(c["volumeMounts"].([]any),
		map[string]any{"name": "private-ca", "mountPath": "/etc/tcr-assistant/ca", "readOnly": true})
	require.NoError(t, unstructured.SetNestedSlice(out.Object, containers, "spec", "template", "spec", "containers"))
	volumes, _, err := unstructured.NestedSlice(out.Object, "spec", "template", "spec", "volumes")
	require.NoError(t, err)
	volumes = append(volumes, map[string]any{"name": "private-ca", "configMap": map[string]any{
		"name": configMap, "items": []any{map[string]any{"key": key, "path": "ca.crt"}}}})
	require.NoError(t, unstructured.SetNestedSlice(out.Object, volumes, "spec", "template", "spec", "volumes"))
	return out
}

// renderDeployment renders the chart into release namespace ns with vals and returns every object,
// and the manager's Deployment.
func renderDeployment(t *testing.T, ns, vals string) ([]*unstructured.Unstructured, *unstructured.Unstructured) {
	t.Helper()
	rel, err := render(t, ns, values(t, vals))
	require.NoError(t, err)
	objs := renderedObjects(t, rel)
	return objs, find(t, objs, "Deployment", managerDeployment)
}

// kustomizeWithComponent renders dist/install.yaml with the component (a folder under config/,
// such as config/components/private-ca), as the README tells kustomize users, with 'kubectl
// kustomize'.
func kustomizeWithComponent(t *testing.T, componentDir string) []*unstructured.Unstructured {
	t.Helper()
	r := root(t)
	overlay := t.TempDir()
	data, err := os.ReadFile(filepath.Join(r, "dist", "install.yaml"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(overlay, "install.yaml"), data, 0o644))
	component, err := filepath.Rel(overlay, filepath.Join(r, componentDir))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(overlay, "kustomization.yaml"),
		[]byte("resources:\n- install.yaml\ncomponents:\n- "+component+"\n"), 0o644))
	kubectl, err := (&testenv.Env{Root: r}).KubectlPath()
	require.NoError(t, err)
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, testenv.Command{Path: kubectl, Args: []string{"kustomize", overlay}, Output: &out, Stderr: &errOut}.Run(ctx),
		"kubectl kustomize: %s", errOut.String())
	return parseObjects(t, out.Bytes())
}

func TestPrivateCAValueMountsTheConfigMapAndSetsBothFlags(t *testing.T) {
	bundle := bundleObjects(t)
	bundleDeployment := find(t, bundle, "Deployment", managerDeployment)

	t.Run("privateCA.configMap adds the mount and both flags, and nothing else", func(t *testing.T) {
		objs, deploy := renderDeployment(t, releaseNS, "privateCA:\n  configMap: tcr-assistant-ca\n")
		assert.Equal(t, withPrivateCA(t, bundleDeployment, "tcr-assistant-ca", "ca.crt").Object, deploy.Object)
		require.Equal(t, keys(bundle), keys(objs))
		for _, want := range bundle {
			if want.GetKind() != "Deployment" {
				assert.Equal(t, want.Object, find(t, objs, want.GetKind(), want.GetName()).Object, key(want))
			}
		}
		// The same Deployment as the kustomize component's, so that both ways install alike.
		assert.Equal(t, find(t, kustomizeWithComponent(t, "config/components/private-ca"), "Deployment", managerDeployment).Object, deploy.Object,
			"the chart's privateCA and config/components/private-ca differ")
	})

	t.Run("privateCA.key names the ConfigMap's key, in any release namespace", func(t *testing.T) {
		_, deploy := renderDeployment(t, otherNS, "privateCA:\n  configMap: corp-ca\n  key: corp.pem\n")
		assert.Equal(t, withPrivateCA(t, inNamespace(t, bundleDeployment, otherNS), "corp-ca", "corp.pem").Object, deploy.Object)
	})

	t.Run("without privateCA.configMap the Deployment is the bundle's", func(t *testing.T) {
		for _, vals := range []string{"", "privateCA:\n  configMap: \"\"\n", "privateCA:\n  key: corp.pem\n"} {
			_, deploy := renderDeployment(t, releaseNS, vals)
			assert.Equal(t, bundleDeployment.Object, deploy.Object, "values %q", vals)
		}
	})

	t.Run("the schema refuses a malformed privateCA", func(t *testing.T) {
		for vals, want := range map[string]string{
			"privateCA:\n  configMap: Corp_CA\n":                 "at '/privateCA/configMap': 'Corp_CA' does not match pattern",
			"privateCA:\n  configMap: corp-ca\n  key: a/b.pem\n": "at '/privateCA/key': 'a/b.pem' does not match pattern",
			"privateCA:\n  configmap: corp-ca\n":                 "at '/privateCA': additional properties 'configmap' not allowed",
			"privateCA: corp-ca\n":                               "at '/privateCA': got string, want object",
		} {
			_, err := render(t, releaseNS, values(t, vals))
			if assert.Error(t, err, vals) {
				assert.Contains(t, err.Error(), want)
			}
		}
	})
}

// TestInstallWithPrivateCA installs the chart with privateCA as the README says (the ConfigMap
// first), and proves the Deployment the API server keeps mounts it and sets both flags, and the
// manager, run from it, trusts the CA: the credential check of a rule against a registry of that
// CA is Accepted. An upgrade without the value gives back the bundle's Deployment, and a manager
// run from it reports the same registry as TLSError.
func TestInstallWithPrivateCA(t *testing.T) {
	startControlPlane(t)
	ctx := context.Background()
	deleteCRD(t)
	const ns = "tcr-ca"
	k := startKubelet(t, ns, image(t))
	tenants(t, "ca-a")
	tenantSAs := map[string][]string{"ca-a/default": {"keep-me", "tcr.ipsprivate-ca"}, "ca-a/builder": {"keep-me", "tcr.ipsprivate-ca"}}
	reg := testregistry.Start(t, testregistry.Options{Users: map[string]string{"user-ca": "password-ca"}})

	// kubectl create configmap corp-ca -n tcr-ca --from-file=corp.pem=<the registry's CA>.
	require.NoError(t, env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	caConfigMap := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "corp-ca"}, Data: map[string]string{"corp.pem": string(reg.CAPEM)}}
	require.NoError(t, env.Client.Create(ctx, caConfigMap))
	rules := `
global:
  imagePullSecretsCrs:
  - name: private-ca
    namespaces: ca-a
    serviceAccounts: "*"
    docker: {server: "` + reg.Host + `", username: user-ca, password: password-ca}
`
	install(t, ns, "privateCA:\n  configMap: corp-ca\n  key: corp.pem\n"+rules)

	bundleDeployment := inNamespace(t, find(t, bundleObjects(t), "Deployment", managerDeployment), ns)
	var deploy appsv1.Deployment
	require.NoError(t, env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: managerDeployment}, &deploy))
	pod := deploy.Spec.Template.Spec
	require.Len(t, pod.Containers, 1)
	var bundleTyped appsv1.Deployment
	require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(bundleDeployment.Object, &bundleTyped))
	assert.Equal(t, append(bundleTyped.Spec.Template.Spec.Containers[0].Args,
		"--registry-ca-file="+privateCAFile, "--tcr-api-ca-file="+privateCAFile), pod.Containers[0].Args)
	assert.Equal(t, corev1.VolumeMount{Name: "private-ca", MountPath: "/etc/tcr-assistant/ca", ReadOnly: true},
		pod.Containers[0].VolumeMounts[len(pod.Containers[0].VolumeMounts)-1])
	require.NotEmpty(t, pod.Volumes)
	ca := pod.Volumes[len(pod.Volumes)-1]
	assert.Equal(t, "private-ca", ca.Name)
	if assert.NotNil(t, ca.ConfigMap) {
		assert.Equal(t, "corp-ca", ca.ConfigMap.Name)
		assert.Equal(t, []corev1.KeyToPath{{Key: "corp.pem", Path: "ca.crt"}}, ca.ConfigMap.Items)
		assert.Nil(t, ca.ConfigMap.Optional, "a missing ConfigMap must keep the manager from starting")
	}

	// The manager, run from that Deployment with the ConfigMap as its folder, trusts the CA.
	requireReferences(t, tenantSAs)
	requireCredential(t, "private-ca", metav1.ConditionTrue, tcrv1.ReasonAccepted, "registry "+reg.Host+" accepted the credential")

	t.Run("an upgrade without privateCA gives back the bundle's Deployment, which does not trust the CA", func(t *testing.T) {
		upgrade(t, ns, rules)
		live := &unstructured.Unstructured{}
		live.SetGroupVersionKind(appsv1.SchemeGroupVersion.WithKind("Deployment"))
		require.NoError(t, env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: managerDeployment}, live))
		assertHolds(t, key(bundleDeployment), normalized(t, bundleDeployment.Object), normalized(t, live.Object))
		// The kubelet restarts the manager from the new Deployment (a rollout would).
		k.stopManager()
		requireCredential(t, "private-ca", metav1.ConditionUnknown, tcrv1.ReasonTLSError,
			"registry "+reg.Host+" presented a certificate signed by an unknown authority (add its CA with --registry-ca-file)")
	})

	t.Run("uninstall leaves nothing behind but the user's ConfigMap", func(t *testing.T) {
		uninstall(t, ns)
		require.NoError(t, env.Client.Get(ctx, client.ObjectKeyFromObject(caConfigMap), caConfigMap))
		require.NoError(t, env.Client.Delete(ctx, caConfigMap))
		requireUninstalled(t, ns, tenantSAs)
	})
}

// requireCredential waits until the rule's CredentialVerified condition is as given.
func requireCredential(t *testing.T, rule string, status metav1.ConditionStatus, reason, message string) {
	t.Helper()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		var ips tcrv1.ImagePullSecret
		require.NoError(c, env.Client.Get(context.Background(), client.ObjectKey{Name: rule}, &ips))
		cond := meta.FindStatusCondition(ips.Status.Conditions, tcrv1.ConditionCredentialVerified)
		require.NotNil(c, cond, "no condition %s yet", tcrv1.ConditionCredentialVerified)
		assert.Equal(c, status, cond.Status)
		assert.Equal(c, reason, cond.Reason)
		assert.Equal(c, message, cond.Message)
	}, waitTimeout, waitInterval, "rule %s: CredentialVerified never %s %s", rule, status, reason)
}
