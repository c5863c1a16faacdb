package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	credentialproviderv1 "k8s.io/kubelet/pkg/apis/credentialprovider/v1"
)

// binary is the command built once for every test, run as the kubelet runs it.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tcr-credential-provider-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, name)
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const (
	serverName = "tcr-assistant-credentials.tcr-assistant-system.svc"
	registry   = "tcr.example.com"
	image      = registry + "/team/app:1.0"
	password   = "s3cr3t-registry-password"
)

// managerRequest is what the fake manager received.
type managerRequest struct {
	method, path, authorization, contentType string
	body                                     map[string]any
}

// fakeManager is the manager's credential endpoint over HTTPS on loopback, with its own CA and a
// certificate for serverName only (not for 127.0.0.1, so that the plugin must verify the name).
type fakeManager struct {
	srv    *httptest.Server
	caFile string
	mu     sync.Mutex
	seen   []managerRequest
	status int
	answer any
	delay  time.Duration
}

func startManager(t *testing.T, status int, answer any) *fakeManager {
	t.Helper()
	m := &fakeManager{status: status, answer: answer}
	caCert, caKey, caPEM := newCA(t, "manager CA")
	m.caFile = filepath.Join(t.TempDir(), "ca.crt")
	require.NoError(t, os.WriteFile(m.caFile, caPEM, 0o644))
	m.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req := managerRequest{method: r.Method, path: r.URL.Path, authorization: r.Header.Get("Authorization"), contentType: r.Header.Get("Content-Type")}
		_ = json.Unmarshal(body, &req.body)
		m.mu.Lock()
		m.seen = append(m.seen, req)
		m.mu.Unlock()
		time.Sleep(m.delay)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(m.status)
		if s, ok := m.answer.(string); ok {
			_, _ = io.WriteString(w, s)
			return
		}
		_ = json.NewEncoder(w).Encode(m.answer)
	}))
	m.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are expected
	m.srv.TLS = &tls.Config{Certificates: []tls.Certificate{leaf(t, caCert, caKey, serverName)}}
	m.srv.StartTLS()
	t.Cleanup(m.srv.Close)
	return m
}

// args are the plugin's flags, as the installed config gives them.
func (m *fakeManager) args() []string {
	return []string{"--endpoint=" + m.srv.URL, "--server-name=" + serverName, "--ca-file=" + m.caFile}
}

func (m *fakeManager) requests() []managerRequest {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]managerRequest(nil), m.seen...)
}

func newCA(t *testing.T, cn string) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func leaf(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, dnsName string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: dnsName}, DNSNames: []string{dnsName},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// jwt returns an unsigned-looking token whose payload expires at exp: the plugin reads exp and
// verifies nothing (the manager does).
func jwt(exp time.Time) string {
	enc := base64.RawURLEncoding.EncodeToString
	payload, _ := json.Marshal(map[string]any{"aud": []string{"tcr-assistant.tcr.tencentcloudcr.com"}, "exp": exp.Unix(), "sub": "system:serviceaccount:team:app"})
	return enc([]byte(`{"alg":"RS256","kid":"k"}`)) + "." + enc(payload) + "." + enc([]byte("signature-not-checked-by-the-plugin"))
}

// kubeletRequest is the CredentialProviderRequest the kubelet writes on the plugin's stdin.
func kubeletRequest(t *testing.T, image, token string) []byte {
	t.Helper()
	data, err := json.Marshal(credentialproviderv1.CredentialProviderRequest{
		TypeMeta:            metav1.TypeMeta{APIVersion: credentialproviderv1.SchemeGroupVersion.String(), Kind: "CredentialProviderRequest"},
		Image:               image,
		ServiceAccountToken: token,
	})
	require.NoError(t, err)
	return data
}

// run runs the plugin with stdin and returns stdout, stderr and the exit code.
func run(t *testing.T, stdin []byte, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return stdout.String(), stderr.String(), exit.ExitCode()
	}
	require.NoError(t, err)
	return stdout.String(), stderr.String(), 0
}

// decodeResponse decodes stdout as the kubelet does: through a scheme of the v1 types, strictly,
// checking the group, version and kind.
func decodeResponse(t *testing.T, stdout string) *credentialproviderv1.CredentialProviderResponse {
	t.Helper()
	scheme := runtime.NewScheme()
	require.NoError(t, credentialproviderv1.AddToScheme(scheme))
	obj, gvk, err := serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer().Decode([]byte(stdout), nil, nil)
	require.NoError(t, err, stdout)
	require.Equal(t, credentialproviderv1.SchemeGroupVersion.WithKind("CredentialProviderResponse"), *gvk)
	return obj.(*credentialproviderv1.CredentialProviderResponse)
}

func TestProvide(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		name         string
		tokenExp     time.Time
		cacheSeconds int
		expiresAt    time.Time
		// the cache duration is in [min, max]: the plugin reads the clock after the test does.
		min, max time.Duration
	}{
		{"cacheSeconds soonest", now.Add(time.Hour), 300, now.Add(2 * time.Hour), 300 * time.Second, 300 * time.Second},
		{"token soonest", now.Add(120 * time.Second), 3600, now.Add(2 * time.Hour), 110 * time.Second, 120 * time.Second},
		{"expiresAt soonest", now.Add(time.Hour), 3600, now.Add(200 * time.Second), 190 * time.Second, 200 * time.Second},
		{"no expiresAt", now.Add(time.Hour), 600, time.Time{}, 600 * time.Second, 600 * time.Second},
		{"token expired", now.Add(-time.Minute), 3600, now.Add(time.Hour), 0, 0},
		{"credential expired", now.Add(time.Hour), 3600, now.Add(-time.Minute), 0, 0},
		{"cacheSeconds 0", now.Add(time.Hour), 0, now.Add(time.Hour), 0, 0},
		// A token whose exp cannot be read: its expiry is unknown, so nothing is cached.
		{"token expiry unknown", time.Time{}, 3600, now.Add(time.Hour), 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			answer := map[string]any{"registry": registry, "username": "100012345678", "password": password, "cacheSeconds": tc.cacheSeconds}
			if !tc.expiresAt.IsZero() {
				answer["expiresAt"] = tc.expiresAt.UTC().Format(time.RFC3339)
			}
			m := startManager(t, http.StatusOK, answer)
			token := jwt(tc.tokenExp)
			if tc.tokenExp.IsZero() {
				token = "an-opaque-token"
			}
			stdout, stderr, code := run(t, kubeletRequest(t, image, token), m.args()...)
			require.Equal(t, 0, code, stderr)
			require.Empty(t, stderr)

			require.Equal(t, []managerRequest{{
				method: http.MethodPost, path: "/credential-provider/v1", authorization: "Bearer " + token,
				contentType: "application/json", body: map[string]any{"image": image},
			}}, m.requests())

			resp := decodeResponse(t, stdout)
			require.Equal(t, credentialproviderv1.RegistryPluginCacheKeyType, resp.CacheKeyType)
			require.Equal(t, map[string]credentialproviderv1.AuthConfig{registry: {Username: "100012345678", Password: password}}, resp.Auth)
			require.NotNil(t, resp.CacheDuration, stdout)
			d := resp.CacheDuration.Duration
			require.True(t, d >= tc.min && d <= tc.max, "cacheDuration %s, want within [%s, %s]", d, tc.min, tc.max)
			require.Equal(t, time.Duration(0), d%time.Second, "whole seconds")
		})
	}
}

// TestProvideOutput pins the response as the kubelet reads it.
func TestProvideOutput(t *testing.T) {
	m := startManager(t, http.StatusOK, map[string]any{"registry": registry, "username": "100012345678", "password": password, "cacheSeconds": 300})
	stdout, _, code := run(t, kubeletRequest(t, image, jwt(time.Now().Add(time.Hour))), m.args()...)
	require.Equal(t, 0, code)
	require.JSONEq(t, `{"kind":"CredentialProviderResponse","apiVersion":"credentialprovider.kubelet.k8s.io/v1",
		"cacheKeyType":"Registry","cacheDuration":"5m0s",
		"auth":{"tcr.example.com":{"username":"100012345678","password":"s3cr3t-registry-password"}}}`, stdout)
}

// TestRefused runs the plugin into each failure: exit 1, nothing on stdout, exactly one line on
// stderr saying why, and never the token or the password.
func TestRefused(t *testing.T) {
	token := jwt(time.Now().Add(time.Hour))
	ok := map[string]any{"registry": registry, "username": "100012345678", "password": password, "cacheSeconds": 300}
	_, _, otherCA := newCA(t, "another CA")
	otherCAFile := filepath.Join(t.TempDir(), "other-ca.crt")
	require.NoError(t, os.WriteFile(otherCAFile, otherCA, 0o644))
	notPEM := filepath.Join(t.TempDir(), "not-a-ca.crt")
	require.NoError(t, os.WriteFile(notPEM, []byte("not a certificate\n"), 0o644))

	for _, tc := range []struct {
		name   string
		status int
		answer any
		stdin  []byte
		// args changes the manager's flags; delay slows the manager.
		args  func(m *fakeManager) []string
		delay time.Duration
		// want is the line after "tcr-credential-provider: "; %s is the manager's URL.
		want string
		// asked is whether the manager was called.
		asked bool
	}{{
		name: "no rule", status: http.StatusNotFound,
		answer: map[string]string{"reason": "NoRule", "message": "no rule selecting ServiceAccount team/app has docker.server tcr.example.com"},
		want:   `the manager refused a credential for "tcr.example.com/team/app:1.0": NoRule: no rule selecting ServiceAccount team/app has docker.server tcr.example.com (HTTP 404)`,
		asked:  true,
	}, {
		name: "unauthenticated", status: http.StatusUnauthorized,
		answer: map[string]string{"reason": "Unauthenticated", "message": "the token is not valid for audience tcr-assistant.tcr.tencentcloudcr.com"},
		want:   `the manager refused a credential for "tcr.example.com/team/app:1.0": Unauthenticated: the token is not valid for audience tcr-assistant.tcr.tencentcloudcr.com (HTTP 401)`,
		asked:  true,
	}, {
		name: "a message on two lines, echoing the token", status: http.StatusTooManyRequests,
		answer: map[string]string{"reason": "TooManyRequests", "message": "slow down\n" + token},
		want:   `the manager refused a credential for "tcr.example.com/team/app:1.0": TooManyRequests: slow down [redacted] (HTTP 429)`,
		asked:  true,
	}, {
		name: "an answer with no reason", status: http.StatusBadGateway, answer: "<html>bad gateway</html>",
		want:  `the manager answered HTTP 502 for "tcr.example.com/team/app:1.0", with no reason`,
		asked: true,
	}, {
		name: "an answer too large", status: http.StatusOK, answer: strings.Repeat("x", maxAnswerBytes+1),
		want:  "the manager's answer (HTTP 200) is larger than 65536 bytes",
		asked: true,
	}, {
		name: "registry mismatch", status: http.StatusOK,
		answer: map[string]any{"registry": "other.tencentcloudcr.com", "username": "1", "password": password, "cacheSeconds": 300},
		want:   `the manager answered for registry "other.tencentcloudcr.com", not the image's registry "tcr.example.com"`,
		asked:  true,
	}, {
		name: "no password", status: http.StatusOK,
		answer: map[string]any{"registry": registry, "username": "1", "cacheSeconds": 300},
		want:   "the manager's answer has no username or no password",
		asked:  true,
	}, {
		name: "expiresAt not RFC 3339", status: http.StatusOK,
		answer: map[string]any{"registry": registry, "username": "1", "password": password, "cacheSeconds": 300, "expiresAt": "tomorrow"},
		want:   `the manager's expiresAt "tomorrow" is not RFC 3339`,
		asked:  true,
	}, {
		name: "wrong CA", status: http.StatusOK, answer: ok,
		args: func(m *fakeManager) []string {
			return []string{"--endpoint=" + m.srv.URL, "--server-name=" + serverName, "--ca-file=" + otherCAFile}
		},
		want: "reaching the manager at %s/credential-provider/v1: tls: failed to verify certificate: x509: certificate signed by unknown authority",
	}, {
		name: "wrong server name", status: http.StatusOK, answer: ok,
		args: func(m *fakeManager) []string {
			return []string{"--endpoint=" + m.srv.URL, "--server-name=tcr-assistant.example.com", "--ca-file=" + m.caFile}
		},
		want: "reaching the manager at %s/credential-provider/v1: tls: failed to verify certificate: x509: certificate is valid for " + serverName + ", not tcr-assistant.example.com",
	}, {
		name: "timeout", status: http.StatusOK, answer: ok, delay: time.Second,
		args:  func(m *fakeManager) []string { return append(m.args(), "--timeout=200ms") },
		want:  "reaching the manager at %s/credential-provider/v1: no answer within 200ms",
		asked: true,
	}, {
		name: "no token", stdin: kubeletRequest(t, image, ""),
		want: "no service account token in the request: configure tokenAttributes with requireServiceAccount: true",
	}, {
		name: "stdin too large", stdin: bytes.Repeat([]byte(" "), maxRequestBytes+1),
		want: "the request on stdin is larger than 65536 bytes",
	}, {
		name: "stdin not JSON", stdin: []byte("serviceAccountToken: " + token),
		want: "reading the request on stdin: invalid character 's' looking for beginning of value",
	}, {
		name: "another apiVersion", stdin: bytes.Replace(kubeletRequest(t, image, token), []byte("/v1"), []byte("/v1beta1"), 1),
		want: `the request on stdin is apiVersion "credentialprovider.kubelet.k8s.io/v1beta1" kind "CredentialProviderRequest", not credentialprovider.kubelet.k8s.io/v1 CredentialProviderRequest`,
	}, {
		name: "an image that does not parse", stdin: kubeletRequest(t, "tcr.example.com/Team/app", token),
		want: `the request's image "tcr.example.com/Team/app": invalid reference format: repository name (Team/app) must be lowercase`,
	}, {
		name: "an endpoint that is not https", args: func(m *fakeManager) []string {
			return []string{"--endpoint=http://10.96.0.42", "--server-name=" + serverName, "--ca-file=" + m.caFile}
		},
		want: `--endpoint "http://10.96.0.42" is not https://HOST[:PORT]`,
	}, {
		name: "no server name", args: func(m *fakeManager) []string { return []string{"--endpoint=" + m.srv.URL, "--ca-file=" + m.caFile} },
		want: "--server-name is required",
	}, {
		name: "a CA file with no certificate", args: func(m *fakeManager) []string {
			return []string{"--endpoint=" + m.srv.URL, "--server-name=" + serverName, "--ca-file=" + notPEM}
		},
		want: "the CA file " + notPEM + " holds no PEM certificate",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			m := startManager(t, tc.status, tc.answer)
			m.delay = tc.delay
			args := m.args()
			if tc.args != nil {
				args = tc.args(m)
			}
			stdin := tc.stdin
			if stdin == nil {
				stdin = kubeletRequest(t, image, token)
			}
			start := time.Now()
			stdout, stderr, code := run(t, stdin, args...)
			require.Equal(t, 1, code)
			require.Empty(t, stdout)
			want := tc.want
			if strings.Contains(want, "%s") {
				want = fmt.Sprintf(want, m.srv.URL)
			}
			require.Equal(t, name+": "+want+"\n", stderr)
			require.NotContains(t, stderr, token)
			require.NotContains(t, stderr, password)
			require.Equal(t, tc.asked, len(m.requests()) > 0, "the manager was asked")
			require.Less(t, time.Since(start), 2*time.Second)
		})
	}
}
