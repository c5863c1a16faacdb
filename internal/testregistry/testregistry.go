// Package testregistry runs a real registry (distribution v3, in-process, in-memory storage) on
// 127.0.0.1 for tests, behind TLS from a test CA, with the authentication TCR uses: a Bearer
// challenge whose realm is a token service that checks a user name and password and hands out
// JWTs the registry verifies with the test signing key. A Basic (htpasswd) variant exists for
// registries without a token service. Passwords can be rotated while the registry runs.
package testregistry

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
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
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/auth/token"
	"github.com/distribution/distribution/v3/registry/handlers"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/sirupsen/logrus"
	"golang.org/x/crypto/bcrypt"

	// The registry finds its auth and storage drivers by name in registries these fill.
	_ "github.com/distribution/distribution/v3/registry/auth/htpasswd"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
)

// Auth is how the registry authenticates clients.
type Auth int

const (
	// Token is TCR's scheme: /v2/ answers 401 with a Bearer challenge naming a token service
	// (realm) that takes the user name and password as Basic auth and returns a signed JWT.
	Token Auth = iota
	// Basic is htpasswd: the registry itself checks the user name and password on every request.
	Basic
)

const (
	// TokenPath is the path of the token service, on the registry's own host as TCR has it.
	TokenPath = "/service/token"
	// Service is the service name of the Bearer challenge and the audience of the tokens.
	Service = "testregistry"
	issuer  = "testregistry-token-service"
	// tokenTTL is short so that no test can mistake a token for a password.
	tokenTTL = 5 * time.Minute
)

// Options configure Start.
type Options struct {
	// Addr is the address to listen on, "ip:port" ("10.254.0.1:0": a free port of that
	// address); "127.0.0.1:0" when empty. The serving certificate names that IP address too.
	Addr string
	// Auth is the authentication scheme; Token by default.
	Auth Auth
	// Users maps user names to passwords; at least one is needed to push.
	Users map[string]string
	// Public are repositories (path prefixes, "public/" for every repository under it) that a
	// client without credentials may pull, as from a public namespace of TCR: the token service
	// grants it "pull" on them and nothing else. Token auth only.
	Public []string
	// Authenticate, when set, also accepts Basic credentials at the token service: one is accepted
	// when Users has it or Authenticate returns true, so that tokens minted elsewhere log in, such
	// as those of internal/faketcr (faketcr.Server.Authenticate). Token auth only.
	Authenticate func(user, password string) bool
}

// Registry is a running registry.
type Registry struct {
	// Host is "127.0.0.1:port" (or Options.Addr's), the docker.server of an ImagePullSecret for
	// this registry.
	Host string
	// CAPEM is the PEM certificate of the test CA that signed the registry's serving certificate.
	CAPEM []byte
	// CAPool holds only the test CA.
	CAPool *x509.CertPool
	// CAFile is a file holding CAPEM, for flags such as --registry-ca-file.
	CAFile string

	auth     Auth
	key      *ecdsa.PrivateKey // signs tokens
	kid      string
	htpasswd string // path of the htpasswd file of the Basic variant

	public       []string
	authenticate func(user, password string) bool

	mu     sync.Mutex
	users  map[string]string
	issued []string // every token handed out, for tests that check none leaks

	tokenRequests atomic.Int64
	requests      atomic.Int64
}

var quietOnce sync.Once

// Start starts a registry and stops it when the test ends.
func Start(t testing.TB, opts Options) *Registry {
	t.Helper()
	// The registry logs every request through logrus' global logger, and the 404s a push meets
	// by design at error level; a test sees the registry's answers anyway.
	quietOnce.Do(func() { logrus.SetLevel(logrus.FatalLevel) })
	dir := t.TempDir()
	r := &Registry{auth: opts.Auth, users: map[string]string{}, public: opts.Public, authenticate: opts.Authenticate}
	if len(opts.Public) > 0 && opts.Auth != Token {
		t.Fatalf("testregistry: public repositories need token auth")
	}
	if opts.Authenticate != nil && opts.Auth != Token {
		t.Fatalf("testregistry: Authenticate needs token auth")
	}
	for u, p := range opts.Users {
		r.users[u] = p
	}

	ca, caKey := newCA(t)
	r.CAPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw})
	r.CAPool = x509.NewCertPool()
	r.CAPool.AddCert(ca)
	r.CAFile = filepath.Join(dir, "ca.crt")
	must(t, os.WriteFile(r.CAFile, r.CAPEM, 0o600))

	addr := opts.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	l, err := net.Listen("tcp", addr)
	must(t, err)
	r.Host = l.Addr().String()
	srv := httptest.NewUnstartedServer(nil)
	_ = srv.Listener.Close()
	srv.Listener = l
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{serving(t, ca, caKey, l.Addr().(*net.TCPAddr).IP)}}

	cfg := &configuration.Configuration{}
	cfg.Storage = configuration.Storage{
		"inmemory": configuration.Parameters{},
		// The purger would start a goroutine per registry that outlives nothing useful here.
		"maintenance": configuration.Parameters{"uploadpurging": map[any]any{"enabled": false}},
	}
	cfg.HTTP.Secret = "testregistry-upload-state-secret"
	switch opts.Auth {
	case Token:
		r.key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		must(t, err)
		r.kid = token.GetJWKThumbprint(&r.key.PublicKey)
		bundle := filepath.Join(dir, "token-signer.crt")
		must(t, os.WriteFile(bundle, selfSigned(t, r.key), 0o600))
		cfg.Auth = configuration.Auth{"token": configuration.Parameters{
			"realm":          "https://" + r.Host + TokenPath,
			"service":        Service,
			"issuer":         issuer,
			"rootcertbundle": bundle,
		}}
	case Basic:
		r.htpasswd = filepath.Join(dir, "htpasswd")
		r.writeHtpasswd(t)
		cfg.Auth = configuration.Auth{"htpasswd": configuration.Parameters{
			"realm": "testregistry",
			"path":  r.htpasswd,
		}}
	default:
		t.Fatalf("testregistry: unknown auth %d", opts.Auth)
	}
	app := handlers.NewApp(context.Background(), cfg)

	mux := http.NewServeMux()
	mux.Handle("/v2/", app)
	if opts.Auth == Token {
		mux.HandleFunc(TokenPath, r.serveToken)
	}
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.requests.Add(1)
		mux.ServeHTTP(w, req)
	})
	// A client that distrusts the test CA (a test of exactly that) would be logged as a
	// handshake error on stderr.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(func() {
		srv.Close()
		_ = app.Shutdown()
	})
	return r
}

// SetPassword sets (or rotates) the password of user: from now on only the new one is accepted.
func (r *Registry) SetPassword(t testing.TB, user, password string) {
	t.Helper()
	r.mu.Lock()
	r.users[user] = password
	r.mu.Unlock()
	if r.auth == Basic {
		r.writeHtpasswd(t)
	}
}

// Requests is the number of HTTP requests the registry and its token service have received.
func (r *Registry) Requests() int64 { return r.requests.Load() }

// TokenRequests is the number of requests the token service has received.
func (r *Registry) TokenRequests() int64 { return r.tokenRequests.Load() }

// IssuedTokens returns every token the token service has handed out.
func (r *Registry) IssuedTokens() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.issued...)
}

// Transport is an HTTP transport that trusts the test CA.
func (r *Registry) Transport() *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: r.CAPool}
	return tr
}

// writeHtpasswd writes the users with bcrypt's cheapest cost (the registry checks it on every
// request) and moves the file's mtime forward, since the registry reloads the file only when
// that changes.
func (r *Registry) writeHtpasswd(t testing.TB) {
	t.Helper()
	r.mu.Lock()
	var b strings.Builder
	for u, p := range r.users {
		h, err := bcrypt.GenerateFromPassword([]byte(p), bcrypt.MinCost)
		if err != nil {
			r.mu.Unlock()
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s:%s\n", u, h)
	}
	r.mu.Unlock()
	var mtime time.Time
	if fi, err := os.Stat(r.htpasswd); err == nil {
		mtime = fi.ModTime()
	}
	must(t, os.WriteFile(r.htpasswd, []byte(b.String()), 0o600))
	if fi, err := os.Stat(r.htpasswd); err == nil && !fi.ModTime().After(mtime) {
		next := mtime.Add(time.Second)
		must(t, os.Chtimes(r.htpasswd, next, next))
	}
}

// serveToken is the token service: it checks the Basic credential and grants every action
// asked for in the scope parameters, as a JWT signed by the key the registry trusts.
func (r *Registry) serveToken(w http.ResponseWriter, req *http.Request) {
	r.tokenRequests.Add(1)
	user, pass, ok := req.BasicAuth()
	r.mu.Lock()
	want, known := r.users[user]
	r.mu.Unlock()
	anonymous := !ok && req.Header.Get("Authorization") == ""
	accepted := ok && (known && pass == want || r.authenticate != nil && r.authenticate(user, pass))
	if !anonymous && !accepted || anonymous && len(r.public) == 0 {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
		return
	}
	if s := req.URL.Query().Get("service"); s != Service {
		http.Error(w, "unknown service", http.StatusBadRequest)
		return
	}
	access := []*token.ResourceActions{}
	for _, scopes := range req.URL.Query()["scope"] {
		for _, scope := range strings.Fields(scopes) {
			// type:name:actions, where the name may itself hold a colon (host:port/repo).
			first, last := strings.Index(scope, ":"), strings.LastIndex(scope, ":")
			if first < 0 || first == last {
				continue
			}
			ra := &token.ResourceActions{Type: scope[:first], Name: scope[first+1 : last], Actions: strings.Split(scope[last+1:], ",")}
			if anonymous {
				if ra.Type != "repository" || !r.isPublic(ra.Name) || !slices.Contains(ra.Actions, "pull") {
					continue
				}
				ra.Actions = []string{"pull"}
			}
			access = append(access, ra)
		}
	}
	now := time.Now()
	claims := token.ClaimSet{
		Issuer: issuer, Subject: user, Audience: token.AudienceList{Service},
		Expiration: now.Add(tokenTTL).Unix(), NotBefore: now.Add(-time.Minute).Unix(), IssuedAt: now.Unix(),
		JWTID: rand.Text(), Access: access,
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: r.key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", r.kid))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	raw, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	r.mu.Lock()
	r.issued = append(r.issued, raw)
	r.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"token": raw, "access_token": raw, "expires_in": int(tokenTTL.Seconds()), "issued_at": now.UTC().Format(time.RFC3339),
	})
}

// isPublic tells whether anonymous clients may pull repo.
func (r *Registry) isPublic(repo string) bool {
	for _, p := range r.public {
		if repo == p || strings.HasSuffix(p, "/") && strings.HasPrefix(repo, p) {
			return true
		}
	}
	return false
}

func newCA(t testing.TB) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "testregistry CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	must(t, err)
	ca, err := x509.ParseCertificate(der)
	must(t, err)
	return ca, key
}

// serving returns a certificate for 127.0.0.1 and ip (the listener's) signed by the CA.
func serving(t testing.TB, ca *x509.Certificate, caKey *ecdsa.PrivateKey, ip net.IP) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	ips := []net.IP{net.IPv4(127, 0, 0, 1)}
	if !ip.Equal(ips[0]) {
		ips = append(ips, ip)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  ips,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	must(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// selfSigned returns a PEM certificate for the token signing key: the registry's rootcertbundle,
// from which it learns the key it trusts.
func selfSigned(t testing.TB, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(3),
		Subject:      pkix.Name{CommonName: issuer},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	must(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("testregistry: %v", err)
	}
}
