//go:build node

package node

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
	"github.com/tcr-assistant/tcr-assistant/internal/testregistry"
)

// A private CA on the node (README, "Private CAs"): the bundle rendered with the kustomize
// component config/components/private-ca mounts ConfigMap tcr-assistant-ca into the manager and
// passes it as --registry-ca-file and --tcr-api-ca-file. The helpers below fit into
// TestTheBundle, so that no second install of the bundle is needed:
//
//	caReg := startReachableRegistry(t, password) // before installBundle
//	installCA(t, caReg.CAPEM)                     // the ConfigMap first, as the README says
//	... install the file renderWithCA(t, img1) instead of render(t, img1) ...
//	t.Run("private CA", func(t *testing.T) { caTrusted(t, c, caReg, password) })
//
// and the upgrade in place re-applies renderWithCA(t, img2), or it would take the CA away.

const (
	// caConfigMap and caKey are what the component mounts, in the namespace system.
	caConfigMap = "tcr-assistant-ca"
	caKey       = "ca.crt"
	// privateCAComponent is the component, relative to the repository's root.
	privateCAComponent = "config/components/private-ca"
)

// installCA creates ConfigMap tcr-assistant-ca in tcr-assistant-system with pemData as its key
// ca.crt, or replaces its data, as 'kubectl create configmap tcr-assistant-ca -n
// tcr-assistant-system --from-file=ca.crt=my-ca.pem' does. It creates the namespace when the
// bundle has not yet (the bundle's apply then takes it over), so that the manager's pod finds the
// ConfigMap at its first start; the manager's pod does not start without it.
func installCA(t *testing.T, pemData []byte) {
	t.Helper()
	ctx := context.Background()
	_, c := admin(t)
	require.NoError(t, client.IgnoreAlreadyExists(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: system}})))
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: system, Name: caConfigMap}}
	err := c.Get(ctx, client.ObjectKeyFromObject(cm), cm)
	cm.Data = map[string]string{caKey: string(pemData)}
	switch {
	case apierrors.IsNotFound(err):
		require.NoError(t, c.Create(ctx, cm))
	default:
		require.NoError(t, err)
		require.NoError(t, c.Update(ctx, cm))
	}
	t.Cleanup(func() {
		// Gone with the bundle's namespace, usually.
		_ = client.IgnoreNotFound(c.Delete(context.Background(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: system, Name: caConfigMap}}))
	})
}

// overlay is what the node suite adds to the bundle, as a user's own kustomization would:
// components, args of the manager, and replacements in the credential provider's DaemonSet
// ("JSON pointer=value").
type overlay struct {
	components  []string
	managerArgs []string
	provider    []string
}

// renderWithCA renders the bundle for img ('make build-installer', render) with the component
// config/components/private-ca and the overlay o, through an overlay of the rendered file
// ('kubectl kustomize'), and returns the file.
func renderWithCA(t *testing.T, img string, o overlay) string {
	t.Helper()
	bundle := render(t, img)
	dir := t.TempDir()
	data, err := os.ReadFile(bundle)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "install.yaml"), data, 0o644))
	kustomization := "resources:\n- install.yaml\ncomponents:\n"
	for _, c := range append([]string{privateCAComponent}, o.components...) {
		rel, err := filepath.Rel(dir, filepath.Join(repoRoot(t), c))
		require.NoError(t, err)
		kustomization += "- " + rel + "\n"
	}
	kustomization += "patches:\n"
	if len(o.managerArgs) > 0 {
		kustomization += "- target: {kind: Deployment, name: " + manager + "}\n  patch: |\n"
		for _, a := range o.managerArgs {
			kustomization += "    - {op: add, path: /spec/template/spec/containers/0/args/-, value: \"" + a + "\"}\n"
		}
	}
	if len(o.provider) > 0 {
		kustomization += "- target: {kind: DaemonSet, name: tcr-credential-provider}\n  patch: |\n"
		for _, r := range o.provider {
			path, value, _ := strings.Cut(r, "=")
			kustomization += "    - {op: replace, path: " + path + ", value: \"" + value + "\"}\n"
		}
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(kustomization), 0o644))
	file := filepath.Join(t.TempDir(), "install.yaml")
	require.NoError(t, os.WriteFile(file, []byte(kubectl(t, "kustomize", dir)), 0o644))
	return file
}

// startReachableRegistry starts a registry with the test user on the node's IP, which Pods reach
// (a registry on the namespace's loopback, startRegistry's, is Unreachable from the manager's
// Pod). containerd is not told of its CA: it is for the manager's credential check, not pulls.
func startReachableRegistry(t *testing.T, password string) *testregistry.Registry {
	t.Helper()
	return testregistry.Start(t, testregistry.Options{Addr: nodeIP + ":0", Users: map[string]string{user: password}})
}

// caTrusted proves, with the bundle installed by renderWithCA and installCA(t, trusted.CAPEM),
// that the manager trusts the CA of the ConfigMap: the credential check of a rule against trusted
// (a startReachableRegistry with user and password) is Accepted, while that of a rule against a
// registry of another CA on the same address is TLSError, so it is the CA that differs and not
// the reach. The rules are deleted when the test ends (TestTheBundle's deleteRules waits for it).
func caTrusted(t *testing.T, c client.Client, trusted *testregistry.Registry, password string) {
	t.Helper()
	ctx := context.Background()
	untrusted := startReachableRegistry(t, password)
	rules := map[string]*testregistry.Registry{"node-ca-trusted": trusted, "node-ca-untrusted": untrusted}
	for name, reg := range rules {
		ips := &tcrv1.ImagePullSecret{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: tcrv1.ImagePullSecretSpec{
			Namespaces: "node-ca", ServiceAccounts: "*",
			Docker: tcrv1.DockerCredential{Server: reg.Host, Username: user, Password: password}}}
		require.NoError(t, c.Create(ctx, ips))
		t.Cleanup(func() { _ = c.Delete(context.Background(), ips) })
	}
	verified := func(name string, status metav1.ConditionStatus, reason, message string) {
		t.Helper()
		require.EventuallyWithT(t, func(ct *assert.CollectT) {
			ips := &tcrv1.ImagePullSecret{}
			require.NoError(ct, c.Get(ctx, client.ObjectKey{Name: name}, ips))
			cond := meta.FindStatusCondition(ips.Status.Conditions, tcrv1.ConditionCredentialVerified)
			require.NotNil(ct, cond, "no condition %s yet", tcrv1.ConditionCredentialVerified)
			assert.Equal(ct, status, cond.Status)
			assert.Equal(ct, reason, cond.Reason)
			assert.Equal(ct, message, cond.Message)
		}, timeout, tick, "rule %s: CredentialVerified never %s %s", name, status, reason)
	}
	verified("node-ca-trusted", metav1.ConditionTrue, tcrv1.ReasonAccepted, "registry "+trusted.Host+" accepted the credential")
	assert.NotZero(t, trusted.TokenRequests(), "the manager never reached the token service of %s", trusted.Host)
	verified("node-ca-untrusted", metav1.ConditionUnknown, tcrv1.ReasonTLSError,
		"registry "+untrusted.Host+" presented a certificate signed by an unknown authority (add its CA with --registry-ca-file)")
	assert.Zero(t, untrusted.TokenRequests(), "the credential went to a registry whose certificate is not trusted")
}
