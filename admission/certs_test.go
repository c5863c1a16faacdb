package admission

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var (
	t0      = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	testPol = certPolicy{
		DNSNames:     []string{"tcr-assistant-webhook-service.tcr-assistant-system.svc", "tcr-assistant-webhook-service.tcr-assistant-system.svc.cluster.local"},
		IPs:          []net.IP{net.ParseIP("127.0.0.1")},
		CALifetime:   30 * 24 * time.Hour,
		CertLifetime: 9 * 24 * time.Hour,
		Overlap:      time.Hour,
	}
)

// issue returns certificate material as reconcileCerts produces it from nothing at now.
func issue(t *testing.T, pol certPolicy, now time.Time) map[string][]byte {
	t.Helper()
	data, why, err := reconcileCerts(nil, pol, now)
	require.NoError(t, err)
	require.Equal(t, []string{"issued a CA", "issued a serving certificate"}, why)
	return data
}

// step runs reconcileCerts and requires it to succeed.
func step(t *testing.T, data map[string][]byte, pol certPolicy, now time.Time) (map[string][]byte, []string) {
	t.Helper()
	out, why, err := reconcileCerts(data, pol, now)
	require.NoError(t, err)
	return out, why
}

func TestReconcileCerts(t *testing.T) {
	caRenewal := t0.Add(testPol.CALifetime * 2 / 3).Add(time.Hour)
	tests := map[string]struct {
		// given returns the Secret data to reconcile and the time to reconcile it at.
		given func(t *testing.T) (map[string][]byte, time.Time)
		// wantWhy is the list of changes reconcileCerts reports.
		wantWhy []string
		// sameCA and sameCert say whether ca.crt and tls.crt must be unchanged.
		sameCA, sameCert bool
		// wantCAs is the number of CAs in the resulting bundle.
		wantCAs int
	}{
		"an empty Secret gets a CA and a serving certificate": {
			given: func(*testing.T) (map[string][]byte, time.Time) {
				return map[string][]byte{KeyTLSCert: {}, KeyTLSKey: {}}, t0
			},
			wantWhy: []string{"issued a CA", "issued a serving certificate"},
			wantCAs: 1,
		},
		"a complete, fresh Secret is left alone byte for byte": {
			given: func(t *testing.T) (map[string][]byte, time.Time) {
				return issue(t, testPol, t0), t0.Add(24 * time.Hour)
			},
			sameCA: true, sameCert: true, wantCAs: 1,
		},
		"a serving certificate two thirds into its life is renewed by the same CA": {
			given: func(t *testing.T) (map[string][]byte, time.Time) {
				return issue(t, testPol, t0), t0.Add(testPol.CertLifetime * 2 / 3).Add(time.Hour)
			},
			wantWhy: []string{"renewed the serving certificate"},
			sameCA:  true, wantCAs: 1,
		},
		"an expired serving certificate is replaced": {
			given: func(t *testing.T) (map[string][]byte, time.Time) {
				return issue(t, testPol, t0), t0.Add(testPol.CertLifetime + time.Hour)
			},
			wantWhy: []string{"issued a serving certificate"},
			sameCA:  true, wantCAs: 1,
		},
		"a serving certificate for other names is replaced": {
			given: func(t *testing.T) (map[string][]byte, time.Time) {
				other := testPol
				other.DNSNames = []string{"webhook-service.system.svc"}
				return issue(t, other, t0), t0.Add(time.Hour)
			},
			wantWhy: []string{"issued a serving certificate"},
			sameCA:  true, wantCAs: 1,
		},
		"a damaged serving key is replaced": {
			given: func(t *testing.T) (map[string][]byte, time.Time) {
				data := issue(t, testPol, t0)
				data[KeyTLSKey] = []byte("not a key")
				return data, t0.Add(time.Hour)
			},
			wantWhy: []string{"issued a serving certificate"},
			sameCA:  true, wantCAs: 1,
		},
		"a serving certificate from a foreign CA is replaced": {
			given: func(t *testing.T) (map[string][]byte, time.Time) {
				data, foreign := issue(t, testPol, t0), issue(t, testPol, t0)
				data[KeyTLSCert], data[KeyTLSKey] = foreign[KeyTLSCert], foreign[KeyTLSKey]
				return data, t0.Add(time.Hour)
			},
			wantWhy: []string{"issued a serving certificate"},
			sameCA:  true, wantCAs: 1,
		},
		"a CA two thirds into its life is renewed beside the old one, and the serving certificate waits for the overlap": {
			given: func(t *testing.T) (map[string][]byte, time.Time) {
				data := issue(t, testPol, t0)
				// Keep the serving certificate fresh, so only the CA is due.
				data, _ = step(t, data, testPol, caRenewal.Add(-2*24*time.Hour))
				return data, caRenewal
			},
			wantWhy:  []string{"renewed the CA"},
			sameCert: true, wantCAs: 2,
		},
		"a serving certificate due for renewal waits for the overlap of a CA renewed a moment ago": {
			given: func(t *testing.T) (map[string][]byte, time.Time) {
				data := issue(t, testPol, t0)
				data, _ = step(t, data, testPol, caRenewal.Add(-6*24*time.Hour)) // the serving certificate falls due with the CA
				data, why := step(t, data, testPol, caRenewal)
				require.Contains(t, why, "renewed the CA")
				return data, caRenewal.Add(testPol.Overlap / 2)
			},
			sameCA: true, sameCert: true, wantCAs: 2,
		},
		"after the overlap the serving certificate moves to the new CA": {
			given: func(t *testing.T) (map[string][]byte, time.Time) {
				data := issue(t, testPol, t0)
				data, _ = step(t, data, testPol, caRenewal.Add(-2*24*time.Hour))
				data, _ = step(t, data, testPol, caRenewal)
				return data, caRenewal.Add(testPol.Overlap)
			},
			wantWhy: []string{"moved the serving certificate to the new CA"},
			sameCA:  true, wantCAs: 2,
		},
		"an expired old CA is dropped from the bundle": {
			given: func(t *testing.T) (map[string][]byte, time.Time) {
				data := issue(t, testPol, t0)
				data, _ = step(t, data, testPol, caRenewal)
				data, _ = step(t, data, testPol, caRenewal.Add(testPol.Overlap))
				data, _ = step(t, data, testPol, t0.Add(testPol.CALifetime-time.Hour))
				return data, t0.Add(testPol.CALifetime + time.Hour)
			},
			wantWhy:  []string{"dropped an expired CA"},
			sameCert: true, wantCAs: 1,
		},
		"a lost CA key issues a new CA and keeps the old one so the current serving certificate stays trusted": {
			given: func(t *testing.T) (map[string][]byte, time.Time) {
				data := issue(t, testPol, t0)
				delete(data, KeyCAKey)
				return data, t0.Add(time.Hour)
			},
			wantWhy:  []string{"issued a CA"},
			sameCert: true, wantCAs: 2,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			data, now := tc.given(t)
			out, why := step(t, data, testPol, now)
			assert.Equal(t, tc.wantWhy, why)
			assert.Equal(t, tc.sameCA, bytes.Equal(data[KeyCACert], out[KeyCACert]), "ca.crt unchanged")
			assert.Equal(t, tc.sameCert, bytes.Equal(data[KeyTLSCert], out[KeyTLSCert]), "tls.crt unchanged")

			cas := parseCerts(out[KeyCACert])
			assert.Len(t, cas, tc.wantCAs)
			// Whatever happened, the result is a working pair trusted by the bundle it ships with.
			pair, err := tls.X509KeyPair(out[KeyTLSCert], out[KeyTLSKey])
			require.NoError(t, err)
			leaf, err := x509.ParseCertificate(pair.Certificate[0])
			require.NoError(t, err)
			pool := x509.NewCertPool()
			require.True(t, pool.AppendCertsFromPEM(out[KeyCACert]))
			for _, host := range append(testPol.DNSNames, "127.0.0.1") {
				_, err = leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: pool, CurrentTime: now})
				assert.NoError(t, err, host)
			}
			caKey, err := parseKey(out[KeyCAKey])
			require.NoError(t, err)
			assert.True(t, keyMatches(cas[0], caKey), "ca.key belongs to the newest CA")

			// And it is a fixed point: reconciling it again at the same time changes nothing.
			again, why := step(t, out, testPol, now)
			assert.Empty(t, why)
			assert.Equal(t, out, again)
		})
	}
}

func TestServingCertificateNeverOutlivesItsCA(t *testing.T) {
	pol := testPol
	pol.CALifetime, pol.CertLifetime = 10*24*time.Hour, 365*24*time.Hour
	data := issue(t, pol, t0)
	leaf := parseCerts(data[KeyTLSCert])[0]
	ca := parseCerts(data[KeyCACert])[0]
	assert.Equal(t, ca.NotAfter, leaf.NotAfter)
}

func TestSplitSANs(t *testing.T) {
	tests := map[string]struct {
		in      []string
		wantDNS []string
		wantIPs []string
	}{
		"nothing gives nothing":               {},
		"IPv4 and IPv6 addresses are IPs":     {in: []string{"127.0.0.1", "::1"}, wantIPs: []string{"127.0.0.1", "::1"}},
		"host names are DNS names":            {in: []string{"localhost", "webhook.example.com"}, wantDNS: []string{"localhost", "webhook.example.com"}},
		"empty entries are ignored, in mixes": {in: []string{"", "10.0.0.1", "a.b"}, wantDNS: []string{"a.b"}, wantIPs: []string{"10.0.0.1"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			dns, ips := splitSANs(tc.in)
			assert.Equal(t, tc.wantDNS, dns)
			var got []string
			for _, ip := range ips {
				got = append(got, ip.String())
			}
			assert.Equal(t, tc.wantIPs, got)
		})
	}
}
