// Command run is what 'make run' starts when no cluster is configured: a local control plane
// (etcd and kube-apiserver from bin/, with the CRDs), the real manager binary against it as a
// child process, and a few demo objects to look at. Ctrl-C stops all of it. Keeping this out of
// cmd/manager keeps envtest and its dependencies out of the production binary.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/tcr-assistant/tcr-assistant/internal/devcluster"
	"github.com/tcr-assistant/tcr-assistant/internal/testenv"
)

func main() {
	manager := flag.String("manager", "bin/manager", "Path of the manager binary to run against the local control plane.")
	namespace := flag.String("namespace", "tcr-assistant-system", "The controller's own namespace.")
	flag.Parse()
	if err := run(*manager, *namespace, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "run:", err)
		os.Exit(1)
	}
}

func run(manager, namespace string, managerArgs []string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	fmt.Println("Starting the local control plane (etcd and kube-apiserver from bin/)...")
	env, err := testenv.Start()
	if err != nil {
		return err
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "run: stopping the local control plane:", err)
			return
		}
		fmt.Println("Stopped the local control plane.")
	}()

	args := append([]string{"--kubeconfig", env.Kubeconfig, "--namespace", namespace,
		"--enable-webhook=false", "--zap-devel", "--zap-log-level=info"}, managerArgs...)
	cmd := exec.Command(manager, args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	// Its own process group: Ctrl-C reaches this program, which stops the manager before the
	// control plane, rather than both at once.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", manager, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	demo := make(chan error, 1)
	go func() { demo <- devcluster.Demo(ctx, env, namespace, os.Stdout) }()

	select {
	case err := <-exited:
		return fmt.Errorf("the manager exited: %w", err)
	case <-ctx.Done():
	case err := <-demo:
		if err != nil && !errors.Is(err, context.Canceled) {
			fmt.Fprintln(os.Stderr, "run: setting up the demo objects:", err)
		}
		select {
		case err := <-exited:
			return fmt.Errorf("the manager exited: %w", err)
		case <-ctx.Done():
		}
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
	fmt.Println("Stopped the manager.")
	return nil
}
