package controllers_test

import (
	"context"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
)

// setPassword changes the password of the ImagePullSecret name.
func setPassword(t *testing.T, name, pw string) {
	t.Helper()
	require.NoError(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur := getIPS(t, name)
		cur.Spec.Docker.Password = remember(registryUser, pw)
		return env.Client.Update(context.Background(), cur)
	}))
}

// copies returns the resourceVersion and the data of the Secret of name in each namespace.
func copies(t require.TestingT, name string, namespaces ...string) (versions, data []string) {
	for _, ns := range namespaces {
		s, err := getSecret(ns, tcrv1.SecretNamePrefix+name)
		require.NoError(t, err)
		versions = append(versions, s.ResourceVersion)
		data = append(data, string(s.Data[corev1.DockerConfigJsonKey]))
	}
	return versions, data
}

func TestRotationTheRegistryRejectsIsHeld(t *testing.T) {
	startManager(t)
	right, typo, next := "Pw-rot-RIGHT-4c1e", "Pw-rot-TYPO-77d0", "Pw-rot-NEXT-b5a9"
	reg := startRegistry(t, right)
	remember(registryUser, next)
	trust(t, reg)
	createNamespace(t, "rot-a", nil, "default")
	createNamespace(t, "rot-b", nil, "default")
	createIPS(t, credIPS("rot-held", "rot-a,rot-b,rot-c", reg.Host, right))
	eventuallyStatus(t, "rot-held", func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		wantCondition(c, st, tcrv1.ConditionCredentialVerified, metav1.ConditionTrue, tcrv1.ReasonAccepted, "registry "+reg.Host+" accepted the credential")
		assert.Equal(c, metav1.ConditionTrue, readyStatus(st))
	})
	versions, _ := copies(t, "rot-held", "rot-a", "rot-b")
	before := managerRequests.String()

	// A typo: the registry rejects it, every copy keeps the working password.
	setPassword(t, "rot-held", typo)
	held := fmt.Sprintf("the new credential is held: the token service %s of registry %s rejected the credential (HTTP 401); "+
		"the last accepted credential stays distributed until the registry accepts the new one (rotationPolicy Verified)", reg.Host, reg.Host)
	eventuallyStatus(t, "rot-held", func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		wantCondition(c, st, tcrv1.ConditionReady, metav1.ConditionFalse, tcrv1.ReasonRotationHeld, held)
		wantCondition(c, st, tcrv1.ConditionCredentialVerified, metav1.ConditionFalse, tcrv1.ReasonRejected,
			fmt.Sprintf("the token service %s of registry %s rejected the credential (HTTP 401)", reg.Host, reg.Host))
		assert.Equal(c, [2]int32{2, 2}, [2]int32{st.SecretsDesired, st.SecretsSuccess})
	})
	wantEvents(t, "rot-held", tcrv1.ReasonRotationHeld, held)
	got, data := copies(t, "rot-held", "rot-a", "rot-b")
	assert.Equal(t, versions, got, "a held rotation writes no copy")
	want := expectedDockerConfig(reg.Host, registryUser, right)
	assert.Equal(t, []string{want, want}, data)
	for _, line := range strings.Split(strings.TrimPrefix(managerRequests.String(), before), "\n") {
		assert.NotContains(t, line, "/secrets/tcr.ipsrot-held", "a held rotation writes no copy")
	}

	// A namespace that appears during the hold gets the held credential too.
	createNamespace(t, "rot-c", nil, "default")
	eventuallyStatus(t, "rot-held", func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		assert.Equal(c, [2]int32{3, 3}, [2]int32{st.SecretsDesired, st.SecretsSuccess})
		wantCondition(c, st, tcrv1.ConditionReady, metav1.ConditionFalse, tcrv1.ReasonRotationHeld, held)
	})
	_, data = copies(t, "rot-held", "rot-c")
	assert.Equal(t, []string{want}, data)

	// The registry moves to a new password and the rule, after a second typo, follows: the
	// accepted credential is distributed at once, in place.
	reg.SetPassword(t, registryUser, next)
	setPassword(t, "rot-held", next)
	eventuallyStatus(t, "rot-held", func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		wantCondition(c, st, tcrv1.ConditionCredentialVerified, metav1.ConditionTrue, tcrv1.ReasonAccepted, "registry "+reg.Host+" accepted the credential")
		wantCondition(c, st, tcrv1.ConditionReady, metav1.ConditionTrue, tcrv1.ReasonDistributed,
			"Secret tcr.ipsrot-held is up to date in 3 namespaces and referenced by 3 ServiceAccounts")
	})
	want = expectedDockerConfig(reg.Host, registryUser, next)
	got, data = copies(t, "rot-held", "rot-a", "rot-b", "rot-c")
	assert.Equal(t, []string{want, want, want}, data)
	assert.NotEqual(t, versions, got[:2], "the accepted credential was written")
	wantEvents(t, "rot-held", tcrv1.ReasonRotationHeld, held) // no second Event
}

func TestRotationImmediateDistributesWhatTheRegistryRejects(t *testing.T) {
	startManager(t)
	right, typo := "Pw-rot-IMM-RIGHT-0e6f", "Pw-rot-IMM-TYPO-3a2b"
	reg := startRegistry(t, right)
	remember(registryUser, typo)
	trust(t, reg)
	createNamespace(t, "rot-imm", nil, "default")
	ips := credIPS("rot-immediate", "rot-imm", reg.Host, right)
	ips.Spec.RotationPolicy = tcrv1.RotationImmediate
	createIPS(t, ips)
	eventuallyStatus(t, "rot-immediate", func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		wantCondition(c, st, tcrv1.ConditionCredentialVerified, metav1.ConditionTrue, tcrv1.ReasonAccepted, "registry "+reg.Host+" accepted the credential")
	})
	setPassword(t, "rot-immediate", typo)
	eventuallyStatus(t, "rot-immediate", func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		wantCondition(c, st, tcrv1.ConditionCredentialVerified, metav1.ConditionFalse, tcrv1.ReasonRejected,
			fmt.Sprintf("the token service %s of registry %s rejected the credential (HTTP 401)", reg.Host, reg.Host))
		wantCondition(c, st, tcrv1.ConditionReady, metav1.ConditionTrue, tcrv1.ReasonDistributed,
			"Secret tcr.ipsrot-immediate is up to date in 1 namespaces and referenced by 1 ServiceAccounts")
	})
	_, data := copies(t, "rot-immediate", "rot-imm")
	assert.Equal(t, []string{expectedDockerConfig(reg.Host, registryUser, typo)}, data)
	assert.Empty(t, eventsFor(t, "rot-immediate", tcrv1.ReasonRotationHeld))
}

func TestRotationOfANewRuleIsNotHeld(t *testing.T) {
	startManager(t)
	reg := startRegistry(t, "Pw-rot-NEW-RIGHT-9f31")
	trust(t, reg)
	createNamespace(t, "rot-new", nil, "default")
	createIPS(t, credIPS("rot-new", "rot-new", reg.Host, "Pw-rot-NEW-TYPO-c2d4"))
	eventuallyStatus(t, "rot-new", func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		wantCondition(c, st, tcrv1.ConditionCredentialVerified, metav1.ConditionFalse, tcrv1.ReasonRejected,
			fmt.Sprintf("the token service %s of registry %s rejected the credential (HTTP 401)", reg.Host, reg.Host))
		assert.Equal(c, metav1.ConditionTrue, readyStatus(st), "a new rule distributes what it has")
	})
	_, data := copies(t, "rot-new", "rot-new")
	assert.Equal(t, []string{expectedDockerConfig(reg.Host, registryUser, "Pw-rot-NEW-TYPO-c2d4")}, data)

	// Another rejected password replaces it: nothing known to work is there to hold on to.
	setPassword(t, "rot-new", "Pw-rot-NEW-TYPO2-5b70")
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		_, data := copies(c, "rot-new", "rot-new")
		assert.Equal(c, []string{expectedDockerConfig(reg.Host, registryUser, "Pw-rot-NEW-TYPO2-5b70")}, data)
	}, timeout, tick, "a rejected credential replacing a rejected one was held")
	assert.Empty(t, eventsFor(t, "rot-new", tcrv1.ReasonRotationHeld))
}

// TestRotationHoldsOnlyARejection: a new credential that the registry cannot judge (it cannot be
// reached, or does not answer within the wait) is distributed.
func TestRotationHoldsOnlyARejection(t *testing.T) {
	startManager(t)
	right := "Pw-rot-ONLY-RIGHT-5d11"
	reg := startRegistry(t, right)
	trust(t, reg)
	createNamespace(t, "rot-only", nil, "default")
	createIPS(t, credIPS("rot-only", "rot-only", reg.Host, right))
	eventuallyStatus(t, "rot-only", func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		wantCondition(c, st, tcrv1.ConditionCredentialVerified, metav1.ConditionTrue, tcrv1.ReasonAccepted, "registry "+reg.Host+" accepted the credential")
	})
	setServer := func(server string) {
		t.Helper()
		require.NoError(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
			cur := getIPS(t, "rot-only")
			cur.Spec.Docker.Server = server
			return env.Client.Update(context.Background(), cur)
		}))
	}
	distributed := func(server string) {
		t.Helper()
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			_, data := copies(c, "rot-only", "rot-only")
			assert.Equal(c, []string{expectedDockerConfig(server, registryUser, right)}, data)
		}, timeout, tick, "the credential for %s was not distributed", server)
	}

	accepted := func() {
		t.Helper()
		eventuallyStatus(t, "rot-only", func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
			wantCondition(c, st, tcrv1.ConditionCredentialVerified, metav1.ConditionTrue, tcrv1.ReasonAccepted, "registry "+reg.Host+" accepted the credential")
		})
	}

	// From a working credential to a registry (trusted) that never answers the login: no
	// verdict within the rotation's wait (5 s), so it is distributed then, not only once the
	// probe itself gives up (10 s).
	hang := make(chan struct{})
	silent := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-hang }))
	t.Cleanup(func() {
		close(hang)
		silent.Close()
	})
	f, err := os.OpenFile(registryCAFile, os.O_APPEND|os.O_WRONLY, 0o600)
	require.NoError(t, err)
	_, err = f.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: silent.Certificate().Raw}))
	require.NoError(t, err)
	require.NoError(t, f.Close())
	host := strings.TrimPrefix(silent.URL, "https://")
	setServer(host)
	start := time.Now()
	distributed(host)
	assert.Less(t, time.Since(start), 8*time.Second, "the rotation waited for the probe's own timeout")

	// Back to the registry, then from that working credential to one that cannot be reached.
	setServer(reg.Host)
	distributed(reg.Host)
	accepted()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := l.Addr().String()
	require.NoError(t, l.Close())
	setServer(closed)
	distributed(closed)
	assert.Empty(t, eventsFor(t, "rot-only", tcrv1.ReasonRotationHeld))
}

// TestRotationHeldIsReleasedWhenTheRegistryComesToAcceptIt: the held credential itself, once the
// registry accepts it (checked again after the check interval), is distributed.
func TestRotationHeldIsReleasedWhenTheRegistryComesToAcceptIt(t *testing.T) {
	startManager(t)
	old, next := "Pw-rot-REL-OLD-77b3", "Pw-rot-REL-NEXT-0a95"
	reg := startRegistry(t, old)
	remember(registryUser, next)
	trust(t, reg)
	createNamespace(t, "rot-release", nil, "default")
	createIPS(t, credIPS("rot-release", "rot-release", reg.Host, old))
	eventuallyStatus(t, "rot-release", func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		wantCondition(c, st, tcrv1.ConditionCredentialVerified, metav1.ConditionTrue, tcrv1.ReasonAccepted, "registry "+reg.Host+" accepted the credential")
	})
	// The rule moves first; the registry has not yet.
	setPassword(t, "rot-release", next)
	eventuallyStatus(t, "rot-release", func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		assert.Equal(c, tcrv1.ReasonRotationHeld, meta.FindStatusCondition(st.Conditions, tcrv1.ConditionReady).Reason)
	})
	_, data := copies(t, "rot-release", "rot-release")
	assert.Equal(t, []string{expectedDockerConfig(reg.Host, registryUser, old)}, data)

	// The registry follows; the next check, after the interval, releases the hold.
	reg.SetPassword(t, registryUser, next)
	advanceClock(time.Hour + time.Minute)
	touch(t, "rot-release", "recheck")
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		_, data := copies(c, "rot-release", "rot-release")
		assert.Equal(c, []string{expectedDockerConfig(reg.Host, registryUser, next)}, data)
	}, timeout, tick, "the hold was not released")
	eventuallyStatus(t, "rot-release", func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		wantCondition(c, st, tcrv1.ConditionReady, metav1.ConditionTrue, tcrv1.ReasonDistributed,
			"Secret tcr.ipsrot-release is up to date in 1 namespaces and referenced by 1 ServiceAccounts")
	})
}
