package controllers_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
	"github.com/tcr-assistant/tcr-assistant/internal/faketcr"
	"github.com/tcr-assistant/tcr-assistant/internal/testregistry"
	"github.com/tcr-assistant/tcr-assistant/tcrapi"
)

// The TCR API of the tests (started in TestMain): one API key, and one instance per test so that
// their tokens never mix.
const (
	apiKeyID     = "AKIDmintedTEST0000000000000000000001"
	apiKeySecret = "Sk-minted-TEST-a3f9e1c07b5d4c2e"
)

var (
	tcrAPI       *faketcr.Server
	tcrInstances = []string{"tcr-refresh1", "tcr-failure1", "tcr-longterm", "tcr-keygone1", "tcr-switch01"}
)

// createAPIKey creates the API key Secret name in the own namespace, opted in as a password
// source unless unlabelled.
func createAPIKey(t *testing.T, name, id, key string, labelled bool) {
	t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ownNamespace, Name: name},
		Data: map[string][]byte{"SecretId": []byte(id), "SecretKey": []byte(key)}}
	if labelled {
		s.Labels = map[string]string{tcrv1.PasswordSourceLabel: "true"}
	}
	require.NoError(t, env.Client.Create(context.Background(), s))
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), s) })
}

// mintingRegistry starts a test registry that accepts the live tokens of the TCR API.
func mintingRegistry(t *testing.T) *testregistry.Registry {
	t.Helper()
	reg := testregistry.Start(t, testregistry.Options{Users: map[string]string{"pusher": remember("pusher", "Pw-minted-PUSH-61aa")},
		Authenticate: tcrAPI.Authenticate})
	registriesMu.Lock()
	registries = append(registries, reg)
	registriesMu.Unlock()
	trust(t, reg)
	return reg
}

// mintedIPS is an ImagePullSecret whose credential is minted on instance with the key Secret.
func mintedIPS(name, namespaces, server, instance string, typ tcrv1.InstanceTokenType, key string) *tcrv1.ImagePullSecret {
	ips := newIPS(name, namespaces, "*")
	ips.Spec.Docker = tcrv1.DockerCredential{Server: server, InstanceToken: &tcrv1.InstanceToken{
		RegistryID: instance, Region: "ap-guangzhou", Type: typ, APIKeySecretRef: &tcrv1.SecretReference{Name: key}}}
	return ips
}

// liveTokens returns the tokens of instance the fake still holds.
func liveTokens(instance string) []faketcr.Token { return tcrAPI.Tokens(instance) }

// counter returns the value of a counter series with exactly these labels (0 when absent).
func counter(t require.TestingT, metric string, labels map[string]string) float64 {
	families, err := metrics.Registry.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != metric {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue series
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func TestMintedTokenIsDistributedAndRefreshedBeforeItExpires(t *testing.T) {
	startManager(t)
	const instance = "tcr-refresh1"
	reg := mintingRegistry(t)
	createAPIKey(t, "api-key-refresh", apiKeyID, apiKeySecret, true)
	createNamespace(t, "minted-a", nil, "default")
	createNamespace(t, "minted-b", nil, "default")
	calls := tcrAPI.Calls("CreateInstanceToken")
	createIPS(t, mintedIPS("minted", "minted-a,minted-b", reg.Host, instance, "", "api-key-refresh"))

	var first faketcr.Token
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		if tokens := liveTokens(instance); assert.Len(c, tokens, 1) {
			first = tokens[0]
		}
	}, timeout, tick)
	eventuallyStatus(t, "minted", func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		wantCondition(c, st, tcrv1.ConditionCredentialMinted, metav1.ConditionTrue, tcrv1.ReasonMinted,
			"minted a Temporary token of instance "+instance+" that expires at "+first.ExpiresAt.UTC().Format(time.RFC3339))
		wantCondition(c, st, tcrv1.ConditionCredentialVerified, metav1.ConditionTrue, tcrv1.ReasonAccepted, "registry "+reg.Host+" accepted the credential")
		if assert.NotNil(c, st.CredentialExpiresAt) {
			assert.Equal(c, first.ExpiresAt.Unix(), st.CredentialExpiresAt.Unix(), "the expiry is ExpTime's")
		}
		assert.Empty(c, st.InstanceTokenID, "a Temporary token has no ID to revoke")
		assert.Equal(c, [2]int32{2, 2}, [2]int32{st.SecretsDesired, st.SecretsSuccess})
	})
	want := expectedDockerConfig(reg.Host, first.Username, first.Token)
	_, data := copies(t, "minted", "minted-a", "minted-b")
	assert.Equal(t, []string{want, want}, data)
	s, err := getSecret("minted-a", "tcr.ipsminted")
	require.NoError(t, err)
	uid := s.UID
	assert.Equal(t, 1, tcrAPI.Calls("CreateInstanceToken")-calls, "one token per rule, never one per namespace")

	// The token is kept in one Secret of the own namespace, owned by the rule.
	ips := getIPS(t, "minted")
	state := &corev1.Secret{}
	require.NoError(t, env.Client.Get(context.Background(), types.NamespacedName{Namespace: ownNamespace, Name: "tcr-assistant-token-" + string(ips.UID)}, state))
	require.Len(t, state.OwnerReferences, 1)
	assert.Equal(t, ips.UID, state.OwnerReferences[0].UID)
	assert.Equal(t, first.ExpiresAt.Unix(), first.CreatedAt.Add(time.Hour).Unix(), "a temporary token lasts an hour")

	// Passes before the refresh point (55% to 65% of the hour) mint nothing.
	touch(t, "minted", "early")
	advanceClock(32 * time.Minute)
	touch(t, "minted", "before-refresh")
	time.Sleep(300 * time.Millisecond)
	assert.Equal(t, 1, tcrAPI.Calls("CreateInstanceToken")-calls, "minted again before 55% of the lifetime")

	// After 65% of it, the next pass mints once, and the copies are patched in place.
	advanceClock(8 * time.Minute)
	touch(t, "minted", "after-refresh")
	var second faketcr.Token
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		tokens := liveTokens(instance)
		if assert.Len(c, tokens, 2) {
			second = tokens[1]
		}
	}, timeout, tick)
	want = expectedDockerConfig(reg.Host, second.Username, second.Token)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		_, data := copies(c, "minted", "minted-a", "minted-b")
		assert.Equal(c, []string{want, want}, data)
	}, timeout, tick)
	s, err = getSecret("minted-a", "tcr.ipsminted")
	require.NoError(t, err)
	assert.Equal(t, uid, s.UID, "rotated in place")
	eventuallyStatus(t, "minted", func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		if assert.NotNil(c, st.CredentialExpiresAt) {
			assert.Equal(c, second.ExpiresAt.Unix(), st.CredentialExpiresAt.Unix())
		}
	})
	touch(t, "minted", "after-refresh-2")
	time.Sleep(300 * time.Millisecond)
	assert.Equal(t, 2, tcrAPI.Calls("CreateInstanceToken")-calls, "exactly one call per refresh")
	v, ok := gauge(t, "tcr_assistant_instance_token_last_minted_timestamp_seconds", "minted")
	assert.True(t, ok)
	assert.InDelta(t, float64(second.CreatedAt.Unix()), v, 1)
}

func TestMintFailuresLeaveTheCopiesAsTheyAre(t *testing.T) {
	startManager(t)
	const instance = "tcr-failure1"
	reg := mintingRegistry(t)
	createAPIKey(t, "api-key-failure", apiKeyID, apiKeySecret, true)
	createNamespace(t, "mint-fail", nil, "default")
	createIPS(t, mintedIPS("mint-fail", "mint-fail", reg.Host, instance, tcrv1.InstanceTokenTemporary, "api-key-failure"))
	eventuallyStatus(t, "mint-fail", func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		assert.Equal(c, metav1.ConditionTrue, readyStatus(st))
		assert.Equal(c, int32(1), st.SecretsSuccess)
	})
	versions, data := copies(t, "mint-fail", "mint-fail")
	before := counter(t, "tcr_assistant_tcr_api_errors_total", map[string]string{"action": "CreateInstanceToken", "code": "AuthFailure.SignatureFailure"})

	// A new API key mints again at once; a wrong SecretKey is refused, and the copies stay.
	wrongKey := remember("", "Sk-minted-WRONG-0d4471b2c9e8")
	require.NoError(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		s := &corev1.Secret{}
		require.NoError(t, env.Client.Get(context.Background(), types.NamespacedName{Namespace: ownNamespace, Name: "api-key-failure"}, s))
		s.Data["SecretKey"] = []byte(wrongKey)
		return env.Client.Update(context.Background(), s)
	}))
	failed := "CreateInstanceToken failed: AuthFailure.SignatureFailure: The provided credentials could not be validated. " +
		"Please check your signature is correct.; the distributed Secrets are left as they are"
	eventuallyStatus(t, "mint-fail", func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		wantCondition(c, st, tcrv1.ConditionCredentialMinted, metav1.ConditionFalse, "AuthFailure_SignatureFailure", failed)
		assert.Equal(c, metav1.ConditionTrue, readyStatus(st), "the copies hold the last token, which works")
	})
	wantEvents(t, "mint-fail", "AuthFailure_SignatureFailure", failed)
	got, gotData := copies(t, "mint-fail", "mint-fail")
	assert.Equal(t, versions, got, "a failed mint writes no copy")
	assert.Equal(t, data, gotData)
	assert.Equal(t, before+1, counter(t, "tcr_assistant_tcr_api_errors_total", map[string]string{"action": "CreateInstanceToken", "code": "AuthFailure.SignatureFailure"}))

	// An authorization error backs off a minute, not the 5 s of other errors.
	authErrors := func(c require.TestingT) float64 {
		return counter(c, "tcr_assistant_tcr_api_errors_total", map[string]string{"action": "CreateInstanceToken", "code": "AuthFailure.SignatureFailure"})
	}
	requests := tcrAPI.Requests()
	advanceClock(10 * time.Second)
	touch(t, "mint-fail", "retry-early")
	time.Sleep(300 * time.Millisecond)
	assert.Equal(t, before+1, authErrors(t), "retried within the minute of an authorization error")
	assert.Equal(t, requests, tcrAPI.Requests())
	advanceClock(time.Minute)
	touch(t, "mint-fail", "retry-due")
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Equal(c, before+2, authErrors(c))
	}, timeout, tick, "not retried after the minute")
	assert.Equal(t, requests+1, tcrAPI.Requests())

	// A key Secret that did not opt in mints nothing.
	createAPIKey(t, "api-key-unlabelled", apiKeyID, apiKeySecret, false)
	calls := tcrAPI.Calls("CreateInstanceToken")
	createIPS(t, mintedIPS("mint-unlabelled", "mint-fail", reg.Host, instance, "", "api-key-unlabelled"))
	eventuallyStatus(t, "mint-unlabelled", func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		wantCondition(c, st, tcrv1.ConditionReady, metav1.ConditionFalse, tcrv1.ReasonPasswordSourceNotAllowed,
			"Secret "+ownNamespace+"/api-key-unlabelled named by docker.instanceToken.apiKeySecretRef may not be a password source: "+
				`it does not carry the label tcr.tencentcloudcr.com/password-source: "true", by which a Secret opts in to being a password source; nothing is minted with it`)
	})
	assert.Equal(t, calls, tcrAPI.Calls("CreateInstanceToken"))

	// A rule that never minted has nothing to distribute: Ready is False with the API's code.
	createAPIKey(t, "api-key-ok", apiKeyID, apiKeySecret, true)
	tcrAPI.FailNext("CreateInstanceToken", "ResourceNotFound.TcrResourceNotFound", "The instance does not exist.")
	createIPS(t, mintedIPS("mint-none", "mint-fail", reg.Host, instance, "", "api-key-ok"))
	none := "CreateInstanceToken failed: ResourceNotFound.TcrResourceNotFound: The instance does not exist.; the distributed Secrets are left as they are"
	eventuallyStatus(t, "mint-none", func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		wantCondition(c, st, tcrv1.ConditionReady, metav1.ConditionFalse, "ResourceNotFound_TcrResourceNotFound", none)
		wantCondition(c, st, tcrv1.ConditionCredentialMinted, metav1.ConditionFalse, "ResourceNotFound_TcrResourceNotFound", none)
	})
	_, err := getSecret("mint-fail", "tcr.ipsmint-none")
	assert.True(t, apierrors.IsNotFound(err), "nothing distributed: %v", err)

	// Without apiKeySecretRef the manager's own cloud identity mints; this machine has none.
	noKey := mintedIPS("mint-identity", "mint-fail", reg.Host, instance, "", "")
	noKey.Spec.Docker.InstanceToken.APIKeySecretRef = nil
	calls = tcrAPI.Calls("CreateInstanceToken")
	createIPS(t, noKey)
	identity := "CreateInstanceToken failed: docker.instanceToken has no apiKeySecretRef and the manager's own cloud identity is unavailable: " +
		"no cloud identity: neither TKE pod identity (the variables TKE_REGION, TKE_PROVIDER_ID, TKE_WEB_IDENTITY_TOKEN_FILE, TKE_ROLE_ARN) " +
		"nor a CVM role (metadata service) is available; the distributed Secrets are left as they are"
	eventuallyStatus(t, "mint-identity", func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		wantCondition(c, st, tcrv1.ConditionReady, metav1.ConditionFalse, tcrv1.ReasonCloudCredentialUnavailable, identity)
	})
	assert.Equal(t, calls, tcrAPI.Calls("CreateInstanceToken"), "nothing was sent without a credential")
}

func TestLongTermTokensAreRevokedWithTheirRule(t *testing.T) {
	startManager(t)
	ctx := context.Background()
	const instance = "tcr-longterm"
	reg := mintingRegistry(t)
	createAPIKey(t, "api-key-longterm", apiKeyID, apiKeySecret, true)
	createNamespace(t, "longterm", nil, "default")

	// Tokens on the instance before the rule: an orphan of this cluster (its rule is gone), one
	// of another cluster, and one nobody marked.
	api := tcrapi.New(tcrapi.Config{Endpoint: tcrAPI.Endpoint, RootCAs: tcrAPI.CAPool}, tcrapi.Credential{SecretID: apiKeyID, SecretKey: apiKeySecret}, "ap-guangzhou")
	own := &corev1.Namespace{}
	require.NoError(t, env.Client.Get(ctx, types.NamespacedName{Name: ownNamespace}, own))
	orphan, err := api.CreateInstanceToken(ctx, instance, true, "tcr-assistant:"+string(own.UID)+"/0c9a6f1e-dead-4d5e-9f00-000000000001")
	require.NoError(t, err)
	other, err := api.CreateInstanceToken(ctx, instance, true, "tcr-assistant:another-cluster/0c9a6f1e-dead-4d5e-9f00-000000000002")
	require.NoError(t, err)
	mine, err := api.CreateInstanceToken(ctx, instance, true, "CI robot")
	require.NoError(t, err)

	createIPS(t, mintedIPS("longterm", "longterm", reg.Host, instance, tcrv1.InstanceTokenLongTerm, "api-key-longterm"))
	ips := getIPS(t, "longterm")
	var minted faketcr.Token
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		var ids []string
		for _, tok := range liveTokens(instance) {
			ids = append(ids, tok.ID)
			if strings.HasSuffix(tok.Desc, "/"+string(ips.UID)) {
				minted = tok
			}
		}
		assert.ElementsMatch(c, []string{other.TokenID, mine.TokenID, minted.ID}, ids, "the orphan is revoked, the others stay")
	}, timeout, tick)
	assert.Equal(t, "tcr-assistant:"+string(own.UID)+"/"+string(ips.UID), minted.Desc)
	assert.True(t, minted.LongTerm)
	eventuallyStatus(t, "longterm", func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		assert.Equal(c, minted.ID, st.InstanceTokenID)
		wantCondition(c, st, tcrv1.ConditionCredentialMinted, metav1.ConditionTrue, tcrv1.ReasonMinted, "minted a LongTerm token of instance "+instance)
		assert.Equal(c, metav1.ConditionTrue, readyStatus(st))
	})
	assert.NotContains(t, tokenIDs(instance), orphan.TokenID)

	// A second rule on the instance: its mint's sweep leaves the first rule's token alone; its
	// token, revoked by someone else meanwhile, does not hold its deletion back.
	createIPS(t, mintedIPS("longterm-2", "longterm", reg.Host, instance, tcrv1.InstanceTokenLongTerm, "api-key-longterm"))
	eventuallyStatus(t, "longterm-2", func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		assert.NotEmpty(c, st.InstanceTokenID)
	})
	second := getIPS(t, "longterm-2").Status.InstanceTokenID
	assert.ElementsMatch(t, []string{other.TokenID, mine.TokenID, minted.ID, second}, tokenIDs(instance), "a live rule's token was swept")
	require.NoError(t, api.DeleteInstanceToken(ctx, instance, second))
	deleteIPS(t, "longterm-2")

	// A revocation the API refuses is retried, and the deletion waits for it; each one is
	// confirmed by listing the tokens.
	describes := tcrAPI.Calls("DescribeInstanceToken")
	tcrAPI.FailNext("DeleteInstanceToken", "InternalError", "An internal error occurred; try again later.")
	deleteIPS(t, "longterm")
	wantEvents(t, "longterm", "InternalError", "revoking the LongTerm instance token "+minted.ID+" of "+instance+
		" failed: InternalError: An internal error occurred; try again later.; retrying")
	assert.Greater(t, tcrAPI.Calls("DescribeInstanceToken"), describes, "the revocation was not confirmed")
	assert.ElementsMatch(t, []string{other.TokenID, mine.TokenID}, tokenIDs(instance), "the rule's token is revoked with it")
	state := &corev1.Secret{}
	err = env.Client.Get(ctx, types.NamespacedName{Namespace: ownNamespace, Name: "tcr-assistant-token-" + string(ips.UID)}, state)
	assert.True(t, apierrors.IsNotFound(err), "the token's state goes with the rule: %v", err)
}

func tokenIDs(instance string) []string {
	var ids []string
	for _, tok := range liveTokens(instance) {
		ids = append(ids, tok.ID)
	}
	return ids
}

func TestDeletionWaitsForTheAPIKeyToRevokeTheToken(t *testing.T) {
	startManager(t)
	ctx := context.Background()
	const instance = "tcr-keygone1"
	reg := mintingRegistry(t)
	createAPIKey(t, "api-key-gone", apiKeyID, apiKeySecret, true)
	createNamespace(t, "keygone", nil, "default")
	createIPS(t, mintedIPS("keygone", "keygone", reg.Host, instance, tcrv1.InstanceTokenLongTerm, "api-key-gone"))
	eventuallyStatus(t, "keygone", func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		assert.NotEmpty(c, st.InstanceTokenID)
		assert.Equal(c, metav1.ConditionTrue, readyStatus(st))
	})
	id := getIPS(t, "keygone").Status.InstanceTokenID

	key := &corev1.Secret{}
	require.NoError(t, env.Client.Get(ctx, types.NamespacedName{Namespace: ownNamespace, Name: "api-key-gone"}, key))
	require.NoError(t, env.Client.Delete(ctx, key))
	eventuallyStatus(t, "keygone", func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		wantCondition(c, st, tcrv1.ConditionReady, metav1.ConditionFalse, tcrv1.ReasonAPIKeySecretNotFound,
			"Secret "+ownNamespace+"/api-key-gone named by docker.instanceToken.apiKeySecretRef does not exist")
	})
	require.NoError(t, env.Client.Delete(ctx, &tcrv1.ImagePullSecret{ObjectMeta: metav1.ObjectMeta{Name: "keygone"}}))
	msg := fmt.Sprintf("the LongTerm instance token %s cannot be revoked: Secret %s/api-key-gone named by docker.instanceToken.apiKeySecretRef does not exist; "+
		`the finalizer stays until it can, or until you remove it (README, "Instance tokens")`, id, ownNamespace)
	eventuallyStatus(t, "keygone", func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		wantCondition(c, st, tcrv1.ConditionTokenRevoked, metav1.ConditionFalse, tcrv1.ReasonAPIKeySecretNotFound, msg)
	})
	// One Event when the key went (the rule could not mint), one when the deletion met it.
	wantEvents(t, "keygone", tcrv1.ReasonAPIKeySecretNotFound,
		"Secret "+ownNamespace+"/api-key-gone named by docker.instanceToken.apiKeySecretRef does not exist", msg)
	_, err := getSecret("keygone", "tcr.ipskeygone")
	assert.True(t, apierrors.IsNotFound(err), "the copies are gone already: %v", err)
	assert.Equal(t, []string{id}, tokenIDs(instance), "the token is still there")

	// The key comes back: the deletion finishes, and the token is revoked.
	createAPIKey(t, "api-key-gone", apiKeyID, apiKeySecret, true)
	require.Eventually(t, func() bool {
		return apierrors.IsNotFound(env.Client.Get(ctx, client.ObjectKey{Name: "keygone"}, &tcrv1.ImagePullSecret{}))
	}, timeout, tick)
	assert.Empty(t, tokenIDs(instance))
}

func TestAnotherInstanceOrTypeRevokesTheReplacedToken(t *testing.T) {
	startManager(t)
	const instance = "tcr-switch01"
	reg := mintingRegistry(t)
	createAPIKey(t, "api-key-switch", apiKeyID, apiKeySecret, true)
	createNamespace(t, "switch", nil, "default")
	createIPS(t, mintedIPS("switch", "switch", reg.Host, instance, tcrv1.InstanceTokenLongTerm, "api-key-switch"))
	eventuallyStatus(t, "switch", func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		assert.NotEmpty(c, st.InstanceTokenID)
	})
	require.Len(t, tokenIDs(instance), 1)

	// To a Temporary token: the LongTerm one is revoked; to a password: the state goes.
	require.NoError(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur := getIPS(t, "switch")
		cur.Spec.Docker.InstanceToken.Type = tcrv1.InstanceTokenTemporary
		return env.Client.Update(context.Background(), cur)
	}))
	eventuallyStatus(t, "switch", func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		assert.Empty(c, st.InstanceTokenID)
		if cond := meta.FindStatusCondition(st.Conditions, tcrv1.ConditionCredentialMinted); assert.NotNil(c, cond) {
			assert.Equal(c, tcrv1.ReasonMinted, cond.Reason)
			assert.True(c, strings.HasPrefix(cond.Message, "minted a Temporary token of instance "+instance+" that expires at "), cond.Message)
		}
		assert.Nil(c, meta.FindStatusCondition(st.Conditions, tcrv1.ConditionCredentialExpiring), "a minted token is renewed: no expiry warning")
	})
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		for _, tok := range liveTokens(instance) {
			assert.False(c, tok.LongTerm, "the LongTerm token %s was not revoked", tok.ID)
		}
	}, timeout, tick)

	// To a password: the minted token's state goes, and so does CredentialMinted.
	ips := getIPS(t, "switch")
	require.NoError(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur := getIPS(t, "switch")
		cur.Spec.Docker = tcrv1.DockerCredential{Server: reg.Host, Username: "user-switch", Password: password("switch-to-password")}
		return env.Client.Update(context.Background(), cur)
	}))
	eventuallyStatus(t, "switch", func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		assert.Nil(c, meta.FindStatusCondition(st.Conditions, tcrv1.ConditionCredentialMinted))
	})
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		err := env.Client.Get(context.Background(), types.NamespacedName{Namespace: ownNamespace, Name: "tcr-assistant-token-" + string(ips.UID)}, &corev1.Secret{})
		assert.True(c, apierrors.IsNotFound(err), "the token state outlived the switch: %v", err)
	}, timeout, tick)
}
