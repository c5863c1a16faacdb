package tcrapi_test

import (
	"compress/flate"
	"compress/gzip"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tcr-assistant/tcr-assistant/credcheck"
	"github.com/tcr-assistant/tcr-assistant/internal/faketcr"
	"github.com/tcr-assistant/tcr-assistant/internal/testregistry"
	"github.com/tcr-assistant/tcr-assistant/tcrapi"
)

// Distinctive secrets, so that a leak cannot be a coincidence.
const (
	secretID  = "AKIDtcrapiTEST0001"
	secretKey = "SK-tcrapi-SECRET-6b0e4f"
	stsToken  = "STS-tcrapi-TOKEN-91d2aa"
	registry  = "tcr-tcrapi01"
	region    = "ap-guangzhou"
)

func startFake(t *testing.T, opts faketcr.Options) *faketcr.Server {
	t.Helper()
	if opts.Keys == nil {
		opts.Keys = map[string]string{secretID: secretKey}
	}
	if opts.Registries == nil {
		opts.Registries = []string{registry}
	}
	return faketcr.Start(t, opts)
}

func client(fake *faketcr.Server, cred tcrapi.Credential) *tcrapi.Client {
	return tcrapi.New(tcrapi.Config{Endpoint: fake.Endpoint, RootCAs: fake.CAPool}, cred, region)
}

var goodCred = tcrapi.Credential{SecretID: secretID, SecretKey: secretKey}

// assertNoLeak fails when err, however printed, holds one of the secrets.
func assertNoLeak(t *testing.T, err error, secrets ...string) {
	t.Helper()
	require.Error(t, err)
	text := fmt.Sprintf("%v %+v %#v", err, err, err)
	for _, s := range append(secrets, secretKey, stsToken, "Signature=", "TC3-HMAC-SHA256") {
		if s != "" {
			assert.NotContains(t, text, s, "the error leaks a secret")
		}
	}
}

// TestRoundTrip: create, describe and delete through the SDK against the fake, which checks
// every signature.
func TestRoundTrip(t *testing.T) {
	fake := startFake(t, faketcr.Options{})
	c := client(fake, goodCred)
	ctx := context.Background()

	before := time.Now()
	temp, err := c.CreateInstanceToken(ctx, registry, false, "")
	require.NoError(t, err)
	assert.Equal(t, faketcr.DefaultUsername, temp.Username)
	assert.Empty(t, temp.TokenID, "temporary tokens have no ID")
	assert.WithinRange(t, temp.ExpiresAt, before.Add(time.Hour).Truncate(time.Millisecond), time.Now().Add(time.Hour))
	assert.Equal(t, time.UTC, temp.ExpiresAt.Location())

	long, err := c.CreateInstanceToken(ctx, registry, true, "tcr-assistant default/rule")
	require.NoError(t, err)
	assert.NotEmpty(t, long.TokenID)
	assert.True(t, long.ExpiresAt.IsZero(), "a long-term token whose ExpTime is 0 never expires")
	minted := fake.Tokens(registry)
	require.Len(t, minted, 2)
	assert.Equal(t, minted[0].Token, temp.Token)
	assert.Equal(t, faketcr.Token{ID: long.TokenID, RegistryID: registry, Username: long.Username, Token: long.Token,
		Desc: "tcr-assistant default/rule", LongTerm: true, CreatedAt: minted[1].CreatedAt, Enabled: true}, minted[1])

	list, err := c.DescribeInstanceToken(ctx, registry)
	require.NoError(t, err)
	require.Len(t, list, 1, "long-term tokens only")
	assert.Equal(t, tcrapi.TokenInfo{ID: long.TokenID, Desc: "tcr-assistant default/rule", Enabled: true,
		CreatedAt: minted[1].CreatedAt.Truncate(time.Second).UTC()}, list[0])

	require.NoError(t, c.DeleteInstanceToken(ctx, registry, long.TokenID))
	list, err = c.DescribeInstanceToken(ctx, registry)
	require.NoError(t, err)
	assert.Empty(t, list)

	err = c.DeleteInstanceToken(ctx, registry, long.TokenID)
	var apiErr *tcrapi.APIError
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, "ResourceNotFound", apiErr.Code)
	assert.Equal(t, "The instance token "+long.TokenID+" does not exist.", apiErr.Message)
	assert.NotEmpty(t, apiErr.RequestID)
	assert.Equal(t, "ResourceNotFound: The instance token "+long.TokenID+" does not exist. (request id "+apiErr.RequestID+")", err.Error())
	assert.True(t, tcrapi.IsNotFound(err))
	assert.False(t, tcrapi.IsAuthError(err))

	_, err = c.CreateInstanceToken(ctx, "tcr-unknown", false, "")
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, "ResourceNotFound.TcrResourceNotFound", apiErr.Code)
	assert.True(t, tcrapi.IsNotFound(err))
	assert.True(t, tcrapi.IsAuthError(err), "the API hides instances the caller may not see behind this code")
	assert.Equal(t, "ResourceNotFound_TcrResourceNotFound", apiErr.Reason())

	assert.Equal(t, 3, fake.Calls("CreateInstanceToken"))
	assert.Equal(t, 2, fake.Calls("DescribeInstanceToken"))
	assert.Equal(t, 2, fake.Calls("DeleteInstanceToken"))
}

// TestAuthFailures: a wrong key, an unknown SecretId, an STS key without its token, and a clock
// out of the API's 300 s window are API errors with the API's codes.
func TestAuthFailures(t *testing.T) {
	ctx := context.Background()
	fake := startFake(t, faketcr.Options{STSTokens: map[string]string{"AKIDsts": stsToken}})
	fake.SetKey("AKIDsts", "SK-sts-key-0f3e")

	cases := []struct {
		cred tcrapi.Credential
		code string
		msg  string
	}{
		{tcrapi.Credential{SecretID: secretID, SecretKey: "SK-tcrapi-WRONG-3a9c"}, "AuthFailure.SignatureFailure",
			"The provided credentials could not be validated. Please check your signature is correct."},
		{tcrapi.Credential{SecretID: "AKIDnobody", SecretKey: secretKey}, "AuthFailure.SecretIdNotFound",
			"The SecretId is not found, please ensure that your SecretId is correct."},
		{tcrapi.Credential{SecretID: "AKIDsts", SecretKey: "SK-sts-key-0f3e", Token: "STS-wrong"}, "AuthFailure.TokenFailure",
			"The token is invalid."},
	}
	for _, tc := range cases {
		_, err := client(fake, tc.cred).CreateInstanceToken(ctx, registry, false, "")
		var apiErr *tcrapi.APIError
		require.ErrorAs(t, err, &apiErr, tc.code)
		assert.Equal(t, tc.code, apiErr.Code)
		assert.Equal(t, tc.msg, apiErr.Message)
		assert.True(t, tcrapi.IsAuthError(err), tc.code)
		assert.False(t, tcrapi.IsNotFound(err), tc.code)
		assertNoLeak(t, err, tc.cred.SecretKey)
	}
	_, err := client(fake, tcrapi.Credential{SecretID: "AKIDsts", SecretKey: "SK-sts-key-0f3e", Token: stsToken}).CreateInstanceToken(ctx, registry, false, "")
	require.NoError(t, err, "an STS key with its token")
	assert.Equal(t, 1, fake.Calls("CreateInstanceToken"), "only that call passed authentication")

	// The fake's clock against the real one the SDK signs with: 290 s apart passes, 310 s not.
	for _, skew := range []time.Duration{290 * time.Second, -290 * time.Second} {
		f := startFake(t, faketcr.Options{Now: func() time.Time { return time.Now().Add(skew) }})
		_, err := client(f, goodCred).CreateInstanceToken(ctx, registry, false, "")
		require.NoError(t, err, skew)
	}
	for _, skew := range []time.Duration{310 * time.Second, -310 * time.Second, time.Hour} {
		f := startFake(t, faketcr.Options{Now: func() time.Time { return time.Now().Add(skew) }})
		_, err := client(f, goodCred).CreateInstanceToken(ctx, registry, false, "")
		var apiErr *tcrapi.APIError
		require.ErrorAs(t, err, &apiErr, skew)
		assert.Equal(t, "AuthFailure.SignatureExpire", apiErr.Code, skew)
		assert.Equal(t, "AuthFailure_SignatureExpire", apiErr.Reason())
		assert.True(t, tcrapi.IsAuthError(err))
	}
}

// TestInjectedErrors: whatever the API answers is passed on as it is.
func TestInjectedErrors(t *testing.T) {
	fake := startFake(t, faketcr.Options{})
	c := client(fake, goodCred)
	for _, tc := range []struct {
		code       string
		auth, none bool
	}{
		{"UnauthorizedOperation", true, false},
		{"UnauthorizedOperation.ErrorTcrUnauthorized", true, false},
		{"AuthFailure.UnauthorizedOperation", true, false},
		{"ResourceNotFound.ErrNoUser", false, true},
		{"InternalError.DbError", false, false},
		{"LimitExceeded", false, false},
	} {
		fake.FailNext("DescribeInstanceToken", tc.code, "injected "+tc.code)
		_, err := c.DescribeInstanceToken(context.Background(), registry)
		var apiErr *tcrapi.APIError
		require.ErrorAs(t, err, &apiErr)
		assert.Equal(t, tcrapi.APIError{Code: tc.code, Message: "injected " + tc.code, RequestID: apiErr.RequestID}, *apiErr)
		assert.Equal(t, tc.auth, tcrapi.IsAuthError(err), tc.code)
		assert.Equal(t, tc.none, tcrapi.IsNotFound(err), tc.code)
		assert.True(t, tcrapi.IsAuthError(fmt.Errorf("wrapped: %w", err)) == tc.auth, "through wrapping")
	}
	assert.False(t, tcrapi.IsAuthError(errors.New("AuthFailure.SignatureFailure")), "only API errors")
	assert.False(t, tcrapi.IsNotFound(nil))
}

func TestReason(t *testing.T) {
	for code, want := range map[string]string{
		"AuthFailure.SignatureFailure":         "AuthFailure_SignatureFailure",
		"ResourceNotFound.TcrResourceNotFound": "ResourceNotFound_TcrResourceNotFound",
		"InternalError":                        "InternalError",
		"Bad code/with spaces:and-dashes":      "Bad_code_with_spaces_and_dashes",
		"4000":                                 "API_4000",
		".Dotted":                              "API__Dotted",
		"Ünïcode.X":                            "API___n__code_X",
		"":                                     "Unknown",
		"Fehler.ÄÖ":                            "Fehler_____",
		strings.Repeat("A.", 100):              strings.Repeat("A_", 64),
	} {
		assert.Equal(t, want, (&tcrapi.APIError{Code: code}).Reason(), code)
	}
}

// TestPaging: every page is read, and a registry with more tokens than the bound is an error.
func TestPaging(t *testing.T) {
	fake := startFake(t, faketcr.Options{})
	c := client(fake, goodCred)
	ctx := context.Background()
	for i := range 230 {
		_, err := c.CreateInstanceToken(ctx, registry, true, fmt.Sprintf("token %d", i))
		require.NoError(t, err)
	}
	list, err := c.DescribeInstanceToken(ctx, registry)
	require.NoError(t, err)
	require.Len(t, list, 230)
	for i, tok := range list {
		assert.Equal(t, fmt.Sprintf("token %d", i), tok.Desc)
	}
	assert.Equal(t, 3, fake.Calls("DescribeInstanceToken"), "pages of 100")

	// An answer claiming more than MaxTokens (from a stand-in of the API, without signatures).
	srv := serveRaw(t, func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `{"Response":{"TotalCount":1001,"Tokens":[],"RequestId":"r1"}}`)
	})
	_, err = rawClient(srv).DescribeInstanceToken(ctx, registry)
	assert.EqualError(t, err, "DescribeInstanceToken: instance "+registry+" has 1001 long-term tokens, more than the 1000 this client lists")

	// An API that keeps answering full pages is stopped by the page bound.
	var calls int
	var mu sync.Mutex
	srv = serveRaw(t, func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		var toks []string
		for i := range 100 {
			toks = append(toks, fmt.Sprintf(`{"Id":"t%d-%d","Enabled":true}`, n, i))
		}
		fmt.Fprintf(w, `{"Response":{"TotalCount":1000,"Tokens":[%s],"RequestId":"r"}}`, strings.Join(toks, ","))
	})
	list, err = rawClient(srv).DescribeInstanceToken(ctx, registry)
	require.NoError(t, err, "10 pages of 100 make the 1000 announced")
	assert.Len(t, list, 1000)
	mu.Lock()
	assert.Equal(t, 10, calls)
	mu.Unlock()
}

// serveRaw is a stand-in of the API on loopback TLS answering with h (JSON unless h says
// otherwise).
func serveRaw(t *testing.T, h http.HandlerFunc) *httptest.Server {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		h(w, r)
	}))
	srv.EnableHTTP2 = true
	// The handshakes that tests make fail on purpose would be logged.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func rawClient(srv *httptest.Server) *tcrapi.Client {
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	return tcrapi.New(tcrapi.Config{Endpoint: srv.Listener.Addr().String(), RootCAs: pool, Timeout: 2 * time.Second},
		tcrapi.Credential{SecretID: secretID, SecretKey: secretKey, Token: stsToken}, region)
}

// TestAnswersOfTheDocumentedForms: a Username as a number, ExpTime in seconds or as a string.
func TestAnswersOfTheDocumentedForms(t *testing.T) {
	ctx := context.Background()
	for body, want := range map[string]tcrapi.Token{
		`{"Response":{"Username":"100012345678","Token":"tok-a","ExpTime":1735880997750,"RequestId":"r"}}`: {
			Username: "100012345678", Token: "tok-a", ExpiresAt: time.UnixMilli(1735880997750).UTC()},
		`{"Response":{"Username":12345678,"Token":"tok-b","ExpTime":1735880997,"TokenId":"id-b","RequestId":"r"}}`: {
			Username: "12345678", Token: "tok-b", ExpiresAt: time.Unix(1735880997, 0).UTC(), TokenID: "id-b"},
		`{"Response":{"Username":"u","Token":"tok-c","ExpTime":"2051237057817","TokenId":null,"RequestId":"r"}}`: {
			Username: "u", Token: "tok-c", ExpiresAt: time.UnixMilli(2051237057817).UTC()},
		`{"Response":{"Username":"u","Token":"tok-d","ExpTime":0,"RequestId":"r"}}`: {Username: "u", Token: "tok-d"},
	} {
		srv := serveRaw(t, func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, body) })
		tok, err := rawClient(srv).CreateInstanceToken(ctx, registry, true, "")
		require.NoError(t, err, body)
		assert.Equal(t, want, tok, body)
	}

	srv := serveRaw(t, func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `{"Response":{"TotalCount":2,"Tokens":[`+
			`{"Id":"a","Desc":"x","RegistryId":"`+registry+`","Enabled":true,"CreatedAt":"2020-02-27T00:49:22+08:00","ExpiredAt":0},`+
			`{"Id":"b","Enabled":false,"CreatedAt":"2020-02-27 00:49:22","ExpiredAt":1735880997}],"RequestId":"r"}}`)
	})
	list, err := rawClient(srv).DescribeInstanceToken(ctx, registry)
	require.NoError(t, err)
	created := time.Date(2020, 2, 26, 16, 49, 22, 0, time.UTC)
	assert.Equal(t, []tcrapi.TokenInfo{
		{ID: "a", Desc: "x", Enabled: true, CreatedAt: created},
		{ID: "b", CreatedAt: created, ExpiresAt: time.Unix(1735880997, 0).UTC()},
	}, list)

	srv = serveRaw(t, func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `{"Response":{"Username":null,"Token":"tok-e","RequestId":"r"}}`)
	})
	_, err = rawClient(srv).CreateInstanceToken(ctx, registry, false, "")
	assert.EqualError(t, err, "CreateInstanceToken: TCR API "+srv.Listener.Addr().String()+" answered without a token or without a user name")
}

// TestAPIErrorEchoingSecrets: an API error whose message quotes the key or the STS token has
// them taken out.
func TestAPIErrorEchoingSecrets(t *testing.T) {
	srv := serveRaw(t, func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, `{"Response":{"Error":{"Code":"InvalidParameter","Message":"bad key %s with token %s"},"RequestId":"r-1"}}`, secretKey, stsToken)
	})
	_, err := rawClient(srv).CreateInstanceToken(context.Background(), registry, false, "")
	assert.EqualError(t, err, "InvalidParameter: bad key [redacted] with token [redacted] (request id r-1)")
	assertNoLeak(t, err)
}

// TestGzipAnswer: an answer in gzip, which net/http asked for and decodes, is read.
func TestGzipAnswer(t *testing.T) {
	srv := serveRaw(t, func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			fmt.Fprint(w, `{"Response":{"Error":{"Code":"Test","Message":"no gzip asked for"},"RequestId":"r"}}`)
			return
		}
		w.Header().Set("Content-Encoding", "gzip")
		zw := gzip.NewWriter(w)
		_, _ = io.WriteString(zw, `{"Response":{"Username":"u","Token":"tok-gz","ExpTime":0,"RequestId":"r"}}`)
		_ = zw.Close()
	})
	tok, err := rawClient(srv).CreateInstanceToken(context.Background(), registry, false, "")
	require.NoError(t, err)
	assert.Equal(t, "tok-gz", tok.Token)
}

// TestConcurrentCalls: one client serves many goroutines.
func TestConcurrentCalls(t *testing.T) {
	fake := startFake(t, faketcr.Options{})
	c := client(fake, goodCred)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Go(func() {
			_, err := c.CreateInstanceToken(context.Background(), registry, i%2 == 0, fmt.Sprint(i))
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		assert.NoError(t, err)
	}
	list, err := c.DescribeInstanceToken(context.Background(), registry)
	require.NoError(t, err)
	assert.Len(t, list, 8)
	assert.Len(t, fake.Tokens(registry), 16)
}

// TestFailuresThatAreNotTheAPIs: their messages are this package's, name the endpoint and the
// kind of failure, and never hold the credential, the signature or what the server sent.
func TestFailuresThatAreNotTheAPIs(t *testing.T) {
	ctx := context.Background()
	fake := startFake(t, faketcr.Options{})

	// An endpoint whose CA is not trusted gets nothing.
	c := tcrapi.New(tcrapi.Config{Endpoint: fake.Endpoint, RootCAs: x509.NewCertPool()}, goodCred, region)
	_, err := c.CreateInstanceToken(ctx, registry, false, "")
	assert.EqualError(t, err, "CreateInstanceToken: TCR API "+fake.Endpoint+" presented a certificate signed by an unknown authority (add its CA with --tcr-api-ca-file)")
	assertNoLeak(t, err)
	assert.Equal(t, 0, fake.Requests())

	// A closed port.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := l.Addr().String()
	require.NoError(t, l.Close())
	_, err = tcrapi.New(tcrapi.Config{Endpoint: closed}, goodCred, region).DescribeInstanceToken(ctx, registry)
	assert.EqualError(t, err, "DescribeInstanceToken: TCR API "+closed+" refused or dropped the connection")
	assertNoLeak(t, err)

	// A plain HTTP server.
	plain := httptest.NewServer(http.NotFoundHandler())
	defer plain.Close()
	plainHost := plain.Listener.Addr().String()
	_, err = tcrapi.New(tcrapi.Config{Endpoint: plainHost}, goodCred, region).DescribeInstanceToken(ctx, registry)
	assert.EqualError(t, err, "DescribeInstanceToken: TCR API "+plainHost+" does not speak TLS on that port")
	assertNoLeak(t, err)

	// A certificate for another name: httptest's is for 127.0.0.1, ::1 and example.com.
	named := serveRaw(t, func(http.ResponseWriter, *http.Request) {})
	pool := x509.NewCertPool()
	pool.AddCert(named.Certificate())
	_, port, err := net.SplitHostPort(named.Listener.Addr().String())
	require.NoError(t, err)
	_, err = tcrapi.New(tcrapi.Config{Endpoint: "localhost:" + port, RootCAs: pool}, goodCred, region).DescribeInstanceToken(ctx, registry)
	assert.EqualError(t, err, "DescribeInstanceToken: TCR API localhost:"+port+" presented a certificate that is not valid for its name: x509: certificate is valid for example.com, *.example.com, not localhost")
	assertNoLeak(t, err)

	// Servers that answer something else, echoing what they received.
	var mu sync.Mutex
	var seen []string
	echo := func(r *http.Request) string {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, r.Header.Get("Authorization"), r.Header.Get("X-TC-Token"))
		return fmt.Sprintf("Authorization: %s\nX-TC-Token: %s\nkey %s\n", r.Header.Get("Authorization"), r.Header.Get("X-TC-Token"), secretKey)
	}
	var redirected atomic.Bool
	target := serveRaw(t, func(http.ResponseWriter, *http.Request) { redirected.Store(true) })
	for _, tc := range []struct {
		name string
		h    http.HandlerFunc
		want string
	}{
		{"not JSON", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprint(w, "<html>"+echo(r))
		}, "answered something that is not an API response"},
		{"JSON without a Response", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, `{"echo":%q}`, echo(r))
		}, "answered with a Response the client cannot read"},
		{"a 502", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusBadGateway)
			fmt.Fprint(w, echo(r))
		}, "answered HTTP 502 without an API error"},
		{"a redirect", func(w http.ResponseWriter, r *http.Request) {
			echo(r)
			http.Redirect(w, r, target.URL+"/", http.StatusTemporaryRedirect)
		}, "answered HTTP 307 without an API error"},
		{"too much", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, `{"Response":{"RequestId":"r","Pad":"%s%s"}}`, echo(r), strings.Repeat("x", 1<<20))
		}, "answered with more than 1048576 bytes"},
		{"deflate", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Encoding", "deflate")
			fw, _ := flate.NewWriter(w, flate.BestCompression)
			_, _ = io.WriteString(fw, echo(r))
			_ = fw.Close()
		}, "answered with a Content-Encoding or Content-Type the client does not read"},
	} {
		srv := serveRaw(t, tc.h)
		_, err := rawClient(srv).CreateInstanceToken(ctx, registry, false, "")
		assert.EqualError(t, err, "CreateInstanceToken: TCR API "+srv.Listener.Addr().String()+" "+tc.want, tc.name)
		mu.Lock()
		assertNoLeak(t, err, seen...)
		mu.Unlock()
	}
	assert.False(t, redirected.Load(), "the redirect was not followed")
	mu.Lock()
	assert.Contains(t, seen, stsToken, "the stand-ins did see the secrets they echo")
	mu.Unlock()
}

// TestDeadlines: a cancelled context and the timeout end a call, and the error says which.
func TestDeadlines(t *testing.T) {
	release := make(chan struct{})
	srv := serveRaw(t, func(_ http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	defer close(release)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	endpoint := srv.Listener.Addr().String()

	c := tcrapi.New(tcrapi.Config{Endpoint: endpoint, RootCAs: pool, Timeout: 300 * time.Millisecond}, goodCred, region)
	start := time.Now()
	_, err := c.CreateInstanceToken(context.Background(), registry, false, "")
	assert.EqualError(t, err, "CreateInstanceToken: TCR API "+endpoint+" did not answer in time")
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), 5*time.Second)

	c = tcrapi.New(tcrapi.Config{Endpoint: endpoint, RootCAs: pool}, goodCred, region)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	start = time.Now()
	_, err = c.DescribeInstanceToken(ctx, registry)
	assert.EqualError(t, err, "DescribeInstanceToken: the call of TCR API "+endpoint+" was cancelled")
	assert.ErrorIs(t, err, context.Canceled)
	assert.Less(t, time.Since(start), 5*time.Second)
}

// TestConfiguration: a bad configuration is returned by every call, before anything is sent.
func TestConfiguration(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		cfg    tcrapi.Config
		cred   tcrapi.Credential
		region string
		want   string
	}{
		{tcrapi.Config{Endpoint: "https://tcr.tencentcloudapi.com"}, goodCred, region,
			`TCR API endpoint: "https://tcr.tencentcloudapi.com" is not host[:port] (no scheme, no path)`},
		{tcrapi.Config{}, goodCred, "", `region "" is not a region name`},
		{tcrapi.Config{}, goodCred, "ap guangzhou", `region "ap guangzhou" is not a region name`},
		{tcrapi.Config{}, tcrapi.Credential{SecretID: secretID}, region, "the credential for the TCR API has no SecretId or no SecretKey"},
	} {
		err := tcrapi.New(tc.cfg, tc.cred, tc.region).DeleteInstanceToken(ctx, registry, "id")
		assert.EqualError(t, err, tc.want)
	}
	assert.EqualError(t, tcrapi.New(tcrapi.Config{}, nil, region).DeleteInstanceToken(ctx, registry, "id"), "no credential for the TCR API")
	_, err := tcrapi.New(tcrapi.Config{}, goodCred, region).CreateInstanceToken(ctx, "", false, "")
	assert.EqualError(t, err, "CreateInstanceToken: no instance ID")
}

// TestCredentialPrints shows no secret.
func TestCredentialPrints(t *testing.T) {
	cred := tcrapi.Credential{SecretID: secretID, SecretKey: secretKey, Token: stsToken}
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		s := fmt.Sprintf(format, cred)
		assert.Equal(t, `tcrapi.Credential{SecretID: "`+secretID+`", SecretKey: [redacted], Token: [redacted]}`, s, format)
	}
	id, key, token := cred.GetCredential()
	assert.Equal(t, []string{secretID, secretKey, stsToken}, []string{id, key, token})
	assert.Equal(t, tcrapi.LongTerm.APIValue(), "longterm")
	assert.Equal(t, tcrapi.Temporary.APIValue(), "temp")
}

// TestMintedTokensLogIn: a token the fake mints logs in to a registry whose token service asks
// the fake, until it is revoked or deleted.
func TestMintedTokensLogIn(t *testing.T) {
	fake := startFake(t, faketcr.Options{})
	reg := testregistry.Start(t, testregistry.Options{Users: map[string]string{"admin": "Pw-admin-1"}, Authenticate: fake.Authenticate})
	c := client(fake, goodCred)
	p := &credcheck.Prober{RootCAs: reg.CAPool}
	ctx := context.Background()

	temp, err := c.CreateInstanceToken(ctx, registry, false, "")
	require.NoError(t, err)
	res := p.Probe(ctx, reg.Host, temp.Username, temp.Token)
	assert.Equal(t, credcheck.Accepted, res.Outcome, res.Message)
	assert.Equal(t, temp.ExpiresAt.Truncate(time.Second), res.Expiry, "the token is a JWT carrying its expiry")
	require.True(t, fake.Revoke(fake.Tokens(registry)[0].ID))
	res = p.Probe(ctx, reg.Host, temp.Username, temp.Token)
	assert.Equal(t, credcheck.Rejected, res.Outcome, res.Message)

	long, err := c.CreateInstanceToken(ctx, registry, true, "long")
	require.NoError(t, err)
	res = p.Probe(ctx, reg.Host, long.Username, long.Token)
	assert.Equal(t, credcheck.Accepted, res.Outcome, res.Message)
	assert.True(t, res.Expiry.IsZero())
	require.NoError(t, c.DeleteInstanceToken(ctx, registry, long.TokenID))
	res = p.Probe(ctx, reg.Host, long.Username, long.Token)
	assert.Equal(t, credcheck.Rejected, res.Outcome, res.Message)

	res = p.Probe(ctx, reg.Host, "admin", "Pw-admin-1")
	assert.Equal(t, credcheck.Accepted, res.Outcome, "Users still log in")
}
