// Package credcheck asks a registry whether a credential is accepted, the way a container runtime
// logs in before it pulls: GET https://<server>/v2/, then answer the registry's challenge (Basic,
// or Bearer through the token service named in the challenge) and see whether /v2/ lets the
// credential in. It also reads the expiry of a password that is a JWT.
//
// The result never carries the password, the user name or a token: messages are built only from
// the server name, HTTP status codes and classified errors, so they are safe for logs, Events and
// status. Every request has a deadline and every body read is bounded.
package credcheck

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// Outcome is what a probe found out about a credential; the values double as condition reasons.
type Outcome string

const (
	// Accepted: the registry let the credential in.
	Accepted Outcome = "Accepted"
	// Rejected: the registry (or its token service) refused the credential, or the password is a
	// token whose expiry has passed.
	Rejected Outcome = "Rejected"
	// Unreachable: no answer about the credential: the registry could not be reached or answered
	// something other than a yes or a no. Proves nothing about the credential.
	Unreachable Outcome = "Unreachable"
	// TLSError: the registry's certificate is not trusted (or its token service is not HTTPS),
	// so the credential was not sent there.
	TLSError Outcome = "TLSError"
)

const (
	// DefaultTimeout bounds a whole probe (every request of it) when Prober.Timeout is zero.
	DefaultTimeout = 10 * time.Second
	// maxBody is the most of a response body the probe reads; a token response is a few KiB.
	maxBody = 64 << 10
	// maxChallenge is the longest WWW-Authenticate header the probe parses.
	maxChallenge = 4 << 10
)

// Result is the outcome of a probe.
type Result struct {
	Outcome Outcome
	// Message says what happened, for a condition message or an Event. It never contains the
	// credential or a token.
	Message string
	// Expiry is the "exp" of a password that is a JWT; zero when the password is not one.
	Expiry time.Time
}

// Prober probes credentials. The zero value trusts the system's CAs and uses DefaultTimeout.
type Prober struct {
	// RootCAs, when set, are the CAs trusted for registries and token services instead of the
	// system's (see LoadCAs).
	RootCAs *x509.CertPool
	// Timeout bounds one probe; DefaultTimeout when zero.
	Timeout time.Duration
	// Now is the clock for token expiry; time.Now when nil.
	Now func() time.Time
}

// LoadCAs returns the system's CAs plus the PEM certificates of file, for a flag such as
// --registry-ca-file: a private registry CA is trusted without distrusting public registries.
func LoadCAs(file string) (*x509.CertPool, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading the registry CA file: %w", err)
	}
	return ParseCAs(file, data)
}

// ParseCAs is LoadCAs for data already read from file (named in the error).
func ParseCAs(file string, data []byte) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("registry CA file %s holds no PEM certificate", file)
	}
	return pool, nil
}

// Probe checks username and password against the registry server ("host" or "host:port", as in
// docker.server).
func (p *Prober) Probe(ctx context.Context, server, username, password string) Result {
	now := time.Now
	if p.Now != nil {
		now = p.Now
	}
	exp, hasExp := JWTExpiry(password)
	res := p.probe(ctx, server, username, password, now, exp, hasExp)
	if hasExp {
		res.Expiry = exp
	}
	return res
}

func (p *Prober) probe(ctx context.Context, server, username, password string, now func() time.Time, exp time.Time, hasExp bool) Result {
	if hasExp && !now().Before(exp) {
		return Result{Outcome: Rejected, Message: fmt.Sprintf("the password is a token that expired at %s", exp.UTC().Format(time.RFC3339))}
	}
	if server == "" || strings.ContainsAny(server, "/?#@ ") {
		return Result{Outcome: Unreachable, Message: fmt.Sprintf("registry server %q is not a host name with an optional port", server)}
	}
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c := &http.Client{
		Transport: p.transport(),
		// A redirect could carry the Authorization header somewhere unexpected; /v2/ and a token
		// service answer directly.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	defer c.CloseIdleConnections()

	base := "https://" + server + "/v2/"
	status, challenge, res := p.get(ctx, c, server, base, "")
	if res != nil {
		return *res
	}
	switch status {
	case http.StatusOK:
		return Result{Outcome: Accepted, Message: fmt.Sprintf("registry %s lets anyone in without a credential", server)}
	case http.StatusUnauthorized:
	default:
		return unexpected(server, "/v2/", status)
	}
	scheme, params := parseChallenge(challenge)
	var auth string
	switch scheme {
	case "basic":
		auth = "Basic " + basic(username, password)
	case "bearer":
		tok, res := p.token(ctx, c, server, params, username, password)
		if res != nil {
			return *res
		}
		auth = "Bearer " + tok
	default:
		return Result{Outcome: Unreachable, Message: fmt.Sprintf("registry %s answered /v2/ with 401 but no Basic or Bearer challenge", server)}
	}
	status, _, res = p.get(ctx, c, server, base, auth)
	if res != nil {
		return *res
	}
	switch status {
	case http.StatusOK:
		return Result{Outcome: Accepted, Message: fmt.Sprintf("registry %s accepted the credential", server)}
	case http.StatusUnauthorized, http.StatusForbidden:
		return Result{Outcome: Rejected, Message: fmt.Sprintf("registry %s rejected the credential (HTTP %d)", server, status)}
	}
	return unexpected(server, "/v2/", status)
}

// token asks the token service of a Bearer challenge for a token with the credential.
func (p *Prober) token(ctx context.Context, c *http.Client, server string, params map[string]string, username, password string) (string, *Result) {
	realm, err := url.Parse(params["realm"])
	if err != nil || realm.Host == "" {
		return "", &Result{Outcome: Unreachable, Message: fmt.Sprintf("registry %s sent a Bearer challenge without a usable realm", server)}
	}
	if realm.Scheme != "https" {
		return "", &Result{Outcome: TLSError, Message: fmt.Sprintf("registry %s names a token service that is not HTTPS (%s); the credential was not sent", server, realm.Redacted())}
	}
	q := realm.Query()
	if s := params["service"]; s != "" {
		q.Set("service", s)
	}
	if s := params["scope"]; s != "" {
		q.Set("scope", s)
	}
	realm.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, realm.String(), nil)
	if err != nil {
		return "", &Result{Outcome: Unreachable, Message: fmt.Sprintf("registry %s sent a Bearer challenge without a usable realm", server)}
	}
	req.Header.Set("Authorization", "Basic "+basic(username, password))
	resp, err := c.Do(req)
	if err != nil {
		r := transportError(fmt.Sprintf("token service %s of registry %s", realm.Host, server), err)
		return "", &r
	}
	defer resp.Body.Close()
	body, tooLong := readBounded(resp.Body)
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusUnauthorized, http.StatusForbidden:
		return "", &Result{Outcome: Rejected, Message: fmt.Sprintf("the token service %s of registry %s rejected the credential (HTTP %d)", realm.Host, server, resp.StatusCode)}
	default:
		r := unexpected(server, "its token service "+realm.Host, resp.StatusCode)
		return "", &r
	}
	if tooLong {
		return "", &Result{Outcome: Unreachable, Message: fmt.Sprintf("the token service %s of registry %s answered with more than %d bytes", realm.Host, server, maxBody)}
	}
	var t struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(body, &t); err != nil || t.Token == "" && t.AccessToken == "" {
		// The error of Unmarshal may quote the body, which holds a token: never pass it on.
		return "", &Result{Outcome: Unreachable, Message: fmt.Sprintf("the token service %s of registry %s answered without a token", realm.Host, server)}
	}
	if t.Token == "" {
		t.Token = t.AccessToken
	}
	return t.Token, nil
}

// get requests url with the Authorization header auth (none when empty) and returns the status
// and the WWW-Authenticate header; a non-nil Result when there was no answer.
func (p *Prober) get(ctx context.Context, c *http.Client, server, u, auth string) (int, string, *Result) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, "", &Result{Outcome: Unreachable, Message: fmt.Sprintf("registry server %q is not a host name with an optional port", server)}
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := c.Do(req)
	if err != nil {
		r := transportError("registry "+server, err)
		return 0, "", &r
	}
	defer resp.Body.Close()
	// Drain a little so the connection can be reused for the second request.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody))
	challenge := ""
	for _, h := range resp.Header.Values("WWW-Authenticate") {
		if len(h) > maxChallenge {
			continue
		}
		s, _ := parseChallenge(h)
		if s == "bearer" || s == "basic" && challenge == "" {
			challenge = h
		}
	}
	return resp.StatusCode, challenge, nil
}

func (p *Prober) transport() *http.Transport {
	return &http.Transport{
		Proxy:                  http.ProxyFromEnvironment,
		DialContext:            (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		TLSClientConfig:        &tls.Config{RootCAs: p.RootCAs, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:    5 * time.Second,
		ResponseHeaderTimeout:  10 * time.Second,
		MaxResponseHeaderBytes: 64 << 10,
		ForceAttemptHTTP2:      true,
	}
}

// transportError classifies an error of an HTTP request: certificate problems are TLSError,
// everything else Unreachable. The message names the cause only by its kind, because a url.Error
// quotes the URL and some errors quote what the server sent.
func transportError(what string, err error) Result {
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
	case errors.As(err, &unknown):
		return Result{Outcome: TLSError, Message: fmt.Sprintf("%s presented a certificate signed by an unknown authority (add its CA with --registry-ca-file)", what)}
	case errors.As(err, &hostname):
		return Result{Outcome: TLSError, Message: fmt.Sprintf("%s presented a certificate that is not valid for its name: %s", what, hostname.Error())}
	case errors.As(err, &invalid):
		return Result{Outcome: TLSError, Message: fmt.Sprintf("%s presented an invalid certificate: %s", what, invalid.Error())}
	case errors.As(err, &verify):
		return Result{Outcome: TLSError, Message: fmt.Sprintf("%s presented a certificate that could not be verified", what)}
	case errors.As(err, &header) || strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		// net/http replaces the RecordHeaderError of a plain HTTP answer by an unexported error.
		return Result{Outcome: TLSError, Message: fmt.Sprintf("%s does not speak TLS on that port", what)}
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return Result{Outcome: Unreachable, Message: fmt.Sprintf("%s did not answer in time", what)}
	case errors.As(err, &dnsErr):
		return Result{Outcome: Unreachable, Message: fmt.Sprintf("%s: the name does not resolve", what)}
	case errors.As(err, &opErr) && opErr.Op == "dial":
		return Result{Outcome: Unreachable, Message: fmt.Sprintf("%s refused or dropped the connection", what)}
	case errors.Is(err, context.Canceled):
		return Result{Outcome: Unreachable, Message: fmt.Sprintf("the probe of %s was cancelled", what)}
	}
	return Result{Outcome: Unreachable, Message: fmt.Sprintf("%s could not be reached (connection failed)", what)}
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

func unexpected(server, what string, status int) Result {
	return Result{Outcome: Unreachable, Message: fmt.Sprintf("registry %s answered %s with HTTP %d, which says nothing about the credential", server, what, status)}
}

// readBounded reads at most maxBody bytes and says whether there was more.
func readBounded(r io.Reader) ([]byte, bool) {
	b, _ := io.ReadAll(io.LimitReader(r, maxBody+1))
	if len(b) > maxBody {
		return b[:maxBody], true
	}
	return b, false
}
