package admission_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/tcr-assistant/tcr-assistant/admission"
	"github.com/tcr-assistant/tcr-assistant/internal/testenv"
)

// requireConsistent checks the state a ready replica must leave: a Secret with all four keys,
// its CA bundle in every webhook of the configuration, and its files in the cert directory, the
// certificate of which the replica serves.
func requireConsistent(t *testing.T, p *webhookProcess, opts admission.Options) *corev1.Secret {
	t.Helper()
	secret := certSecret(t, opts.SecretName)
	for _, k := range []string{admission.KeyTLSCert, admission.KeyTLSKey, admission.KeyCACert, admission.KeyCAKey} {
		assert.NotEmpty(t, secret.Data[k], "Secret key %s", k)
	}
	for _, wh := range webhookConfiguration(t, opts.WebhookConfigurationName).Webhooks {
		assert.Equal(t, string(secret.Data[admission.KeyCACert]), string(wh.ClientConfig.CABundle), "caBundle of %s", wh.Name)
	}
	for _, k := range []string{admission.KeyTLSCert, admission.KeyTLSKey, admission.KeyCACert} {
		data, err := os.ReadFile(filepath.Join(p.certDir, k))
		require.NoError(t, err)
		assert.Equal(t, string(secret.Data[k]), string(data), "file %s", k)
	}
	block, _ := pem.Decode(secret.Data[admission.KeyTLSCert])
	require.NotNil(t, block)
	require.EventuallyWithT(t, func(c *assert.CollectT) { assert.Equal(c, block.Bytes, p.servedCertificate(c)) },
		30*time.Second, 100*time.Millisecond, "the webhook server never served the Secret's certificate")
	return secret
}

func TestBootstrapFromNothingGivesAWorkingWebhook(t *testing.T) {
	ctx := context.Background()
	opts := testOptions(t, "bootstrap")
	port := testenv.FreePort(t)
	installWebhookConfiguration(t, opts.WebhookConfigurationName, port)
	err := env.Client.Get(ctx, client.ObjectKey{Namespace: testNamespace, Name: opts.SecretName}, &corev1.Secret{})
	require.True(t, apierrors.IsNotFound(err), "no Secret before the start: %v", err)
	for _, wh := range webhookConfiguration(t, opts.WebhookConfigurationName).Webhooks {
		require.Empty(t, wh.ClientConfig.CABundle)
	}

	p := startWebhook(t, port, opts)
	p.waitReady(t)
	secret := requireConsistent(t, p, opts)
	assert.Equal(t, "tcr-assistant", secret.Labels["app.kubernetes.io/managed-by"])
	assert.Equal(t, corev1.SecretTypeTLS, secret.Type)

	// The serving certificate names the Service and the extra SAN, and chains to the bundle.
	block, _ := pem.Decode(secret.Data[admission.KeyTLSCert])
	leaf, err := x509.ParseCertificate(block.Bytes)
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{
		"tcr-assistant-webhook-service.tcr-assistant-system.svc",
		"tcr-assistant-webhook-service.tcr-assistant-system.svc.cluster.local",
	}, leaf.DNSNames)
	require.Len(t, leaf.IPAddresses, 1)
	assert.Equal(t, "127.0.0.1", leaf.IPAddresses[0].String())

	waitServing(t, "bootstrap")
}

func TestAnInstalledEmptySecretIsFilledInAndSurvivesAReapply(t *testing.T) {
	tests := map[string]struct {
		manifest string
	}{
		"a Secret with no type and no data": {manifest: `apiVersion: v1
kind: Secret
metadata: {name: %s, namespace: %s}
`},
		"a kubernetes.io/tls Secret with empty keys": {manifest: `apiVersion: v1
kind: Secret
metadata: {name: %s, namespace: %s}
type: kubernetes.io/tls
data: {tls.crt: "", tls.key: ""}
`},
	}
	i := 0
	for name, tc := range tests {
		i++
		t.Run(name, func(t *testing.T) {
			opts := testOptions(t, fmt.Sprintf("empty-secret-%d", i))
			port := testenv.FreePort(t)
			installWebhookConfiguration(t, opts.WebhookConfigurationName, port)
			ensureNamespace(t)
			bundled := fmt.Sprintf(tc.manifest, opts.SecretName, testNamespace)
			_, _, err := env.Kubectl(bundled, "apply", "-f", "-")
			require.NoError(t, err)
			installed := certSecret(t, opts.SecretName)
			require.Empty(t, installed.Data[admission.KeyTLSCert])

			p := startWebhook(t, port, opts)
			p.waitReady(t)
			filled := requireConsistent(t, p, opts)
			assert.Equal(t, installed.UID, filled.UID, "the installed Secret is updated, not replaced")
			assert.Equal(t, installed.Type, filled.Type, "the type of a Secret is immutable")
			waitServing(t, opts.WebhookConfigurationName)

			// Re-applying the bundle (an upgrade) never touches the CA, which the manifest does
			// not list: whatever kubectl does to tls.crt and tls.key, the next start serves a
			// certificate of the same CA, so caBundle does not change.
			p.stop()
			_, _, err = env.Kubectl(bundled, "apply", "-f", "-")
			require.NoError(t, err)
			reapplied := certSecret(t, opts.SecretName)
			assert.Equal(t, filled.Data[admission.KeyCACert], reapplied.Data[admission.KeyCACert])
			t.Logf("after the re-apply, tls.crt is %d bytes (was %d)", len(reapplied.Data[admission.KeyTLSCert]), len(filled.Data[admission.KeyTLSCert]))

			p = startWebhook(t, port, opts)
			p.waitReady(t)
			refilled := requireConsistent(t, p, opts)
			assert.Equal(t, filled.Data[admission.KeyCACert], refilled.Data[admission.KeyCACert], "same CA, so caBundle did not change")
			waitServing(t, opts.WebhookConfigurationName)
		})
	}
}

func TestReadinessWaitsForTheCABundle(t *testing.T) {
	opts := testOptions(t, "late-config")
	port := testenv.FreePort(t)
	p := startWebhook(t, port, opts)

	// The files are written before Setup returns, but without a webhook configuration there is
	// nowhere to inject the CA: not ready.
	for _, k := range []string{admission.KeyTLSCert, admission.KeyTLSKey} {
		_, err := os.Stat(filepath.Join(p.certDir, k))
		require.NoError(t, err)
	}
	err := p.ready(httptest.NewRequest(http.MethodGet, "/readyz", nil))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "caBundle not injected: ValidatingWebhookConfiguration late-config: webhook configuration not found")

	installWebhookConfiguration(t, opts.WebhookConfigurationName, port)
	p.waitReady(t)
	requireConsistent(t, p, opts)
	waitServing(t, "late-config")
}

func TestASecondStartReusesTheSecret(t *testing.T) {
	opts := testOptions(t, "restart")
	port := testenv.FreePort(t)
	installWebhookConfiguration(t, opts.WebhookConfigurationName, port)

	first := startWebhook(t, port, opts)
	first.waitReady(t)
	before := requireConsistent(t, first, opts)
	vwcBefore := webhookConfiguration(t, opts.WebhookConfigurationName)
	first.stop()

	second := startWebhook(t, port, opts)
	second.waitReady(t)
	after := requireConsistent(t, second, opts)
	assert.Equal(t, before.ResourceVersion, after.ResourceVersion, "the Secret was not written again")
	assert.Equal(t, before.Data, after.Data)
	assert.Equal(t, vwcBefore.ResourceVersion, webhookConfiguration(t, opts.WebhookConfigurationName).ResourceVersion,
		"the caBundle was not patched again")
	waitServing(t, "restart")
}

func TestReplicasStartingTogetherShareOneCertificate(t *testing.T) {
	opts := testOptions(t, "replicas")
	ports := []int{testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t)}
	installWebhookConfiguration(t, opts.WebhookConfigurationName, ports[0])

	replicas := make([]*webhookProcess, len(ports))
	var wg sync.WaitGroup
	for i, port := range ports {
		wg.Go(func() { replicas[i] = startWebhook(t, port, opts) })
	}
	wg.Wait()
	var secret *corev1.Secret
	for _, p := range replicas {
		p.waitReady(t)
		secret = requireConsistent(t, p, opts)
	}
	cas := 0
	for rest := secret.Data[admission.KeyCACert]; ; cas++ {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			break
		}
	}
	assert.Equal(t, 1, cas, "one CA, whoever won the race")
	waitServing(t, "replicas")
}

// TestRotationKeepsRequestsSucceeding runs a replica with lifetimes of seconds through serving
// certificate renewals, a CA renewal with its overlap, and the removal of the expired CA, while
// a client sends requests through the API server the whole time: not one may fail.
func TestRotationKeepsRequestsSucceeding(t *testing.T) {
	ctx := context.Background()
	opts := testOptions(t, "rotation")
	opts.CALifetime = 30 * time.Second     // renewed at 20 s, dropped at 30 s
	opts.CertLifetime = 12 * time.Second   // renewed at 8 s
	opts.RotationOverlap = 2 * time.Second // the serving certificate moves to a new CA 2 s after it
	opts.CheckPeriod = 250 * time.Millisecond
	port := testenv.FreePort(t)
	installWebhookConfiguration(t, opts.WebhookConfigurationName, port)
	p := startWebhook(t, port, opts)
	p.waitReady(t)
	waitServing(t, "rotation")

	var sent, failed atomic.Int64
	var firstFailure atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				err := env.Client.Create(ctx, goodIPS(fmt.Sprintf("rotation-%d-%d", w, i)), client.DryRunAll)
				sent.Add(1)
				if err != nil {
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, err.Error())
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}

	// Watch the Secret until the first CA has been renewed and then dropped, recording every CA
	// and serving certificate seen, in the Secret and on the wire.
	cas, certs, served := map[string]bool{}, map[string]bool{}, map[string]bool{}
	firstCA := ""
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		secret := certSecret(c, opts.SecretName)
		bundle := string(secret.Data[admission.KeyCACert])
		if firstCA == "" {
			firstCA = bundle
		}
		cas[bundle] = true
		certs[string(secret.Data[admission.KeyTLSCert])] = true
		served[string(p.servedCertificate(c))] = true
		block, _ := pem.Decode([]byte(firstCA))
		assert.GreaterOrEqual(c, len(cas), 3, "CAs seen")
		assert.False(c, bytes.Contains([]byte(bundle), pem.EncodeToMemory(block)), "the first CA is still in the bundle")
	}, 90*time.Second, 100*time.Millisecond, "the first CA was never renewed and dropped")
	// Keep the requests going past the drop, then stop them.
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()

	t.Logf("%d requests across the rotation, %d failed; %d CA bundles, %d serving certificates issued, %d served",
		sent.Load(), failed.Load(), len(cas), len(certs), len(served))
	assert.Zero(t, failed.Load(), "%d of %d requests failed across the rotation; the first: %v", failed.Load(), sent.Load(), firstFailure.Load())
	assert.Greater(t, sent.Load(), int64(100))
	assert.GreaterOrEqual(t, len(certs), 3, "serving certificates issued")
	assert.GreaterOrEqual(t, len(served), 3, "serving certificates served")
	requireConsistent(t, p, opts)
}

// TestChangesByOthersAreRepairedAtOnce runs a replica that would only poll hourly: a webhook
// configuration re-created without caBundle, and a Secret stripped of its serving certificate,
// are repaired through the watches within seconds.
func TestChangesByOthersAreRepairedAtOnce(t *testing.T) {
	ctx := context.Background()
	opts := testOptions(t, "repair")
	opts.CheckPeriod = time.Hour
	port := testenv.FreePort(t)
	installWebhookConfiguration(t, opts.WebhookConfigurationName, port)
	p := startWebhook(t, port, opts)
	p.waitReady(t)
	before := requireConsistent(t, p, opts)

	// Re-created, as by 'kubectl replace' or a delete and re-install: no caBundle.
	require.NoError(t, env.Client.Delete(ctx, webhookConfiguration(t, opts.WebhookConfigurationName)))
	installWebhookConfiguration(t, opts.WebhookConfigurationName, port)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		wh := webhookConfiguration(c, opts.WebhookConfigurationName).Webhooks[0]
		assert.Equal(c, before.Data[admission.KeyCACert], wh.ClientConfig.CABundle)
	}, 30*time.Second, 100*time.Millisecond, "the caBundle was not restored")
	waitServing(t, "repair")

	// The serving certificate removed from the Secret.
	stripServingCert(t, before, opts)
	after := requireConsistent(t, p, opts)
	assert.Equal(t, before.Data[admission.KeyCACert], after.Data[admission.KeyCACert], "same CA")
	assert.NotEqual(t, before.Data[admission.KeyTLSCert], after.Data[admission.KeyTLSCert], "new serving certificate")
	waitServing(t, "repair")
}

// TestTheGeneratedClusterRoleIsEnough runs a replica as a user holding only the ClusterRole
// generated from the +kubebuilder:rbac markers (config/rbac/role.yaml), with the production
// names of the Secret and the webhook configuration that the role's resourceNames allow.
func TestTheGeneratedClusterRoleIsEnough(t *testing.T) {
	ctx := context.Background()
	data, err := os.ReadFile(filepath.Join(env.Root, "config", "rbac", "role.yaml"))
	require.NoError(t, err)
	var role rbacv1.ClusterRole
	require.NoError(t, yaml.Unmarshal(data, &role))
	role.Name = "webhook-test-manager-role"
	require.NoError(t, env.Client.Create(ctx, &role))
	t.Cleanup(func() { _ = env.Client.Delete(ctx, &role) })
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "webhook-test-manager-rolebinding"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: "webhook-test-manager"}},
	}
	require.NoError(t, env.Client.Create(ctx, binding))
	t.Cleanup(func() { _ = env.Client.Delete(ctx, binding) })
	userConfig, err := env.AddUser("webhook-test-manager")
	require.NoError(t, err)

	opts := testOptions(t, "rbac")
	opts.SecretName, opts.WebhookConfigurationName = admission.DefaultSecretName, admission.DefaultWebhookConfigurationName
	opts.MutatingWebhookConfigurationName = admission.DefaultMutatingWebhookConfigurationName
	t.Cleanup(func() {
		secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: testNamespace, Name: opts.SecretName}}
		require.NoError(t, client.IgnoreNotFound(env.Client.Delete(ctx, secret)))
	})
	opts.CheckPeriod = time.Hour // only the watches can see the change below
	port := testenv.FreePort(t)
	installWebhookConfiguration(t, opts.WebhookConfigurationName, port)
	mwc := mutatingConfigurationFromManifest(t)
	url := fmt.Sprintf("https://127.0.0.1:%d%s", port, admission.ServiceAccountPath)
	mwc.Webhooks[0].ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &url}
	// Called for no namespace: this test's replica serves no ServiceAccount mutation.
	mwc.Webhooks[0].NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"tcr-test/none": "none"}}
	require.NoError(t, env.Client.Create(ctx, mwc))
	t.Cleanup(func() { _ = env.Client.Delete(ctx, mwc) })
	p := startWebhookAs(t, userConfig, port, opts)
	p.waitReady(t)
	before := requireConsistent(t, p, opts)
	waitServing(t, "rbac")
	// The CA went into the mutating configuration too (get, patch).
	mutatingCA := func(c require.TestingT) []byte {
		require.NoError(c, env.Client.Get(ctx, client.ObjectKeyFromObject(mwc), mwc))
		return mwc.Webhooks[0].ClientConfig.CABundle
	}
	require.EventuallyWithT(t, func(c *assert.CollectT) { assert.Equal(c, before.Data[admission.KeyCACert], mutatingCA(c)) },
		30*time.Second, 100*time.Millisecond, "the CA never reached the MutatingWebhookConfiguration")

	// The watches are allowed too: a stripped Secret is repaired without waiting for a poll.
	stripServingCert(t, before, opts)
	// And so is the mutating configuration's (list, watch): a stripped caBundle comes back.
	mwc.Webhooks[0].ClientConfig.CABundle = nil
	require.NoError(t, env.Client.Update(ctx, mwc))
	require.EventuallyWithT(t, func(c *assert.CollectT) { assert.NotEmpty(c, mutatingCA(c)) },
		30*time.Second, 100*time.Millisecond, "the mutating configuration's caBundle was not restored")
}

// stripServingCert empties tls.crt in the certificate Secret, last seen as before, and waits
// for the provisioner to reissue it.
func stripServingCert(t *testing.T, before *corev1.Secret, opts admission.Options) {
	t.Helper()
	stripped := before.DeepCopy()
	stripped.Data[admission.KeyTLSCert] = []byte{}
	require.NoError(t, env.Client.Update(context.Background(), stripped))
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.NotEmpty(c, certSecret(c, opts.SecretName).Data[admission.KeyTLSCert])
	}, 30*time.Second, 100*time.Millisecond, "the serving certificate was not reissued")
}
