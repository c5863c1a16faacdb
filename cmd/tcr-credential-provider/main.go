// Command tcr-credential-provider is the kubelet's image credential provider for TCR Assistant
// (KEP-4412, exec protocol credentialprovider.kubelet.k8s.io/v1). The kubelet runs it for an
// image its CredentialProviderConfig matches, with a token of the Pod's ServiceAccount bound to
// the audience wire.Audience (api/v1's CredentialProviderAudience); the plugin exchanges that token at the manager's
// credential endpoint for the credential of the image's registry, so that no namespace holds a
// copy of the credential. On any failure it exits 1 with one line on stderr and the kubelet falls
// back to its other sources. "install" puts the plugin, the manager's CA and the
// CredentialProviderConfig on the node (the DaemonSet credential-provider runs it); it never
// restarts or reconfigures the kubelet.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"github.com/tcr-assistant/tcr-assistant/credcheck"
	"github.com/tcr-assistant/tcr-assistant/credprovider/wire"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/distribution/reference"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	credentialproviderv1 "k8s.io/kubelet/pkg/apis/credentialprovider/v1"
)

const (
	// name is the executable's name, which the kubelet's config names too.
	name = "tcr-credential-provider"
	// maxRequestBytes bounds the CredentialProviderRequest read from stdin (a token and an image
	// name are a few KiB), and maxAnswerBytes the manager's answer.
	maxRequestBytes = 64 << 10
	maxAnswerBytes  = 64 << 10
	// noToken is the reason given when the kubelet sends no token: its config lacks tokenAttributes.
	noToken = "no service account token in the request: configure tokenAttributes with requireServiceAccount: true"
)

const usage = `Usage:
  tcr-credential-provider --endpoint https://HOST:PORT --server-name NAME --ca-file FILE [--timeout 10s]
      the kubelet's exec plugin: a CredentialProviderRequest on stdin, a CredentialProviderResponse on stdout
  tcr-credential-provider install --bin-dir DIR --config-dir DIR --host-bin-dir DIR --host-config-dir DIR
      --endpoint https://HOST:PORT --server-name NAME --ca-file FILE --match-images LIST [--cache-duration 5m] [--watch]
      put the plugin, the CA and its CredentialProviderConfig on the node (see install -h)

Flags:
`

func main() {
	if len(os.Args) > 1 && os.Args[1] == "install" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		code := install(ctx, os.Args[2:], os.Stderr)
		stop()
		os.Exit(code)
	}
	os.Exit(provide(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// provide is the kubelet's exec plugin: it answers the request on stdin and returns the exit code.
func provide(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	endpoint := fs.String("endpoint", "", "the manager's address, https://HOST:PORT (the Service's ClusterIP: nodes do not resolve cluster DNS)")
	serverName := fs.String("server-name", "", "the name the manager's certificate is verified for (the Service's DNS name)")
	caFile := fs.String("ca-file", "", "the PEM file of the manager's CA, the only CA trusted")
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait for the manager")
	if code, done := parseFlags(fs, args, stderr, usage, nil); done {
		return code
	}
	p := &plugin{}
	if err := p.run(ctx, *endpoint, *serverName, *caFile, *timeout, stdin, stdout); err != nil {
		fmt.Fprintln(stderr, p.redact(name+": "+err.Error()))
		return 1
	}
	return 0
}

// run sets the plugin up from its flags and answers the request on stdin on stdout.
func (p *plugin) run(ctx context.Context, endpoint, serverName, caFile string, timeout time.Duration, stdin io.Reader, stdout io.Writer) error {
	var err error
	if p.endpoint, err = credentialURL(endpoint); err != nil {
		return err
	}
	if timeout <= 0 {
		return fmt.Errorf("--timeout must be positive, got %s", timeout)
	}
	if p.client, err = newClient(caFile, serverName, timeout); err != nil {
		return err
	}
	resp, err := p.answer(ctx, stdin, time.Now)
	if err != nil {
		return err
	}
	if err := json.NewEncoder(stdout).Encode(resp); err != nil {
		return fmt.Errorf("writing the response: %w", err)
	}
	return nil
}

// parseFlags parses args; when done, the command ends with code. A flag error is one line on
// stderr (the kubelet logs stderr); -h prints the usage and the flags but hidden.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer, usage string, hidden map[string]bool) (code int, done bool) {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stderr, usage)
		fs.SetOutput(stderr)
		fs.VisitAll(func(f *flag.Flag) {
			if !hidden[f.Name] {
				fmt.Fprintf(stderr, "  --%s\n    \t%s", f.Name, f.Usage)
				if f.DefValue != "" && f.DefValue != "false" {
					fmt.Fprintf(stderr, " (default %s)", f.DefValue)
				}
				fmt.Fprintln(stderr)
			}
		})
		return 0, true
	case err != nil:
		fmt.Fprintf(stderr, "%s: %v (see --help)\n", fs.Name(), err)
		return 1, true
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return 1, true
	}
	return 0, false
}

// credentialURL checks --endpoint and returns the URL of the credential endpoint under it.
func credentialURL(endpoint string) (string, error) {
	if endpoint == "" {
		return "", errors.New("--endpoint is required")
	}
	u, err := url.Parse(endpoint)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("--endpoint %q is not https://HOST[:PORT]", endpoint)
	}
	if strings.Contains(endpoint, "$(") {
		// The DaemonSet's $(TCR_ASSISTANT_WEBHOOK_SERVICE_SERVICE_HOST) was not expanded: the
		// Service did not exist when the container started. Exiting lets the kubelet start it
		// again, with the Service's variables.
		return "", fmt.Errorf("--endpoint %q holds an unexpanded variable: the Service tcr-assistant-webhook-service did not exist when this container started", endpoint)
	}
	return strings.TrimSuffix(u.String(), "/") + wire.Path, nil
}

// newClient returns the client of the manager: HTTPS, TLS 1.2 or later, the manager's CA the
// only one trusted, its certificate verified for serverName whatever address is dialled, no
// proxy (the ClusterIP is reached through kube-proxy on the node, not through an HTTPS_PROXY the
// kubelet's environment may hold) and no redirect.
func newClient(caFile, serverName string, timeout time.Duration) (*http.Client, error) {
	if serverName == "" {
		return nil, errors.New("--server-name is required")
	}
	if caFile == "" {
		return nil, errors.New("--ca-file is required")
	}
	data, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("reading the CA: %w", err)
	}
	pool, err := caPool(caFile, data)
	if err != nil {
		return nil, err
	}
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: timeout}).DialContext,
			TLSClientConfig:     &tls.Config{RootCAs: pool, ServerName: serverName, MinVersion: tls.VersionTLS12},
			TLSHandshakeTimeout: timeout,
			ForceAttemptHTTP2:   true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, nil
}

// caPool parses the PEM file's data, which must hold at least one certificate.
func caPool(file string, data []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("the CA file %s holds no PEM certificate", file)
	}
	return pool, nil
}

// plugin answers one CredentialProviderRequest.
type plugin struct {
	// endpoint is the URL of the manager's credential endpoint.
	endpoint string
	client   *http.Client
	// secrets are the token and the password once known: redact removes them from the error line.
	secrets []string
}

// answer reads the kubelet's request from stdin, asks the manager and returns the response.
func (p *plugin) answer(ctx context.Context, stdin io.Reader, now func() time.Time) (*credentialproviderv1.CredentialProviderResponse, error) {
	data, err := io.ReadAll(io.LimitReader(stdin, maxRequestBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading the request on stdin: %w", err)
	}
	if len(data) > maxRequestBytes {
		return nil, fmt.Errorf("the request on stdin is larger than %d bytes", maxRequestBytes)
	}
	var req credentialproviderv1.CredentialProviderRequest
	if err := json.Unmarshal(data, &req); err != nil {
		return nil, fmt.Errorf("reading the request on stdin: %w", err)
	}
	if want := credentialproviderv1.SchemeGroupVersion.String(); req.APIVersion != want || req.Kind != "CredentialProviderRequest" {
		return nil, fmt.Errorf("the request on stdin is apiVersion %q kind %q, not %s CredentialProviderRequest", req.APIVersion, req.Kind, want)
	}
	if req.ServiceAccountToken == "" {
		return nil, errors.New(noToken)
	}
	p.secrets = append(p.secrets, req.ServiceAccountToken)
	image, err := reference.ParseNormalizedNamed(req.Image)
	if err != nil {
		return nil, fmt.Errorf("the request's image %q: %w", req.Image, err)
	}
	registry := reference.Domain(image)

	got, err := p.ask(ctx, req.ServiceAccountToken, req.Image)
	if err != nil {
		return nil, err
	}
	if !strings.EqualFold(got.Registry, registry) {
		return nil, fmt.Errorf("the manager answered for registry %q, not the image's registry %q", got.Registry, registry)
	}
	if got.Username == "" || got.Password == "" {
		return nil, errors.New("the manager's answer has no username or no password")
	}
	var expiresAt time.Time
	if got.ExpiresAt != "" {
		if expiresAt, err = time.Parse(time.RFC3339, got.ExpiresAt); err != nil {
			return nil, fmt.Errorf("the manager's expiresAt %q is not RFC 3339", got.ExpiresAt)
		}
	}
	tokenExp, _ := credcheck.JWTExpiry(req.ServiceAccountToken)
	return &credentialproviderv1.CredentialProviderResponse{
		TypeMeta:      metav1.TypeMeta{APIVersion: credentialproviderv1.SchemeGroupVersion.String(), Kind: "CredentialProviderResponse"},
		CacheKeyType:  credentialproviderv1.RegistryPluginCacheKeyType,
		CacheDuration: &metav1.Duration{Duration: cacheDuration(now(), got.CacheSeconds, tokenExp, expiresAt)},
		Auth:          map[string]credentialproviderv1.AuthConfig{registry: {Username: got.Username, Password: got.Password}},
	}, nil
}

// ask POSTs the image to the manager with the token as bearer and returns its credential.
func (p *plugin) ask(ctx context.Context, token, image string) (*wire.Answer, error) {
	body, err := json.Marshal(wire.Request{Image: image})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", name)
	resp, err := p.client.Do(req)
	if err != nil {
		// The url.Error repeats method and URL; say what failed once, and a timeout plainly.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			if uerr.Timeout() {
				return nil, fmt.Errorf("reaching the manager at %s: no answer within %s", p.endpoint, p.client.Timeout)
			}
			err = uerr.Err
		}
		return nil, fmt.Errorf("reaching the manager at %s: %w", p.endpoint, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading the manager's answer: %w", err)
	}
	if len(data) > maxAnswerBytes {
		return nil, fmt.Errorf("the manager's answer (HTTP %d) is larger than %d bytes", resp.StatusCode, maxAnswerBytes)
	}
	if resp.StatusCode != http.StatusOK {
		var r wire.Refusal
		if json.Unmarshal(data, &r) == nil && r.Reason != "" {
			return nil, fmt.Errorf("the manager refused a credential for %q: %s: %s (HTTP %d)", image, r.Reason, r.Message, resp.StatusCode)
		}
		return nil, fmt.Errorf("the manager answered HTTP %d for %q, with no reason", resp.StatusCode, image)
	}
	var got wire.Answer
	if err := json.Unmarshal(data, &got); err != nil {
		return nil, fmt.Errorf("reading the manager's answer: %w", err)
	}
	if got.Password != "" {
		p.secrets = append(p.secrets, got.Password)
	}
	return &got, nil
}

// cacheDuration is how long the kubelet may keep the credential: the least of the manager's
// cacheSeconds, the time left on the token and the time left on the credential (expiresAt,
// when the manager gave one), in whole seconds. It is 0, do not cache, when any of them is not
// positive, and when the token's expiry is unknown (zero).
func cacheDuration(now time.Time, cacheSeconds int64, tokenExp, expiresAt time.Time) time.Duration {
	d := time.Duration(min(cacheSeconds, int64(math.MaxInt64/time.Second))) * time.Second
	d = min(d, tokenExp.Sub(now))
	if !expiresAt.IsZero() {
		d = min(d, expiresAt.Sub(now))
	}
	if d <= 0 || tokenExp.IsZero() {
		return 0
	}
	return d.Truncate(time.Second)
}

// redact makes line one line, at most 1 KiB, without the token or the password, whatever the
// manager's message or an error held.
func (p *plugin) redact(line string) string {
	for _, s := range p.secrets {
		line = strings.ReplaceAll(line, s, "[redacted]")
	}
	line = strings.Join(strings.Fields(line), " ")
	if len(line) > 1024 {
		line = line[:1024] + "..."
	}
	return line
}
