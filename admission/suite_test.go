package admission_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/yaml"

	"github.com/tcr-assistant/tcr-assistant/admission"
	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
	"github.com/tcr-assistant/tcr-assistant/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	// Managers started by the tests log through their own testLogger; this covers what
	// controller-runtime logs outside them, which would otherwise print a warning with a stack.
	ctrllog.SetLogger(testLogger())
	os.Exit(testenv.Main(m, &env, func() { stopController() }))
}

// testNamespace plays tcr-assistant-system; each test names its own Secret and webhook
// configuration, so that tests never share certificate state.
const testNamespace = "tcr-assistant-system"

// webhookProcess is one replica of the manager's webhook part: a controller-runtime manager
// whose webhook server listens on 127.0.0.1:port, set up by admission.Setup.
type webhookProcess struct {
	port    int
	certDir string
	ready   healthz.Checker
	stop    func()
}

// testOptions names the test's own Secret and webhook configuration, and adds the IP SAN
// 127.0.0.1 that a URL-based webhook configuration needs. The Secret is deleted when the test
// ends, so that a rerun (-count) starts from nothing again.
func testOptions(t testing.TB, name string) admission.Options {
	t.Cleanup(func() {
		secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: testNamespace, Name: name + "-cert"}}
		require.NoError(t, client.IgnoreNotFound(env.Client.Delete(context.Background(), secret)))
	})
	return admission.Options{
		Namespace:                testNamespace,
		ExtraSANs:                []string{"127.0.0.1"},
		SecretName:               name + "-cert",
		WebhookConfigurationName: name,
		// Never the bundle's name: a test's replicas must not write another test's configuration.
		MutatingWebhookConfigurationName: name + "-mutating",
		CheckPeriod:                      500 * time.Millisecond,
		BootstrapTimeout:                 time.Minute,
	}
}

// ensureNamespace creates the controller's namespace once per control plane.
func ensureNamespace(t testing.TB) {
	t.Helper()
	err := env.Client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: testNamespace}})
	if !apierrors.IsAlreadyExists(err) {
		require.NoError(t, err)
	}
}

// testLogger logs to standard error when TEST_LOG is set, and nowhere otherwise: managers log
// from goroutines that may outlive a test's t.Log.
func testLogger() logr.Logger {
	if os.Getenv("TEST_LOG") != "" {
		return funcr.New(func(prefix, args string) { fmt.Fprintln(os.Stderr, time.Now().Format("15:04:05.000"), prefix, args) }, funcr.Options{})
	}
	return logr.Discard()
}

// startWebhook starts a replica on port with opts, as cmd/manager would, and stops it when the
// test ends. It does not wait for readiness.
func startWebhook(t testing.TB, port int, opts admission.Options) *webhookProcess {
	t.Helper()
	return startWebhookAs(t, env.Config, port, opts)
}

// startWebhookAs is startWebhook with the identity of cfg.
func startWebhookAs(t testing.TB, cfg *rest.Config, port int, opts admission.Options) *webhookProcess {
	t.Helper()
	ensureNamespace(t)
	certDir := t.TempDir()
	opts.CertDir = certDir
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 env.Scheme,
		Logger:                 testLogger(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		WebhookServer:          webhook.NewServer(webhook.Options{Host: "127.0.0.1", Port: port, CertDir: certDir}),
	})
	require.NoError(t, err)
	ready, err := admission.Setup(mgr, opts)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	p := &webhookProcess{port: port, certDir: certDir, ready: ready}
	stopped := false
	p.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(time.Minute):
			t.Error("the manager did not stop within a minute")
		}
	}
	t.Cleanup(p.stop)
	return p
}

// waitReady waits until the replica's readiness check passes.
func (p *webhookProcess) waitReady(t testing.TB) {
	t.Helper()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.NoError(c, p.ready(httptest.NewRequest(http.MethodGet, "/readyz", nil)))
	}, time.Minute, 100*time.Millisecond, "the webhook never became ready")
}

// servedCertificate returns the certificate the replica presents in a TLS handshake.
func (p *webhookProcess) servedCertificate(t require.TestingT) []byte {
	conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", p.port), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // We read the certificate, we do not trust it.
	require.NoError(t, err)
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].Raw
}

// installWebhookConfiguration creates the webhook configuration from the generated
// config/webhook/manifests.yaml, renamed to name and with every clientConfig rewritten from the
// Service to https://127.0.0.1:port (the URL-based test overlay), with no caBundle. It is
// deleted when the test ends, so that no later test meets a webhook that is gone.
func installWebhookConfiguration(t testing.TB, name string, port int) {
	t.Helper()
	vwc := webhookConfigurationFromManifest(t)
	require.Equal(t, admission.DefaultWebhookConfigurationName, vwc.Name)
	vwc.Name = name
	for i := range vwc.Webhooks {
		svc := vwc.Webhooks[i].ClientConfig.Service
		require.NotNil(t, svc)
		url := fmt.Sprintf("https://127.0.0.1:%d%s", port, *svc.Path)
		vwc.Webhooks[i].ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &url}
	}
	ctx := context.Background()
	require.NoError(t, env.Client.Create(ctx, vwc))
	t.Cleanup(func() {
		require.NoError(t, client.IgnoreNotFound(env.Client.Delete(ctx, vwc)))
	})
}

// webhookConfigurationFromManifest reads the ValidatingWebhookConfiguration of the generated
// config/webhook/manifests.yaml.
func webhookConfigurationFromManifest(t testing.TB) *admissionregistrationv1.ValidatingWebhookConfiguration {
	t.Helper()
	var vwc admissionregistrationv1.ValidatingWebhookConfiguration
	require.NoError(t, yaml.UnmarshalStrict(manifestDocument(t, "ValidatingWebhookConfiguration"), &vwc))
	return &vwc
}

// mutatingConfigurationFromManifest reads the MutatingWebhookConfiguration of the generated
// config/webhook/manifests.yaml.
func mutatingConfigurationFromManifest(t testing.TB) *admissionregistrationv1.MutatingWebhookConfiguration {
	t.Helper()
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	require.NoError(t, yaml.UnmarshalStrict(manifestDocument(t, "MutatingWebhookConfiguration"), &mwc))
	return &mwc
}

// manifestDocument returns the one document of config/webhook/manifests.yaml of the given kind.
func manifestDocument(t testing.TB, kind string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(env.Root, "config", "webhook", "manifests.yaml"))
	require.NoError(t, err)
	var found []byte
	for _, doc := range strings.Split(string(data), "\n---\n") {
		if strings.Contains(doc, "\nkind: "+kind+"\n") {
			require.Nil(t, found, "two %s documents in manifests.yaml", kind)
			found = []byte(strings.TrimPrefix(doc, "---\n"))
		}
	}
	require.NotNil(t, found, "no %s in manifests.yaml", kind)
	return found
}

// webhookConfiguration reads the test's webhook configuration.
func webhookConfiguration(t require.TestingT, name string) *admissionregistrationv1.ValidatingWebhookConfiguration {
	var vwc admissionregistrationv1.ValidatingWebhookConfiguration
	require.NoError(t, env.Client.Get(context.Background(), client.ObjectKey{Name: name}, &vwc))
	return &vwc
}

// certSecret reads the test's certificate Secret.
func certSecret(t require.TestingT, name string) *corev1.Secret {
	var s corev1.Secret
	require.NoError(t, env.Client.Get(context.Background(), client.ObjectKey{Namespace: testNamespace, Name: name}, &s))
	return &s
}

// goodIPS is the original documentation's sample under another name.
func goodIPS(name string) *tcrv1.ImagePullSecret {
	return &tcrv1.ImagePullSecret{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: tcrv1.ImagePullSecretSpec{
			Namespaces:      "*",
			ServiceAccounts: "*",
			Docker: tcrv1.DockerCredential{
				Server:   "fanjiankong-bj.tencentcloudcr.com",
				Username: "100012345678",
				Password: "not-a-real-token",
			},
		},
	}
}

// webhookRefusal is an ImagePullSecret only the webhook refuses (the CRD schema admits it), and
// the message it refuses it with: a dry run of it proves that the API server calls the webhook.
func webhookRefusal(name string) (*tcrv1.ImagePullSecret, string) {
	ips := goodIPS(name)
	ips.Spec.Namespaces = "team-*"
	return ips, `admission webhook "vimagepullsecret.tcr.tencentcloudcr.com" denied the request: ImagePullSecret.tcr.tencentcloudcr.com "` +
		name + `" is invalid: spec.namespaces: Invalid value: "team-*": is a pattern, and patterns are not supported`
}

// waitServing waits until the API server calls the webhook over TLS: a CR only the webhook
// refuses is refused with the webhook's message, and a good one is admitted.
func waitServing(t testing.TB, name string) {
	t.Helper()
	ctx := context.Background()
	bad, want := webhookRefusal("probe-" + name)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		err := env.Client.Create(ctx, bad.DeepCopy(), client.DryRunAll)
		if assert.Error(c, err) {
			assert.Contains(c, err.Error(), want)
		}
	}, time.Minute, 200*time.Millisecond, "the API server never got the webhook's refusal")
	require.NoError(t, env.Client.Create(ctx, goodIPS("probe-"+name), client.DryRunAll))
}
