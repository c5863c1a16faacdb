package controllers_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
	"github.com/tcr-assistant/tcr-assistant/internal/testregistry"
)

const registryUser = "100012345678"

var (
	registriesMu sync.Mutex
	// registries is every test registry started; the leak check looks for every token they
	// issued.
	registries []*testregistry.Registry
)

// remember registers a password for the leak check.
func remember(user, pw string) string {
	secretsMu.Lock()
	defer secretsMu.Unlock()
	usedSecrets = append(usedSecrets, pw)
	usernames[pw] = user
	return pw
}

// startRegistry starts a test registry (token authentication, as TCR) with one user.
func startRegistry(t *testing.T, password string) *testregistry.Registry {
	t.Helper()
	remember(registryUser, password)
	reg := testregistry.Start(t, testregistry.Options{Users: map[string]string{registryUser: password}})
	registriesMu.Lock()
	registries = append(registries, reg)
	registriesMu.Unlock()
	return reg
}

// trust appends the CA of reg to the manager's registry CA file.
func trust(t *testing.T, reg *testregistry.Registry) {
	t.Helper()
	f, err := os.OpenFile(registryCAFile, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	require.NoError(t, err)
	_, err = f.Write(reg.CAPEM)
	require.NoError(t, err)
	require.NoError(t, f.Close())
}

// credIPS is an ImagePullSecret for the registry server with the given password.
func credIPS(name, namespaces, server, pw string) *tcrv1.ImagePullSecret {
	ips := newIPS(name, namespaces, "*")
	ips.Spec.Docker = tcrv1.DockerCredential{Server: server, Username: registryUser, Password: remember(registryUser, pw)}
	return ips
}

// jwt returns a token with the given exp; the controller reads exp without checking the
// signature.
func jwt(exp time.Time) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256","typ":"JWT"}`)) + "." +
		enc([]byte(fmt.Sprintf(`{"sub":%q,"exp":%d}`, registryUser, exp.Unix()))) + "." + enc([]byte("Sig-not-checked-"+exp.String()))
}

// wantCondition asserts a condition of st exactly.
func wantCondition(c *assert.CollectT, st tcrv1.ImagePullSecretStatus, typ string, status metav1.ConditionStatus, reason, message string) {
	cond := meta.FindStatusCondition(st.Conditions, typ)
	if assert.NotNil(c, cond, typ) {
		assert.Equal(c, [3]string{string(status), reason, message}, [3]string{string(cond.Status), cond.Reason, cond.Message}, typ)
	}
}

// touch updates an annotation of the ImagePullSecret, which makes a full pass.
func touch(t *testing.T, name, value string) {
	t.Helper()
	passes := reconcileCount(t)
	require.NoError(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur := getIPS(t, name)
		cur.Annotations = map[string]string{"touched": value}
		return env.Client.Update(context.Background(), cur)
	}))
	require.EventuallyWithT(t, func(c *assert.CollectT) { assert.Greater(c, reconcileCount(c), passes) }, timeout, tick)
}

// advanceClock moves the clock of the credential check forward.
func advanceClock(d time.Duration) { clockOffset.Add(int64(d)) }

// wantEvents asserts the Events of reason about name: exactly the notes given, each sent once.
func wantEvents(t *testing.T, name, reason string, notes ...string) {
	t.Helper()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		var got []string
		for _, e := range eventsFor(c, name, reason) {
			assert.Equal(c, "Warning", e.Type)
			assert.Nil(c, e.Series, "sent once, not once per pass")
			got = append(got, e.Note)
		}
		assert.ElementsMatch(c, notes, got)
	}, timeout, tick)
}

func TestCredentialAcceptedRejectedAndRotated(t *testing.T) {
	startManager(t)
	right, wrong := "Pw-cred-RIGHT-a71f", "Pw-cred-WRONG-0c3d"
	reg := startRegistry(t, right)
	trust(t, reg)
	createNamespace(t, "cred-a", nil, "default")

	createIPS(t, credIPS("cred-ok", "cred-a", reg.Host, right))
	eventuallyStatus(t, "cred-ok", func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		wantCondition(c, st, tcrv1.ConditionCredentialVerified, metav1.ConditionTrue, tcrv1.ReasonAccepted,
			"registry "+reg.Host+" accepted the credential")
		assert.Nil(c, meta.FindStatusCondition(st.Conditions, tcrv1.ConditionCredentialExpiring), "a password that is no JWT has no expiry")
		assert.Nil(c, st.CredentialExpiresAt)
		assert.Equal(c, metav1.ConditionTrue, readyStatus(st))
	})
	v, ok := gauge(t, "tcr_assistant_credential_verified", "cred-ok")
	assert.True(t, ok)
	assert.Equal(t, 1.0, v)
	_, ok = gauge(t, "tcr_assistant_credential_expiry_timestamp_seconds", "cred-ok")
	assert.False(t, ok, "no expiry series for a password that is no JWT")
	require.NotEmpty(t, reg.IssuedTokens(), "the probe went through the token service")

	const rejected = "the token service %s of registry %s rejected the credential (HTTP 401)"
	createIPS(t, credIPS("cred-bad", "cred-a", reg.Host, wrong))
	eventuallyStatus(t, "cred-bad", func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		wantCondition(c, st, tcrv1.ConditionCredentialVerified, metav1.ConditionFalse, tcrv1.ReasonRejected,
			fmt.Sprintf(rejected, reg.Host, reg.Host))
		// A refused credential is distributed all the same: distribution does not depend on it.
		assert.Equal(c, [2]int32{1, 1}, [2]int32{st.SecretsDesired, st.SecretsSuccess})
		assert.Equal(c, metav1.ConditionTrue, readyStatus(st))
	})
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		v, ok := gauge(c, "tcr_assistant_credential_verified", "cred-bad")
		assert.True(c, ok)
		assert.Equal(c, 0.0, v)
	}, timeout, tick)
	wantEvents(t, "cred-bad", tcrv1.ReasonRejected, fmt.Sprintf(rejected, reg.Host, reg.Host))
	logKubectl(t, "cred-bad")

	// A pass before the interval asks the registry nothing; after it, the credential is checked
	// again, and the same verdict sends no second Event.
	before := reg.TokenRequests()
	touch(t, "cred-bad", "early")
	time.Sleep(500 * time.Millisecond) // a probe, if one were started, would have ended
	assert.Equal(t, before, reg.TokenRequests(), "checked again before the interval")
	advanceClock(time.Hour + time.Minute)
	touch(t, "cred-bad", "due")
	require.Eventually(t, func() bool { return reg.TokenRequests() > before }, timeout, tick, "not checked again after the interval")
	wantEvents(t, "cred-bad", tcrv1.ReasonRejected, fmt.Sprintf(rejected, reg.Host, reg.Host))

	// Rotation to the right password is checked at once.
	require.NoError(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur := getIPS(t, "cred-bad")
		cur.Spec.Docker.Password = right
		return env.Client.Update(context.Background(), cur)
	}))
	eventuallyStatus(t, "cred-bad", func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		wantCondition(c, st, tcrv1.ConditionCredentialVerified, metav1.ConditionTrue, tcrv1.ReasonAccepted,
			"registry "+reg.Host+" accepted the credential")
	})
	v, _ = gauge(t, "tcr_assistant_credential_verified", "cred-bad")
	assert.Equal(t, 1.0, v)

	deleteIPS(t, "cred-bad")
	_, ok = gauge(t, "tcr_assistant_credential_verified", "cred-bad")
	assert.False(t, ok, "the series of a deleted ImagePullSecret must be removed")
}

func TestCredentialUnreachableRegistryDoesNotHoldDistribution(t *testing.T) {
	startManager(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := l.Addr().String()
	require.NoError(t, l.Close())
	createNamespace(t, "cred-u-a", nil, "default", "builder")
	createNamespace(t, "cred-u-b", nil, "default")

	createIPS(t, credIPS("cred-unreachable", "cred-u-a,cred-u-b", closed, "Pw-cred-UNREACH-5e2a"))
	eventuallyStatus(t, "cred-unreachable", func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		wantCondition(c, st, tcrv1.ConditionCredentialVerified, metav1.ConditionUnknown, tcrv1.ReasonUnreachable,
			"registry "+closed+" refused or dropped the connection")
		assert.Equal(c, [4]int32{2, 2, 3, 3}, [4]int32{st.SecretsDesired, st.SecretsSuccess, st.SAsDesired, st.SAsSuccess})
		wantCondition(c, st, tcrv1.ConditionReady, metav1.ConditionTrue, tcrv1.ReasonDistributed,
			"Secret tcr.ipscred-unreachable is up to date in 2 namespaces and referenced by 3 ServiceAccounts")
	})
	for _, ns := range []string{"cred-u-a", "cred-u-b"} {
		_, err := getSecret(ns, "tcr.ipscred-unreachable")
		require.NoError(t, err)
	}
	assert.Equal(t, []string{"tcr.ipscred-unreachable"}, pullSecrets(t, "cred-u-a", "builder"))
	v, ok := gauge(t, "tcr_assistant_credential_verified", "cred-unreachable")
	assert.True(t, ok)
	assert.Equal(t, -1.0, v)
	assert.Empty(t, eventsFor(t, "cred-unreachable", tcrv1.ReasonRejected), "an unreachable registry proves nothing about the credential")
}

func TestCredentialTLSErrorUntilTheCAIsTrusted(t *testing.T) {
	startManager(t)
	pw := "Pw-cred-PRIVATECA-91bb"
	reg := startRegistry(t, pw)
	createNamespace(t, "cred-tls", nil, "default")
	createIPS(t, credIPS("cred-tls", "cred-tls", reg.Host, pw))
	eventuallyStatus(t, "cred-tls", func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		wantCondition(c, st, tcrv1.ConditionCredentialVerified, metav1.ConditionUnknown, tcrv1.ReasonTLSError,
			"registry "+reg.Host+" presented a certificate signed by an unknown authority (add its CA with --registry-ca-file)")
		assert.Equal(c, int32(1), st.SecretsSuccess)
	})
	assert.Zero(t, reg.TokenRequests(), "the credential went to a registry whose certificate is not trusted")

	// The CA file is read again when it changes, and a change of the CAs is a change of what is
	// checked: the next pass checks again.
	trust(t, reg)
	touch(t, "cred-tls", "ca")
	eventuallyStatus(t, "cred-tls", func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		wantCondition(c, st, tcrv1.ConditionCredentialVerified, metav1.ConditionTrue, tcrv1.ReasonAccepted,
			"registry "+reg.Host+" accepted the credential")
	})
}

func TestCredentialExpiry(t *testing.T) {
	startManager(t)
	now := testNow()
	soon := now.Add(72 * time.Hour).Truncate(time.Second)
	token := jwt(soon)
	reg := startRegistry(t, token)
	trust(t, reg)
	createNamespace(t, "cred-exp", nil, "default")

	at := soon.UTC().Format(time.RFC3339)
	expiring := "the password is a token that expires at " + at + ", in less than 168h0m0s (--credential-expiry-warning)"
	createIPS(t, credIPS("cred-expiring", "cred-exp", reg.Host, token))
	eventuallyStatus(t, "cred-expiring", func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		wantCondition(c, st, tcrv1.ConditionCredentialVerified, metav1.ConditionTrue, tcrv1.ReasonAccepted,
			"registry "+reg.Host+" accepted the credential")
		wantCondition(c, st, tcrv1.ConditionCredentialExpiring, metav1.ConditionTrue, tcrv1.ReasonExpiresSoon, expiring)
		if assert.NotNil(c, st.CredentialExpiresAt) {
			assert.True(c, soon.Equal(st.CredentialExpiresAt.Time), "credentialExpiresAt %v", st.CredentialExpiresAt)
		}
	})
	v, ok := gauge(t, "tcr_assistant_credential_expiry_timestamp_seconds", "cred-expiring")
	assert.True(t, ok)
	assert.Equal(t, float64(soon.Unix()), v)
	touch(t, "cred-expiring", "again")
	wantEvents(t, "cred-expiring", tcrv1.ReasonExpiresSoon, expiring)
	logKubectl(t, "cred-expiring")

	// A token past its exp is Rejected without asking the registry.
	past := now.Add(-time.Hour).Truncate(time.Second)
	expired := jwt(past)
	before := reg.Requests()
	createIPS(t, credIPS("cred-expired", "cred-exp", reg.Host, expired))
	pastAt := past.UTC().Format(time.RFC3339)
	eventuallyStatus(t, "cred-expired", func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		wantCondition(c, st, tcrv1.ConditionCredentialVerified, metav1.ConditionFalse, tcrv1.ReasonRejected,
			"the password is a token that expired at "+pastAt)
		wantCondition(c, st, tcrv1.ConditionCredentialExpiring, metav1.ConditionTrue, tcrv1.ReasonExpired,
			"the password is a token that expired at "+pastAt)
		assert.Equal(c, int32(1), st.SecretsSuccess, "an expired token is distributed all the same")
	})
	wantEvents(t, "cred-expired", tcrv1.ReasonRejected, "the password is a token that expired at "+pastAt)
	v, _ = gauge(t, "tcr_assistant_credential_verified", "cred-expired")
	assert.Equal(t, 0.0, v)
	logKubectl(t, "cred-expired")

	// The first token's exp passes: the next pass says so, without asking the registry either.
	advanceClock(73 * time.Hour)
	touch(t, "cred-expiring", "expired")
	eventuallyStatus(t, "cred-expiring", func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		wantCondition(c, st, tcrv1.ConditionCredentialVerified, metav1.ConditionFalse, tcrv1.ReasonRejected,
			"the password is a token that expired at "+at)
	})
	wantEvents(t, "cred-expiring", tcrv1.ReasonRejected, "the password is a token that expired at "+at)
	assert.Equal(t, before, reg.Requests(), "the registry was asked about an expired token")
}

// logKubectl logs what kubectl shows of an ImagePullSecret (the README's examples come from it).
func logKubectl(t *testing.T, name string) {
	t.Helper()
	wide, _, err := env.Kubectl("", "get", "ipss", name, "-o", "wide")
	require.NoError(t, err)
	desc, _, err := env.Kubectl("", "describe", "ipss", name)
	require.NoError(t, err)
	var lines []string
	for _, metric := range []string{"tcr_assistant_credential_verified", "tcr_assistant_credential_expiry_timestamp_seconds"} {
		if v, ok := gauge(t, metric, name); ok {
			lines = append(lines, fmt.Sprintf("%s{imagepullsecret=%q} %g", metric, name, v))
		}
	}
	t.Logf("kubectl get ipss -o wide:\n%s\nkubectl describe ipss %s:\n%s\nmetrics:\n%s", wide, name, desc, strings.Join(lines, "\n"))
}
