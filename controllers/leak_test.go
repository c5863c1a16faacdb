package controllers_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
)

// gauge returns the value of a per-ImagePullSecret gauge and whether the series exists.
func gauge(t require.TestingT, metric, name string) (float64, bool) {
	families, err := metrics.Registry.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != metric {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "imagepullsecret" && l.GetValue() == name {
					return m.GetGauge().GetValue(), true
				}
			}
		}
	}
	return 0, false
}

// TestMetricsFollowTheImagePullSecret checks the per-CR gauges and their removal.
func TestMetricsFollowTheImagePullSecret(t *testing.T) {
	startManager(t)
	createNamespace(t, "metrics-a", nil, "default", "builder")
	createNamespace(t, "metrics-b", nil, "default")
	createIPS(t, newIPS("metrics", "metrics-a,metrics-b", "*"))
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		for metric, want := range map[string]float64{
			"tcr_assistant_secrets_desired":         2,
			"tcr_assistant_secrets_success":         2,
			"tcr_assistant_serviceaccounts_desired": 3,
			"tcr_assistant_serviceaccounts_success": 3,
		} {
			got, ok := gauge(c, metric, "metrics")
			assert.True(c, ok, metric)
			assert.Equal(c, want, got, metric)
		}
	}, timeout, tick)
	deleteIPS(t, "metrics")
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		_, ok := gauge(c, "tcr_assistant_secrets_desired", "metrics")
		assert.False(c, ok)
	}, timeout, tick, "the series of a deleted ImagePullSecret must be removed")
}

// TestCredentialsNeverLeak runs a scenario through every code path that handles a credential
// (create, rotation, foreign Secret, retargeting, deletion) and then checks that no password,
// auth string or dockerconfigjson used by any test of this package so far appears in the
// manager's log, in any Event or in any status the manager ever wrote. TestMain runs the same
// check again after every test, whatever their order.
func TestCredentialsNeverLeak(t *testing.T) {
	startManager(t)
	ctx := context.Background()
	createNamespace(t, "leak-a", nil, "default")
	createNamespace(t, "leak-b", nil, "default")
	require.NoError(t, env.Client.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "leak-b", Name: "tcr.ipsleak"},
		Data:       map[string][]byte{"x": []byte("y")},
	}))
	ips := newIPS("leak", "leak-a,leak-b", "*")
	createIPS(t, ips)
	eventuallyStatus(t, "leak", func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		assert.Equal(c, int32(1), st.SecretsSuccess)
		assert.Len(c, st.Failures, 1)
	})
	rotated := password("leak-rotated")
	require.NoError(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur := getIPS(t, "leak")
		cur.Spec.Docker.Password = rotated
		cur.Spec.Namespaces = "leak-a"
		return env.Client.Update(ctx, cur)
	}))
	want := expectedDockerConfig(ips.Spec.Docker.Server, ips.Spec.Docker.Username, rotated)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		s, err := getSecret("leak-a", "tcr.ipsleak")
		if assert.NoError(c, err) {
			assert.Equal(c, want, string(s.Data[corev1.DockerConfigJsonKey]))
		}
	}, timeout, tick)
	deleteIPS(t, "leak")
	require.Contains(t, logs.String(), "Cleaned up ImagePullSecret", "the log must cover the scenario")
	require.Contains(t, statuses.String(), "leak-b/tcr.ipsleak", "the statuses written must cover the scenario")
	for _, leak := range leaks() {
		t.Error(leak)
	}
}

// TestProbeNeverLeaks checks the credential probe: a rejected password, then the right one,
// through a registry's token service; neither password nor any token the registry issued may
// appear in the manager's log, an Event, a status or the metrics.
func TestProbeNeverLeaks(t *testing.T) {
	startManager(t)
	right, wrong := "Pw-leak-probe-RIGHT-7b1e", "Pw-leak-probe-WRONG-22c9"
	reg := startRegistry(t, right)
	trust(t, reg)
	createNamespace(t, "leak-probe", nil, "default")
	createIPS(t, credIPS("leak-probe", "leak-probe", reg.Host, wrong))
	eventuallyStatus(t, "leak-probe", func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		assert.True(c, meta.IsStatusConditionFalse(st.Conditions, tcrv1.ConditionCredentialVerified))
	})
	require.NoError(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur := getIPS(t, "leak-probe")
		cur.Spec.Docker.Password = right
		return env.Client.Update(context.Background(), cur)
	}))
	eventuallyStatus(t, "leak-probe", func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		assert.True(c, meta.IsStatusConditionTrue(st.Conditions, tcrv1.ConditionCredentialVerified))
	})
	require.NotEmpty(t, reg.IssuedTokens(), "the scenario must have tokens to look for")
	require.Contains(t, logs.String(), "Checked the registry credential", "the log must cover the probe")
	for _, leak := range leaks() {
		t.Error(leak)
	}
}

// leaks returns where a credential or a registry token used by the tests appears: in the
// manager's log, in an Event, in a status the manager wrote or in the metrics.
func leaks() []string {
	secretsMu.Lock()
	var forbidden []string
	for _, p := range usedSecrets {
		forbidden = append(forbidden, p, base64.StdEncoding.EncodeToString([]byte(p)))
	}
	users := []string{"100012345678"}
	for _, p := range usedSecrets {
		if u, ok := usernames[p]; ok {
			users = append(users, u)
		}
	}
	for _, u := range users {
		for _, p := range usedSecrets {
			forbidden = append(forbidden, base64.StdEncoding.EncodeToString([]byte(u+":"+p)))
		}
	}
	secretsMu.Unlock()
	forbidden = append(forbidden, "tcr.jwt.token") // the sample's password
	// Every token a test registry handed out to the credential probe.
	registriesMu.Lock()
	for _, reg := range registries {
		forbidden = append(forbidden, reg.IssuedTokens()...)
	}
	registriesMu.Unlock()
	// Every instance token the TCR API minted, every SecretKey and every signature it was sent.
	forbidden = append(forbidden, tcrAPI.Issued()...)
	forbidden = append(forbidden, `"auths"`, base64.StdEncoding.EncodeToString([]byte(`{"auths"`))[:8])

	var notes strings.Builder
	events := &eventsv1.EventList{}
	if err := env.Client.List(context.Background(), events); err != nil {
		return []string{"listing Events: " + err.Error()}
	}
	for _, e := range events.Items {
		notes.WriteString(e.Note + "\n" + e.Reason + "\n")
	}
	families, err := metrics.Registry.Gather()
	if err != nil {
		return []string{"gathering the metrics: " + err.Error()}
	}
	var exposition strings.Builder
	for _, f := range families {
		exposition.WriteString(f.String() + "\n")
	}
	var out []string
	for where, text := range map[string]string{"manager log": logs.String(), "Events": notes.String(), "statuses written": statuses.String(),
		"metrics": exposition.String()} {
		for _, secret := range forbidden {
			if strings.Contains(text, secret) {
				out = append(out, fmt.Sprintf("a credential (%d characters) appears in the %s", len(secret), where))
			}
		}
	}
	return out
}
