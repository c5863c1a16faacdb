package controllers_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
)

// originalSecret is the Secret the original TCR Assistant made for an ImagePullSecret (see its
// documentation, /work/shared/reference and README "Upgrading from the original TCR
// Assistant"): named tcr.ips<name>, of type kubernetes.io/dockerconfigjson, without labels or
// owner, holding one login in the original's field order.
func originalSecret(namespace, ips, server, user, pass string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: tcrv1.SecretNamePrefix + ips},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: []byte(expectedDockerConfig(server, user, pass))},
	}
}

// TestAdoptsTheSecretsOfTheOriginal switches a cluster from the original TCR Assistant: its CR,
// its Secrets and the ServiceAccounts referencing them exist before the controller starts. Each
// Secret the original made for the CR is adopted in place (same UID, our labels, controller
// reference and the current content) with no delete and no ServiceAccount write, so no pull
// fails during the switch. A same-name Secret for another username stays foreign, and one in a
// namespace the CR does not select is left as it is.
func TestAdoptsTheSecretsOfTheOriginal(t *testing.T) {
	ctx := context.Background()
	const (
		name   = "adopt-sample"
		secret = "tcr.ipsadopt-sample"
		server = "fanjiankong-bj.tencentcloudcr.com"
		user   = "100012345678"
	)
	oldPass := passwordFor(user, "adopt-old")

	// adopt-a: what the original left, with the references it added after the user's own.
	// adopt-b: the Secret without any ServiceAccount (nothing leads the pass to read it first:
	// its create meets it). adopt-other: a same-name Secret of another user. adopt-skip: a
	// namespace the CR does not select.
	createNamespace(t, "adopt-a", nil)
	createNamespace(t, "adopt-b", nil)
	createNamespace(t, "adopt-other", nil)
	createNamespace(t, "adopt-skip", nil)
	fixture := map[string]*corev1.Secret{
		"adopt-a":     originalSecret("adopt-a", name, server, user, oldPass),
		"adopt-b":     originalSecret("adopt-b", name, server, user, oldPass),
		"adopt-other": originalSecret("adopt-other", name, server, "someone-else", oldPass),
		"adopt-skip":  originalSecret("adopt-skip", name, server, user, oldPass),
	}
	for _, s := range fixture {
		require.NoError(t, env.Client.Create(ctx, s))
	}
	createServiceAccount(t, "adopt-a", "default", secret)
	createServiceAccount(t, "adopt-a", "builder", "users-own", secret)
	createServiceAccount(t, "adopt-other", "default", secret)
	createServiceAccount(t, "adopt-skip", "default", secret)

	ips := newIPS(name, "adopt-a, adopt-b, adopt-other", "*")
	ips.Spec.Docker.Server, ips.Spec.Docker.Username = server, user
	ips.Spec.Docker.Password = passwordFor(user, "adopt-new")
	createIPS(t, ips)
	startManager(t)
	ips = getIPS(t, name)

	want := expectedDockerConfig(server, user, ips.Spec.Docker.Password)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		for _, ns := range []string{"adopt-a", "adopt-b"} {
			s, err := getSecret(ns, secret)
			if !assert.NoError(c, err) {
				return
			}
			assert.Equal(c, fixture[ns].UID, s.UID, "%s: adopted in place", ns)
			assert.Equal(c, map[string]string{tcrv1.ManagedByLabel: tcrv1.ManagedByValue, tcrv1.OwnerLabel: name}, s.Labels)
			if ref := metav1.GetControllerOf(s); assert.NotNil(c, ref, ns) {
				assert.Equal(c, metav1.OwnerReference{APIVersion: tcrv1.GroupVersion.String(), Kind: "ImagePullSecret", Name: name,
					UID: ips.UID, Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}, *ref)
			}
			assert.Equal(c, want, string(s.Data[corev1.DockerConfigJsonKey]), ns)
		}
	}, timeout, tick)
	eventuallyStatus(t, name, func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		assert.Equal(c, int32(3), st.SecretsDesired)
		assert.Equal(c, int32(2), st.SecretsSuccess)
		assert.Equal(c, int32(3), st.SAsDesired)
		assert.Equal(c, int32(2), st.SAsSuccess)
		assert.Equal(c, []tcrv1.TargetFailure{{
			Kind: "Secret", NamespacedName: "adopt-other/" + secret, Reason: tcrv1.ReasonSecretNotOwned,
			Message: "Secret adopt-other/" + secret + " exists and is not managed by this ImagePullSecret; it was left untouched: delete or rename it to let tcr-assistant create its own",
		}}, st.Failures)
	})

	// Every ServiceAccount still references the Secret, the user's own reference in its place.
	assert.Equal(t, []string{secret}, pullSecrets(t, "adopt-a", "default"))
	assert.Equal(t, []string{"users-own", secret}, pullSecrets(t, "adopt-a", "builder"))
	assert.Equal(t, []string{secret}, pullSecrets(t, "adopt-other", "default"))
	assert.Equal(t, []string{secret}, pullSecrets(t, "adopt-skip", "default"))
	// The foreign Secret and the one outside the selection are not written.
	for _, ns := range []string{"adopt-other", "adopt-skip"} {
		s, err := getSecret(ns, secret)
		require.NoError(t, err)
		assert.Equal(t, fixture[ns].ResourceVersion, s.ResourceVersion, "%s: not written", ns)
		assert.Empty(t, s.Labels, ns)
		assert.Empty(t, s.OwnerReferences, ns)
	}
	// What the manager sent into these namespaces: the two adoptions and the create that met the
	// Secret in adopt-b; no delete, no ServiceAccount write.
	var sent []string
	for _, line := range strings.Split(managerRequests.String(), "\n") {
		if strings.Contains(line, "/namespaces/adopt-") && !slices.Contains(sent, line) {
			sent = append(sent, line)
		}
	}
	slices.Sort(sent)
	assert.Equal(t, []string{
		"PATCH /api/v1/namespaces/adopt-a/secrets/" + secret,
		"PATCH /api/v1/namespaces/adopt-b/secrets/" + secret,
		"POST /api/v1/namespaces/adopt-b/secrets",
	}, sent)

	// Adopted, the Secrets are the CR's: deleting it removes them and its references, and leaves
	// the others alone.
	deleteIPS(t, name)
	for _, ns := range []string{"adopt-a", "adopt-b"} {
		_, err := getSecret(ns, secret)
		assert.True(t, apierrors.IsNotFound(err), "%s: %v", ns, err)
	}
	assert.Equal(t, []string{"users-own"}, pullSecrets(t, "adopt-a", "builder"))
	assert.Equal(t, []string{secret}, pullSecrets(t, "adopt-other", "default"))
	assert.Equal(t, []string{secret}, pullSecrets(t, "adopt-skip", "default"))
}
