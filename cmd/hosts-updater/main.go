// Command hosts-updater keeps a managed block of a node's hosts file equal to the hosts.yaml of
// the ConfigMap updater-config, so that the node's container runtime resolves registry domains
// to private-network addresses. It runs as the DaemonSet hosts-updater; "apply" and "cleanup"
// do one pass with no cluster.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/tcr-assistant/tcr-assistant/agent"
)

const (
	defaultNamespace = "tcr-assistant-system"
	defaultHostsFile = "/host/etc/hosts"
	userAgent        = "tcr-assistant-hosts-updater"
)

const usage = `Usage:
  hosts-updater [flags]                                   watch the ConfigMap updater-config and keep the hosts file in step
  hosts-updater apply --from-file hosts.yaml [--hosts-file PATH]   apply a hosts.yaml once, with no cluster
  hosts-updater cleanup [--hosts-file PATH]                 remove the managed block and nothing else

Flags:
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stderr, nil)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "hosts-updater:", err)
		os.Exit(1)
	}
}

// run runs the command with args; started, when not nil, receives the agent once its HTTP
// endpoints listen, for tests.
func run(ctx context.Context, args []string, stderr io.Writer, started func(*agent.Agent, *servers)) error {
	log := slog.New(slog.NewTextHandler(stderr, nil))
	if len(args) > 0 {
		switch args[0] {
		case "apply":
			return runApply(ctx, args[1:], stderr, log)
		case "cleanup":
			return runCleanup(ctx, args[1:], stderr, log)
		}
	}
	return runWatch(ctx, args, stderr, log, started)
}

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

func runApply(ctx context.Context, args []string, stderr io.Writer, log *slog.Logger) error {
	fs := newFlagSet("apply", stderr)
	fromFile := fs.String("from-file", "", "the hosts.yaml to apply (required)")
	hostsFile := fs.String("hosts-file", defaultHostsFile, "the hosts file to manage")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *fromFile == "" {
		return errors.New("apply needs --from-file")
	}
	doc, err := os.ReadFile(*fromFile)
	if err != nil {
		return fmt.Errorf("reading the hosts.yaml: %w", err)
	}
	// With no last applied state to fall back on, a document that does not parse is an error.
	if _, err := agent.ParseConfig(doc); err != nil {
		return fmt.Errorf("%s: %w", *fromFile, err)
	}
	a := &agent.Agent{HostsFile: *hostsFile, Source: *fromFile, Log: log, Metrics: agent.NewMetrics()}
	return a.Apply(ctx, doc, "")
}

func runCleanup(ctx context.Context, args []string, stderr io.Writer, log *slog.Logger) error {
	fs := newFlagSet("cleanup", stderr)
	hostsFile := fs.String("hosts-file", defaultHostsFile, "the hosts file to manage")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, agent.DefaultLockTimeout)
	defer cancel()
	changed, err := agent.UpdateFile(ctx, *hostsFile, agent.Cleanup)
	if err != nil {
		return err
	}
	if changed {
		log.Info("Removed the managed block from the hosts file", "file", *hostsFile)
	} else {
		log.Info("Found no managed block in the hosts file", "file", *hostsFile)
	}
	return nil
}

func runWatch(ctx context.Context, args []string, stderr io.Writer, log *slog.Logger, started func(*agent.Agent, *servers)) error {
	fs := newFlagSet("hosts-updater", stderr)
	kubeconfig := fs.String("kubeconfig", "", "path of a kubeconfig; in-cluster configuration when empty")
	namespace := fs.String("namespace", defaultNamespace, "namespace of the ConfigMap "+agent.ConfigMapName)
	hostsFile := fs.String("hosts-file", defaultHostsFile, "the hosts file to manage")
	nodeHostsFile := fs.String("node-hosts-file", "", "the node's hosts file seen through a read-only mount of its directory, when --hosts-file is that file mounted by itself: "+
		"when the two differ, the node replaced the file by rename, and the agent exits so that it is restarted on the new file")
	nodeName := fs.String("node-name", "", "the node's name, for Events; the host name when empty")
	resync := fs.Duration("resync", 60*time.Second, "how often to re-assert the managed block, repairing other writers")
	metricsAddr := fs.String("metrics-bind-address", ":8090", `address of the /metrics endpoint; "0" disables it`)
	probeAddr := fs.String("health-probe-bind-address", ":8091", `address of the /healthz and /readyz endpoints; "0" disables them`)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *resync <= 0 {
		return fmt.Errorf("--resync must be positive, got %s", *resync)
	}

	cfg, err := restConfig(*kubeconfig)
	if err != nil {
		return err
	}
	cfg.UserAgent = userAgent
	client, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("creating the API client: %w", err)
	}
	if *nodeName == "" {
		if *nodeName, err = os.Hostname(); err != nil {
			return fmt.Errorf("reading the host name (or pass --node-name): %w", err)
		}
	}
	a := &agent.Agent{
		HostsFile:     *hostsFile,
		NodeHostsFile: *nodeHostsFile,
		Source:        *namespace + "/" + agent.ConfigMapName,
		Log:           log,
		Metrics:       agent.NewMetrics(),
		Event:         agent.RecordEvent(client, *namespace, *nodeName, log),
	}

	srv, err := startServers(a, *metricsAddr, *probeAddr)
	if err != nil {
		return err
	}
	defer srv.shutdown()
	if started != nil {
		started(a, srv)
	}
	return a.Watch(ctx, client, *namespace, *resync)
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("loading the kubeconfig: %w", err)
		}
		return cfg, nil
	}
	cfg, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("loading the in-cluster configuration (or pass --kubeconfig): %w", err)
	}
	return cfg, nil
}

// servers are the agent's HTTP endpoints.
type servers struct {
	metrics, probes net.Addr // where they listen, nil when disabled
	running         []*http.Server
}

func startServers(a *agent.Agent, metricsAddr, probeAddr string) (*servers, error) {
	s := &servers{}
	metrics := http.NewServeMux()
	metrics.Handle("/metrics", promhttp.HandlerFor(a.Metrics.Registry, promhttp.HandlerOpts{}))
	probes := http.NewServeMux()
	probes.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	probes.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !a.Ready() {
			http.Error(w, "the hosts file has not been applied yet", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	var err error
	if s.metrics, err = s.listen(metricsAddr, metrics); err != nil {
		s.shutdown()
		return nil, fmt.Errorf("serving metrics: %w", err)
	}
	if s.probes, err = s.listen(probeAddr, probes); err != nil {
		s.shutdown()
		return nil, fmt.Errorf("serving health probes: %w", err)
	}
	return s, nil
}

func (s *servers) listen(addr string, h http.Handler) (net.Addr, error) {
	if addr == "0" || addr == "" {
		return nil, nil
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	s.running = append(s.running, srv)
	go func() { _ = srv.Serve(l) }()
	return l.Addr(), nil
}

func (s *servers) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, srv := range s.running {
		_ = srv.Shutdown(ctx)
	}
}
