package e2e

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
	"github.com/tcr-assistant/tcr-assistant/internal/testenv"
)

// TestWithTheManagerDownOnlySpecChangesWaitForTheWebhook stops the manager, so that nothing
// serves the webhook (failurePolicy Fail), and expects what does not change a spec (labels, the
// finalizer of a CR being deleted) to go through without calling it, and a spec change to be
// refused.
func TestWithTheManagerDownOnlySpecChangesWaitForTheWebhook(t *testing.T) {
	ctx := context.Background()
	installBundle(t)
	port := testenv.FreePort(t)
	url := "https://127.0.0.1:" + strconv.Itoa(port) + webhookPath
	pointWebhookAt(t, url)

	args, probePort := managerArgs(t, kubeconfigFor(t, managerSA))
	manager := start(t, binary(t, "manager"), append(args,
		"--enable-webhook=true",
		"--webhook-port="+strconv.Itoa(port),
		"--webhook-cert-dir="+t.TempDir(),
		"--webhook-extra-sans=127.0.0.1")...)
	waitHealthy(t, manager, probePort, "/readyz")

	// The manager injected its CA and kept the bundle's matchConditions.
	var vwc admissionregistrationv1.ValidatingWebhookConfiguration
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		require.NoError(c, env.Client.Get(ctx, client.ObjectKey{Name: webhookConfig}, &vwc))
		assert.NotEmpty(c, vwc.Webhooks[0].ClientConfig.CABundle)
	}, waitTimeout, waitInterval, "the manager never injected its CA")
	require.Len(t, vwc.Webhooks[0].MatchConditions, 1)
	assert.Equal(t, "spec-changed", vwc.Webhooks[0].MatchConditions[0].Name)

	ips := &tcrv1.ImagePullSecret{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e-manager-down"},
		Spec: tcrv1.ImagePullSecretSpec{
			Namespaces: "e2e-manager-down-none", ServiceAccounts: "*",
			Docker: tcrv1.DockerCredential{Server: "e2e.tencentcloudcr.com", Username: "u", Password: "e2e-manager-down-password"},
		},
	}
	require.NoError(t, env.Client.Create(ctx, ips))
	t.Cleanup(func() {
		_ = env.Client.Patch(context.Background(), ips, client.RawPatch("application/merge-patch+json", []byte(`{"metadata":{"finalizers":null}}`)))
		_ = env.Client.Delete(context.Background(), ips)
	})
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		require.NoError(c, env.Client.Get(ctx, client.ObjectKeyFromObject(ips), ips))
		assert.NotEmpty(c, ips.Finalizers)
	}, waitTimeout, waitInterval, "the manager never added its finalizer")
	require.Equal(t, []string{tcrv1.Finalizer}, ips.Finalizers)

	manager.Stop()
	refused := `Error from server (InternalError): Internal error occurred: failed calling webhook "vimagepullsecret.tcr.tencentcloudcr.com": ` +
		`failed to call webhook: Post "` + url + `?timeout=5s": dial tcp 127.0.0.1:` + strconv.Itoa(port) + `: connect: connection refused`

	t.Run("a spec change is refused", func(t *testing.T) {
		_, stderr, err := env.Kubectl("", "patch", "imagepullsecret", ips.Name, "--type=merge", "-p", `{"spec":{"namespaces":"e2e-manager-down-other"}}`)
		require.Error(t, err)
		assert.Equal(t, refused, strings.TrimSpace(stderr))
		require.NoError(t, env.Client.Get(ctx, client.ObjectKeyFromObject(ips), ips))
		assert.Equal(t, "e2e-manager-down-none", ips.Spec.Namespaces)
	})

	t.Run("a label change goes through", func(t *testing.T) {
		out, _, err := env.Kubectl("", "label", "imagepullsecret", ips.Name, "team=e2e")
		require.NoError(t, err)
		assert.Equal(t, "imagepullsecret.tcr.tencentcloudcr.com/"+ips.Name+" labeled", strings.TrimSpace(out))
	})

	t.Run("removing the finalizer of a CR being deleted goes through", func(t *testing.T) {
		_, _, err := env.Kubectl("", "delete", "imagepullsecret", ips.Name, "--wait=false")
		require.NoError(t, err)
		require.NoError(t, env.Client.Get(ctx, client.ObjectKeyFromObject(ips), ips))
		require.NotNil(t, ips.DeletionTimestamp, "the finalizer must hold the CR")

		out, _, err := env.Kubectl("", "patch", "imagepullsecret", ips.Name, "--type=json", "-p", `[{"op":"remove","path":"/metadata/finalizers"}]`)
		require.NoError(t, err)
		assert.Equal(t, "imagepullsecret.tcr.tencentcloudcr.com/"+ips.Name+" patched", strings.TrimSpace(out))
		require.Eventually(t, func() bool {
			return apierrors.IsNotFound(env.Client.Get(ctx, client.ObjectKeyFromObject(ips), ips))
		}, waitTimeout, waitInterval, "the CR is still there")
	})
}
