package admission

import (
	"crypto/x509"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTamperingCannotStartALoop damages the certificate Secret in each way issue 13 names and
// runs the provisioner's reconciliation as its loop would, once a minute for a day, counting the
// writes (a reconciliation that reports a change is one Secret write). Each tamper is repaired
// with one write; a lost CA key also moves the serving certificate to the new CA once the
// overlap has passed, as a scheduled rotation does; nothing more follows, and the bundle never
// holds more than maxBundleCAs CAs.
func TestTamperingCannotStartALoop(t *testing.T) {
	future := t0.Add(365 * 24 * time.Hour)
	tests := map[string]struct {
		tamper    func(t *testing.T, data map[string][]byte) map[string][]byte
		wantWrits []string // the changes of each write, in order
	}{
		"a CA certificate without its key": {
			tamper: func(_ *testing.T, data map[string][]byte) map[string][]byte {
				delete(data, KeyCAKey)
				return data
			},
			wantWrits: []string{"issued a CA", "moved the serving certificate to the new CA"},
		},
		"a CA not valid until next year, in front of the bundle": {
			tamper: func(t *testing.T, data map[string][]byte) map[string][]byte {
				data[KeyCACert] = append(slices.Clone(issue(t, testPol, future)[KeyCACert]), data[KeyCACert]...)
				return data
			},
			wantWrits: []string{"dropped a CA that is not valid yet"},
		},
		"the whole Secret replaced by material valid from next year": {
			tamper: func(t *testing.T, _ map[string][]byte) map[string][]byte {
				return issue(t, testPol, future)
			},
			wantWrits: []string{"issued a CA, dropped a CA that is not valid yet, issued a serving certificate"},
		},
		"garbage PEM in every key": {
			tamper: func(_ *testing.T, data map[string][]byte) map[string][]byte {
				garbage := []byte("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n")
				for k := range data {
					data[k] = garbage
				}
				return data
			},
			wantWrits: []string{"issued a CA, issued a serving certificate"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			data := tc.tamper(t, issue(t, testPol, t0))
			var writes []string
			for now := t0.Add(time.Hour); now.Before(t0.Add(25 * time.Hour)); now = now.Add(time.Minute) {
				out, why := step(t, data, testPol, now)
				if len(why) > 0 {
					writes = append(writes, joinWhy(why))
				}
				require.LessOrEqual(t, len(parseCerts(out[KeyCACert])), maxBundleCAs)
				data = out
			}
			assert.Equal(t, tc.wantWrits, writes)
		})
	}
}

func joinWhy(why []string) string {
	out := why[0]
	for _, w := range why[1:] {
		out += ", " + w
	}
	return out
}

// TestRepeatedKeyLossKeepsTheBundleBounded removes ca.key ten times in a row: each removal is
// one write, and the bundle keeps the new CA, the one the served certificate is signed by, and
// one more.
func TestRepeatedKeyLossKeepsTheBundleBounded(t *testing.T) {
	data := issue(t, testPol, t0)
	served := parseCerts(data[KeyTLSCert])[0]
	now := t0.Add(time.Hour)
	for i := range 10 {
		delete(data, KeyCAKey)
		out, why := step(t, data, testPol, now)
		require.NotEmpty(t, why, "round %d", i)
		cas := parseCerts(out[KeyCACert])
		require.LessOrEqual(t, len(cas), maxBundleCAs, "round %d", i)
		assert.True(t, slices.ContainsFunc(cas, func(ca *x509.Certificate) bool { return signedBy(served, ca) }), "round %d: the served certificate's CA stays", i)
		again, why := step(t, out, testPol, now)
		require.Empty(t, why, "round %d: one write per tamper", i)
		data = again
		now = now.Add(time.Second)
	}
}
