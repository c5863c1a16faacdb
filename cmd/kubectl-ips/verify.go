package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
	"github.com/tcr-assistant/tcr-assistant/credcheck"
)

// Exit codes of verify.
const (
	verifyAccepted = 0 // every credential was accepted
	verifyFailed   = 1 // a credential was rejected, or its registry unreachable or untrusted
	verifyInvalid  = 2 // the command line, the file or a passwordSecretRef could not be used
)

const verifyUsage = `Usage: kubectl ips verify -f FILE [flags]

Logs in to the registry of each ImagePullSecret in FILE ("-" for standard input) from this
machine, the way a container runtime would before a pull, and prints whether the credential is
Accepted, Rejected, Unreachable or TLSError, and when a password that is a JWT expires. A
docker.passwordSecretRef is read through your kubeconfig from the controller's namespace.
Exits 0 when every credential is accepted, 1 otherwise, 2 when FILE or a Secret cannot be read.
The password is never printed.
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
	timeout := flags.Duration("timeout", credcheck.DefaultTimeout, "time limit for each registry")
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
		password := d.Password
		if ref := d.PasswordSecretRef; ref != nil {
			if password, err = readSecret(ctx, ref.Name, ref.Key); err != nil {
				fmt.Fprintf(stderr, "%s: reading docker.passwordSecretRef: %v\n", ips.Name, err)
				code = verifyInvalid
				continue
			}
		}
		res := prober.Probe(ctx, d.Server, d.Username, password)
		line := fmt.Sprintf("%s: %s: %s", ips.Name, res.Outcome, res.Message)
		// The message of an expired token already says when it expired.
		if !res.Expiry.IsZero() && res.Expiry.After(time.Now()) {
			line += fmt.Sprintf(" (the password is a token that expires at %s)", res.Expiry.UTC().Format(time.RFC3339))
		}
		fmt.Fprintln(stdout, line)
		if res.Outcome != credcheck.Accepted && code == verifyAccepted {
			code = verifyFailed
		}
	}
	return code
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
