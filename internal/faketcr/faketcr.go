// Package faketcr is a fake of the TCR API (service tcr, version 2019-09-24) for tests, on
// 127.0.0.1 behind TLS from a test CA. It is faithful where a client can get it wrong: it checks
// the TC3-HMAC-SHA256 signature of every request the way the API documents it (sign.go), refuses
// a timestamp more than 300 s from its clock, and answers errors as the API does, HTTP 200 with
// {"Response":{"Error":{"Code","Message"},"RequestId"}}. It serves the instance token actions:
// CreateInstanceToken, DescribeInstanceToken and DeleteInstanceToken.
//
// Tokens it mints are JWTs like the API's: {"ownerUin": <Username>, "jti", "iat"}, with "exp"
// when the token expires. Authenticate says whether a user name and token are live, for a
// registry's token service (testregistry.Options.Authenticate).
package faketcr

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	// Service and Version are what the fake answers to.
	Service = "tcr"
	Version = "2019-09-24"
	// DefaultUsername is the user name of the tokens (the account's UIN on the real API).
	DefaultUsername = "100012345678"
	// DefaultTemporaryLifetime is how long a temp token lasts, as on the real API.
	DefaultTemporaryLifetime = time.Hour
	// MaxSkew is how far X-TC-Timestamp may be from the fake's clock.
	MaxSkew = 300 * time.Second
	// maxBody bounds a request body.
	maxBody = 1 << 20
)

// Error codes the fake answers with (the API's common codes and those of its token actions).
const (
	CodeInvalidAuthorization  = "AuthFailure.InvalidAuthorization"
	CodeSecretIDNotFound      = "AuthFailure.SecretIdNotFound"
	CodeSignatureExpire       = "AuthFailure.SignatureExpire"
	CodeSignatureFailure      = "AuthFailure.SignatureFailure"
	CodeTokenFailure          = "AuthFailure.TokenFailure"
	CodeInvalidAction         = "InvalidAction"
	CodeInvalidParameter      = "InvalidParameter"
	CodeInvalidParameterValue = "InvalidParameterValue"
	CodeMissingParameter      = "MissingParameter"
	CodeNoSuchVersion         = "NoSuchVersion"
	CodeUnknownParameter      = "UnknownParameter"
	CodeResourceNotFound      = "ResourceNotFound"
	CodeRegistryNotFound      = "ResourceNotFound.TcrResourceNotFound"
)

// Options configure Start.
type Options struct {
	// Keys maps SecretIds to SecretKeys.
	Keys map[string]string
	// STSTokens maps the SecretIds of temporary (STS) keys to the X-TC-Token they need.
	STSTokens map[string]string
	// Registries are the instance IDs that exist.
	Registries []string
	// Now is the clock of token expiry and of the 300 s timestamp window; time.Now when nil.
	Now func() time.Time
	// SigningNow, when set, is the clock of the 300 s timestamp window instead of Now: for a test
	// that moves the clock of token expiry (the controller's) while the SDK signs with the real
	// one.
	SigningNow func() time.Time
	// TemporaryLifetime is how long a temp token lasts; DefaultTemporaryLifetime when zero.
	TemporaryLifetime time.Duration
	// LongTermLifetime is how long a longterm token lasts; when zero it never expires and its
	// ExpTime is 0.
	LongTermLifetime time.Duration
	// Username is the user name of the tokens; DefaultUsername when empty.
	Username string
	// Addr is the listen address; "127.0.0.1:0" when empty.
	Addr string
}

// Token is a token the fake minted.
type Token struct {
	// ID is the TokenId of a longterm token; temp tokens have one too, only for the test hooks
	// (the API returns none for them).
	ID         string
	RegistryID string
	Username   string
	Token      string
	Desc       string
	LongTerm   bool
	CreatedAt  time.Time
	// ExpiresAt is zero for a token that never expires.
	ExpiresAt time.Time
	// Enabled is false once Revoke disabled the token.
	Enabled bool
}

// Server is a running fake.
type Server struct {
	// Endpoint is host:port, for tcrapi.Config.Endpoint.
	Endpoint string
	// CAPEM is the PEM certificate of the test CA that signed the serving certificate.
	CAPEM []byte
	// CAPool holds only the test CA.
	CAPool *x509.CertPool
	// CAFile is a file holding CAPEM, for flags such as --tcr-api-ca-file.
	CAFile string

	srv               *httptest.Server
	dir               string
	now               func() time.Time
	signingNow        func() time.Time
	temporaryLifetime time.Duration
	longTermLifetime  time.Duration
	username          string
	jwtKey            []byte

	mu         sync.Mutex
	keys       map[string]string
	stsTokens  map[string]string
	registries []string
	tokens     []*Token // in creation order; deleted ones are removed
	issued     []string
	calls      map[string]int
	requests   int
	failNext   map[string]apiError
}

// apiError is an error answered by the API.
type apiError struct{ code, message string }

// Start starts a fake and stops it when the test ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	s, err := New(opts)
	must(t, err)
	t.Cleanup(s.Close)
	return s
}

// New starts a fake that runs until Close, for a fake shared by every test of a package
// (started in TestMain).
func New(opts Options) (s *Server, err error) {
	s = &Server{
		now: opts.Now, signingNow: opts.SigningNow, temporaryLifetime: opts.TemporaryLifetime, longTermLifetime: opts.LongTermLifetime,
		username: opts.Username, jwtKey: []byte(rand.Text()),
		keys: map[string]string{}, stsTokens: map[string]string{}, registries: slices.Clone(opts.Registries),
		calls: map[string]int{}, failNext: map[string]apiError{},
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.signingNow == nil {
		s.signingNow = s.now
	}
	if s.temporaryLifetime <= 0 {
		s.temporaryLifetime = DefaultTemporaryLifetime
	}
	if s.username == "" {
		s.username = DefaultUsername
	}
	for id, key := range opts.Keys {
		s.keys[id] = key
	}
	for id, tok := range opts.STSTokens {
		s.stsTokens[id] = tok
	}
	addr := opts.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	if s.dir, err = os.MkdirTemp("", "faketcr-"); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(s.dir)
		}
	}()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s.Endpoint = l.Addr().String()

	ca, caKey, err := newCA()
	if err != nil {
		_ = l.Close()
		return nil, err
	}
	cert, err := serving(ca, caKey, l.Addr().(*net.TCPAddr).IP)
	if err != nil {
		_ = l.Close()
		return nil, err
	}
	s.CAPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw})
	s.CAPool = x509.NewCertPool()
	s.CAPool.AddCert(ca)
	s.CAFile = filepath.Join(s.dir, "tcr-api-ca.crt")
	if err := os.WriteFile(s.CAFile, s.CAPEM, 0o600); err != nil {
		_ = l.Close()
		return nil, err
	}

	srv := httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	_ = srv.Listener.Close()
	srv.Listener = l
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	// A client that distrusts the test CA (a test of exactly that) would be logged as a handshake
	// error on stderr.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	s.srv = srv
	return s, nil
}

// Close stops the fake and removes its files.
func (s *Server) Close() {
	s.srv.Close()
	_ = os.RemoveAll(s.dir)
}

// Calls is the number of calls of action that passed authentication.
func (s *Server) Calls(action string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[action]
}

// Requests is the number of HTTP requests the fake has received.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// Tokens returns the tokens minted for registryID that were not deleted, expired and revoked
// ones included, in creation order.
func (s *Server) Tokens(registryID string) []Token {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Token
	for _, tok := range s.tokens {
		if tok.RegistryID == registryID {
			out = append(out, *tok)
		}
	}
	return out
}

// Expire makes the token with the ID expire now; false when there is none.
func (s *Server) Expire(tokenID string) bool {
	return s.update(tokenID, func(tok *Token) { tok.ExpiresAt = s.now() })
}

// Revoke disables the token with the ID, as ModifyInstanceToken with Enable false does; false
// when there is none.
func (s *Server) Revoke(tokenID string) bool {
	return s.update(tokenID, func(tok *Token) { tok.Enabled = false })
}

func (s *Server) update(tokenID string, f func(*Token)) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, tok := range s.tokens {
		if tok.ID == tokenID {
			f(tok)
			return true
		}
	}
	return false
}

// FailNext makes the next authenticated call of action answer the API error code with message.
func (s *Server) FailNext(action, code, message string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext[action] = apiError{code, message}
}

// SetKey sets (or rotates) the SecretKey of secretID; an empty secretKey deletes the key.
func (s *Server) SetKey(secretID, secretKey string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.keys[secretID]; ok {
		s.issued = append(s.issued, old) // the leak checks look for it still
	}
	if secretKey == "" {
		delete(s.keys, secretID)
		return
	}
	s.keys[secretID] = secretKey
}

// Authenticate tells whether password is a token the fake minted for user that is live: not
// deleted, not revoked and not expired by the fake's clock.
func (s *Server) Authenticate(user, password string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, tok := range s.tokens {
		if subtle.ConstantTimeCompare([]byte(tok.Token), []byte(password)) == 1 {
			return tok.Username == user && tok.Enabled && (tok.ExpiresAt.IsZero() || s.now().Before(tok.ExpiresAt))
		}
	}
	return false
}

// Issued returns every token the fake minted, every signature it was sent, and every SecretKey
// and STS token it knows or knew, for tests that check that none leaks.
func (s *Server) Issued() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := slices.Clone(s.issued)
	for _, k := range s.keys {
		out = append(out, k)
	}
	for _, tok := range s.stsTokens {
		out = append(out, tok)
	}
	return out
}

// serve answers one API request.
func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests++
	s.mu.Unlock()
	requestID := newRequestID()
	if r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return
	}
	if len(body) > maxBody {
		writeError(w, requestID, apiError{CodeInvalidParameter, "The request body is larger than the API accepts."})
		return
	}
	action := r.Header.Get("X-TC-Action")
	if e := s.verify(r, body, Service); e != nil {
		writeError(w, requestID, *e)
		return
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[action]++
	if version := r.Header.Get("X-TC-Version"); version != Version {
		writeError(w, requestID, apiError{CodeNoSuchVersion, fmt.Sprintf("The API version `%s` of action `%s` does not exist.", version, action)})
		return
	}
	handler, ok := map[string]func(params) (map[string]any, *apiError){
		"CreateInstanceToken":   s.createInstanceToken,
		"DescribeInstanceToken": s.describeInstanceToken,
		"DeleteInstanceToken":   s.deleteInstanceToken,
	}[action]
	if !ok {
		writeError(w, requestID, apiError{CodeInvalidAction, fmt.Sprintf("The action `%s` does not exist.", action)})
		return
	}
	if e, ok := s.failNext[action]; ok {
		delete(s.failNext, action)
		writeError(w, requestID, e)
		return
	}
	p, e := parseParams(body)
	if e != nil {
		writeError(w, requestID, *e)
		return
	}
	resp, e := handler(p)
	if e != nil {
		writeError(w, requestID, *e)
		return
	}
	resp["RequestId"] = requestID
	writeJSON(w, map[string]any{"Response": resp})
}

// verify authenticates a request signed for service as the API does; nil when it passes. It
// checks, in this order: the method, the common headers, the 300 s window of X-TC-Timestamp, the
// form of Authorization, the SecretId, the X-TC-Token of an STS key, and the signature.
func (s *Server) verify(r *http.Request, body []byte, service string) *apiError {
	if r.Method != http.MethodPost {
		return &apiError{CodeInvalidParameter, "The fake TCR API takes POST requests only."}
	}
	for _, h := range []string{"Authorization", "X-TC-Action", "X-TC-Version", "X-TC-Timestamp", "X-TC-Region"} {
		if r.Header.Get(h) == "" {
			return &apiError{CodeMissingParameter, fmt.Sprintf("The request is missing a required parameter `%s`.", h)}
		}
	}
	ts := r.Header.Get("X-TC-Timestamp")
	timestamp, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return &apiError{CodeInvalidParameter, "The parameter `X-TC-Timestamp` is not a Unix timestamp."}
	}
	if d := s.signingNow().Sub(time.Unix(timestamp, 0)); d > MaxSkew || d < -MaxSkew {
		return &apiError{CodeSignatureExpire, "Signature expired. Timestamp and server time cannot differ by more than five minutes."}
	}
	a, ok := parseAuthorization(r.Header.Get("Authorization"))
	if !ok || !slices.Contains(a.signedHeaders, "content-type") || !slices.Contains(a.signedHeaders, "host") {
		return &apiError{CodeInvalidAuthorization, "The Authorization header does not follow the TC3-HMAC-SHA256 format."}
	}
	s.mu.Lock()
	key, known := s.keys[a.secretID]
	stsToken, sts := s.stsTokens[a.secretID]
	s.issued = append(s.issued, a.signature) // for the leak checks
	s.mu.Unlock()
	if !known {
		return &apiError{CodeSecretIDNotFound, "The SecretId is not found, please ensure that your SecretId is correct."}
	}
	if sts && subtle.ConstantTimeCompare([]byte(r.Header.Get("X-TC-Token")), []byte(stsToken)) != 1 {
		return &apiError{CodeTokenFailure, "The token is invalid."}
	}
	want := scope(timestamp, service)
	sig := signature(key, want, stringToSign(ts, want, canonicalRequest(r, a.signedHeaders, body)))
	if a.scope != want || subtle.ConstantTimeCompare([]byte(a.signature), []byte(sig)) != 1 {
		return &apiError{CodeSignatureFailure, "The provided credentials could not be validated. Please check your signature is correct."}
	}
	return nil
}

// params are the action parameters of a request.
type params map[string]json.RawMessage

// parseParams decodes the JSON object of a request body.
func parseParams(body []byte) (params, *apiError) {
	p := params{}
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	if err := d.Decode(&p); err != nil || p == nil {
		return nil, &apiError{CodeInvalidParameter, "The request body is not a JSON object."}
	}
	return p, nil
}

// check refuses parameters other than known ones.
func (p params) check(known ...string) *apiError {
	for k := range p {
		if !slices.Contains(known, k) {
			return &apiError{CodeUnknownParameter, fmt.Sprintf("The parameter `%s` is not recognized.", k)}
		}
	}
	return nil
}

// str reads a string parameter; "" when absent.
func (p params) str(name string) (string, *apiError) {
	raw, ok := p[name]
	if !ok {
		return "", nil
	}
	var v string
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", &apiError{CodeInvalidParameter, fmt.Sprintf("The parameter `%s` must be a string.", name)}
	}
	return v, nil
}

// integer reads a non-negative integer parameter; def when absent.
func (p params) integer(name string, def int) (int, *apiError) {
	raw, ok := p[name]
	if !ok {
		return def, nil
	}
	var v int
	if err := json.Unmarshal(raw, &v); err != nil {
		return 0, &apiError{CodeInvalidParameter, fmt.Sprintf("The parameter `%s` must be an integer.", name)}
	}
	if v < 0 {
		return 0, &apiError{CodeInvalidParameterValue, fmt.Sprintf("The parameter `%s` must not be negative.", name)}
	}
	return v, nil
}

// registry reads RegistryId, which must name an existing instance.
func (s *Server) registry(p params) (string, *apiError) {
	id, e := p.str("RegistryId")
	if e != nil {
		return "", e
	}
	if id == "" {
		return "", &apiError{CodeMissingParameter, "The request is missing a required parameter `RegistryId`."}
	}
	if !slices.Contains(s.registries, id) {
		return "", &apiError{CodeRegistryNotFound, fmt.Sprintf("The TCR instance %s does not exist.", id)}
	}
	return id, nil
}

func (s *Server) createInstanceToken(p params) (map[string]any, *apiError) {
	if e := p.check("RegistryId", "TokenType", "Desc"); e != nil {
		return nil, e
	}
	registry, e := s.registry(p)
	if e != nil {
		return nil, e
	}
	tokenType, e := p.str("TokenType")
	if e != nil {
		return nil, e
	}
	desc, e := p.str("Desc")
	if e != nil {
		return nil, e
	}
	now := s.now()
	tok := &Token{ID: newTokenID(), RegistryID: registry, Username: s.username, Desc: desc, CreatedAt: now, Enabled: true}
	switch tokenType {
	case "", "temp":
		tok.ExpiresAt = now.Add(s.temporaryLifetime)
	case "longterm":
		tok.LongTerm = true
		if s.longTermLifetime > 0 {
			tok.ExpiresAt = now.Add(s.longTermLifetime)
		}
	default:
		return nil, &apiError{CodeInvalidParameterValue, fmt.Sprintf("The parameter `TokenType` must be longterm or temp, not %q.", tokenType)}
	}
	tok.Token = s.jwt(tok)
	s.tokens = append(s.tokens, tok)
	s.issued = append(s.issued, tok.Token)
	resp := map[string]any{"Username": tok.Username, "Token": tok.Token, "ExpTime": millis(tok.ExpiresAt)}
	if tok.LongTerm {
		resp["TokenId"] = tok.ID
	}
	return resp, nil
}

func (s *Server) describeInstanceToken(p params) (map[string]any, *apiError) {
	if e := p.check("RegistryId", "Limit", "Offset"); e != nil {
		return nil, e
	}
	registry, e := s.registry(p)
	if e != nil {
		return nil, e
	}
	limit, e := p.integer("Limit", 20)
	if e != nil {
		return nil, e
	}
	offset, e := p.integer("Offset", 0)
	if e != nil {
		return nil, e
	}
	var all []map[string]any
	for _, tok := range s.tokens {
		if tok.RegistryID == registry && tok.LongTerm {
			all = append(all, map[string]any{
				"Id": tok.ID, "Desc": tok.Desc, "RegistryId": tok.RegistryID, "Enabled": tok.Enabled,
				"CreatedAt": tok.CreatedAt.In(chinaTime).Format(time.RFC3339), "ExpiredAt": millis(tok.ExpiresAt),
			})
		}
	}
	page := []map[string]any{}
	if offset < len(all) {
		page = all[offset:min(len(all), offset+limit)]
	}
	return map[string]any{"TotalCount": len(all), "Tokens": page}, nil
}

func (s *Server) deleteInstanceToken(p params) (map[string]any, *apiError) {
	if e := p.check("RegistryId", "TokenId"); e != nil {
		return nil, e
	}
	registry, e := s.registry(p)
	if e != nil {
		return nil, e
	}
	id, e := p.str("TokenId")
	if e != nil {
		return nil, e
	}
	if id == "" {
		return nil, &apiError{CodeMissingParameter, "The request is missing a required parameter `TokenId`."}
	}
	for i, tok := range s.tokens {
		if tok.ID == id && tok.RegistryID == registry && tok.LongTerm {
			s.tokens = slices.Delete(s.tokens, i, i+1)
			return map[string]any{}, nil
		}
	}
	return nil, &apiError{CodeResourceNotFound, fmt.Sprintf("The instance token %s does not exist.", id)}
}

// chinaTime is the zone of the API's time strings.
var chinaTime = time.FixedZone("CST", 8*60*60)

// jwt returns a token like the API's: a JWT with the owner's UIN, unique by its jti.
func (s *Server) jwt(tok *Token) string {
	claims := map[string]any{"ownerUin": tok.Username, "jti": rand.Text(), "iat": tok.CreatedAt.Unix()}
	if !tok.ExpiresAt.IsZero() {
		claims["exp"] = tok.ExpiresAt.Unix()
	}
	header, _ := json.Marshal(map[string]string{"alg": "HS256", "typ": "JWT"})
	payload, _ := json.Marshal(claims)
	signed := base64.RawURLEncoding.EncodeToString(header) + "." + base64.RawURLEncoding.EncodeToString(payload)
	return signed + "." + base64.RawURLEncoding.EncodeToString(hmacSHA256(s.jwtKey, signed))
}

// millis is t in milliseconds since the epoch, 0 for the zero time.
func millis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func writeError(w http.ResponseWriter, requestID string, e apiError) {
	writeJSON(w, map[string]any{"Response": map[string]any{
		"Error":     map[string]string{"Code": e.code, "Message": e.message},
		"RequestId": requestID,
	}})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// newRequestID returns a random UUID, the form of the API's RequestId.
func newRequestID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6], b[8] = b[6]&0x0f|0x40, b[8]&0x3f|0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// newTokenID returns an ID of the form of the API's TokenIds (20 lowercase letters and digits).
func newTokenID() string {
	return strings.ToLower(rand.Text()[:20])
}

func newCA() (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "faketcr CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	ca, err := x509.ParseCertificate(der)
	return ca, key, err
}

// serving returns a certificate for localhost, 127.0.0.1, ::1 and ip, signed by the CA.
func serving(ca *x509.Certificate, caKey *ecdsa.PrivateKey, ip net.IP) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: ip.String()},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback, ip},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, err
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("faketcr: %v", err)
	}
}
