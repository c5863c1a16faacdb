//go:build node

package node

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
	"github.com/tcr-assistant/tcr-assistant/internal/testregistry"
)

// Secretless pulls (issue 25): the bundle with the credential-provider component, whose
// DaemonSet puts the plugin, the manager's CA and a CredentialProviderConfig into providerDir;
// the kubelet restarted with the two flags an administrator adds; a rule with delivery
// CredentialProvider.

// providerCache is the manager's --credential-provider-cache-duration in the node suite.
const providerCache = 30 * time.Second

func providerDir() string { return filepath.Join(nodeDir(), "credential-provider") }

// providerPatches points the component's DaemonSet at providerDir and at reg, for renderWithCA.
func providerPatches(reg *testregistry.Registry) []string {
	d := providerDir()
	return []string{
		"/spec/template/spec/containers/0/args/3=--host-bin-dir=" + d + "/bin",
		"/spec/template/spec/containers/0/args/4=--host-config-dir=" + d,
		"/spec/template/spec/containers/0/args/8=--match-images=" + reg.Host,
		"/spec/template/spec/volumes/0/hostPath/path=" + d + "/bin",
		"/spec/template/spec/volumes/1/hostPath/path=" + d,
	}
}

// secretlessPulls is the subtest of TestTheBundle: reg asks for user and password.
func secretlessPulls(t *testing.T, c client.Client, cs kubernetes.Interface, reg *testregistry.Registry, password string) {
	ctx := context.Background()
	kubectl(t, "-n", system, "rollout", "status", "daemonset/tcr-credential-provider", "--timeout=120s")
	config := filepath.Join(providerDir(), "credential-provider-config.yaml")
	require.Eventually(t, func() bool {
		_, err := os.Stat(config)
		return err == nil
	}, timeout, tick, "the DaemonSet never wrote %s", config)
	run(t, filepath.Join(repoRoot(t), "hack", "node", "node.sh"), "restart-kubelet", nodeDir(),
		"--image-credential-provider-config="+config, "--image-credential-provider-bin-dir="+filepath.Join(providerDir(), "bin"))

	app := privateImage(t, reg, password)
	const ns = "pull-secretless"
	ips := &tcrv1.ImagePullSecret{ObjectMeta: metav1.ObjectMeta{Name: "node-secretless"}, Spec: tcrv1.ImagePullSecretSpec{
		Namespaces: ns, ServiceAccounts: "app,app2", Delivery: tcrv1.DeliveryCredentialProvider,
		Docker: tcrv1.DockerCredential{Server: reg.Host, Username: user, Password: password}}}
	require.NoError(t, c.Create(ctx, ips))
	t.Cleanup(func() { _ = c.Delete(context.Background(), ips) })
	require.NoError(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	t.Cleanup(func() { _ = c.Delete(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}) })
	for _, sa := range []string{"app", "app2", "other", "gone"} {
		require.NoError(t, c.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sa}}))
	}
	pod := func(name, sa string) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.PodSpec{
			ServiceAccountName: sa, AutomountServiceAccountToken: ptr.To(false), TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []corev1.Container{{Name: "app", Image: app, ImagePullPolicy: corev1.PullAlways}}}}
		require.NoError(t, c.Create(ctx, p))
		return p
	}
	phase := func(name string, want corev1.PodPhase, within time.Duration) {
		t.Helper()
		require.EventuallyWithT(t, func(ct *assert.CollectT) {
			p := &corev1.Pod{}
			if assert.NoError(ct, c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, p)) {
				assert.Equal(ct, want, p.Status.Phase)
				assert.Empty(ct, p.Spec.ImagePullSecrets)
			}
		}, within, tick, "Pod %s never %s", name, want)
	}
	refused := func(name string) {
		t.Helper()
		require.EventuallyWithT(t, func(ct *assert.CollectT) {
			p := &corev1.Pod{}
			if !assert.NoError(ct, c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, p)) || !assert.Len(ct, p.Status.ContainerStatuses, 1) ||
				!assert.NotNil(ct, p.Status.ContainerStatuses[0].State.Waiting) {
				return
			}
			w := p.Status.ContainerStatuses[0].State.Waiting
			assert.Contains(ct, []string{"ErrImagePull", "ImagePullBackOff"}, w.Reason)
			assert.Contains(ct, w.Message, "401 Unauthorized", "the kubelet's message")
		}, timeout, tick, "Pod %s was not refused by the registry", name)
	}

	t.Run("a selected ServiceAccount pulls with no copy in its namespace", func(t *testing.T) {
		start := time.Now()
		pod("first", "app")
		phase("first", corev1.PodRunning, 2*timeout)
		t.Logf("Running %s after its creation", time.Since(start).Round(time.Millisecond))
		secrets := &corev1.SecretList{}
		require.NoError(t, c.List(ctx, secrets, client.InNamespace(ns)))
		for _, s := range secrets.Items {
			assert.NotEqual(t, corev1.SecretTypeDockerConfigJson, s.Type, "a pull Secret in the namespace: %s", s.Name)
		}
		for _, name := range []string{"app", "app2"} {
			sa := &corev1.ServiceAccount{}
			require.NoError(t, c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, sa))
			assert.Empty(t, sa.ImagePullSecrets)
		}
		require.EventuallyWithT(t, func(ct *assert.CollectT) {
			require.NoError(ct, c.Get(ctx, client.ObjectKeyFromObject(ips), ips))
			assert.Equal(ct, int32(1), ips.Status.ServiceAccountsServed)
			assert.Equal(ct, [2]int32{0, 0}, [2]int32{ips.Status.SecretsDesired, ips.Status.SAsDesired})
		}, timeout, tick)
	})

	t.Run("a ServiceAccount no rule selects is refused by the registry", func(t *testing.T) {
		pod("other", "other")
		refused("other")
	})

	t.Run("the endpoint refuses forged, foreign and orphaned tokens", func(t *testing.T) {
		endpointRefusals(t, c, cs, ns)
	})

	t.Run("a rotation is served within the cache duration", func(t *testing.T) {
		rotated := password + "-secretless"
		reg.SetPassword(t, user, rotated)
		require.NoError(t, c.Get(ctx, client.ObjectKeyFromObject(ips), ips))
		ips.Spec.Docker.Password = rotated
		require.NoError(t, c.Update(ctx, ips))
		start := time.Now()
		pod("rotated", "app")
		// The kubelet's cache of the old password lasts at most providerCache; then its image
		// pull back-off (10 s, then 20 s) brings the next try.
		phase("rotated", corev1.PodRunning, providerCache+time.Minute)
		t.Logf("Running %s after the rotation (cache %s)", time.Since(start).Round(time.Millisecond), providerCache)
	})

	t.Run("with the manager stopped, the kubelet's cache serves and a new ServiceAccount fails cleanly", func(t *testing.T) {
		// Fill the cache of app with the current credential, then stop the manager at once.
		pod("warm", "app")
		phase("warm", corev1.PodRunning, providerCache)
		kubectl(t, "-n", system, "scale", "deployment/"+manager, "--replicas=0")
		t.Cleanup(func() {
			kubectl(t, "-n", system, "scale", "deployment/"+manager, "--replicas=1")
			kubectl(t, "-n", system, "rollout", "status", "deployment/"+manager, "--timeout=180s")
		})
		kubectl(t, "-n", system, "wait", "--for=delete", "pod", "-l", "control-plane=controller-manager", "--timeout=60s")
		pod("cached", "app")
		phase("cached", corev1.PodRunning, providerCache)
		pod("uncached", "app2")
		refused("uncached")
	})
}

// endpointRefusals asks the manager's credential endpoint directly, at its Service's ClusterIP
// with the webhook's CA, as the plugin does: a token for the audience is served; a forged one,
// one for another audience and one of a deleted ServiceAccount are refused.
func endpointRefusals(t *testing.T, c client.Client, cs kubernetes.Interface, ns string) {
	ctx := context.Background()
	svc := &corev1.Service{}
	require.NoError(t, c.Get(ctx, client.ObjectKey{Namespace: system, Name: "tcr-assistant-webhook-service"}, svc))
	cert := &corev1.Secret{}
	require.NoError(t, c.Get(ctx, client.ObjectKey{Namespace: system, Name: "tcr-assistant-webhook-server-cert"}, cert))
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(cert.Data["ca.crt"]))
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: pool, ServerName: "tcr-assistant-webhook-service." + system + ".svc", MinVersion: tls.VersionTLS12}}}
	image := ""
	ips := &tcrv1.ImagePullSecret{}
	require.NoError(t, c.Get(ctx, client.ObjectKey{Name: "node-secretless"}, ips))
	image = ips.Spec.Docker.Server + "/private/app:1"
	ask := func(token string) (int, map[string]any) {
		t.Helper()
		body, _ := json.Marshal(map[string]string{"image": image})
		req, err := http.NewRequest(http.MethodPost, "https://"+svc.Spec.ClusterIP+":443/credential-provider/v1", bytes.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		out := map[string]any{}
		require.NoError(t, json.Unmarshal(data, &out), "%s", data)
		return resp.StatusCode, out
	}
	token := func(sa, audience string) string {
		tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
			Spec: authenticationv1.TokenRequestSpec{Audiences: []string{audience}, ExpirationSeconds: ptr.To[int64](600)}}, metav1.CreateOptions{})
		require.NoError(t, err)
		return tr.Status.Token
	}
	const unauthenticated = "the token is not a valid ServiceAccount token for the audience " + tcrv1.CredentialProviderAudience

	good := token("app", tcrv1.CredentialProviderAudience)
	status, out := ask(good)
	require.Equal(t, http.StatusOK, status, "%v", out)
	assert.Equal(t, ips.Spec.Docker.Server, out["registry"])
	assert.Equal(t, user, out["username"])

	status, out = ask(token("app", "https://kubernetes.default.svc"))
	assert.Equal(t, [2]any{http.StatusUnauthorized, unauthenticated}, [2]any{status, out["message"]})

	parts := strings.Split(good, ".")
	require.Len(t, parts, 3)
	forged := parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2]))
	status, out = ask(forged)
	assert.Equal(t, [2]any{http.StatusUnauthorized, unauthenticated}, [2]any{status, out["message"]})

	orphan := token("gone", tcrv1.CredentialProviderAudience)
	require.NoError(t, c.Delete(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "gone"}}))
	require.Eventually(t, func() bool {
		err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "gone"}, &corev1.ServiceAccount{})
		return apierrors.IsNotFound(err)
	}, timeout, tick)
	// The API server itself accepts a deleted ServiceAccount's token for a few seconds; asked
	// after that, the endpoint refuses it.
	require.Eventually(t, func() bool {
		tr, err := cs.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{
			Spec: authenticationv1.TokenReviewSpec{Token: orphan, Audiences: []string{tcrv1.CredentialProviderAudience}}}, metav1.CreateOptions{})
		return err == nil && !tr.Status.Authenticated
	}, time.Minute, time.Second, "the API server kept accepting the token of a deleted ServiceAccount")
	status, out = ask(orphan)
	assert.Equal(t, [2]any{http.StatusUnauthorized, unauthenticated}, [2]any{status, out["message"]})
}
