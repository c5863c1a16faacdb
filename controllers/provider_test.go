package controllers_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
	"github.com/tcr-assistant/tcr-assistant/credprovider"
)

// setDelivery changes the delivery of the ImagePullSecret name.
func setDelivery(t *testing.T, name string, d tcrv1.Delivery) {
	t.Helper()
	require.NoError(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur := getIPS(t, name)
		cur.Spec.Delivery = d
		return env.Client.Update(context.Background(), cur)
	}))
}

func TestDeliveryCredentialProviderLeavesNoCopy(t *testing.T) {
	startManager(t)
	ctx := context.Background()
	createNamespace(t, "prov-a", map[string]string{"team": "a"}, "default", "builder")
	createNamespace(t, "prov-b", nil, "default")
	ips := newIPS("prov", "prov-a", "builder")
	createIPS(t, ips)
	eventuallyStatus(t, "prov", func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		assert.Equal(c, [4]int32{1, 1, 1, 1}, [4]int32{st.SecretsDesired, st.SecretsSuccess, st.SAsDesired, st.SAsSuccess})
	})
	lookup := reconciler.CredentialProvider()
	server := ips.Spec.Docker.Server
	_, ok, err := lookup.Credential(ctx, "prov-a", "builder", server)
	require.NoError(t, err)
	assert.False(t, ok, "delivery Secrets is not served by the endpoint")

	// CredentialProvider: the copy and the reference go; the endpoint serves the selected
	// ServiceAccount only, for the rule's registry only.
	setDelivery(t, "prov", tcrv1.DeliveryCredentialProvider)
	eventuallyStatus(t, "prov", func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		wantCondition(c, st, tcrv1.ConditionReady, metav1.ConditionTrue, tcrv1.ReasonDistributed,
			"delivery CredentialProvider: no namespace holds a copy; the credential endpoint serves the selected ServiceAccounts")
		assert.Equal(c, [4]int32{0, 0, 0, 0}, [4]int32{st.SecretsDesired, st.SecretsSuccess, st.SAsDesired, st.SAsSuccess})
	})
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		_, err := getSecret("prov-a", "tcr.ipsprov")
		assert.True(c, apierrors.IsNotFound(err), "the copy is still there: %v", err)
		assert.Equal(c, []string{}, pullSecrets(c, "prov-a", "builder"))
	}, timeout, tick)
	createServiceAccount(t, "prov-a", "later")
	createServiceAccount(t, "prov-a", "builder-2")
	assert.Equal(t, []string{}, pullSecrets(t, "prov-a", "later"), "no reference at admission either")

	got, ok, err := lookup.Credential(ctx, "prov-a", "builder", server)
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, credprovider.Answer{Rule: "prov", Username: ips.Spec.Docker.Username, Password: ips.Spec.Docker.Password}, got)
	for _, miss := range [][3]string{
		{"prov-a", "default", server},              // a ServiceAccount the rule does not select
		{"prov-b", "builder", server},              // a namespace it does not select
		{"prov-a", "builder", "other.example.com"}, // another registry
		{"prov-a", "nobody", server},               // a ServiceAccount that does not exist
		{"prov-gone", "builder", server},           // a namespace that does not exist
	} {
		_, ok, err := lookup.Credential(ctx, miss[0], miss[1], miss[2])
		require.NoError(t, err)
		assert.False(t, ok, "%v", miss)
	}
	eventuallyStatus(t, "prov", func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		assert.Equal(c, int32(1), st.ServiceAccountsServed)
	})

	// Both: the copies come back, and the endpoint keeps serving.
	setDelivery(t, "prov", tcrv1.DeliveryBoth)
	eventuallyStatus(t, "prov", func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		assert.Equal(c, [4]int32{1, 1, 1, 1}, [4]int32{st.SecretsDesired, st.SecretsSuccess, st.SAsDesired, st.SAsSuccess})
		assert.Equal(c, metav1.ConditionTrue, readyStatus(st))
	})
	_, ok, err = lookup.Credential(ctx, "prov-a", "builder-2", server)
	require.NoError(t, err)
	assert.False(t, ok, "builder-2 is not selected (serviceAccounts: builder)")
	_, ok, err = lookup.Credential(ctx, "prov-a", "builder", server)
	require.NoError(t, err)
	assert.True(t, ok)
	s, err := getSecret("prov-a", "tcr.ipsprov")
	require.NoError(t, err)
	assert.Equal(t, corev1.SecretTypeDockerConfigJson, s.Type)
}
