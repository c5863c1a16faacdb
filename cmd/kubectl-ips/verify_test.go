package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tcr-assistant/tcr-assistant/internal/testenv"
	"github.com/tcr-assistant/tcr-assistant/internal/testregistry"
)

const (
	user          = "100012345678"
	rightPassword = "Pw-verify-RIGHT-b2e9"
	wrongPassword = "Pw-verify-WRONG-61fa"
)

// Tokens as TCR hands them out: JWTs whose signature the plugin does not check.
var (
	expiredToken = "eyJhbGciOiJSUzI1NiJ9." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"`+user+`","exp":1600000000}`)) + ".c2ln"
	futureToken  = "eyJhbGciOiJSUzI1NiJ9." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"`+user+`","exp":4102444800}`)) + ".c2ln"
)

func crYAML(name, server, password string) string {
	return `apiVersion: tcr.tencentcloudcr.com/v1
kind: ImagePullSecret
metadata:
  name: ` + name + `
spec:
  namespaces: "*"
  docker:
    server: "` + server + `"
    username: "` + user + `"
    password: "` + password + `"
`
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cr.yaml")
	require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
	return p
}

// runVerify runs the plugin and checks that no password appears in what it prints.
func runVerify(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(append([]string{"verify"}, args...), &stdout, &stderr)
	for _, p := range []string{rightPassword, wrongPassword, expiredToken, futureToken} {
		assert.NotContains(t, stdout.String()+stderr.String(), p, "kubectl ips verify printed a password")
	}
	return code, stdout.String(), stderr.String()
}

func TestVerify(t *testing.T) {
	reg := testregistry.Start(t, testregistry.Options{Users: map[string]string{user: rightPassword}})

	code, out, errOut := runVerify(t, "-f", writeFile(t, crYAML("good", reg.Host, rightPassword)), "--registry-ca-file", reg.CAFile)
	assert.Equal(t, 0, code, errOut)
	assert.Equal(t, "good: Accepted: registry "+reg.Host+" accepted the credential\n", out)

	// Several documents: each gets a line; one refusal makes the exit code 1.
	file := writeFile(t, crYAML("good", reg.Host, rightPassword)+"---\n"+crYAML("bad", reg.Host, wrongPassword))
	code, out, errOut = runVerify(t, "-f", file, "--registry-ca-file", reg.CAFile)
	assert.Equal(t, 1, code)
	assert.Equal(t, "good: Accepted: registry "+reg.Host+" accepted the credential\n"+
		"bad: Rejected: the token service "+reg.Host+" of registry "+reg.Host+" rejected the credential (HTTP 401)\n", out)
	assert.Empty(t, errOut)

	// A token password: its expiry is shown; once past, it is refused without asking the registry.
	reg.SetPassword(t, user, futureToken)
	code, out, _ = runVerify(t, "-f", writeFile(t, crYAML("token", reg.Host, futureToken)), "--registry-ca-file", reg.CAFile)
	assert.Equal(t, 0, code)
	assert.Equal(t, "token: Accepted: registry "+reg.Host+" accepted the credential (the password is a token that expires at 2100-01-01T00:00:00Z)\n", out)
	before := reg.Requests()
	code, out, _ = runVerify(t, "-f", writeFile(t, crYAML("expired", reg.Host, expiredToken)), "--registry-ca-file", reg.CAFile)
	assert.Equal(t, 1, code)
	assert.Equal(t, "expired: Rejected: the password is a token that expired at 2020-09-13T12:26:40Z\n", out)
	assert.Equal(t, before, reg.Requests(), "the registry was asked about an expired token")
	reg.SetPassword(t, user, rightPassword)

	// Without the CA file the registry's certificate is not trusted.
	code, out, _ = runVerify(t, "-f", writeFile(t, crYAML("good", reg.Host, rightPassword)))
	assert.Equal(t, 1, code)
	assert.Equal(t, "good: TLSError: registry "+reg.Host+" presented a certificate signed by an unknown authority (add its CA with --registry-ca-file)\n", out)
}

func TestVerifyInvalidInput(t *testing.T) {
	code, out, errOut := runVerify(t)
	assert.Equal(t, 2, code)
	assert.Empty(t, out)
	assert.Contains(t, errOut, "Usage: kubectl ips verify -f FILE [flags]")

	notIPS := writeFile(t, "apiVersion: v1\nkind: Secret\nmetadata: {name: x}\n")
	code, _, errOut = runVerify(t, "-f", notIPS)
	assert.Equal(t, 2, code)
	assert.Equal(t, notIPS+": document 1 is a v1 Secret, not an ImagePullSecret of tcr.tencentcloudcr.com/v1\n", errOut)

	typo := writeFile(t, strings.Replace(crYAML("x", "r.example", rightPassword), "username", "user", 1))
	code, _, errOut = runVerify(t, "-f", typo)
	assert.Equal(t, 2, code)
	assert.Equal(t, typo+`: document 1: error unmarshaling JSON: while decoding JSON: json: unknown field "user"`+"\n", errOut)

	code, _, errOut = runVerify(t, "-f", filepath.Join(t.TempDir(), "missing.yaml"))
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "missing.yaml: no such file or directory\n")
}

// TestVerifyPasswordSecretRef reads the password from the controller's namespace through the
// user's kubeconfig, as the plugin does on a workstation.
func TestVerifyPasswordSecretRef(t *testing.T) {
	reg := testregistry.Start(t, testregistry.Options{Users: map[string]string{user: rightPassword}})
	env, err := testenv.Start()
	require.NoError(t, err)
	t.Cleanup(func() { _ = env.Stop() })
	ctx := context.Background()
	const ns = "tcr-assistant-system"
	require.NoError(t, env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	require.NoError(t, env.Client.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "tcr-password"},
		Data:       map[string][]byte{"password": []byte(rightPassword)},
	}))
	cr := func(name, secret, key string) string {
		return `apiVersion: tcr.tencentcloudcr.com/v1
kind: ImagePullSecret
metadata: {name: ` + name + `}
spec:
  docker:
    server: "` + reg.Host + `"
    username: "` + user + `"
    passwordSecretRef: {name: ` + secret + `, key: ` + key + `}
`
	}
	code, out, errOut := runVerify(t, "-f", writeFile(t, cr("from-secret", "tcr-password", "password")),
		"--kubeconfig", env.Kubeconfig, "--registry-ca-file", reg.CAFile)
	assert.Equal(t, 0, code, errOut)
	assert.Equal(t, "from-secret: Accepted: registry "+reg.Host+" accepted the credential\n", out)

	code, out, errOut = runVerify(t, "-f", writeFile(t, cr("no-secret", "missing", "password")+"---\n"+cr("no-key", "tcr-password", "pw")),
		"--kubeconfig", env.Kubeconfig, "--registry-ca-file", reg.CAFile)
	assert.Equal(t, 2, code)
	assert.Empty(t, out)
	assert.Equal(t, `no-secret: reading docker.passwordSecretRef: secrets "missing" not found`+"\n"+
		`no-key: reading docker.passwordSecretRef: secret tcr-assistant-system/tcr-password has no key "pw"`+"\n", errOut)
}

func TestHelpListsEveryCommand(t *testing.T) {
	var stdout, stderr bytes.Buffer
	assert.Equal(t, 0, run([]string{"help"}, &stdout, &stderr))
	assert.Contains(t, stdout.String(), "Usage: kubectl ips test PATH...")
	assert.Contains(t, stdout.String(), "Usage: kubectl ips verify -f FILE [flags]")
	assert.Contains(t, stdout.String(), "Usage: kubectl ips preview (-f FILE | NAME...) [flags]")
	assert.Empty(t, stderr.String())
}
