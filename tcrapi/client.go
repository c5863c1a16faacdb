package tcrapi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common"
	tcerr "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/errors"
	tchttp "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/http"
	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/profile"
)

const (
	service = "tcr"
	version = "2019-09-24"
	// DefaultTimeout bounds one call when Config.Timeout is zero.
	DefaultTimeout = 10 * time.Second
	// maxBody is the most of a response body the client reads; a page of 100 tokens is about
	// 20 KiB.
	maxBody = 1 << 20
)

// Config of a Client.
type Config struct {
	// Endpoint is host[:port] of the API; DefaultEndpoint when empty. Always HTTPS.
	Endpoint string
	// RootCAs are the CAs trusted for the endpoint; nil: the system's.
	RootCAs *x509.CertPool
	// Timeout bounds one call (every page of DescribeInstanceToken gets its own); DefaultTimeout
	// when zero.
	Timeout time.Duration
}

// Client calls the TCR API of one region with one credential. It is safe for concurrent use.
//
// It sends requests through the SDK's generic client (common.Client with tchttp.CommonRequest),
// signed with TC3-HMAC-SHA256, POST over HTTPS, with the SDK's debug output, retries and region
// breaker off. Errors are *APIError when the API answered one; any other error's message is built
// here, from the endpoint and the kind of failure, and never holds the credential, a token, the
// request's headers or the response body (the SDK's own messages can hold the body, which for
// CreateInstanceToken holds the token).
type Client struct {
	endpoint string
	cred     common.CredentialIface
	timeout  time.Duration
	sdk      *common.Client
	// err is a configuration error, returned by every call.
	err error
}

// New returns a client of the API in region with cred: a Credential, or a credential of the SDK
// such as Identity's. A bad configuration (endpoint, region, no credential) is returned by every
// call.
func New(cfg Config, cred common.CredentialIface, region string) *Client {
	c := &Client{endpoint: cfg.Endpoint, cred: cred, timeout: cfg.Timeout}
	if c.endpoint == "" {
		c.endpoint = DefaultEndpoint
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	endpointErr := ValidateEndpoint(c.endpoint)
	switch {
	case endpointErr != nil:
		c.err = fmt.Errorf("TCR API endpoint: %w", endpointErr)
	case region == "" || strings.ContainsFunc(region, func(r rune) bool { return r <= ' ' || r > '~' }):
		c.err = fmt.Errorf("region %q is not a region name", region)
	case cred == nil:
		c.err = errors.New("no credential for the TCR API")
	case common.DefaultHttpClient != nil:
		// The SDK would share that client and the transport set below would replace its own.
		c.err = errors.New("common.DefaultHttpClient of the Tencent Cloud SDK is set; tcrapi needs a client of its own")
	}
	if c.err != nil {
		return c
	}

	prof := profile.NewClientProfile()
	prof.SignMethod = "TC3-HMAC-SHA256"
	prof.Language = "en-US"
	prof.Debug = false
	// Without the breaker the SDK never sends to its backup endpoint (another host).
	prof.DisableRegionBreaker = true
	prof.NetworkFailureMaxRetries = 0
	prof.RateLimitExceededMaxRetries = 0
	prof.HttpProfile.Endpoint = c.endpoint
	prof.HttpProfile.Scheme = "HTTPS"
	prof.HttpProfile.ReqMethod = http.MethodPost
	// The SDK's client timeout, in whole seconds; the context of each call bounds it exactly.
	prof.HttpProfile.ReqTimeout = int((c.timeout + time.Second - 1) / time.Second)
	c.sdk = common.NewCommonClient(cred, region, prof)
	c.sdk.WithHttpTransport(&transport{base: &http.Transport{
		Proxy:                  http.ProxyFromEnvironment,
		DialContext:            (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:        &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:    5 * time.Second,
		ResponseHeaderTimeout:  c.timeout,
		MaxResponseHeaderBytes: 64 << 10,
		IdleConnTimeout:        90 * time.Second,
		ForceAttemptHTTP2:      true,
	}})
	return c
}

// call sends action with params and returns the JSON body of the answer.
func (c *Client) call(ctx context.Context, action string, params map[string]any) ([]byte, error) {
	if c.err != nil {
		return nil, c.err
	}
	// The SDK reads the credential while signing; refuse an incomplete one before that.
	id, key, token := c.cred.GetCredential()
	if id == "" || key == "" {
		return nil, errors.New("the credential for the TCR API has no SecretId or no SecretKey")
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	st := &callState{}
	ctx = context.WithValue(ctx, callStateKey{}, st)

	req := tchttp.NewCommonRequest(service, version, action)
	req.SetContext(ctx)
	if err := req.SetActionParameters(params); err != nil {
		return nil, fmt.Errorf("%s: the parameters could not be encoded", action)
	}
	resp := tchttp.NewCommonResponse()
	if err := c.sdk.Send(req, resp); err != nil {
		var sdkErr *tcerr.TencentCloudSDKError
		if errors.As(err, &sdkErr) && sdkErr.Code != "" && !strings.HasPrefix(sdkErr.Code, "ClientError") {
			return nil, apiError(sdkErr, key, token)
		}
		return nil, c.failure(ctx, action, st, err)
	}
	return resp.GetBody(), nil
}

// failure describes an error that is not the API's (the SDK's codes of its own errors start with
// "ClientError") from what the transport saw and the kind of the error, never from its message.
func (c *Client) failure(ctx context.Context, action string, st *callState, err error) error {
	fail := func(format string, args ...any) error {
		return &callError{msg: action + ": " + fmt.Sprintf(format, args...), cause: ctx.Err()}
	}
	what := "TCR API " + c.endpoint
	var (
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		verify   *tls.CertificateVerificationError
		header   tls.RecordHeaderError
		dnsErr   *net.DNSError
		opErr    *net.OpError
	)
	switch {
	case st.tooLarge:
		return fail("%s answered with more than %d bytes", what, maxBody)
	case st.encoding:
		return fail("%s answered with a Content-Encoding or Content-Type the client does not read", what)
	case errors.Is(ctx.Err(), context.Canceled):
		return fail("the call of %s was cancelled", what)
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) || isTimeout(err):
		return fail("%s did not answer in time", what)
	case st.status != 0 && st.status != http.StatusOK:
		return fail("%s answered HTTP %d without an API error", what, st.status)
	case st.status == http.StatusOK:
		return fail("%s answered something that is not an API response", what)
	case errors.As(err, &unknown):
		return fail("%s presented a certificate signed by an unknown authority (add its CA with --tcr-api-ca-file)", what)
	case errors.As(err, &hostname):
		return fail("%s presented a certificate that is not valid for its name: %s", what, hostname.Error())
	case errors.As(err, &invalid):
		return fail("%s presented an invalid certificate: %s", what, invalid.Error())
	case errors.As(err, &verify):
		return fail("%s presented a certificate that could not be verified", what)
	case errors.As(err, &header) || strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return fail("%s does not speak TLS on that port", what)
	case errors.As(err, &dnsErr):
		return fail("%s: the name does not resolve", what)
	case errors.As(err, &opErr) && opErr.Op == "dial":
		return fail("%s refused or dropped the connection", what)
	}
	return fail("%s could not be reached (connection failed)", what)
}

// apiError converts an error the API answered, taking out the secrets of the credential should
// the message echo one.
func apiError(e *tcerr.TencentCloudSDKError, secrets ...string) *APIError {
	msg := e.Message
	for _, s := range secrets {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, "[redacted]")
		}
	}
	return &APIError{Code: clip(e.Code, 128), Message: clip(msg, 1024), RequestID: clip(e.RequestId, 128)}
}

// clip cuts s to at most n bytes, at the start of a UTF-8 character.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// callError is a failure other than an API error. Its message is built by this package only; it
// unwraps to the context's error when the call was cancelled or timed out.
type callError struct {
	msg   string
	cause error
}

func (e *callError) Error() string { return e.msg }
func (e *callError) Unwrap() error { return e.cause }

// callState is what the transport saw of the answer to one call, for failure.
type callState struct {
	status   int  // HTTP status, 0 before an answer
	tooLarge bool // the body was longer than maxBody
	encoding bool // refused for its Content-Encoding or Content-Type
}

type callStateKey struct{}

// transport bounds what the SDK reads of an answer and keeps it from following redirects:
// http.Client follows a 307 with the body and X-TC-Token, and the SDK offers no CheckRedirect.
type transport struct{ base *http.Transport }

var errAnswerRefused = errors.New("answer refused")

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	st, _ := req.Context().Value(callStateKey{}).(*callState)
	if st == nil {
		st = &callState{}
	}
	st.status = resp.StatusCode
	// Without a Location http.Client returns a 3xx as it is.
	resp.Header.Del("Location")
	// The SDK would decompress a deflate body without bound, and hand an event stream to a
	// goroutine; net/http has already decoded the gzip it asked for.
	ct := resp.Header.Get("Content-Type")
	if resp.Header.Get("Content-Encoding") != "" || strings.HasPrefix(ct, "text/event-stream") || strings.HasPrefix(ct, "application/octet-stream") {
		resp.Body.Close()
		st.encoding = true
		return nil, errAnswerRefused
	}
	resp.Body = &boundedBody{rc: resp.Body, left: maxBody, st: st}
	return resp, nil
}

// boundedBody fails a read past maxBody bytes (the SDK reads bodies whole with io.ReadAll).
type boundedBody struct {
	rc   io.ReadCloser
	left int64
	st   *callState
}

var errTooLarge = errors.New("response body too large")

func (b *boundedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// One more byte tells a body of exactly maxBody from a longer one.
		var one [1]byte
		n, err := b.rc.Read(one[:])
		if n > 0 {
			b.st.tooLarge = true
			return 0, errTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *boundedBody) Close() error { return b.rc.Close() }
