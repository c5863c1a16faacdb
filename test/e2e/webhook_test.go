package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
	"github.com/tcr-assistant/tcr-assistant/engine"
	"github.com/tcr-assistant/tcr-assistant/internal/testenv"
)

// pointWebhookAt makes the installed webhook configuration call url instead of the in-cluster
// Service, keeping everything else the bundle set (name, rules, path, failure policy), and
// deletes it when the test ends, so that a later 'kubectl apply' of the bundle starts clean.
func pointWebhookAt(t *testing.T, url string) {
	t.Helper()
	patch, err := json.Marshal([]map[string]any{
		{"op": "remove", "path": "/webhooks/0/clientConfig/service"},
		{"op": "add", "path": "/webhooks/0/clientConfig/url", "value": url},
	})
	require.NoError(t, err)
	_, _, err = env.Kubectl("", "patch", "validatingwebhookconfiguration", webhookConfig, "--type=json", "-p", string(patch))
	require.NoError(t, err)
	t.Cleanup(func() {
		vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: webhookConfig}}
		_ = env.Client.Delete(context.Background(), vwc)
	})
}

func TestBundleWebhookIsServedByTheManager(t *testing.T) {
	ctx := context.Background()
	installBundle(t)

	// The path the bundle routes to is the agreed one; only the transport changes below.
	var vwc admissionregistrationv1.ValidatingWebhookConfiguration
	require.NoError(t, env.Client.Get(ctx, client.ObjectKey{Name: webhookConfig}, &vwc))
	require.Len(t, vwc.Webhooks, 1)
	require.NotNil(t, vwc.Webhooks[0].ClientConfig.Service)
	require.Equal(t, webhookPath, *vwc.Webhooks[0].ClientConfig.Service.Path)

	port := testenv.FreePort(t)
	pointWebhookAt(t, "https://127.0.0.1:"+strconv.Itoa(port)+*vwc.Webhooks[0].ClientConfig.Service.Path)

	kubeconfig := kubeconfigFor(t, managerSA)
	args, probePort := managerArgs(t, kubeconfig)
	manager := start(t, binary(t, "manager"), append(args,
		"--enable-webhook=true",
		"--webhook-port="+strconv.Itoa(port),
		"--webhook-cert-dir="+t.TempDir(),
		"--webhook-extra-sans=127.0.0.1")...)
	waitHealthy(t, manager, probePort, "/readyz")

	// The manager filled the bundle's empty certificate Secret and injected its CA.
	var secret corev1.Secret
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		require.NoError(c, env.Client.Get(ctx, client.ObjectKey{Namespace: ownNamespace, Name: certSecret}, &secret))
		require.NoError(c, env.Client.Get(ctx, client.ObjectKey{Name: webhookConfig}, &vwc))
		assert.NotEmpty(c, secret.Data[corev1.TLSCertKey])
		assert.NotEmpty(c, secret.Data[corev1.TLSPrivateKeyKey])
		assert.NotEmpty(c, vwc.Webhooks[0].ClientConfig.CABundle)
	}, waitTimeout, waitInterval, "the manager never filled %s and the caBundle", certSecret)

	// A bad rule is refused by the manager's webhook with the engine's message.
	bad := &tcrv1.ImagePullSecret{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e-webhook-bad"},
		Spec: tcrv1.ImagePullSecretSpec{
			Namespaces:      "dev-*",
			ServiceAccounts: "*",
			Docker:          tcrv1.DockerCredential{Server: "e2e.tencentcloudcr.com", Username: "u", Password: "e2e-webhook-password"},
		},
	}
	errs, _ := engine.Validate(&bad.Spec)
	require.NotEmpty(t, errs, "the engine accepts %q: this test needs a rule it refuses", bad.Spec.Namespaces)
	err := env.Client.Create(ctx, bad)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `admission webhook "vimagepullsecret.tcr.tencentcloudcr.com" denied the request`)
	for _, e := range errs {
		assert.Contains(t, err.Error(), e.Error())
	}
	assert.NotContains(t, err.Error(), bad.Spec.Docker.Password)

	// A good rule is admitted by the same webhook.
	good := bad.DeepCopy()
	good.Name, good.Spec.Namespaces = "e2e-webhook-good", "e2e-webhook-none"
	require.NoError(t, env.Client.Create(ctx, good))
	require.NoError(t, env.Client.Delete(ctx, good))

	// Upgrading by re-applying the bundle's Secret keeps the filled certificate: 'kubectl apply'
	// resets only the fields a manifest declares, and the bundle declares no data.
	filled := secret.Data
	out, _, err := env.Kubectl(secretManifest(t), "apply", "-f", "-")
	require.NoError(t, err)
	assert.Equal(t, "secret/"+certSecret+" unchanged", strings.TrimSpace(out))
	require.NoError(t, env.Client.Get(ctx, client.ObjectKey{Namespace: ownNamespace, Name: certSecret}, &secret))
	assert.Equal(t, filled, secret.Data)

	manager.Stop()
	assert.Empty(t, forbiddenLines(manager.Output()), "the manager's RBAC is not sufficient")
}

// secretManifest returns the bundle's certificate Secret as JSON, for kubectl.
func secretManifest(t *testing.T) string {
	t.Helper()
	data, err := json.Marshal(findObject(t, readBundle(t), "Secret", certSecret).Object)
	require.NoError(t, err)
	return string(bytes.TrimSpace(data))
}
