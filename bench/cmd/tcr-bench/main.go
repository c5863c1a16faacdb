// Command tcr-bench is `make bench`: it runs the scale benchmark of package bench against a
// local control plane and prints one `bench: name=value unit` line per figure and a summary
// table of the targets.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/tcr-assistant/tcr-assistant/bench"
	"github.com/tcr-assistant/tcr-assistant/internal/testenv"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "tcr-bench:", err)
		os.Exit(1)
	}
}

func run() error {
	root, err := testenv.RepoRoot()
	if err != nil {
		return err
	}
	var cfg bench.Config
	scale := flag.String("scale", "", `"large" for 10,000 namespaces and 50,000 unrelated Secrets`)
	n := flag.Int("n", 0, "namespaces (default 1000, or 10000 with -scale large)")
	flag.IntVar(&cfg.UnrelatedSecrets, "unrelated-secrets", 0, "unrelated 8 KiB Secrets (default 5000, or 50000 with -scale large)")
	flag.DurationVar(&cfg.Idle, "idle", time.Minute, "window after convergence in which the manager must not write")
	flag.IntVar(&cfg.NewNamespaces, "new-namespaces", 50, "namespaces created at 10/s while converged")
	flag.StringVar(&cfg.ManagerBin, "manager", filepath.Join(root, "bin", "manager"), "manager binary")
	hosts := flag.String("hosts-updater", filepath.Join(root, "bin", "hosts-updater"), "hosts-updater binary")
	engine := flag.Bool("engine", true, "run the engine's go test benchmarks")
	var env stringList
	flag.Var(&env, "manager-env", "KEY=VALUE added to the manager's environment, e.g. GOMEMLIMIT=120MiB (repeatable)")
	flag.StringVar(&cfg.LogDir, "log-dir", "", "directory for the child processes' logs (default: a new temporary directory)")
	flag.BoolVar(&cfg.RecoverPods, "recover-pods", false, "the recoverPods scenario: Running Pods in every namespace, a baseline manager run without recoverPods, then the phases with it on")
	flag.IntVar(&cfg.PodsPerNamespace, "pods-per-namespace", 5, "Running Pods per namespace with -recover-pods")
	flag.Parse()
	cfg.ManagerEnv = env

	switch *scale {
	case "", "default":
		cfg.Namespaces = 1000
	case "large":
		cfg.Large, cfg.Namespaces = true, 10000
		if cfg.UnrelatedSecrets == 0 {
			cfg.UnrelatedSecrets = 50000
		}
	default:
		return fmt.Errorf("unknown -scale %q: use large or leave it empty", *scale)
	}
	if *n > 0 {
		cfg.Namespaces = *n
	}
	if _, err := os.Stat(*hosts); err == nil {
		cfg.HostsUpdaterBin = *hosts
	} else {
		cfg.HostsSkipReason = "bin/hosts-updater missing"
	}
	cfg.Progress = os.Stderr

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := bench.Run(ctx, cfg)
	if res != nil {
		defer fmt.Fprintln(os.Stderr, "Logs of the child processes:", res.LogDir)
	}
	if err != nil {
		return err
	}
	if *engine {
		figs, err := bench.EngineBenchmarks(ctx, "go", root)
		if err != nil {
			return err
		}
		if len(figs) == 0 {
			res.Skipped = append(res.Skipped, "engine skipped: no benchmarks in ./engine")
		}
		res.Figures = append(res.Figures, figs...)
	}
	res.Print(os.Stdout)
	return nil
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }
