package e2e

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

const metricsReaderRole = "tcr-assistant-metrics-reader"

// tokenFor creates ServiceAccount sa in the own namespace unless it exists, and returns a token
// for it from the TokenRequest API.
func tokenFor(t *testing.T, sa string) string {
	t.Helper()
	ctx := context.Background()
	obj := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ownNamespace, Name: sa}}
	require.NoError(t, client.IgnoreAlreadyExists(env.Client.Create(ctx, obj)))
	cs, err := kubernetes.NewForConfig(env.Config)
	require.NoError(t, err)
	tr, err := cs.CoreV1().ServiceAccounts(ownNamespace).CreateToken(ctx, sa,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}},
		metav1.CreateOptions{})
	require.NoError(t, err)
	require.NotEmpty(t, tr.Status.Token)
	return tr.Status.Token
}

// flagValue returns the value of the last --name=value in args: the one the binary uses.
func flagValue(t *testing.T, args []string, name string) string {
	t.Helper()
	value, found := "", false
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			value, found = v, true
		}
	}
	require.True(t, found, "no --%s in %q", name, args)
	return value
}

// scrape GETs url with the bearer token (none when empty) and returns the status and the body.
// The certificate is the manager's self-signed one, so it is not verified: what is tested here is
// who may read, not the server's identity.
func scrape(t *testing.T, url, token string) (int, string) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

func TestMetricsAreServedOnlyToATokenBoundToTheReaderRole(t *testing.T) {
	ctx := context.Background()
	installBundle(t)
	removeWebhook(t)

	args, probePort := managerArgs(t, kubeconfigFor(t, managerSA))
	manager := start(t, binary(t, "manager"), append(args, "--enable-webhook=false")...)
	// The probes stay plain HTTP, for the kubelet: waitHealthy speaks http://.
	waitHealthy(t, manager, probePort, "/readyz")
	addr := flagValue(t, args, "metrics-bind-address")
	url := "https://" + addr + "/metrics"
	// The metrics server starts next to the probes' and first makes its certificate, so it may
	// listen a moment after /readyz answers.
	require.Eventually(t, func() bool {
		conn, err := net.Dial("tcp", addr)
		if err == nil {
			_ = conn.Close()
		}
		return err == nil
	}, waitTimeout, waitInterval, "the metrics server never listened on %s", addr)

	// A scraper allowed to read the metrics, through the bundle's ClusterRole only.
	reader := tokenFor(t, "e2e-metrics-reader")
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e-metrics-reader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: metricsReaderRole},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ownNamespace, Name: "e2e-metrics-reader"}},
	}
	require.NoError(t, client.IgnoreAlreadyExists(env.Client.Create(ctx, crb)))
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), crb) })

	t.Run("plain HTTP is not served", func(t *testing.T) {
		resp, err := http.Get("http://" + addr + "/metrics")
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		_ = resp.Body.Close()
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
		assert.Equal(t, "Client sent an HTTP request to an HTTPS server.\n", string(body))
	})

	t.Run("an anonymous scrape is refused", func(t *testing.T) {
		status, body := scrape(t, url, "")
		assert.Equal(t, http.StatusUnauthorized, status)
		assert.Equal(t, "Unauthorized\n", body)
	})

	t.Run("a token the API server does not know is refused", func(t *testing.T) {
		status, body := scrape(t, url, "not-a-token")
		assert.Equal(t, http.StatusUnauthorized, status)
		assert.Equal(t, "Unauthorized\n", body)
	})

	t.Run("a valid token without the reader role is refused", func(t *testing.T) {
		status, body := scrape(t, url, tokenFor(t, "e2e-metrics-stranger"))
		assert.Equal(t, http.StatusForbidden, status)
		assert.Equal(t, "Authorization denied for user system:serviceaccount:"+ownNamespace+":e2e-metrics-stranger\n", body)
	})

	t.Run("a token bound to the reader role is served the metrics", func(t *testing.T) {
		status, body := scrape(t, url, reader)
		require.Equal(t, http.StatusOK, status, body)
		assert.Contains(t, body, "\ncontroller_runtime_reconcile_total{")
		assert.Contains(t, body, "\nrest_client_requests_total{")
	})

	// The TokenReviews and SubjectAccessReviews above ran under the manager's ServiceAccount: a
	// missing permission would have answered 500 and logged "forbidden".
	manager.Stop()
	assert.Empty(t, forbiddenLines(manager.Output()), "the manager's RBAC is not sufficient")
}
