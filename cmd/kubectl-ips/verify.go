package main

import (
	"bufio"
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
	"github.com/tcr-assistant/tcr-assistant/credcheck"
	"github.com/tcr-assistant/tcr-assistant/tcrapi"
)

// Exit codes of verify.
const (
	verifyAccepted = 0 // every credential was accepted
	verifyFailed   = 1 // a credential was rejected, or its registry unreachable or untrusted
	verifyInvalid  = 2 // the command line, the file, a passwordSecretRef or your API key could not be used, or no token could be minted
)

// The environment variables of your own API key, as the Tencent Cloud SDK and tccli name them.
const (
	envSecretID     = "TENCENTCLOUD_SECRET_ID"
	envSecretKey    = "TENCENTCLOUD_SECRET_KEY"
	envSessionToken = "TENCENTCLOUD_SESSION_TOKEN"
)

// verifyTokenDesc is the description of the tokens verify mints.
const verifyTokenDesc = "minted by kubectl ips verify"

const verifyUsage = `Usage: kubectl ips verify -f FILE [flags]

Logs in to the registry of each ImagePullSecret in FILE ("-" for standard input) from this
machine, the way a container runtime would before a pull, and prints whether the credential is
Accepted, Rejected, Unreachable or TLSError, and when a password that is a JWT expires. A
docker.passwordSecretRef is read through your kubeconfig from the controller's namespace.
For a docker.instanceToken, verify mints a token of the instance with the TCR API
(CreateInstanceToken) with YOUR OWN API key, from the environment variables
TENCENTCLOUD_SECRET_ID and TENCENTCLOUD_SECRET_KEY (and TENCENTCLOUD_SESSION_TOKEN for STS
credentials), never with the rule's apiKeySecretRef or a cloud identity, and logs in with it.
It always mints a Temporary token, which expires by itself (after an hour), even for a rule of
type LongTerm: verify never creates a long-lived token.
Exits 0 when every credential is accepted, 1 otherwise, 2 when FILE or a Secret cannot be read,
or a token cannot be minted (no API key in the environment, or an error of the TCR API): then
the registry was not asked, and the credential is neither accepted nor rejected.
The password, the token and the SecretKey are never printed.
`

// verify runs `kubectl ips verify` and returns the exit code.
func verify(args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("verify", flag.ContinueOnError)
	flags.SetOutput(stderr)
	file := flags.String("f", "", "file with one or more ImagePullSecrets (\"-\" for standard input)")
	kubeconfig := flags.String("kubeconfig", "", "kubeconfig for docker.passwordSecretRef (default: $KUBECONFIG or ~/.kube/config)")
	kubeContext := flags.String("context", "", "kubeconfig context to use")
	namespace := flags.String("controller-namespace", "tcr-assistant-system", "the controller's namespace, where passwordSecretRef Secrets live")
	caFile := flags.String("registry-ca-file", "", "PEM file of CAs to trust for the registry, besides the system's")
	timeout := flags.Duration("timeout", credcheck.DefaultTimeout, "time limit for each registry, and for each call of the TCR API")
	apiEndpoint := flags.String("tcr-api-endpoint", tcrapi.DefaultEndpoint, "host[:port] of the TCR API, for docker.instanceToken")
	apiCAFile := flags.String("tcr-api-ca-file", "", "PEM file of CAs to trust for the TCR API, besides the system's")
	flags.Usage = func() {
		fmt.Fprint(stderr, verifyUsage, "\nFlags:\n")
		flags.PrintDefaults()
	}
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return verifyAccepted
		}
		return verifyInvalid
	}
	if *file == "" || flags.NArg() > 0 {
		flags.Usage()
		return verifyInvalid
	}
	if err := tcrapi.ValidateEndpoint(*apiEndpoint); err != nil {
		fmt.Fprintf(stderr, "--tcr-api-endpoint: %v\n", err)
		return verifyInvalid
	}
	items, err := readIPS(*file)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return verifyInvalid
	}
	prober := &credcheck.Prober{Timeout: *timeout}
	if *caFile != "" {
		if prober.RootCAs, err = credcheck.LoadCAs(*caFile); err != nil {
			fmt.Fprintln(stderr, err)
			return verifyInvalid
		}
	}
	m := &verifyMinter{endpoint: *apiEndpoint, timeout: *timeout}
	if *apiCAFile != "" {
		if m.rootCAs, err = loadAPICAs(*apiCAFile); err != nil {
			fmt.Fprintln(stderr, err)
			return verifyInvalid
		}
	}
	// The kubeconfig is loaded only when a CR needs it, so an inline password needs no cluster.
	readSecret := func(ctx context.Context, name, key string) (string, error) {
		cs, err := clientset(*kubeconfig, *kubeContext)
		if err != nil {
			return "", err
		}
		s, err := cs.CoreV1().Secrets(*namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return "", err
		}
		v, ok := s.Data[key]
		if !ok {
			return "", fmt.Errorf("secret %s/%s has no key %q", *namespace, name, key)
		}
		return string(v), nil
	}

	ctx := context.Background()
	code := verifyAccepted
	for _, ips := range items {
		d := ips.Spec.Docker
		username, password := d.Username, d.Password
		minted := ""
		switch {
		case d.InstanceToken != nil:
			tok, err := m.mint(ctx, d.InstanceToken)
			if err != nil {
				fmt.Fprintf(stderr, "%s: %v\n", ips.Name, err)
				code = verifyInvalid
				continue
			}
			username, password = tok.Username, tok.Token
			minted = mintedNote(d.InstanceToken, tok)
		case d.PasswordSecretRef != nil:
			ref := d.PasswordSecretRef
			if password, err = readSecret(ctx, ref.Name, ref.Key); err != nil {
				fmt.Fprintf(stderr, "%s: reading docker.passwordSecretRef: %v\n", ips.Name, err)
				code = verifyInvalid
				continue
			}
		}
		res := prober.Probe(ctx, d.Server, username, password)
		line := fmt.Sprintf("%s: %s: %s", ips.Name, res.Outcome, res.Message)
		switch {
		case minted != "":
			line += " (" + minted + ")"
		case !res.Expiry.IsZero() && res.Expiry.After(time.Now()):
			// The message of an expired token already says when it expired.
			line += fmt.Sprintf(" (the password is a token that expires at %s)", res.Expiry.UTC().Format(time.RFC3339))
		}
		fmt.Fprintln(stdout, line)
		if res.Outcome != credcheck.Accepted && code == verifyAccepted {
			code = verifyFailed
		}
	}
	return code
}

// verifyMinter mints the tokens of docker.instanceToken for verify, with the API key of the
// environment.
type verifyMinter struct {
	endpoint string
	rootCAs  *x509.CertPool
	timeout  time.Duration
}

// mint mints a Temporary token of the instance of it, whatever its type, with the API key of the
// environment. The error says why not, with the API's exact code and message; it never holds
// the SecretKey or a token.
func (m *verifyMinter) mint(ctx context.Context, it *tcrv1.InstanceToken) (tcrapi.Token, error) {
	cred, ok := envCredential()
	if !ok {
		return tcrapi.Token{}, fmt.Errorf("cannot mint a token for docker.instanceToken: set %s and %s to your own API key", envSecretID, envSecretKey)
	}
	client := tcrapi.New(tcrapi.Config{Endpoint: m.endpoint, RootCAs: m.rootCAs, Timeout: m.timeout}, cred, it.Region)
	tok, err := client.CreateInstanceToken(ctx, it.RegistryID, false, verifyTokenDesc)
	if err == nil && (tok.Token == "" || tok.Username == "") {
		err = errors.New("the TCR API answered without a token or without a user name")
	}
	if err != nil {
		what := fmt.Sprintf("minting a Temporary token of instance %s (region %s) with your API key failed", it.RegistryID, it.Region)
		var apiErr *tcrapi.APIError
		if errors.As(err, &apiErr) {
			msg := fmt.Sprintf("%s: the TCR API answered %s: %s", what, apiErr.Code, apiErr.Message)
			if apiErr.RequestID != "" {
				msg += " (request id " + apiErr.RequestID + ")"
			}
			return tcrapi.Token{}, errors.New(msg)
		}
		return tcrapi.Token{}, fmt.Errorf("%s: %w", what, err)
	}
	return tok, nil
}

// envCredential is the API key of the environment; false when its SecretId or SecretKey is not
// set.
func envCredential() (common.CredentialIface, bool) {
	id, key, token := os.Getenv(envSecretID), os.Getenv(envSecretKey), os.Getenv(envSessionToken)
	if id == "" || key == "" {
		return nil, false
	}
	if token != "" {
		return common.NewTokenCredential(id, key, token), true
	}
	return common.NewCredential(id, key), true
}

// mintedNote says, after the probe's answer, where the credential came from.
func mintedNote(it *tcrv1.InstanceToken, tok tcrapi.Token) string {
	note := "minted a Temporary token of instance " + it.RegistryID + " with your API key"
	if it.TokenType() != tcrv1.InstanceTokenTemporary {
		note += fmt.Sprintf(", not a %s one as the rule says: verify never creates a long-lived token", it.TokenType())
	}
	if exp := tok.ExpiresAt; !exp.IsZero() {
		note += "; it expires at " + exp.UTC().Format(time.RFC3339)
	} else if exp, ok := credcheck.JWTExpiry(tok.Token); ok {
		note += "; it expires at " + exp.UTC().Format(time.RFC3339)
	}
	return note
}

// loadAPICAs returns the system's CAs plus the PEM certificates of file (--tcr-api-ca-file).
func loadAPICAs(file string) (*x509.CertPool, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading --tcr-api-ca-file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("--tcr-api-ca-file %s holds no PEM certificate", file)
	}
	return pool, nil
}

// clientset builds a client from the user's kubeconfig, as kubectl loads it.
func clientset(kubeconfig, kubeContext string) (*kubernetes.Clientset, error) {
	cfg, err := restConfig(kubeconfig, kubeContext)
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

// restConfig loads the user's kubeconfig as kubectl does.
func restConfig(kubeconfig, kubeContext string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules,
		&clientcmd.ConfigOverrides{CurrentContext: kubeContext}).ClientConfig()
	if err != nil {
		return nil, err
	}
	cfg.WrapTransport = wrapTransport
	return cfg, nil
}

// readIPS reads the ImagePullSecrets of a YAML or JSON file of one or more documents.
func readIPS(path string) ([]tcrv1.ImagePullSecret, error) {
	var r io.Reader = os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	docs := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var items []tcrv1.ImagePullSecret
	for i := 1; ; i++ {
		doc, err := docs.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if strings.TrimSpace(string(doc)) == "" {
			continue
		}
		var ips tcrv1.ImagePullSecret
		if err := yaml.UnmarshalStrict(doc, &ips); err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", path, i, err)
		}
		if ips.Kind != "ImagePullSecret" || ips.APIVersion != tcrv1.GroupVersion.String() {
			return nil, fmt.Errorf("%s: document %d is a %s %s, not an ImagePullSecret of %s", path, i, ips.APIVersion, ips.Kind, tcrv1.GroupVersion)
		}
		items = append(items, ips)
	}
	if len(items) == 0 {
		return nil, fmt.Errorf("%s holds no ImagePullSecret", path)
	}
	return items, nil
}
