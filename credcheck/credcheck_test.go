package credcheck_test

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tcr-assistant/tcr-assistant/credcheck"
	"github.com/tcr-assistant/tcr-assistant/internal/testregistry"
)

const user = "probe-user"

// Distinctive passwords, so that a leak cannot be a coincidence.
const (
	rightPassword = "Pw-credcheck-RIGHT-9f1c27"
	wrongPassword = "Pw-credcheck-WRONG-44e0ab"
	newPassword   = "Pw-credcheck-ROTATED-5d83e2"
)

// assertNoLeak fails when the result mentions a password, a Basic auth string or a token.
func assertNoLeak(t *testing.T, reg *testregistry.Registry, res credcheck.Result, passwords ...string) {
	t.Helper()
	text := fmt.Sprintf("%+v %#v", res, res)
	secrets := append([]string{}, passwords...)
	for _, p := range passwords {
		secrets = append(secrets, base64.StdEncoding.EncodeToString([]byte(user+":"+p)))
	}
	if reg != nil {
		secrets = append(secrets, reg.IssuedTokens()...)
	}
	for _, s := range secrets {
		assert.NotContains(t, text, s, "the probe result leaks a credential or token")
	}
}

func TestTokenAuthOutcomes(t *testing.T) {
	reg := testregistry.Start(t, testregistry.Options{Users: map[string]string{user: rightPassword}})
	p := &credcheck.Prober{RootCAs: reg.CAPool}
	ctx := context.Background()

	res := p.Probe(ctx, reg.Host, user, rightPassword)
	assert.Equal(t, credcheck.Result{Outcome: credcheck.Accepted, Message: "registry " + reg.Host + " accepted the credential"}, res)
	assertNoLeak(t, reg, res, rightPassword)
	require.NotEmpty(t, reg.IssuedTokens(), "the accepted probe went through the token service")

	res = p.Probe(ctx, reg.Host, user, wrongPassword)
	assert.Equal(t, credcheck.Result{Outcome: credcheck.Rejected,
		Message: "the token service " + reg.Host + " of registry " + reg.Host + " rejected the credential (HTTP 401)"}, res)
	assertNoLeak(t, reg, res, wrongPassword, rightPassword)

	res = p.Probe(ctx, reg.Host, "nobody", rightPassword)
	assert.Equal(t, credcheck.Rejected, res.Outcome)

	// Rotation: the old password is refused from now on, the new one accepted.
	reg.SetPassword(t, user, newPassword)
	res = p.Probe(ctx, reg.Host, user, rightPassword)
	assert.Equal(t, credcheck.Rejected, res.Outcome, res.Message)
	assertNoLeak(t, reg, res, rightPassword, newPassword)
	res = p.Probe(ctx, reg.Host, user, newPassword)
	assert.Equal(t, credcheck.Accepted, res.Outcome, res.Message)
	assertNoLeak(t, reg, res, rightPassword, newPassword)

	// A registry whose CA is not trusted gets no credential.
	before := reg.TokenRequests()
	res = (&credcheck.Prober{RootCAs: x509.NewCertPool()}).Probe(ctx, reg.Host, user, newPassword)
	assert.Equal(t, credcheck.Result{Outcome: credcheck.TLSError,
		Message: "registry " + reg.Host + " presented a certificate signed by an unknown authority (add its CA with --registry-ca-file)"}, res)
	assert.Equal(t, before, reg.TokenRequests(), "the token service was asked despite the untrusted certificate")
	assertNoLeak(t, reg, res, newPassword)
}

func TestBasicAuthOutcomes(t *testing.T) {
	reg := testregistry.Start(t, testregistry.Options{Auth: testregistry.Basic, Users: map[string]string{user: rightPassword}})
	p := &credcheck.Prober{RootCAs: reg.CAPool}
	ctx := context.Background()

	res := p.Probe(ctx, reg.Host, user, rightPassword)
	assert.Equal(t, credcheck.Result{Outcome: credcheck.Accepted, Message: "registry " + reg.Host + " accepted the credential"}, res)
	assertNoLeak(t, nil, res, rightPassword)

	res = p.Probe(ctx, reg.Host, user, wrongPassword)
	assert.Equal(t, credcheck.Result{Outcome: credcheck.Rejected, Message: "registry " + reg.Host + " rejected the credential (HTTP 401)"}, res)
	assertNoLeak(t, nil, res, rightPassword, wrongPassword)

	reg.SetPassword(t, user, newPassword)
	assert.Equal(t, credcheck.Rejected, p.Probe(ctx, reg.Host, user, rightPassword).Outcome)
	res = p.Probe(ctx, reg.Host, user, newPassword)
	assert.Equal(t, credcheck.Accepted, res.Outcome, res.Message)
	assertNoLeak(t, nil, res, rightPassword, newPassword)
}

func TestUnreachable(t *testing.T) {
	ctx := context.Background()
	// A port nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := l.Addr().String()
	require.NoError(t, l.Close())
	res := (&credcheck.Prober{}).Probe(ctx, closed, user, rightPassword)
	assert.Equal(t, credcheck.Result{Outcome: credcheck.Unreachable, Message: "registry " + closed + " refused or dropped the connection"}, res)
	assertNoLeak(t, nil, res, rightPassword)

	// A port that accepts connections and never answers: the timeout ends the probe.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	start := time.Now()
	res = (&credcheck.Prober{Timeout: 300 * time.Millisecond}).Probe(ctx, silent.Addr().String(), user, rightPassword)
	assert.Equal(t, credcheck.Result{Outcome: credcheck.Unreachable, Message: "registry " + silent.Addr().String() + " did not answer in time"}, res)
	assert.Less(t, time.Since(start), 5*time.Second, "the probe outlived its timeout by far")

	// Not a host name.
	res = (&credcheck.Prober{}).Probe(ctx, "https://r.example", user, rightPassword)
	assert.Equal(t, credcheck.Result{Outcome: credcheck.Unreachable, Message: `registry server "https://r.example" is not a host name with an optional port`}, res)
}

func TestPlainHTTPIsTLSError(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	res := (&credcheck.Prober{}).Probe(context.Background(), host, user, rightPassword)
	assert.Equal(t, credcheck.Result{Outcome: credcheck.TLSError, Message: "registry " + host + " does not speak TLS on that port"}, res)
}

// jwt returns an unsigned-looking JWT with the given claims JSON; the probe never checks the
// signature.
func jwt(claims string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256","typ":"JWT"}`)) + "." + enc([]byte(claims)) + "." + enc([]byte("signature-not-checked"))
}

func TestJWTExpiry(t *testing.T) {
	exp, ok := credcheck.JWTExpiry(jwt(`{"sub":"100012345678","exp":1767225600}`))
	assert.True(t, ok)
	assert.Equal(t, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), exp)

	exp, ok = credcheck.JWTExpiry(jwt(`{"exp":1767225600.5}`))
	assert.True(t, ok)
	assert.Equal(t, time.Date(2026, 1, 1, 0, 0, 0, 5e8, time.UTC), exp)

	for name, pw := range map[string]string{
		"plain password":  "S3cr3t.with.dots",
		"no exp":          jwt(`{"sub":"x"}`),
		"exp not number":  jwt(`{"exp":"soon"}`),
		"exp negative":    jwt(`{"exp":-5}`),
		"exp huge":        jwt(`{"exp":1e300}`),
		"payload array":   jwt(`[1,2]`),
		"not base64":      "a.b!.c",
		"header not json": base64.RawURLEncoding.EncodeToString([]byte("nope")) + "." + strings.Split(jwt(`{"exp":1}`), ".")[1] + ".x",
		"too long":        jwt(`{"exp":1767225600,"pad":"` + strings.Repeat("a", 20<<10) + `"}`),
	} {
		_, ok := credcheck.JWTExpiry(pw)
		assert.False(t, ok, name)
	}
}

func TestExpiredTokenRejectedWithoutAskingTheRegistry(t *testing.T) {
	expired := jwt(`{"sub":"` + user + `","exp":1767225600}`)
	reg := testregistry.Start(t, testregistry.Options{Users: map[string]string{user: expired}})
	now := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	p := &credcheck.Prober{RootCAs: reg.CAPool, Now: func() time.Time { return now }}

	before := reg.Requests()
	res := p.Probe(context.Background(), reg.Host, user, expired)
	assert.Equal(t, credcheck.Result{Outcome: credcheck.Rejected,
		Message: "the password is a token that expired at 2026-01-01T00:00:00Z",
		Expiry:  time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}, res)
	assert.Equal(t, before, reg.Requests(), "the registry was asked about an expired token")
	assertNoLeak(t, reg, res, expired)

	// Before its exp, the same token goes to the registry, which accepts it; the expiry comes
	// along with every outcome.
	now = time.Date(2025, 12, 1, 0, 0, 0, 0, time.UTC)
	res = p.Probe(context.Background(), reg.Host, user, expired)
	assert.Equal(t, credcheck.Result{Outcome: credcheck.Accepted, Message: "registry " + reg.Host + " accepted the credential",
		Expiry: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}, res)
	assert.Greater(t, reg.Requests(), before)
	res = (&credcheck.Prober{Now: p.Now}).Probe(context.Background(), reg.Host, user, expired)
	assert.Equal(t, credcheck.TLSError, res.Outcome)
	assert.Equal(t, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), res.Expiry)
	assertNoLeak(t, reg, res, expired)
}

func TestLoadCAs(t *testing.T) {
	reg := testregistry.Start(t, testregistry.Options{Users: map[string]string{user: rightPassword}})
	pool, err := credcheck.LoadCAs(reg.CAFile)
	require.NoError(t, err)
	res := (&credcheck.Prober{RootCAs: pool}).Probe(context.Background(), reg.Host, user, rightPassword)
	assert.Equal(t, credcheck.Accepted, res.Outcome, res.Message)

	empty := filepath.Join(t.TempDir(), "empty.pem")
	require.NoError(t, os.WriteFile(empty, []byte("not a certificate\n"), 0o600))
	_, err = credcheck.LoadCAs(empty)
	assert.EqualError(t, err, "registry CA file "+empty+" holds no PEM certificate")
}

// A token service that answers with an endless body: the probe reads a bounded amount and says
// so, instead of reading without end.
func TestTokenResponseIsBounded(t *testing.T) {
	var realm string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="`+realm+`",service="big"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		chunk := []byte(strings.Repeat("x", 64<<10))
		for i := 0; i < 1024; i++ { // 64 MiB unless the client hangs up
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	defer srv.Close()
	realm = srv.URL + "/token"
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	host := strings.TrimPrefix(srv.URL, "https://")
	res := (&credcheck.Prober{RootCAs: pool}).Probe(context.Background(), host, user, rightPassword)
	assert.Equal(t, credcheck.Result{Outcome: credcheck.Unreachable,
		Message: "the token service " + host + " of registry " + host + " answered with more than 65536 bytes"}, res)
}
