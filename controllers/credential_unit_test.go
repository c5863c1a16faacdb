package controllers

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
	"github.com/tcr-assistant/tcr-assistant/credcheck"
)

// TestCredentialNextPass checks when the full pass is queued again for the credential check: at
// the next periodic probe, or earlier when a token enters its warning period or expires.
func TestCredentialNextPass(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := newCredentials(Options{CredentialCheckInterval: time.Hour, CredentialExpiryWarning: 7 * 24 * time.Hour,
		Now: func() time.Time { return now }}, nil)
	accepted := &credcheck.Result{Outcome: credcheck.Accepted}
	for name, tt := range map[string]struct {
		state *credState
		want  time.Duration
	}{
		"unknown ImagePullSecret":           {nil, time.Hour},
		"probe running":                     {&credState{running: true, result: accepted, checkedAt: now.Add(-2 * time.Hour)}, time.Hour},
		"checked 20 minutes ago":            {&credState{result: accepted, checkedAt: now.Add(-20 * time.Minute)}, 40 * time.Minute},
		"warning period starts in 10m":      {&credState{result: accepted, checkedAt: now, hasExpiry: true, expiry: now.Add(7*24*time.Hour + 10*time.Minute)}, 10 * time.Minute},
		"expires in 5m":                     {&credState{result: accepted, checkedAt: now, hasExpiry: true, expiry: now.Add(5 * time.Minute)}, 5 * time.Minute},
		"expires in a month":                {&credState{result: accepted, checkedAt: now, hasExpiry: true, expiry: now.Add(30 * 24 * time.Hour)}, time.Hour},
		"expired, not probed again":         {&credState{result: accepted, checkedAt: now.Add(-3 * time.Hour), hasExpiry: true, expiry: now.Add(-time.Hour)}, time.Hour},
		"expires in 10ms: at least 1s away": {&credState{result: accepted, checkedAt: now, hasExpiry: true, expiry: now.Add(10 * time.Millisecond)}, time.Second},
	} {
		c.byOwner = map[types.UID]*credState{}
		if tt.state != nil {
			c.byOwner["uid"] = tt.state
		}
		assert.Equal(t, tt.want, c.next("uid"), name)
	}
}

// TestCredentialExpiringWindow pins the warning period of credentialStatus: a token that expires
// later than --credential-expiry-warning from now, or exactly then, is ExpiresLater with no Event;
// one second less is ExpiresSoon with one Warning Event; at its expiry it is Expired.
func TestCredentialExpiringWindow(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const warning = 7 * 24 * time.Hour
	at := func(exp time.Time) string { return exp.UTC().Format(time.RFC3339) }
	for name, tt := range map[string]struct {
		expiry time.Time
		status metav1.ConditionStatus
		reason string
		// message of the condition, and of the one Warning Event when event is set
		message string
		event   bool
	}{
		"a month away": {now.Add(30 * 24 * time.Hour), metav1.ConditionFalse, tcrv1.ReasonExpiresLater,
			"the password is a token that expires at 2026-01-31T00:00:00Z", false},
		"a second after the warning period": {now.Add(warning + time.Second), metav1.ConditionFalse, tcrv1.ReasonExpiresLater,
			"the password is a token that expires at 2026-01-08T00:00:01Z", false},
		"at exactly now + warning": {now.Add(warning), metav1.ConditionFalse, tcrv1.ReasonExpiresLater,
			"the password is a token that expires at 2026-01-08T00:00:00Z", false},
		"a second inside the warning period": {now.Add(warning - time.Second), metav1.ConditionTrue, tcrv1.ReasonExpiresSoon,
			"the password is a token that expires at 2026-01-07T23:59:59Z, in less than 168h0m0s (--credential-expiry-warning)", true},
		"at its expiry": {now, metav1.ConditionTrue, tcrv1.ReasonExpired,
			"the password is a token that expired at 2026-01-01T00:00:00Z", false},
	} {
		t.Run(name, func(t *testing.T) {
			c := newCredentials(Options{CredentialCheckInterval: time.Hour, CredentialExpiryWarning: warning,
				Now: func() time.Time { return now }}, nil)
			c.byOwner["uid"] = &credState{hasExpiry: true, expiry: tt.expiry}
			rec := events.NewFakeRecorder(10)
			r := &Reconciler{creds: c, recorder: rec}
			ips := &tcrv1.ImagePullSecret{ObjectMeta: metav1.ObjectMeta{Name: "ips", UID: "uid", Generation: 3}}
			st := &tcrv1.ImagePullSecretStatus{}
			r.credentialStatus(ips, &tcrv1.ImagePullSecretStatus{}, st)

			cond := meta.FindStatusCondition(st.Conditions, tcrv1.ConditionCredentialExpiring)
			require.NotNil(t, cond)
			assert.Equal(t, [3]string{string(tt.status), tt.reason, tt.message}, [3]string{string(cond.Status), cond.Reason, cond.Message})
			assert.Equal(t, int64(3), cond.ObservedGeneration)
			if assert.NotNil(t, st.CredentialExpiresAt) {
				assert.Equal(t, at(tt.expiry), at(st.CredentialExpiresAt.Time))
			}
			var got []string
			for len(rec.Events) > 0 {
				got = append(got, <-rec.Events)
			}
			var want []string
			if tt.event {
				want = []string{"Warning " + tcrv1.ReasonExpiresSoon + " " + tt.message}
			}
			if tt.reason == tcrv1.ReasonExpired {
				want = []string{"Warning " + tcrv1.ReasonRejected + " " + tt.message}
			}
			assert.Equal(t, want, got)

			// The same status again, as the API server holds it: no second Event.
			cur := st.DeepCopy()
			r.credentialStatus(ips, cur, &tcrv1.ImagePullSecretStatus{})
			assert.Empty(t, rec.Events, "one Event per change, not one per pass")
		})
	}
}
