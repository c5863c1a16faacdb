package rulesync

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
)

const usage = `Usage:
  kubectl ips sync --from-file FILE --instance RELEASE [--timeout 5m]
      create or update the ImagePullSecrets of FILE (a JSON or YAML list), labelled with
      RELEASE, and delete those labelled with RELEASE that FILE no longer lists
  kubectl ips sync --delete-all [--timeout 5m]
      delete every ImagePullSecret and wait until the manager has cleaned each one up

The Helm chart's hooks run these; both retry while the webhook does not answer. The cluster is
the one of $KUBECONFIG, else the in-cluster configuration.
`

// Command is 'kubectl ips sync': it returns the exit code, 0 on success.
func Command(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("sync", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	fromFile := fs.String("from-file", "", "the list of ImagePullSecrets to apply")
	instance := fs.String("instance", "", "the Helm release the ImagePullSecrets belong to")
	deleteAll := fs.Bool("delete-all", false, "delete every ImagePullSecret and wait until they are gone")
	timeout := fs.Duration("timeout", 5*time.Minute, "how long to retry")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 || *deleteAll == (*fromFile != "") || (*fromFile != "") != (*instance != "") {
		fmt.Fprint(stderr, usage)
		return 2
	}
	if err := run(ctx, *fromFile, *instance, *deleteAll, *timeout, stderr); err != nil {
		fmt.Fprintln(stderr, "kubectl ips sync:", err)
		return 1
	}
	return 0
}

func run(ctx context.Context, fromFile, instance string, deleteAll bool, timeout time.Duration, log io.Writer) error {
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		clientcmd.NewDefaultClientConfigLoadingRules(), &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return fmt.Errorf("loading the cluster configuration: %w", err)
	}
	cfg.UserAgent = "tcr-assistant-sync"
	scheme := runtime.NewScheme()
	if err := tcrv1.AddToScheme(scheme); err != nil {
		return err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if deleteAll {
		return DeleteAll(ctx, c, log)
	}
	data, err := os.ReadFile(fromFile)
	if err != nil {
		return err
	}
	rules, err := Parse(data)
	if err != nil {
		return err
	}
	return Apply(ctx, c, instance, rules, log)
}
