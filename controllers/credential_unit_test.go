package controllers

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"k8s.io/apimachinery/pkg/types"

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
