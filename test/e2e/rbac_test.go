package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
	"github.com/tcr-assistant/tcr-assistant/internal/testenv"
)

// permission is one 'kubectl auth can-i' question and its expected answer.
type permission struct {
	verb, resource, namespace string
	allowed                   bool
}

func TestManagerPermissionsAreMinimal(t *testing.T) {
	installBundle(t)
	user := serviceAccountUser(managerSA)
	cases := map[string]permission{
		// What the controller needs.
		"it lists namespaces":                           {"list", "namespaces", "", true},
		"it watches namespaces":                         {"watch", "namespaces", "", true},
		"it lists ServiceAccounts in every namespace":   {"list", "serviceaccounts", "", true},
		"it watches ServiceAccounts in every namespace": {"watch", "serviceaccounts", "", true},
		"it patches ServiceAccounts":                    {"patch", "serviceaccounts", "kube-system", true},
		"it creates Secrets in target namespaces":       {"create", "secrets", "default", true},
		"it watches ImagePullSecrets":                   {"watch", "imagepullsecrets.tcr.tencentcloudcr.com", "", true},
		"it reads its own webhook configuration":        {"get", "validatingwebhookconfigurations/" + webhookConfig, "", true},
		"it patches its own webhook configuration":      {"patch", "validatingwebhookconfigurations/" + webhookConfig, "", true},
		"it patches its own mutating configuration":     {"patch", "mutatingwebhookconfigurations/" + mutatingConfig, "", true},
		"it updates its own certificate Secret":         {"update", "secrets/" + certSecret, ownNamespace, true},
		"it creates its leader election Lease":          {"create", "leases.coordination.k8s.io", ownNamespace, true},
		"it renews its leader election Lease":           {"update", "leases.coordination.k8s.io/tcr-assistant-leader", ownNamespace, true},
		"it may not renew someone else's Lease":         {"update", "leases.coordination.k8s.io/other-leader", ownNamespace, false},
		"it may not hold Leases outside its namespace":  {"create", "leases.coordination.k8s.io", "kube-system", false},
		"it reviews metrics scrapers' tokens":           {"create", "tokenreviews.authentication.k8s.io", "", true},
		"it asks whether a scraper may read metrics":    {"create", "subjectaccessreviews.authorization.k8s.io", "", true},
		"it gets Pods":                       {"get", "pods", "default", true},
		"it lists Pods in every namespace":   {"list", "pods", "", true},
		"it watches Pods in every namespace": {"watch", "pods", "", true},
		// What it must not do.
		"it may not delete namespaces":                     {"delete", "namespaces", "", false},
		"it may not create namespaces":                     {"create", "namespaces", "", false},
		"it may not create pods":                           {"create", "pods", "default", false},
		"it may not update pods":                           {"update", "pods", "default", false},
		"it may not patch pods":                            {"patch", "pods", "default", false},
		"it may not delete pods, only evict them":          {"delete", "pods", "default", false},
		"it may not delete collections of pods":            {"deletecollection", "pods", "default", false},
		"it may not update nodes":                          {"update", "nodes", "", false},
		"it may not patch ClusterRoles":                    {"patch", "clusterroles", "", false},
		"it may not bind ClusterRoles":                     {"bind", "clusterroles", "", false},
		"it may not create ClusterRoleBindings":            {"create", "clusterrolebindings", "", false},
		"it may not impersonate users":                     {"impersonate", "users", "", false},
		"it may not update other webhook configurations":   {"update", "validatingwebhookconfigurations/other-webhook", "", false},
		"it may not patch other webhook configurations":    {"patch", "validatingwebhookconfigurations/other-webhook", "", false},
		"it may not delete its webhook configuration":      {"delete", "validatingwebhookconfigurations/" + webhookConfig, "", false},
		"it may not touch mutating webhook configurations": {"patch", "mutatingwebhookconfigurations", "", false},
		"it may not patch other mutating configurations":   {"patch", "mutatingwebhookconfigurations/other-webhook", "", false},
		"it may not delete its mutating configuration":     {"delete", "mutatingwebhookconfigurations/" + mutatingConfig, "", false},
		"it may not update other Secrets by name":          {"update", "secrets/other-secret", ownNamespace, false},
		"it may not update ServiceAccounts, only patch":    {"update", "serviceaccounts", "default", false},
		"it may not update Secrets, only patch":            {"update", "secrets", "default", false},
		"it may not create ServiceAccounts":                {"create", "serviceaccounts", "default", false},
		"it may not delete ServiceAccounts":                {"delete", "serviceaccounts", "default", false},
		"it may not use ConfigMaps for leader election":    {"update", "configmaps", ownNamespace, false},
		"it may not change the CRD":                        {"update", "customresourcedefinitions.apiextensions.k8s.io", "", false},
		"it may not read the hosts ConfigMap":              {"get", "configmaps/updater-config", ownNamespace, false},
		"it may not edit the agent's DaemonSet":            {"patch", "daemonsets.apps", ownNamespace, false},
		"it may not approve certificate signing requests":  {"approve", "signers.certificates.k8s.io", "", false},
		"it may not create CertificateSigningRequests":     {"create", "certificatesigningrequests.certificates.k8s.io", "", false},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, c.allowed, canI(t, user, c.verb, c.resource, c.namespace),
				"kubectl auth can-i %s %s -n %q --as=%s", c.verb, c.resource, c.namespace, user)
		})
	}
	subresources := map[string]subresourcePermission{
		"it writes ImagePullSecret status":          {"update", "imagepullsecrets.tcr.tencentcloudcr.com", "status", "", true},
		"it patches ImagePullSecret status":         {"patch", "imagepullsecrets.tcr.tencentcloudcr.com", "status", "", true},
		"it may not exec into pods":                 {"create", "pods", "exec", "default", false},
		"it may not mint ServiceAccount tokens":     {"create", "serviceaccounts", "token", "default", false}, // token Secrets: TestManagerMayNotMintTokensNorWriteOtherSecretsOrServiceAccountFields
		"it evicts Pods (recoverPods)":              {"create", "pods", "eviction", "default", true},
		"it may not write pod status":               {"update", "pods", "status", "default", false},
		"it may not patch pod status":               {"patch", "pods", "status", "default", false},
		"it may not bind pods to nodes":             {"create", "pods", "binding", "default", false},
		"it may not read pod logs":                  {"get", "pods", "log", "default", false},
		"it may not attach to pods":                 {"create", "pods", "attach", "default", false},
		"it may not resize pods":                    {"patch", "pods", "resize", "default", false},
		"it may not add ephemeral debug containers": {"patch", "pods", "ephemeralcontainers", "default", false},
	}
	for name, c := range subresources {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, c.allowed, canI(t, user, c.verb, c.resource, c.namespace, "--subresource="+c.subresource),
				"kubectl auth can-i %s %s --subresource=%s -n %q --as=%s", c.verb, c.resource, c.subresource, c.namespace, user)
		})
	}
}

// subresourcePermission is a 'kubectl auth can-i --subresource' question: in 'kubectl auth can-i
// VERB RESOURCE/NAME', what follows the slash names an object, not a subresource.
type subresourcePermission struct {
	verb, resource, subresource, namespace string
	allowed                                bool
}

func TestAgentPermissionsAreMinimal(t *testing.T) {
	installBundle(t)
	user := serviceAccountUser(agentSA)
	cases := map[string]permission{
		"it gets updater-config":                     {"get", "configmaps/updater-config", ownNamespace, true},
		"it lists updater-config":                    {"list", "configmaps/updater-config", ownNamespace, true},
		"it watches updater-config":                  {"watch", "configmaps/updater-config", ownNamespace, true},
		"it creates Events":                          {"create", "events", ownNamespace, true},
		"it may not create Events elsewhere":         {"create", "events", "default", false},
		"it may not update Events":                   {"update", "events", ownNamespace, false},
		"it may not delete Events":                   {"delete", "events", ownNamespace, false},
		"it may not read Events":                     {"list", "events", ownNamespace, false},
		"it may not create events.k8s.io Events":     {"create", "events.events.k8s.io", ownNamespace, false},
		"it may not list every ConfigMap":            {"list", "configmaps", ownNamespace, false},
		"it may not get another ConfigMap":           {"get", "configmaps/other-config", ownNamespace, false},
		"it may not update updater-config":           {"update", "configmaps/updater-config", ownNamespace, false},
		"it may not delete updater-config":           {"delete", "configmaps/updater-config", ownNamespace, false},
		"it may not read updater-config elsewhere":   {"get", "configmaps/updater-config", "default", false},
		"it may not read Secrets":                    {"get", "secrets", ownNamespace, false},
		"it may not read the webhook certificate":    {"get", "secrets/" + certSecret, ownNamespace, false},
		"it may not read nodes":                      {"get", "nodes", "", false},
		"it may not create pods":                     {"create", "pods", ownNamespace, false},
		"it may not read ImagePullSecrets":           {"get", "imagepullsecrets.tcr.tencentcloudcr.com", "", false},
		"it may not take the manager's leader Lease": {"update", "leases.coordination.k8s.io/tcr-assistant-leader", ownNamespace, false},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, c.allowed, canI(t, user, c.verb, c.resource, c.namespace),
				"kubectl auth can-i %s %s -n %q --as=%s", c.verb, c.resource, c.namespace, user)
		})
	}
}

// removeWebhook deletes the bundle's webhook configuration for a test that runs the manager
// without its webhook: with failurePolicy Fail and no server behind the Service, the API server
// refuses every ImagePullSecret, exactly as in a cluster whose manager is not running yet.
func removeWebhook(t *testing.T) {
	t.Helper()
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: webhookConfig}}
	require.NoError(t, client.IgnoreNotFound(env.Client.Delete(context.Background(), vwc)))
	t.Cleanup(func() {
		_ = env.Client.Delete(context.Background(), vwc)
	})
}

// managerArgs are the arguments of the bundle's manager Deployment, so that every flag it
// passes is proven to exist, followed by what an out-of-cluster run changes: the kubeconfig, and
// metrics and probes on free ports (the last value of a flag wins). It returns the probe port too.
func managerArgs(t *testing.T, kubeconfig string) (args []string, probePort int) {
	t.Helper()
	deploy := typed[appsv1.Deployment](t, findObject(t, readBundle(t), "Deployment", "tcr-assistant-controller-manager"))
	args = append(args, deploy.Spec.Template.Spec.Containers[0].Args...)
	require.Contains(t, args, "--namespace="+ownNamespace)
	require.Contains(t, args, "--leader-elect")
	probePort = testenv.FreePort(t)
	return append(args,
		"--kubeconfig="+kubeconfig,
		"--metrics-bind-address=127.0.0.1:"+strconv.Itoa(testenv.FreePort(t)),
		"--health-probe-bind-address=127.0.0.1:"+strconv.Itoa(probePort),
	), probePort
}

// secretName is the name of the Secret an ImagePullSecret distributes.
func secretName(ips string) string { return tcrv1.SecretNamePrefix + ips }

// dockerAuth returns "username:password" from a distributed Secret's .dockerconfigjson for server.
func dockerAuth(t require.TestingT, s *corev1.Secret, server string) string {
	var cfg struct {
		Auths map[string]struct {
			Username string `json:"username"`
			Password string `json:"password"`
			Auth     string `json:"auth"`
		} `json:"auths"`
	}
	require.NoError(t, json.Unmarshal(s.Data[corev1.DockerConfigJsonKey], &cfg))
	entry, ok := cfg.Auths[server]
	require.True(t, ok, "no auths entry for %s in %s/%s", server, s.Namespace, s.Name)
	auth, err := base64.StdEncoding.DecodeString(entry.Auth)
	require.NoError(t, err)
	require.Equal(t, entry.Username+":"+entry.Password, string(auth), "auth and username/password disagree")
	return string(auth)
}

// namespaceNames lists the names of all namespaces that are not terminating.
func namespaceNames(t require.TestingT) []string {
	var list corev1.NamespaceList
	require.NoError(t, env.Client.List(context.Background(), &list))
	var names []string
	for _, ns := range list.Items {
		if ns.DeletionTimestamp == nil {
			names = append(names, ns.Name)
		}
	}
	sort.Strings(names)
	return names
}

func TestManagerDistributesRotatesAndCleansUpAsItsServiceAccount(t *testing.T) {
	ctx := context.Background()
	installBundle(t)
	removeWebhook(t)

	// Targets, made by the administrator: two namespaces with two ServiceAccounts each, one of
	// which already pulls with a Secret of its own that must survive everything below.
	for _, ns := range []string{"e2e-rbac-a", "e2e-rbac-b"} {
		require.NoError(t, client.IgnoreAlreadyExists(env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})))
		for _, sa := range []string{"default", "builder"} {
			obj := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sa}}
			if sa == "builder" {
				obj.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "keep-me"}}
			}
			require.NoError(t, client.IgnoreAlreadyExists(env.Client.Create(ctx, obj)))
		}
	}

	kubeconfig := kubeconfigFor(t, managerSA)
	args, probePort := managerArgs(t, kubeconfig)
	manager := start(t, binary(t, "manager"), append(args, "--enable-webhook=false")...)
	waitHealthy(t, manager, probePort, "/readyz")

	// The sample CR of config/samples, as a user would apply it.
	_, _, err := env.Kubectl("", "apply", "-f", filepath.Join(env.Root, "config", "samples", "imagepullsecret-sample.yaml"))
	require.NoError(t, err)
	sample := &tcrv1.ImagePullSecret{}
	key := types.NamespacedName{Name: "imagepullsecret-sample"}
	require.NoError(t, env.Client.Get(ctx, key, sample))
	server, user, password := sample.Spec.Docker.Server, sample.Spec.Docker.Username, sample.Spec.Docker.Password
	require.NotEmpty(t, password)
	name := secretName(sample.Name)

	// Every namespace gets the Secret; every ServiceAccount there references it.
	waitDistributed := func(wantAuth string) {
		t.Helper()
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			for _, ns := range namespaceNames(c) {
				var s corev1.Secret
				require.NoError(c, env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &s))
				require.Equal(c, corev1.SecretTypeDockerConfigJson, s.Type, ns)
				require.Equal(c, wantAuth, dockerAuth(c, &s, server), ns)
			}
		}, waitTimeout, waitInterval, "Secret %s never reached every namespace with the current credential", name)
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			for _, ns := range []string{"e2e-rbac-a", "e2e-rbac-b"} {
				for _, sa := range []string{"default", "builder"} {
					var obj corev1.ServiceAccount
					require.NoError(c, env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: sa}, &obj))
					require.True(c, references(obj, name), "%s/%s", ns, sa)
				}
			}
		}, waitTimeout, waitInterval, "the ServiceAccounts never referenced %s", name)
	}
	waitDistributed(user + ":" + password)

	// The status counts every namespace.
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		require.NoError(c, env.Client.Get(ctx, key, sample))
		n := int32(len(namespaceNames(c)))
		assert.Equal(c, n, sample.Status.SecretsDesired)
		assert.Equal(c, n, sample.Status.SecretsSuccess)
		assert.Positive(c, sample.Status.SAsDesired)
		assert.Equal(c, sample.Status.SAsDesired, sample.Status.SAsSuccess)
	}, waitTimeout, waitInterval, "status never counted every namespace and ServiceAccount")

	// Rotation: a new password reaches every copy in place.
	rotated := "rotated-" + password
	patch := client.MergeFrom(sample.DeepCopy())
	sample.Spec.Docker.Password = rotated
	require.NoError(t, env.Client.Patch(ctx, sample, patch))
	waitDistributed(user + ":" + rotated)

	// Deletion: the CR goes away after the manager removed every Secret and every reference it
	// made, and nothing else.
	require.NoError(t, env.Client.Delete(ctx, sample))
	require.Eventually(t, func() bool {
		return apierrors.IsNotFound(env.Client.Get(ctx, key, &tcrv1.ImagePullSecret{}))
	}, waitTimeout, waitInterval, "the ImagePullSecret was never finalized")
	var left corev1.SecretList
	require.NoError(t, env.Client.List(ctx, &left, client.MatchingFields{"metadata.name": name}))
	assert.Empty(t, left.Items, "distributed Secrets left behind")
	for _, ns := range []string{"e2e-rbac-a", "e2e-rbac-b"} {
		var obj corev1.ServiceAccount
		require.NoError(t, env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "builder"}, &obj))
		assert.Equal(t, []corev1.LocalObjectReference{{Name: "keep-me"}}, obj.ImagePullSecrets, "%s/builder", ns)
		require.NoError(t, env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "default"}, &obj))
		assert.Empty(t, obj.ImagePullSecrets, "%s/default", ns)
	}

	// Under this identity nothing was forbidden, and no credential reached the logs.
	manager.Stop()
	logs := manager.Output()
	assert.Empty(t, forbiddenLines(logs), "the manager's RBAC is not sufficient")
	assert.NotContains(t, logs, password)
	assert.NotContains(t, logs, rotated)
}

func references(sa corev1.ServiceAccount, secret string) bool {
	for _, ref := range sa.ImagePullSecrets {
		if ref.Name == secret {
			return true
		}
	}
	return false
}

func TestAgentWritesTheHostsFileAsItsServiceAccount(t *testing.T) {
	ctx := context.Background()
	installBundle(t)

	// The administrator sets one registry domain in updater-config.
	cm := &corev1.ConfigMap{}
	require.NoError(t, env.Client.Get(ctx, client.ObjectKey{Namespace: ownNamespace, Name: "updater-config"}, cm))
	original := cm.DeepCopy()
	t.Cleanup(func() {
		latest := &corev1.ConfigMap{}
		if env.Client.Get(ctx, client.ObjectKeyFromObject(original), latest) == nil {
			latest.Data = original.Data
			_ = env.Client.Update(ctx, latest)
		}
	})
	cm.Data = map[string]string{"hosts.yaml": "- domain: e2e-bj.tencentcloudcr.com\n  ip: 10.0.0.7\n"}
	require.NoError(t, env.Client.Update(ctx, cm))

	hosts := filepath.Join(t.TempDir(), "hosts")
	require.NoError(t, os.WriteFile(hosts, []byte("127.0.0.1 localhost\n"), 0o644))
	probePort := testenv.FreePort(t)
	agent := start(t, binary(t, "hosts-updater"),
		"--kubeconfig="+kubeconfigFor(t, agentSA),
		"--namespace="+ownNamespace,
		"--hosts-file="+hosts,
		"--metrics-bind-address=127.0.0.1:"+strconv.Itoa(testenv.FreePort(t)),
		"--health-probe-bind-address=127.0.0.1:"+strconv.Itoa(probePort))
	waitHealthy(t, agent, probePort, "/readyz")

	require.EventuallyWithT(t, func(c *assert.CollectT) {
		data, err := os.ReadFile(hosts)
		require.NoError(c, err)
		assert.Contains(c, string(data), "10.0.0.7")
		assert.Contains(c, string(data), "e2e-bj.tencentcloudcr.com")
	}, waitTimeout, waitInterval, "the agent never wrote the domain into the hosts file")
	data, err := os.ReadFile(hosts)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(data), "127.0.0.1 localhost\n"), "the agent changed a line it does not own:\n%s", data)

	agent.Stop()
	assert.Empty(t, forbiddenLines(agent.Output()), "the agent's RBAC is not sufficient")
}

// Messages of the bundle's ValidatingAdmissionPolicies (config/rbac/manager_write_policy.yaml).
const (
	secretsPolicy         = "tcr-assistant-manager-secrets"
	serviceAccountsPolicy = "tcr-assistant-manager-serviceaccounts"
	secretsPolicyMessage  = "tcr-assistant's manager may write only Secrets named tcr.ips* of type kubernetes.io/dockerconfigjson " +
		"labelled app.kubernetes.io/managed-by=tcr-assistant, its webhook certificate Secret, and the Opaque " +
		"Secrets tcr-assistant-token-* of its own namespace"
	serviceAccountsPolicyMessage = "tcr-assistant's manager may change only the imagePullSecrets of a ServiceAccount"
)

// policyDenial is the API server's refusal of a request by the policy of the same name as its
// binding.
func policyDenial(resource, name, policy, message string) string {
	return fmt.Sprintf("%s %q is forbidden: ValidatingAdmissionPolicy '%s' with binding '%s' denied request: %s",
		resource, name, policy, policy, message)
}

// managerClient returns a client that authenticates with a token of the manager's ServiceAccount.
func managerClient(t *testing.T) client.Client {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfigFor(t, managerSA))
	require.NoError(t, err)
	c, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	require.NoError(t, err)
	return c
}

// waitForManagerPolicies waits until the API server enforces the bundle's policies on the
// manager, which it does a moment after they are created: until then a test of what they refuse,
// or of what they let through, would prove nothing.
func waitForManagerPolicies(t *testing.T, mc client.Client) {
	t.Helper()
	ctx := context.Background()
	probe := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ownNamespace, Name: "tcr.ips-policy-probe", Labels: map[string]string{tcrv1.ManagedByLabel: tcrv1.ManagedByValue}},
		Type:       corev1.SecretTypeOpaque,
	}
	sa := &corev1.ServiceAccount{}
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		err := mc.Create(ctx, probe.DeepCopy())
		if err == nil {
			require.NoError(c, env.Client.Delete(ctx, probe.DeepCopy()))
			require.Fail(c, "the Secrets policy let the probe through")
		}
		require.EqualError(c, err, policyDenial("secrets", probe.Name, secretsPolicy, secretsPolicyMessage))
		require.NoError(c, env.Client.Get(ctx, client.ObjectKey{Namespace: ownNamespace, Name: managerSA}, sa))
		err = mc.Patch(ctx, sa, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"e2e-probe":"x"}}}`)))
		if err == nil {
			require.NoError(c, env.Client.Patch(ctx, sa, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"e2e-probe":null}}}`))))
			require.Fail(c, "the ServiceAccounts policy let the probe through")
		}
		require.EqualError(c, err, policyDenial("serviceaccounts", managerSA, serviceAccountsPolicy, serviceAccountsPolicyMessage))
	}, waitTimeout, waitInterval, "the manager's policies were never enforced")
}

// TestManagerMayNotMintTokensNorWriteOtherSecretsOrServiceAccountFields extends "it may not mint
// ServiceAccount tokens" above past what RBAC can say: the ClusterRole must let the manager create,
// patch and delete any Secret and patch any ServiceAccount, and the bundle's policies narrow that
// to the Secrets and the ServiceAccount field it owns. Every request here is the manager's own,
// with a token of its ServiceAccount, against the installed bundle.
func TestManagerMayNotMintTokensNorWriteOtherSecretsOrServiceAccountFields(t *testing.T) {
	ctx := context.Background()
	installBundle(t)
	removeWebhook(t)
	mc := managerClient(t)
	waitForManagerPolicies(t, mc)

	const ns = "e2e-policy"
	require.NoError(t, client.IgnoreAlreadyExists(env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})))
	managed := map[string]string{tcrv1.ManagedByLabel: tcrv1.ManagedByValue}
	dockerConfig := map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{}}`)}
	secret := func(name string, typ corev1.SecretType, labels map[string]string) *corev1.Secret {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels}, Type: typ}
		if typ == corev1.SecretTypeDockerConfigJson {
			s.Data = dockerConfig
		}
		return s
	}
	// adminCreates makes a Secret as the administrator, for the manager to try to change.
	adminCreates := func(t *testing.T, s *corev1.Secret) *corev1.Secret {
		t.Helper()
		require.NoError(t, env.Client.Create(ctx, s))
		t.Cleanup(func() { _ = env.Client.Delete(context.Background(), s) })
		return s.DeepCopy()
	}
	refusedSecret := func(t *testing.T, err error, name string) {
		t.Helper()
		require.EqualError(t, err, policyDenial("secrets", name, secretsPolicy, secretsPolicyMessage))
	}

	t.Run("it may not mint a ServiceAccount token Secret, even one named and labelled as its own", func(t *testing.T) {
		s := secret("tcr.ipsmint", corev1.SecretTypeServiceAccountToken, managed)
		s.Annotations = map[string]string{corev1.ServiceAccountNameKey: "default"}
		refusedSecret(t, mc.Create(ctx, s), s.Name)
	})
	t.Run("it may not create an Opaque Secret, even one named and labelled as its own", func(t *testing.T) {
		refusedSecret(t, mc.Create(ctx, secret("tcr.ipsopaque", corev1.SecretTypeOpaque, managed)), "tcr.ipsopaque")
	})
	t.Run("it may not create a pull Secret under another name", func(t *testing.T) {
		refusedSecret(t, mc.Create(ctx, secret("registry", corev1.SecretTypeDockerConfigJson, managed)), "registry")
	})
	t.Run("it may not create a pull Secret without the managed-by label", func(t *testing.T) {
		refusedSecret(t, mc.Create(ctx, secret("tcr.ipsunlabelled", corev1.SecretTypeDockerConfigJson, nil)), "tcr.ipsunlabelled")
	})
	t.Run("it may not take over a user's Secret by labelling it", func(t *testing.T) {
		s := adminCreates(t, secret("tcr.ipsusers", corev1.SecretTypeDockerConfigJson, nil))
		refusedSecret(t, mc.Patch(ctx, s, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"app.kubernetes.io/managed-by":"tcr-assistant"}}}`))), s.Name)
	})
	// Adoption (README, "Upgrading from the original TCR Assistant"): one patch that sets both
	// labels, a controller reference to the ImagePullSecret the name is for, and the data.
	adoption := func(ownerName string, owner types.UID) []byte {
		return []byte(fmt.Sprintf(`{"metadata":{"labels":{"app.kubernetes.io/managed-by":"tcr-assistant","tcr.tencentcloudcr.com/imagepullsecret":%q},`+
			`"ownerReferences":[{"apiVersion":"tcr.tencentcloudcr.com/v1","kind":"ImagePullSecret","name":%q,"uid":%q,"controller":true,"blockOwnerDeletion":true}]},`+
			`"data":{".dockerconfigjson":"e30="}}`, ownerName, ownerName, owner))
	}
	t.Run("it may not take over a user's pull Secret for an ImagePullSecret of another name", func(t *testing.T) {
		s := adminCreates(t, secret("tcr.ipsoriginal-a", corev1.SecretTypeDockerConfigJson, nil))
		refusedSecret(t, mc.Patch(ctx, s, client.RawPatch(types.MergePatchType, adoption("other", "uid-other"))), s.Name)
	})
	t.Run("it may not take over a pull Secret another controller owns", func(t *testing.T) {
		s := secret("tcr.ipsoriginal-b", corev1.SecretTypeDockerConfigJson, nil)
		s.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: "theirs", UID: "uid-theirs", Controller: ptr.To(true)}}
		s = adminCreates(t, s)
		refusedSecret(t, mc.Patch(ctx, s, client.RawPatch(types.MergePatchType, adoption("original-b", "uid-b"))), s.Name)
	})
	t.Run("it may not take over a pull Secret another tool manages", func(t *testing.T) {
		s := adminCreates(t, secret("tcr.ipsoriginal-c", corev1.SecretTypeDockerConfigJson, map[string]string{tcrv1.ManagedByLabel: "Helm"}))
		refusedSecret(t, mc.Patch(ctx, s, client.RawPatch(types.MergePatchType, adoption("original-c", "uid-c"))), s.Name)
	})
	t.Run("it adopts an unlabelled pull Secret the original left", func(t *testing.T) {
		s := adminCreates(t, secret("tcr.ipsoriginal-d", corev1.SecretTypeDockerConfigJson, nil))
		require.NoError(t, mc.Patch(ctx, s, client.RawPatch(types.MergePatchType, adoption("original-d", "uid-d"))))
		assert.Equal(t, tcrv1.ManagedByValue, s.Labels[tcrv1.ManagedByLabel])
	})
	t.Run("it may not turn its own pull Secret into another kind", func(t *testing.T) {
		s := adminCreates(t, secret("tcr.ipsmine", corev1.SecretTypeDockerConfigJson, managed))
		refusedSecret(t, mc.Patch(ctx, s, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"app.kubernetes.io/managed-by":null}}}`))), s.Name)
	})
	t.Run("it may not delete a user's Secret", func(t *testing.T) {
		s := adminCreates(t, secret("users-secret", corev1.SecretTypeOpaque, nil))
		refusedSecret(t, mc.Delete(ctx, s), s.Name)
	})
	t.Run("it may not write a Secret named like its certificate elsewhere", func(t *testing.T) {
		refusedSecret(t, mc.Create(ctx, secret(certSecret, corev1.SecretTypeOpaque, nil)), certSecret)
	})
	t.Run("it creates, patches and deletes its own pull Secret", func(t *testing.T) {
		s := secret("tcr.ipsallowed", corev1.SecretTypeDockerConfigJson, managed)
		require.NoError(t, mc.Create(ctx, s))
		require.NoError(t, mc.Patch(ctx, s, client.RawPatch(types.MergePatchType, []byte(`{"data":{".dockerconfigjson":"e30="}}`))))
		require.NoError(t, mc.Delete(ctx, s))
	})
	t.Run("it creates, patches and deletes the token Secrets of its own namespace", func(t *testing.T) {
		s := secret("tcr-assistant-token-e2e", corev1.SecretTypeOpaque, nil)
		s.Namespace = ownNamespace
		require.NoError(t, mc.Create(ctx, s))
		require.NoError(t, mc.Patch(ctx, s, client.RawPatch(types.MergePatchType, []byte(`{"data":{"state":"e30="}}`))))
		require.NoError(t, mc.Delete(ctx, s))
	})
	t.Run("it may not write a token Secret elsewhere, or of another type", func(t *testing.T) {
		refusedSecret(t, mc.Create(ctx, secret("tcr-assistant-token-e2e", corev1.SecretTypeOpaque, nil)), "tcr-assistant-token-e2e")
		s := secret("tcr-assistant-token-sa", corev1.SecretTypeServiceAccountToken, nil)
		s.Namespace = ownNamespace
		s.Annotations = map[string]string{corev1.ServiceAccountNameKey: "default"}
		refusedSecret(t, mc.Create(ctx, s), s.Name)
	})
	t.Run("it deletes its own Secret of the wrong type, to create it again", func(t *testing.T) {
		s := adminCreates(t, secret("tcr.ipswrongtype", corev1.SecretTypeOpaque, managed))
		require.NoError(t, mc.Delete(ctx, s))
	})

	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "builder"},
		ImagePullSecrets: []corev1.LocalObjectReference{{Name: "keep-me"}}}
	require.NoError(t, client.IgnoreAlreadyExists(env.Client.Create(ctx, sa)))
	refusedServiceAccount := func(t *testing.T, patch string) {
		t.Helper()
		err := mc.Patch(ctx, sa.DeepCopy(), client.RawPatch(types.MergePatchType, []byte(patch)))
		require.EqualError(t, err, policyDenial("serviceaccounts", sa.Name, serviceAccountsPolicy, serviceAccountsPolicyMessage))
	}
	t.Run("it may not change a ServiceAccount's automountServiceAccountToken", func(t *testing.T) {
		refusedServiceAccount(t, `{"automountServiceAccountToken":true}`)
	})
	t.Run("it may not change a ServiceAccount's secrets", func(t *testing.T) {
		refusedServiceAccount(t, `{"secrets":[{"name":"tcr.ipsmint"}]}`)
	})
	t.Run("it may not change a ServiceAccount's labels or annotations", func(t *testing.T) {
		refusedServiceAccount(t, `{"metadata":{"labels":{"a":"b"}}}`)
		refusedServiceAccount(t, `{"metadata":{"annotations":{"a":"b"}}}`)
	})
	t.Run("it changes a ServiceAccount's imagePullSecrets", func(t *testing.T) {
		require.NoError(t, mc.Patch(ctx, sa.DeepCopy(), client.RawPatch(types.MergePatchType,
			[]byte(`{"imagePullSecrets":[{"name":"keep-me"},{"name":"tcr.ipsallowed"}]}`))))
		require.NoError(t, mc.Patch(ctx, sa.DeepCopy(), client.RawPatch(types.MergePatchType,
			[]byte(`{"imagePullSecrets":[{"name":"keep-me"}]}`))))
	})
	t.Run("other users are not bound by the manager's policies", func(t *testing.T) {
		adminCreates(t, secret("users-opaque", corev1.SecretTypeOpaque, managed))
		require.NoError(t, env.Client.Patch(ctx, sa.DeepCopy(), client.RawPatch(types.MergePatchType, []byte(`{"automountServiceAccountToken":false}`))))
	})

	// The controller itself, under the policies: it replaces an owned Secret of the wrong type
	// and distributes and references its Secret, with nothing refused.
	t.Run("the controller works under the policies", func(t *testing.T) {
		ips := &tcrv1.ImagePullSecret{
			ObjectMeta: metav1.ObjectMeta{Name: "e2e-policy"},
			Spec: tcrv1.ImagePullSecretSpec{Namespaces: ns, ServiceAccounts: "builder", Docker: tcrv1.DockerCredential{
				Server: "e2e.tencentcloudcr.com", Username: "u", Password: "e2e-policy-password",
			}},
		}
		require.NoError(t, env.Client.Create(ctx, ips))
		t.Cleanup(func() { _ = env.Client.Delete(context.Background(), ips) })
		stale := secret(secretName(ips.Name), corev1.SecretTypeOpaque,
			map[string]string{tcrv1.ManagedByLabel: tcrv1.ManagedByValue, tcrv1.OwnerLabel: ips.Name})
		stale.OwnerReferences = []metav1.OwnerReference{{APIVersion: tcrv1.GroupVersion.String(), Kind: "ImagePullSecret",
			Name: ips.Name, UID: ips.UID, Controller: ptr.To(true)}}
		stale = adminCreates(t, stale)
		// What the original TCR Assistant left for a CR: its Secret, unlabelled, and a
		// ServiceAccount referencing it. The manager adopts the Secret in place.
		original := &tcrv1.ImagePullSecret{
			ObjectMeta: metav1.ObjectMeta{Name: "e2e-original"},
			Spec: tcrv1.ImagePullSecretSpec{Namespaces: ns, ServiceAccounts: "puller", Docker: tcrv1.DockerCredential{
				Server: "e2e.tencentcloudcr.com", Username: "100012345678", Password: "e2e-new-password",
			}},
		}
		require.NoError(t, env.Client.Create(ctx, original))
		t.Cleanup(func() { _ = env.Client.Delete(context.Background(), original) })
		left := secret(secretName(original.Name), corev1.SecretTypeDockerConfigJson, nil)
		left.Data = map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{"e2e.tencentcloudcr.com":` +
			`{"username":"100012345678","password":"e2e-old-password","auth":"MTAwMDEyMzQ1Njc4OmUyZS1vbGQtcGFzc3dvcmQ="}}}`)}
		left = adminCreates(t, left)
		puller := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "puller"},
			ImagePullSecrets: []corev1.LocalObjectReference{{Name: left.Name}}}
		require.NoError(t, env.Client.Create(ctx, puller))

		args, probePort := managerArgs(t, kubeconfigFor(t, managerSA))
		manager := start(t, binary(t, "manager"), append(args, "--enable-webhook=false")...)
		waitHealthy(t, manager, probePort, "/readyz")
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			var s corev1.Secret
			require.NoError(c, client.IgnoreNotFound(env.Client.Get(ctx, client.ObjectKeyFromObject(stale), &s)))
			require.NoError(c, env.Client.Get(ctx, client.ObjectKeyFromObject(sa), sa))
			require.NotEmpty(c, s.UID, "no Secret")
			require.NotEqual(c, stale.UID, s.UID, "the Opaque Secret is still there")
			require.Equal(c, corev1.SecretTypeDockerConfigJson, s.Type)
			assert.Equal(c, "u:e2e-policy-password", dockerAuth(c, &s, "e2e.tencentcloudcr.com"))
			assert.True(c, references(*sa, s.Name), "%s references %s", sa.Name, s.Name)
		}, waitTimeout, waitInterval, "the manager never replaced the Opaque Secret and referenced the new one")
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			var s corev1.Secret
			require.NoError(c, env.Client.Get(ctx, client.ObjectKeyFromObject(left), &s))
			require.Equal(c, left.UID, s.UID)
			require.Equal(c, tcrv1.ManagedByValue, s.Labels[tcrv1.ManagedByLabel])
			assert.Equal(c, "100012345678:e2e-new-password", dockerAuth(c, &s, "e2e.tencentcloudcr.com"))
		}, waitTimeout, waitInterval, "the manager never adopted the Secret the original left")
		require.NoError(t, env.Client.Get(ctx, client.ObjectKeyFromObject(puller), puller))
		assert.Equal(t, []corev1.LocalObjectReference{{Name: left.Name}}, puller.ImagePullSecrets)
		require.NoError(t, env.Client.Delete(ctx, original))
		require.Eventually(t, func() bool {
			return apierrors.IsNotFound(env.Client.Get(ctx, client.ObjectKeyFromObject(original), original))
		}, waitTimeout, waitInterval, "the adopting ImagePullSecret was never finalized")
		assert.True(t, apierrors.IsNotFound(env.Client.Get(ctx, client.ObjectKeyFromObject(left), &corev1.Secret{})),
			"the adopted Secret is the CR's: its cleanup deletes it")

		require.NoError(t, env.Client.Delete(ctx, ips))
		require.Eventually(t, func() bool {
			return apierrors.IsNotFound(env.Client.Get(ctx, client.ObjectKeyFromObject(ips), ips))
		}, waitTimeout, waitInterval, "the ImagePullSecret was never finalized")
		require.NoError(t, env.Client.Get(ctx, client.ObjectKeyFromObject(sa), sa))
		assert.Equal(t, []corev1.LocalObjectReference{{Name: "keep-me"}}, sa.ImagePullSecrets)
		manager.Stop()
		assert.Empty(t, forbiddenLines(manager.Output()), "the policies refused a write of the controller")
	})
}

// TestManagerEvictsPodsAndMayNotWriteThemOtherwise extends the Pod cases of
// TestManagerPermissionsAreMinimal with real requests, made with a token of the manager's
// ServiceAccount against the installed bundle: recoverPods reads Pods and evicts them through the
// Eviction API, and that is its only write to a Pod.
func TestManagerEvictsPodsAndMayNotWriteThemOtherwise(t *testing.T) {
	ctx := context.Background()
	installBundle(t)
	mc := managerClient(t)

	const ns = "e2e-pods"
	require.NoError(t, client.IgnoreAlreadyExists(env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})))
	require.NoError(t, client.IgnoreAlreadyExists(env.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"}})))
	newPod := func(name string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "e2e.tencentcloudcr.com/team/app:1"}}},
		}
	}
	// adminCreates makes a Pod as the administrator, Pending (no scheduler, no kubelet), for the
	// manager to act on.
	adminCreates := func(t *testing.T, name string) *corev1.Pod {
		t.Helper()
		pod := newPod(name)
		require.NoError(t, env.Client.Create(ctx, pod))
		t.Cleanup(func() { _ = env.Client.Delete(context.Background(), pod, client.GracePeriodSeconds(0)) })
		return pod.DeepCopy()
	}
	forbidden := func(verb, resource, name string) string {
		subject := "pods"
		if name != "" {
			subject = fmt.Sprintf("pods %q", name)
		}
		return fmt.Sprintf("%s is forbidden: User %q cannot %s resource %q in API group \"\" in the namespace %q",
			subject, serviceAccountUser(managerSA), verb, resource, ns)
	}

	pod := adminCreates(t, "stuck")
	t.Run("it reads and lists the Pending Pods", func(t *testing.T) {
		got := &corev1.Pod{}
		require.NoError(t, mc.Get(ctx, client.ObjectKeyFromObject(pod), got))
		assert.Equal(t, pod.UID, got.UID)
		var list corev1.PodList
		require.NoError(t, mc.List(ctx, &list, client.MatchingFields{"status.phase": string(corev1.PodPending)}))
		assert.True(t, slices.ContainsFunc(list.Items, func(p corev1.Pod) bool { return p.UID == pod.UID }), "the list of Pending Pods lacks %s/%s", ns, pod.Name)
	})
	t.Run("it may not create a Pod", func(t *testing.T) {
		require.EqualError(t, mc.Create(ctx, newPod("created-by-manager")), forbidden("create", "pods", ""))
	})
	t.Run("it may not update a Pod", func(t *testing.T) {
		edit := pod.DeepCopy()
		edit.Labels = map[string]string{"e2e": "x"}
		require.EqualError(t, mc.Update(ctx, edit), forbidden("update", "pods", pod.Name))
	})
	t.Run("it may not patch a Pod", func(t *testing.T) {
		err := mc.Patch(ctx, pod.DeepCopy(), client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"e2e":"x"}}}`)))
		require.EqualError(t, err, forbidden("patch", "pods", pod.Name))
	})
	t.Run("it may not write a Pod's status", func(t *testing.T) {
		edit := pod.DeepCopy()
		edit.Status.Phase = corev1.PodFailed
		require.EqualError(t, mc.Status().Update(ctx, edit), forbidden("update", "pods/status", pod.Name))
	})
	t.Run("it may not delete a Pod", func(t *testing.T) {
		require.EqualError(t, mc.Delete(ctx, pod.DeepCopy()), forbidden("delete", "pods", pod.Name))
	})
	t.Run("it may not delete every Pod of a namespace", func(t *testing.T) {
		require.EqualError(t, mc.DeleteAllOf(ctx, &corev1.Pod{}, client.InNamespace(ns)), forbidden("deletecollection", "pods", ""))
	})
	// Every refusal above left the Pod as it was.
	require.NoError(t, env.Client.Get(ctx, client.ObjectKeyFromObject(pod), pod))
	require.Empty(t, pod.Labels)
	require.Equal(t, corev1.PodPending, pod.Status.Phase)

	t.Run("it evicts a Pod, as recoverPods does", func(t *testing.T) {
		eviction := &policyv1.Eviction{
			ObjectMeta:    metav1.ObjectMeta{Namespace: ns, Name: pod.Name},
			DeleteOptions: &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &pod.UID}},
		}
		require.NoError(t, mc.SubResource("eviction").Create(ctx, pod.DeepCopy(), eviction))
		// Never scheduled, the Pod is deleted at once.
		err := env.Client.Get(ctx, client.ObjectKeyFromObject(pod), &corev1.Pod{})
		require.True(t, apierrors.IsNotFound(err), "the evicted Pod is still there: %v", err)
	})
}
