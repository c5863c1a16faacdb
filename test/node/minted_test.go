//go:build node

package node

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
	"github.com/tcr-assistant/tcr-assistant/internal/faketcr"
	"github.com/tcr-assistant/tcr-assistant/internal/testregistry"
)

// The API key and the instance of the fake TCR API the manager mints with on the node.
const (
	nodeKeyID     = "AKIDnodeSUITE00000000000000000000001"
	nodeKeySecret = "Sk-node-suite-5f0c2a9e"
	nodeInstance  = "tcr-node0001"
)

// mintedPull (issue 24): a rule with docker.instanceToken has the manager, in its Pod, mint a
// token with the TCR API (on the node's address, trusted through the private-CA component) and
// distribute it; the kubelet pulls a private image with it from a registry that accepts exactly
// the tokens the API minted and did not revoke.
func mintedPull(t *testing.T, c client.Client, api *faketcr.Server, password string) {
	ctx := context.Background()
	reg := testregistry.Start(t, testregistry.Options{Users: map[string]string{user: password}, Authenticate: api.Authenticate})
	trustOnTheNode(t, reg)
	app := privateImage(t, reg, password)

	key := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: system, Name: "tcr-api-key",
		Labels: map[string]string{tcrv1.PasswordSourceLabel: "true"}},
		Data: map[string][]byte{"SecretId": []byte(nodeKeyID), "SecretKey": []byte(nodeKeySecret)}}
	require.NoError(t, c.Create(ctx, key))
	t.Cleanup(func() { _ = c.Delete(context.Background(), key) })
	ips := &tcrv1.ImagePullSecret{ObjectMeta: metav1.ObjectMeta{Name: "node-minted"}, Spec: tcrv1.ImagePullSecretSpec{
		Namespaces: "pull-minted", ServiceAccounts: "*", RecoverPods: true,
		Docker: tcrv1.DockerCredential{Server: reg.Host, InstanceToken: &tcrv1.InstanceToken{
			RegistryID: nodeInstance, Region: "ap-guangzhou", APIKeySecretRef: &tcrv1.SecretReference{Name: key.Name}}}}}
	require.NoError(t, c.Create(ctx, ips))
	t.Cleanup(func() { _ = c.Delete(context.Background(), ips) })
	require.NoError(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "pull-minted"}}))
	t.Cleanup(func() {
		_ = c.Delete(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "pull-minted"}})
	})
	require.NoError(t, c.Create(ctx, deployment("pull-minted", app)))

	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		if p := onlyPod(ct, c, "pull-minted"); p != nil {
			assert.Equal(ct, corev1.PodRunning, p.Status.Phase)
			assert.Equal(ct, []corev1.LocalObjectReference{{Name: "tcr.ipsnode-minted"}}, p.Spec.ImagePullSecrets)
		}
	}, 2*timeout, tick, "the Pod never ran with the minted token")

	tokens := api.Tokens(nodeInstance)
	require.Len(t, tokens, 1, "one token for the rule")
	assert.Equal(t, 1, api.Calls("CreateInstanceToken"))
	s := &corev1.Secret{}
	require.NoError(t, c.Get(ctx, client.ObjectKey{Namespace: "pull-minted", Name: "tcr.ipsnode-minted"}, s))
	assert.Contains(t, string(s.Data[corev1.DockerConfigJsonKey]), basicAuth(tokens[0].Username, tokens[0].Token))
	require.NoError(t, c.Get(ctx, client.ObjectKeyFromObject(ips), ips))
	cond := meta.FindStatusCondition(ips.Status.Conditions, tcrv1.ConditionCredentialMinted)
	require.NotNil(t, cond)
	assert.Equal(t, [2]string{string(metav1.ConditionTrue), tcrv1.ReasonMinted}, [2]string{string(cond.Status), cond.Reason})
	require.NotNil(t, ips.Status.CredentialExpiresAt)
	assert.Equal(t, tokens[0].ExpiresAt.Unix(), ips.Status.CredentialExpiresAt.Unix())
}
