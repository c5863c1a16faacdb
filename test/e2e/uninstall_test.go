package e2e

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
	"github.com/tcr-assistant/tcr-assistant/internal/testenv"
)

// ownControlPlane starts a control plane for this test alone (with opts) and points the
// package's helpers at it until the test ends, for a test that destroys what the others share (the
// CRD, the namespace, which never finishes deleting here) or needs an API server configured
// otherwise. Tests of this package never run in parallel.
func ownControlPlane(t *testing.T, opts ...testenv.Option) {
	t.Helper()
	own, err := testenv.Start(opts...)
	require.NoError(t, err)
	shared := env
	env = own
	t.Cleanup(func() {
		env = shared
		if err := own.Stop(); err != nil {
			t.Logf("stopping the test's own control plane: %v", err)
		}
	})
}

func TestUninstallInTheREADMEsOrderLeavesNothingBehind(t *testing.T) {
	ownControlPlane(t)
	ctx := context.Background()
	installBundle(t)
	removeWebhook(t)

	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "e2e-uninstall"}}
	require.NoError(t, env.Client.Create(ctx, ns))
	sa := &corev1.ServiceAccount{
		ObjectMeta:       metav1.ObjectMeta{Namespace: ns.Name, Name: "builder"},
		ImagePullSecrets: []corev1.LocalObjectReference{{Name: "keep-me"}},
	}
	require.NoError(t, env.Client.Create(ctx, sa))

	args, probePort := managerArgs(t, kubeconfigFor(t, managerSA))
	manager := start(t, binary(t, "manager"), append(args, "--enable-webhook=false")...)
	waitHealthy(t, manager, probePort, "/readyz")

	ips := &tcrv1.ImagePullSecret{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e-uninstall"},
		Spec: tcrv1.ImagePullSecretSpec{
			Namespaces: ns.Name, ServiceAccounts: "*",
			Docker: tcrv1.DockerCredential{Server: "e2e.tencentcloudcr.com", Username: "u", Password: "e2e-uninstall-password"},
		},
	}
	require.NoError(t, env.Client.Create(ctx, ips))
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		require.NoError(c, env.Client.Get(ctx, client.ObjectKeyFromObject(sa), sa))
		assert.True(c, references(*sa, secretName(ips.Name)))
	}, waitTimeout, waitInterval, "the ServiceAccount never referenced the Secret")

	// Step 1: delete the rules while the manager runs.
	_, _, err := env.Kubectl("", "delete", "imagepullsecrets", "--all", "--wait=true", "--timeout=50s")
	require.NoError(t, err)
	manager.Stop()

	// Step 2: delete the bundle (but the webhook configuration, which removeWebhook took).
	_, _, err = env.Kubectl("", "delete", "-f", filepath.Join(env.Root, installer), "--wait=false", "--ignore-not-found")
	require.NoError(t, err)

	// No distributed Secret, no reference but the user's own, no object of the bundle: the
	// namespace only waits for the namespace controller, which this control plane does not run.
	var managed corev1.SecretList
	require.NoError(t, env.Client.List(ctx, &managed, client.MatchingLabels{tcrv1.ManagedByLabel: tcrv1.ManagedByValue}))
	assert.Empty(t, managed.Items)
	require.NoError(t, env.Client.Get(ctx, client.ObjectKeyFromObject(sa), sa))
	assert.Equal(t, []corev1.LocalObjectReference{{Name: "keep-me"}}, sa.ImagePullSecrets)
	for _, o := range readBundle(t) {
		live := &unstructured.Unstructured{}
		live.SetGroupVersionKind(o.GroupVersionKind())
		err := env.Client.Get(ctx, client.ObjectKey{Namespace: o.GetNamespace(), Name: o.GetName()}, live)
		if o.GetKind() == "Namespace" {
			require.NoError(t, err)
			assert.NotNil(t, live.GetDeletionTimestamp(), "namespace %s is not being deleted", o.GetName())
			continue
		}
		if o.GetKind() == "CustomResourceDefinition" && err == nil {
			// The API server removes a CRD once its instances are gone; give it the time.
			require.Eventually(t, func() bool {
				return apierrors.IsNotFound(env.Client.Get(ctx, client.ObjectKey{Name: o.GetName()}, live))
			}, waitTimeout, waitInterval, "CRD %s was never removed", o.GetName())
			continue
		}
		assert.True(t, apierrors.IsNotFound(err), "%s %s/%s is left behind (%v)", o.GetKind(), o.GetNamespace(), o.GetName(), err)
	}
}
