package e2e

import (
	"context"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// originalObjects is the original's table of installed objects (DESIGN.md §1), plus the
// ServiceAccounts the two workloads run as, the agent's Role and RoleBinding, the metrics reader
// ClusterRole, the ServiceAccount webhook (issue 15), the policies that narrow the manager's
// writes and the kubelets' right to request tokens for the credential provider's audience (issue
// 25): exactly what the bundle must hold, names verbatim.
var originalObjects = []bundleObject{
	{"v1", "Namespace", "", "tcr-assistant-system"},
	{"rbac.authorization.k8s.io/v1", "ClusterRole", "", "tcr-assistant-manager-role"},
	{"rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "", "tcr-assistant-manager-rolebinding"},
	{"rbac.authorization.k8s.io/v1", "Role", ownNamespace, "tcr-assistant-leader-election-role"},
	{"rbac.authorization.k8s.io/v1", "RoleBinding", ownNamespace, "tcr-assistant-leader-election-rolebinding"},
	{"v1", "Secret", ownNamespace, "tcr-assistant-webhook-server-cert"},
	{"v1", "Service", ownNamespace, "tcr-assistant-webhook-service"},
	{"admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration", "", "tcr-assistant-validating-webhook-configuration"},
	{"admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", "", "tcr-assistant-mutating-webhook-configuration"},
	{"apiextensions.k8s.io/v1", "CustomResourceDefinition", "", "imagepullsecrets.tcr.tencentcloudcr.com"},
	{"apps/v1", "Deployment", ownNamespace, "tcr-assistant-controller-manager"},
	{"v1", "ConfigMap", ownNamespace, "updater-config"},
	{"apps/v1", "DaemonSet", ownNamespace, "hosts-updater"},
	{"v1", "ServiceAccount", ownNamespace, managerSA},
	{"v1", "ServiceAccount", ownNamespace, agentSA},
	{"rbac.authorization.k8s.io/v1", "Role", ownNamespace, "hosts-updater"},
	{"rbac.authorization.k8s.io/v1", "RoleBinding", ownNamespace, "hosts-updater"},
	{"rbac.authorization.k8s.io/v1", "ClusterRole", "", metricsReaderRole},
	{"admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy", "", secretsPolicy},
	{"admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicyBinding", "", secretsPolicy},
	{"admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy", "", serviceAccountsPolicy},
	{"admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicyBinding", "", serviceAccountsPolicy},
	{"rbac.authorization.k8s.io/v1", "ClusterRole", "", audienceRole},
	{"rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "", audienceRole},
}

func sortedStrings[T any](items []T, str func(T) string) []string {
	out := make([]string, 0, len(items))
	for _, i := range items {
		out = append(out, str(i))
	}
	sort.Strings(out)
	return out
}

// liveResourceVersions reads every object of the bundle from the API server and returns its
// resourceVersion by object.
func liveResourceVersions(t *testing.T, objs []*unstructured.Unstructured) map[string]string {
	t.Helper()
	rvs := map[string]string{}
	for _, o := range objs {
		live := &unstructured.Unstructured{}
		live.SetGroupVersionKind(o.GroupVersionKind())
		require.NoError(t, env.Client.Get(context.Background(),
			client.ObjectKey{Namespace: o.GetNamespace(), Name: o.GetName()}, live), "reading %s %s", o.GetKind(), o.GetName())
		rvs[o.GetKind()+" "+o.GetNamespace()+"/"+o.GetName()] = live.GetResourceVersion()
	}
	return rvs
}

func TestInstallBundleCreatesTheOriginalsObjectsAndReapplyingChangesNothing(t *testing.T) {
	objs := readBundle(t)

	// The bundle holds exactly the original's objects, with their names, kinds and namespaces.
	got := sortedStrings(objs, func(o *unstructured.Unstructured) string {
		return bundleObject{o.GetAPIVersion(), o.GetKind(), o.GetNamespace(), o.GetName()}.String() + " (" + o.GetAPIVersion() + ")"
	})
	want := sortedStrings(originalObjects, func(o bundleObject) string { return o.String() + " (" + o.APIVersion + ")" })
	require.Equal(t, want, got)

	installBundle(t)

	// Every object of the table is in the API server, under its exact name, kind and namespace.
	for _, o := range originalObjects {
		gv, err := schema.ParseGroupVersion(o.APIVersion)
		require.NoError(t, err)
		live := &unstructured.Unstructured{}
		live.SetGroupVersionKind(gv.WithKind(o.Kind))
		require.NoError(t, env.Client.Get(context.Background(), client.ObjectKey{Namespace: o.Namespace, Name: o.Name}, live),
			"%s is not installed", o)
		assert.Equal(t, o.Namespace, live.GetNamespace(), "%s", o)
	}

	// Applying it again is a no-op: kubectl reports every object unchanged, and no object got
	// a new resourceVersion.
	before := liveResourceVersions(t, objs)
	out := installBundle(t)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, len(objs), "kubectl apply output:\n%s", out)
	for _, line := range lines {
		assert.True(t, strings.HasSuffix(line, " unchanged"), "second apply changed something: %q", line)
	}
	require.Equal(t, before, liveResourceVersions(t, objs))
}

// typed converts a bundle object into its Go type.
func typed[T any](t *testing.T, o *unstructured.Unstructured) *T {
	t.Helper()
	var out T
	require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &out))
	return &out
}

func TestBundleObjectsReferToEachOther(t *testing.T) {
	objs := readBundle(t)
	deploy := typed[appsv1.Deployment](t, findObject(t, objs, "Deployment", "tcr-assistant-controller-manager"))
	daemon := typed[appsv1.DaemonSet](t, findObject(t, objs, "DaemonSet", "hosts-updater"))
	svc := typed[corev1.Service](t, findObject(t, objs, "Service", "tcr-assistant-webhook-service"))
	vwc := typed[admissionregistrationv1.ValidatingWebhookConfiguration](t, findObject(t, objs, "ValidatingWebhookConfiguration", webhookConfig))
	mwc := typed[admissionregistrationv1.MutatingWebhookConfiguration](t, findObject(t, objs, "MutatingWebhookConfiguration", mutatingConfig))
	secret := typed[corev1.Secret](t, findObject(t, objs, "Secret", certSecret))
	crb := typed[rbacv1.ClusterRoleBinding](t, findObject(t, objs, "ClusterRoleBinding", "tcr-assistant-manager-rolebinding"))
	lrb := typed[rbacv1.RoleBinding](t, findObject(t, objs, "RoleBinding", "tcr-assistant-leader-election-rolebinding"))
	require.Len(t, deploy.Spec.Template.Spec.Containers, 1)
	manager := deploy.Spec.Template.Spec.Containers[0]

	t.Run("the ServiceAccount webhook is optional and calls the manager through the Service", func(t *testing.T) {
		require.Len(t, mwc.Webhooks, 1)
		wh := mwc.Webhooks[0]
		assert.Equal(t, "mserviceaccount.tcr.tencentcloudcr.com", wh.Name)
		require.NotNil(t, wh.ClientConfig.Service)
		assert.Equal(t, admissionregistrationv1.ServiceReference{
			Namespace: ownNamespace, Name: svc.Name, Path: ptr.To("/mutate--v1-serviceaccount"),
		}, withoutPort(*wh.ClientConfig.Service))
		assert.Empty(t, wh.ClientConfig.CABundle, "the manager injects the CA; the bundle must not pin one")
		assert.Equal(t, admissionregistrationv1.Ignore, *wh.FailurePolicy, "a stopped manager must never block ServiceAccounts")
		assert.Equal(t, int32(3), *wh.TimeoutSeconds)
		assert.Equal(t, admissionregistrationv1.IfNeededReinvocationPolicy, *wh.ReinvocationPolicy)
		assert.Equal(t, admissionregistrationv1.SideEffectClassNone, *wh.SideEffects)
		require.Len(t, wh.Rules, 1)
		assert.Equal(t, []string{"serviceaccounts"}, wh.Rules[0].Resources)
		assert.Equal(t, ptr.To(admissionregistrationv1.NamespacedScope), wh.Rules[0].Scope)
		assert.Equal(t, &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
			Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{ownNamespace},
		}}}, wh.NamespaceSelector, "the manager's own ServiceAccounts never wait on the manager")
	})

	t.Run("the webhook configuration calls the manager's webhook through the Service", func(t *testing.T) {
		require.Len(t, vwc.Webhooks, 1)
		wh := vwc.Webhooks[0]
		assert.Equal(t, "vimagepullsecret.tcr.tencentcloudcr.com", wh.Name)
		require.NotNil(t, wh.ClientConfig.Service)
		assert.Equal(t, admissionregistrationv1.ServiceReference{
			Namespace: ownNamespace, Name: svc.Name, Path: ptr.To(webhookPath),
		}, withoutPort(*wh.ClientConfig.Service))
		assert.Empty(t, wh.ClientConfig.CABundle, "the manager injects the CA; the bundle must not pin one")

		require.Len(t, svc.Spec.Ports, 1)
		assert.Equal(t, int32(443), svc.Spec.Ports[0].Port)
		assert.Equal(t, int32(9443), containerPort(t, manager, svc.Spec.Ports[0].TargetPort.String()))
		for k, v := range svc.Spec.Selector {
			assert.Equal(t, v, deploy.Spec.Template.Labels[k], "Service selector %s=%s does not select the manager's pods", k, v)
		}
	})

	t.Run("the manager runs as its ServiceAccount with the agreed flags, ports and limits", func(t *testing.T) {
		spec := deploy.Spec.Template.Spec
		assert.Equal(t, managerSA, spec.ServiceAccountName)
		assert.Equal(t, "tcr-assistant:v0.1.0", manager.Image)
		assert.Contains(t, manager.Args, "--namespace="+ownNamespace)
		assert.Contains(t, manager.Args, "--leader-elect")
		assert.Equal(t, int32(8081), containerPort(t, manager, manager.LivenessProbe.HTTPGet.Port.String()))
		assert.Equal(t, "/healthz", manager.LivenessProbe.HTTPGet.Path)
		assert.Equal(t, "/readyz", manager.ReadinessProbe.HTTPGet.Path)
		assert.Equal(t, int32(8443), containerPort(t, manager, "metrics"))
		assert.Contains(t, manager.Args, "--metrics-bind-address=:8443")
		assert.NotContains(t, manager.Args, "--metrics-secure=false")
		assert.True(t, resource.MustParse("500m").Equal(manager.Resources.Limits[corev1.ResourceCPU]))
		assert.True(t, resource.MustParse("512Mi").Equal(manager.Resources.Limits[corev1.ResourceMemory]))
		assert.NotEmpty(t, manager.Resources.Requests)

		// The certificate directory is writable (an emptyDir) despite the read-only root.
		certDir := "/tmp/k8s-webhook-server/serving-certs"
		assert.Contains(t, manager.Args, "--webhook-cert-dir="+certDir)
		var mounted bool
		for _, m := range manager.VolumeMounts {
			if m.MountPath == certDir {
				for _, v := range spec.Volumes {
					mounted = mounted || (v.Name == m.Name && v.EmptyDir != nil)
				}
			}
		}
		assert.True(t, mounted, "no emptyDir mounted at %s", certDir)
	})

	t.Run("the agent runs as its ServiceAccount from the same image", func(t *testing.T) {
		assert.Equal(t, agentSA, daemon.Spec.Template.Spec.ServiceAccountName)
		require.NotEmpty(t, daemon.Spec.Template.Spec.Containers)
		assert.Equal(t, "tcr-assistant:v0.1.0", daemon.Spec.Template.Spec.Containers[0].Image)
	})

	// TestAgentOnTheNodeWritesOnlyTheHostsFile runs the agent with these mounts and arguments.
	t.Run("the agent mounts the node's /etc read-only and only its hosts file writable", func(t *testing.T) {
		spec := daemon.Spec.Template.Spec
		file, dir := corev1.HostPathFile, corev1.HostPathDirectory
		assert.Equal(t, []corev1.Volume{
			{Name: "host-etc", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/etc", Type: &dir}}},
			{Name: "hosts-file", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/etc/hosts", Type: &file}}},
		}, spec.Volumes)
		c := spec.Containers[0]
		assert.Equal(t, []corev1.VolumeMount{
			{Name: "host-etc", MountPath: "/host/etc", ReadOnly: true},
			{Name: "hosts-file", MountPath: "/host/hosts"},
		}, c.VolumeMounts)
		assert.Contains(t, c.Args, "--hosts-file=/host/hosts")
		assert.Contains(t, c.Args, "--node-hosts-file=/host/etc/hosts")
	})

	// kubectl apply resets every field a manifest declares: declared entries would be put back
	// at every upgrade (TestUpgradeKeepsTheUsersHostsEntries).
	t.Run("the agent's ConfigMap is installed with no data for the user to fill", func(t *testing.T) {
		cm := typed[corev1.ConfigMap](t, findObject(t, objs, "ConfigMap", "updater-config"))
		assert.Nil(t, cm.Data)
		assert.Nil(t, cm.BinaryData)
	})

	// A declared type kubernetes.io/tls would need declared tls.crt and tls.key, and 'kubectl
	// apply' would reset those to empty at every upgrade (TestBundleWebhookIsServedByTheManager
	// re-applies it over a filled one).
	t.Run("the certificate Secret is installed with no type and no data for the manager to fill", func(t *testing.T) {
		assert.Empty(t, secret.Type)
		assert.Nil(t, secret.Data)
		assert.Nil(t, secret.StringData)
	})

	t.Run("the role bindings grant the roles to the manager's ServiceAccount only", func(t *testing.T) {
		want := []rbacv1.Subject{{Kind: "ServiceAccount", Name: managerSA, Namespace: ownNamespace}}
		assert.Equal(t, rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "tcr-assistant-manager-role"}, crb.RoleRef)
		assert.Equal(t, want, crb.Subjects)
		assert.Equal(t, rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "tcr-assistant-leader-election-role"}, lrb.RoleRef)
		assert.Equal(t, want, lrb.Subjects)
	})
}

// withoutPort drops the Service port, which defaults to 443 and may be left out of the bundle.
func withoutPort(ref admissionregistrationv1.ServiceReference) admissionregistrationv1.ServiceReference {
	if ref.Port != nil && *ref.Port == 443 {
		ref.Port = nil
	}
	return ref
}

// containerPort resolves a port name or number of container c.
func containerPort(t *testing.T, c corev1.Container, nameOrNumber string) int32 {
	t.Helper()
	for _, p := range c.Ports {
		if p.Name == nameOrNumber || nameOrNumber == strconv.Itoa(int(p.ContainerPort)) {
			return p.ContainerPort
		}
	}
	require.Failf(t, "no such container port", "container %s has no port %q", c.Name, nameOrNumber)
	return 0
}

func TestServerSideApplyOfTheBundleIsIdempotent(t *testing.T) {
	// GitOps tools apply with server-side apply: on a fresh cluster, as they would, and again after
	// the manager filled in what it owns.
	ownControlPlane(t)
	objs := readBundle(t)
	apply := func() string {
		out, _, err := env.Kubectl("", "apply", "--server-side", "--field-manager=e2e-gitops", "-f", filepath.Join(env.Root, installer))
		require.NoError(t, err)
		return out
	}
	apply()

	// What the manager writes, as it writes it (updates under its field manager): the
	// certificate Secret's data and the webhook's caBundle. A later apply must neither conflict
	// with them nor reset them.
	ctx := context.Background()
	secret := &corev1.Secret{}
	require.NoError(t, env.Client.Get(ctx, client.ObjectKey{Namespace: ownNamespace, Name: certSecret}, secret))
	secret.Data = map[string][]byte{corev1.TLSCertKey: []byte("cert"), corev1.TLSPrivateKeyKey: []byte("key")}
	require.NoError(t, env.Client.Update(ctx, secret, client.FieldOwner("tcr-assistant")))
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	require.NoError(t, env.Client.Get(ctx, client.ObjectKey{Name: webhookConfig}, vwc))
	vwc.Webhooks[0].ClientConfig.CABundle = []byte("ca")
	require.NoError(t, env.Client.Update(ctx, vwc, client.FieldOwner("tcr-assistant")))

	before := liveResourceVersions(t, objs)
	out := apply()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, len(objs), "kubectl apply output:\n%s", out)
	require.Equal(t, before, liveResourceVersions(t, objs), "the second server-side apply changed objects")
	require.NoError(t, env.Client.Get(ctx, client.ObjectKeyFromObject(secret), secret))
	assert.Equal(t, []byte("cert"), secret.Data[corev1.TLSCertKey])
	require.NoError(t, env.Client.Get(ctx, client.ObjectKeyFromObject(vwc), vwc))
	assert.Equal(t, []byte("ca"), vwc.Webhooks[0].ClientConfig.CABundle)
}
