// Command run is what 'make run' starts when no cluster is configured: the whole add-on on a
// local control plane (etcd and kube-apiserver from bin/, with the CRDs). The real manager serves
// its webhook at 127.0.0.1, where the API server calls it; the real hosts-updater keeps a scratch
// hosts file; demo objects show both at work. Ctrl-C stops all of it. Keeping this out of
// cmd/manager keeps envtest and its dependencies out of the production binary.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/tcr-assistant/tcr-assistant/internal/devcluster"
)

func main() {
	o := devcluster.Options{}
	flag.StringVar(&o.Manager, "manager", "bin/manager", "Path of the manager binary to run against the local control plane.")
	flag.StringVar(&o.HostsUpdater, "hosts-updater", "bin/hosts-updater", "Path of the hosts-updater binary.")
	flag.StringVar(&o.Namespace, "namespace", "tcr-assistant-system", "The add-on's own namespace.")
	flag.IntVar(&o.WebhookPort, "webhook-port", 0, "Port of the manager's webhook on 127.0.0.1; 0 picks a free one.")
	flag.Parse()
	o.ManagerArgs = flag.Args()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "run:", err)
		os.Exit(1)
	}
}

func run(o devcluster.Options) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.WebhookPort == 0 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		o.WebhookPort = l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
	}
	dir, err := os.MkdirTemp("", "tcr-run-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	o.Dir = dir
	return devcluster.Run(ctx, o, os.Stdout)
}
