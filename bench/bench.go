// Package bench is the scale benchmark of `make bench`: it starts the local control plane, runs
// bin/manager as a separate process, as in production, and measures how fast and with how many
// writes it distributes one ImagePullSecret to N namespaces, against a floor client doing exactly
// the required writes in the same run.
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
)

// OwnNamespace is the manager's own namespace.
const OwnNamespace = "tcr-assistant-system"

// CRName is the name of the benchmark's ImagePullSecret.
const CRName = "bench"

// Config sizes one run. Zero values take the defaults of `make bench`.
type Config struct {
	// Namespaces is N, the number of benchmark namespaces (and of floor namespaces).
	Namespaces int
	// UnrelatedSecrets is the number of Opaque Secrets spread over the namespaces that the
	// manager must not cache; UnrelatedSecretBytes is the size of each.
	UnrelatedSecrets, UnrelatedSecretBytes int
	// Idle is the window after convergence in which the manager must write nothing.
	Idle time.Duration
	// NewNamespaces are created one by one at NewNamespaceRate per second while converged.
	NewNamespaces    int
	NewNamespaceRate float64
	// WebhookNamespaces are created with their three ServiceAccounts once with the ServiceAccount
	// webhook off and once with it on, to count the writes of a new namespace either way.
	WebhookNamespaces int
	// FloorWorkers is the floor client's concurrency; FixtureWorkers the fixture builder's.
	FloorWorkers, FixtureWorkers int
	// ManagerBin is the manager binary; ManagerArgs are added to the agreed flags.
	ManagerBin  string
	ManagerArgs []string
	// ManagerEnv adds KEY=VALUE entries to the manager's environment, e.g. GOMEMLIMIT, to
	// measure what a deployment setting changes.
	ManagerEnv []string
	// HostsUpdaterBin is the hosts-updater binary; empty skips its figures with HostsSkipReason.
	HostsUpdaterBin, HostsSkipReason string
	// HostsEdits is the number of ConfigMap edits timed through to the hosts file.
	HostsEdits int
	// RecoverPods adds the recoverPods scenario (recover.go): PodsPerNamespace Running Pods in
	// every benchmark namespace, a baseline manager that converges and idles with a rule without
	// recoverPods, and recoverPods on in the rule of the measured phases.
	RecoverPods bool
	// PodsPerNamespace is the number of Running Pods per benchmark namespace with RecoverPods.
	PodsPerNamespace int
	// Timeout bounds every wait for convergence.
	Timeout time.Duration
	// Large selects the targets of SCALE=large.
	Large bool
	// LogDir keeps the child processes' logs; a temporary directory when empty.
	LogDir string
	// Progress receives human-readable progress lines; nil discards them.
	Progress io.Writer
	// BeforeStop, when set, runs against the control plane after every phase and before it is
	// stopped, so tests can assert on the state left in the API server.
	BeforeStop func(ctx context.Context, c client.Client) error
}

func (c *Config) defaults() {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.Namespaces, 1000)
	def(&c.UnrelatedSecrets, 5000)
	def(&c.UnrelatedSecretBytes, 8192)
	def(&c.NewNamespaces, 50)
	def(&c.WebhookNamespaces, 20)
	def(&c.FloorWorkers, 8)
	def(&c.FixtureWorkers, 16)
	def(&c.HostsEdits, 20)
	if c.RecoverPods {
		def(&c.PodsPerNamespace, 5)
	}
	if c.Idle == 0 {
		c.Idle = time.Minute
	}
	if c.NewNamespaceRate == 0 {
		c.NewNamespaceRate = 10
	}
	if c.Timeout == 0 {
		c.Timeout = 15 * time.Minute
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
}

// Figure is one measured number.
type Figure struct {
	Name  string
	Value float64
	Unit  string
}

// String renders the figure as the `bench: name=value unit` line.
func (f Figure) String() string {
	return fmt.Sprintf("bench: %s=%s %s", f.Name, formatUnit(f.Value, f.Unit), f.Unit)
}

// formatUnit prints ratios with two decimals, so that 1.001 reads 1.00 and not 1.
func formatUnit(v float64, unit string) string {
	if unit == "x" {
		return fmt.Sprintf("%.2f", v)
	}
	return formatValue(v)
}

func formatValue(v float64) string {
	switch {
	case v == float64(int64(v)):
		return fmt.Sprintf("%d", int64(v))
	case v >= 100:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.3g", v)
	}
}

// Check is one target of the issue and whether the run met it.
type Check struct {
	Figure, Target string
	Value          float64
	Unit           string
	Pass           bool
}

// Result is everything one run measured.
type Result struct {
	Figures []Figure
	Checks  []Check
	// Skipped names figures that could not be measured, and why.
	Skipped []string
	// TargetNamespaces and TargetServiceAccounts are what the CR selected at creation.
	TargetNamespaces, TargetServiceAccounts int
	// ConvergenceWrites, IdleWrites, RotationWrites and NewNamespaceWrites are the manager's
	// writes per phase, from the audit log.
	ConvergenceWrites, IdleWrites, RotationWrites, NewNamespaceWrites Writes
	// NewNamespaceLatencies are the per-namespace latencies of the new-namespace phase.
	NewNamespaceLatencies []time.Duration
	// LogDir holds the child processes' logs.
	LogDir string
}

func (r *Result) add(name string, v float64, unit string) {
	r.Figures = append(r.Figures, Figure{Name: name, Value: v, Unit: unit})
}

func (r *Result) check(figure, target string, v float64, unit string, pass bool) {
	r.Checks = append(r.Checks, Check{Figure: figure, Target: target, Value: v, Unit: unit, Pass: pass})
}

// Figure returns the value of the named figure.
func (r *Result) Figure(name string) (float64, bool) {
	for _, f := range r.Figures {
		if f.Name == name {
			return f.Value, true
		}
	}
	return 0, false
}

const mib = 1 << 20

func (r *Result) addWrites(phase string, w Writes) {
	keys := make([]string, 0, len(w.ByKind))
	for k := range w.ByKind {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		r.add("writes."+phase+"."+strings.NewReplacer("/", ".", " ", ".").Replace(k), float64(w.ByKind[k]), "requests")
	}
	r.add("writes."+phase+".conflicts", float64(w.Conflicts), "requests")
	r.add("writes."+phase+".errors", float64(w.Errors), "requests")
}

// addSpan splits a phase that started at t0 into the wait before the manager's first write and
// the time it spent writing, with its write rate: what dominates a slow phase.
func (r *Result) addSpan(phase string, t0 time.Time, w Writes) {
	first, last := w.Span()
	if first.IsZero() {
		return
	}
	r.add(phase+".first_write", first.Sub(t0).Seconds(), "s")
	r.add(phase+".last_write", last.Sub(t0).Seconds(), "s")
	if d := last.Sub(first).Seconds(); d > 0 {
		r.add(phase+".write_rate", float64(w.Total)/d, "writes/s")
	}
}

// Run runs every phase once and returns the figures. It starts and stops its own control plane.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg.defaults()
	res := &Result{LogDir: cfg.LogDir}
	if res.LogDir != "" {
		if err := os.MkdirAll(res.LogDir, 0o755); err != nil {
			return nil, err
		}
	} else {
		dir, err := os.MkdirTemp("", "tcr-bench-logs-")
		if err != nil {
			return nil, err
		}
		res.LogDir = dir
	}
	say := func(format string, a ...any) {
		fmt.Fprintf(cfg.Progress, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, a...)...)
	}
	say("Starting the local control plane (etcd, kube-apiserver with an audit log of the manager's writes)...")
	cp, err := startControlPlane()
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := cp.Stop(); err != nil {
			say("Stopping the control plane failed: %v", err)
		}
	}()
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	port, err := strconv.Atoi(addr[strings.LastIndex(addr, ":")+1:])
	if err != nil {
		return nil, err
	}
	r := &runner{cfg: cfg, cp: cp, res: res, say: say, webhookPort: port}
	if err := r.run(ctx); err != nil {
		return res, err
	}
	return res, nil
}

type runner struct {
	cfg  Config
	cp   *controlPlane
	res  *Result
	say  func(string, ...any)
	cred credential
	// webhookPort is where the webhook-on manager serves its webhooks.
	webhookPort int
	// recoverOff is the baseline manager's memory and offReads the number of the manager's Pod
	// reads in the audit log when it stopped (RecoverPods).
	recoverOff Memory
	offReads   int
	// auditSeen is the number of the manager's writes the audit log held at the last reading.
	auditSeen int
}

// audit returns the manager's writes so far. The count never goes down unless the audit log was
// rotated, which would make every phase's count wrong: that is an error.
func (r *runner) audit() (Writes, error) {
	w, err := readAudit(r.cp.AuditLog, ManagerUser)
	if err != nil {
		return w, err
	}
	if w.Total < r.auditSeen {
		return w, fmt.Errorf("the audit log %s holds %d writes of the manager after %d: it was rotated", r.cp.AuditLog, w.Total, r.auditSeen)
	}
	r.auditSeen = w.Total
	return w, nil
}

// distributedWait bounds how long the convergence phase waits for the Distributed Event.
const distributedWait = 10 * time.Second

// auditUntil reads the manager's writes until done holds for them, or wait has passed: then it
// returns the last reading, which the caller's checks judge.
func (r *runner) auditUntil(ctx context.Context, wait time.Duration, done func(Writes) bool) (Writes, error) {
	deadline := time.Now().Add(wait)
	for {
		w, err := r.audit()
		if err != nil || done(w) || time.Now().After(deadline) {
			return w, err
		}
		select {
		case <-ctx.Done():
			return w, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func names(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%05d", prefix, i)
	}
	return out
}

func (r *runner) run(ctx context.Context) error {
	cfg, res, kube := r.cfg, r.res, r.cp.Kube
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: OwnNamespace}}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating namespace %s: %w", OwnNamespace, err)
	}

	// Fixtures.
	benchNS := names("bench", cfg.Namespaces)
	start := time.Now()
	if _, err := createNamespaces(ctx, kube, cfg.FixtureWorkers, benchNS); err != nil {
		return err
	}
	if err := createUnrelatedSecrets(ctx, kube, cfg.FixtureWorkers, cfg.UnrelatedSecrets, cfg.UnrelatedSecretBytes, benchNS); err != nil {
		return err
	}
	res.add("fixtures.namespaces", float64(cfg.Namespaces), "namespaces")
	res.add("fixtures.unrelated_secrets", float64(cfg.UnrelatedSecrets), "secrets")
	res.add("fixtures.create", time.Since(start).Seconds(), "s")
	r.say("Created %d namespaces with %d ServiceAccounts each and %d unrelated Secrets in %s.",
		cfg.Namespaces, len(ServiceAccountNames), cfg.UnrelatedSecrets, time.Since(start).Round(time.Millisecond))
	if cfg.RecoverPods {
		if err := r.createPods(ctx, benchNS); err != nil {
			return err
		}
		// The baseline of the comparison: the same phases without recoverPods, by a manager of
		// its own, which cleans up after itself.
		if err := r.recoverBaseline(ctx); err != nil {
			return err
		}
	}

	// The manager, as in production.
	mgr, metricsAddr, err := r.startManager(ctx, "manager")
	if err != nil {
		return err
	}
	defer mgr.Stop()

	if err := r.warmUp(ctx, mgr, "manager.warmup"); err != nil {
		return err
	}
	if err := r.managerPhases(ctx, mgr, metricsAddr); err != nil {
		return err
	}
	if err := mgr.alive(); err != nil {
		return err
	}
	if err := r.webhookWrites(ctx, mgr); err != nil { // stops mgr
		return err
	}
	r.say("Stopped the manager.")
	if cfg.RecoverPods {
		if err := r.recoverRequests(); err != nil {
			return err
		}
	}

	if err := r.floor(ctx); err != nil {
		return err
	}
	r.hostsUpdater(ctx)
	if cfg.BeforeStop != nil {
		return cfg.BeforeStop(ctx, r.cp.Client)
	}
	return nil
}

// startManager starts the manager as in production, with the webhooks off, its log named name,
// and returns it with the address of its metrics.
func (r *runner) startManager(ctx context.Context, name string) (*process, string, error) {
	metricsAddr, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	healthAddr, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	// The metrics are scraped over plain HTTP: a secured endpoint would send a TokenReview and a
	// SubjectAccessReview to the API server per scrape, into the request counts measured here.
	args := append([]string{"--kubeconfig", r.cp.ManagerKubeconfig, "--enable-webhook=false",
		"--namespace", OwnNamespace, "--metrics-bind-address", metricsAddr, "--metrics-secure=false",
		"--health-probe-bind-address", healthAddr}, r.cfg.ManagerArgs...)
	mgr, err := startProcess(ctx, name, r.cfg.ManagerBin, r.res.LogDir, healthAddr, r.cfg.ManagerEnv, args...)
	if err != nil {
		return nil, "", err
	}
	r.say("Started %s (pid %d, log %s).", r.cfg.ManagerBin, mgr.Pid(), mgr.log)
	return mgr, metricsAddr, nil
}

// targets returns the ServiceAccounts of every namespace that is not terminating: what the
// benchmark's ImagePullSecret selects.
func (r *runner) targets(ctx context.Context) (map[string][]string, error) {
	nsList, err := r.cp.Kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	saList, err := r.cp.Kube.CoreV1().ServiceAccounts("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	sasIn := map[string][]string{}
	for _, sa := range saList.Items {
		sasIn[sa.Namespace] = append(sasIn[sa.Namespace], sa.Name)
	}
	out := make(map[string][]string, len(nsList.Items))
	for _, ns := range nsList.Items {
		if ns.DeletionTimestamp == nil {
			out[ns.Name] = sasIn[ns.Name]
		}
	}
	return out, nil
}

// benchSpec is the spec of the benchmark's ImagePullSecret: every namespace and ServiceAccount.
func benchSpec(c credential, recoverPods bool) tcrv1.ImagePullSecretSpec {
	return tcrv1.ImagePullSecretSpec{Namespaces: "*", ServiceAccounts: "*", RecoverPods: recoverPods, Docker: tcrv1.DockerCredential{
		Server: c.Server, Username: c.Username, Password: c.Password}}
}

// firstCredential is the credential the benchmark's ImagePullSecret is created with.
var firstCredential = credential{Server: "bench.tencentcloudcr.com", Username: "100012345678", Password: "first-password"}

func (r *runner) managerPhases(ctx context.Context, mgr *process, metricsAddr string) error {
	cfg, res := r.cfg, r.res
	tctx, stopWatches := context.WithCancel(ctx)
	defer stopWatches()
	r.cred = firstCredential
	tr := newTracker(tcrv1.SecretNamePrefix+CRName, r.cred)
	if err := tr.run(tctx, r.cp.Kube, CRName); err != nil {
		return err
	}

	// Targets: every namespace that is not terminating, and every ServiceAccount in them.
	targets, err := r.targets(ctx)
	if err != nil {
		return err
	}
	for ns, sas := range targets {
		tr.expect(ns, time.Time{}, sas...)
		res.TargetNamespaces++
		res.TargetServiceAccounts += len(sas)
	}
	minWrites := res.TargetNamespaces + res.TargetServiceAccounts

	before, err := r.audit()
	if err != nil {
		return err
	}
	reqBefore, err := scrapeRequests(metricsAddr)
	if err != nil {
		return err
	}
	// The manager's CPU time per phase shows whether it, rather than the API server, is what a
	// phase waits for: the two share this machine's cores.
	lastCPU, err := processCPU(mgr.Pid())
	if err != nil {
		return err
	}
	cpuMark := func(phase string) {
		if cpu, err := processCPU(mgr.Pid()); err == nil {
			res.add("manager.cpu."+phase, (cpu - lastCPU).Seconds(), "s")
			lastCPU = cpu
		}
	}

	// Convergence: the clock starts at the create call.
	r.say("Creating ImagePullSecret %s (namespaces \"*\", serviceAccounts \"*\", recoverPods %t) for %d namespaces and %d ServiceAccounts...",
		CRName, cfg.RecoverPods, res.TargetNamespaces, res.TargetServiceAccounts)
	ips := &tcrv1.ImagePullSecret{ObjectMeta: metav1.ObjectMeta{Name: CRName}, Spec: benchSpec(r.cred, cfg.RecoverPods)}
	t0 := time.Now()
	if err := r.cp.Client.Create(ctx, ips); err != nil {
		return fmt.Errorf("creating ImagePullSecret %s: %w", CRName, err)
	}
	wctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	done, err := tr.wait(wctx)
	cancel()
	if err != nil {
		return fmt.Errorf("waiting for convergence: %w (manager log: %s)", err, mgr.log)
	}
	convergence := done.Sub(t0)
	r.say("Converged in %s.", convergence.Round(time.Millisecond))
	res.add("convergence", convergence.Seconds(), "s")

	lag, err := r.waitStatus(ctx, ips.Generation, int32(res.TargetNamespaces), int32(res.TargetServiceAccounts))
	if err != nil {
		return err
	}
	res.add("convergence.status_lag", lag.Sub(done).Seconds(), "s")
	cpuMark("convergence")

	// The Distributed Event follows the status write, sent by the manager's event broadcaster on
	// a goroutine of its own: it is part of convergence, so wait for it (at most distributedWait)
	// before the idle window starts, lest a busy machine count it as an idle write.
	converged, err := r.auditUntil(ctx, distributedWait, func(w Writes) bool { return w.Sub(before).Count("events create") > 0 })
	if err != nil {
		return err
	}
	reqConverged, err := scrapeRequests(metricsAddr)
	if err != nil {
		return err
	}
	res.ConvergenceWrites = converged.Sub(before)
	res.add("writes.min", float64(minWrites), "requests")
	res.add("writes.convergence", float64(res.ConvergenceWrites.Total), "requests")
	ratio := float64(res.ConvergenceWrites.Total) / float64(minWrites)
	res.add("writes.ratio", ratio, "x")
	res.check("writes.ratio", "= 1.00", ratio, "x", fmt.Sprintf("%.2f", ratio) == "1.00")
	res.addWrites("convergence", res.ConvergenceWrites)
	res.addSpan("convergence", t0, res.ConvergenceWrites)
	res.add("requests.convergence.writes", reqConverged.Writes()-reqBefore.Writes(), "requests")
	res.add("requests.convergence.reads", reqConverged.Reads()-reqBefore.Reads(), "requests")

	// Idle.
	r.say("Watching the manager's writes for %s of idleness...", cfg.Idle)
	select {
	case <-time.After(cfg.Idle):
	case <-ctx.Done():
		return ctx.Err()
	}
	idle, err := r.audit()
	if err != nil {
		return err
	}
	reqIdle, err := scrapeRequests(metricsAddr)
	if err != nil {
		return err
	}
	res.IdleWrites = idle.Sub(converged)
	cpuMark("idle")
	res.add("writes.idle", float64(res.IdleWrites.Total), "requests")
	res.add("requests.idle.writes", reqIdle.Writes()-reqConverged.Writes(), "requests")
	res.add("requests.idle.reads", reqIdle.Reads()-reqConverged.Reads(), "requests")
	res.check("writes.idle", "= 0", float64(res.IdleWrites.Total), "requests", res.IdleWrites.Total == 0)
	if res.IdleWrites.Total > 0 {
		res.addWrites("idle", res.IdleWrites)
	}
	if cfg.RecoverPods {
		// The other half of the comparison, at the point where the baseline was read.
		if err := r.recoverMeasured(ctx, mgr, metricsAddr); err != nil {
			return err
		}
	}

	// Rotation.
	r.cred.Password = "second-password"
	tr.rotate(r.cred)
	if err := r.cp.Client.Get(ctx, client.ObjectKey{Name: CRName}, ips); err != nil {
		return err
	}
	ips.Spec.Docker.Password = r.cred.Password
	r.say("Rotating the password...")
	t0 = time.Now()
	if err := r.cp.Client.Update(ctx, ips); err != nil {
		return fmt.Errorf("rotating the password of ImagePullSecret %s: %w", CRName, err)
	}
	wctx, cancel = context.WithTimeout(ctx, cfg.Timeout)
	done, err = tr.wait(wctx)
	cancel()
	if err != nil {
		return fmt.Errorf("waiting for the rotation: %w (manager log: %s)", err, mgr.log)
	}
	res.add("rotation", done.Sub(t0).Seconds(), "s")
	r.say("Rotated every Secret in %s.", done.Sub(t0).Round(time.Millisecond))
	if _, err := r.waitStatus(ctx, ips.Generation, int32(res.TargetNamespaces), int32(res.TargetServiceAccounts)); err != nil {
		return err
	}
	cpuMark("rotation")
	rotated, err := r.audit()
	if err != nil {
		return err
	}
	res.RotationWrites = rotated.Sub(idle)
	res.add("writes.rotation", float64(res.RotationWrites.Total), "requests")
	res.addWrites("rotation", res.RotationWrites)
	res.addSpan("rotation", t0, res.RotationWrites)

	// New namespaces while converged, one by one at the given rate.
	if err := r.newNamespaces(ctx, tr, mgr); err != nil {
		return err
	}
	if _, err := r.waitStatus(ctx, ips.Generation, int32(res.TargetNamespaces+cfg.NewNamespaces),
		int32(res.TargetServiceAccounts+cfg.NewNamespaces)); err != nil {
		return err
	}
	cpuMark("newns")
	if cpu, ok := res.Figure("manager.cpu.newns"); ok {
		res.check("manager.cpu.newns", "< 1 s", cpu, "s", cpu < 1)
	}
	added, err := r.audit()
	if err != nil {
		return err
	}
	res.NewNamespaceWrites = added.Sub(rotated)
	res.add("writes.newns", float64(res.NewNamespaceWrites.Total), "requests")
	res.add("writes.newns.min", float64(2*cfg.NewNamespaces), "requests")
	res.addWrites("newns", res.NewNamespaceWrites)

	// Status size and memory at the end.
	if err := r.cp.Client.Get(ctx, client.ObjectKey{Name: CRName}, ips); err != nil {
		return err
	}
	raw, err := json.Marshal(ips)
	if err != nil {
		return err
	}
	limit := 64.0
	res.add("status.size", float64(len(raw))/1024, "KiB")
	res.check("status.size", "<= 64 KiB", float64(len(raw))/1024, "KiB", float64(len(raw)) <= limit*1024)
	if err := mgr.alive(); err != nil {
		return err
	}
	mem, err := processMemory(mgr.Pid())
	if err != nil {
		return err
	}
	res.add("manager.rss", mem.RSS/mib, "MiB")
	res.add("manager.rss.peak", mem.PeakRSS/mib, "MiB")
	res.add("manager.rss.anon", mem.Anon/mib, "MiB")
	res.add("manager.rss.file", mem.File/mib, "MiB")
	if st, err := os.Stat(cfg.ManagerBin); err == nil {
		res.add("manager.binary", float64(st.Size())/mib, "MiB")
	}
	// The Go runtime's own view splits RSS into heap (caches, work) and the rest (binary, stacks).
	if text, err := scrape(metricsAddr); err == nil {
		for _, m := range []string{"go_memstats_heap_inuse_bytes", "go_memstats_heap_alloc_bytes", "go_memstats_stack_inuse_bytes", "go_memstats_sys_bytes"} {
			if v, ok := metricValue(text, m); ok {
				res.add("manager."+strings.TrimSuffix(strings.TrimPrefix(m, "go_memstats_"), "_bytes"), v/mib, "MiB")
			}
		}
	}
	memLimit := 60.0
	if cfg.Large {
		memLimit = 128
	}
	res.check("manager.rss.peak", fmt.Sprintf("<= %.0f MiB", memLimit), mem.PeakRSS/mib, "MiB", mem.PeakRSS/mib <= memLimit)
	return nil
}

// WarmUpCRName is an ImagePullSecret the benchmark creates and deletes before measuring.
const WarmUpCRName = "bench-warmup"

// warmUp waits until the manager serves an ImagePullSecret end to end, then deletes it again.
// /readyz answers as soon as the process runs, before the caches have synced and the workers
// have started; without this, a small run's convergence would be mostly manager start-up, which
// is not what users wait for when they create a CR in a running cluster.
func (r *runner) warmUp(ctx context.Context, mgr *process, figure string) error {
	start := time.Now()
	ips := &tcrv1.ImagePullSecret{
		ObjectMeta: metav1.ObjectMeta{Name: WarmUpCRName},
		Spec: tcrv1.ImagePullSecretSpec{Namespaces: OwnNamespace, ServiceAccounts: "*", Docker: tcrv1.DockerCredential{
			Server: "warmup.example.com", Username: "warmup", Password: "warmup"}},
	}
	if err := r.cp.Client.Create(ctx, ips); err != nil {
		return fmt.Errorf("creating ImagePullSecret %s: %w", WarmUpCRName, err)
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	poll := func(done func() (bool, error)) error {
		for {
			ok, err := done()
			if err != nil || ok {
				return err
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("warming up the manager (log: %s): %w", mgr.log, ctx.Err())
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	if err := poll(func() (bool, error) {
		_, err := r.cp.Kube.CoreV1().Secrets(OwnNamespace).Get(ctx, tcrv1.SecretNamePrefix+WarmUpCRName, metav1.GetOptions{})
		return err == nil, client.IgnoreNotFound(err)
	}); err != nil {
		return err
	}
	r.res.add(figure, time.Since(start).Seconds(), "s")
	if err := r.cp.Client.Delete(ctx, ips); err != nil {
		return fmt.Errorf("deleting ImagePullSecret %s: %w", WarmUpCRName, err)
	}
	return poll(func() (bool, error) {
		err := r.cp.Client.Get(ctx, client.ObjectKey{Name: WarmUpCRName}, ips)
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	})
}

// waitStatus polls the CR until its status describes generation with every target up to date,
// and returns when it saw that. Polling is fine here: it is not a timed figure's clock.
func (r *runner) waitStatus(ctx context.Context, generation int64, secrets, sas int32) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	var ips tcrv1.ImagePullSecret
	for {
		if err := r.cp.Client.Get(ctx, client.ObjectKey{Name: CRName}, &ips); err != nil {
			return time.Time{}, fmt.Errorf("reading the status of ImagePullSecret %s: %w", CRName, err)
		}
		s := ips.Status
		if s.ObservedGeneration >= generation && s.SecretsDesired == secrets && s.SecretsSuccess == secrets &&
			s.SAsDesired == sas && s.SAsSuccess == sas {
			return time.Now(), nil
		}
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("status of ImagePullSecret %s never reported generation %d with %d/%d Secrets and %d/%d ServiceAccounts (last: generation %d, %d/%d Secrets, %d/%d ServiceAccounts): %w",
				CRName, generation, secrets, secrets, sas, sas, s.ObservedGeneration, s.SecretsSuccess, s.SecretsDesired, s.SAsSuccess, s.SAsDesired, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (r *runner) newNamespaces(ctx context.Context, tr *tracker, mgr *process) error {
	cfg, res, kube := r.cfg, r.res, r.cp.Kube
	r.say("Creating %d namespaces at %g/s while converged...", cfg.NewNamespaces, cfg.NewNamespaceRate)
	fresh := names("newns", cfg.NewNamespaces)
	tick := time.NewTicker(time.Duration(float64(time.Second) / cfg.NewNamespaceRate))
	defer tick.Stop()
	errs := make(chan error, len(fresh))
	for i, name := range fresh {
		if i > 0 {
			<-tick.C
		}
		t0 := time.Now()
		tr.expect(name, t0, "default")
		go func() {
			if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
				errs <- fmt.Errorf("creating namespace %s: %w", name, err)
				return
			}
			sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: name}}
			if _, err := kube.CoreV1().ServiceAccounts(name).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
				errs <- fmt.Errorf("creating ServiceAccount %s/default: %w", name, err)
				return
			}
			errs <- nil
		}()
	}
	for range fresh {
		if err := <-errs; err != nil {
			return err
		}
	}
	wctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	_, err := tr.wait(wctx)
	cancel()
	if err != nil {
		return fmt.Errorf("waiting for the new namespaces: %w (manager log: %s)", err, mgr.log)
	}
	res.NewNamespaceLatencies = tr.latency(fresh)
	p50, p99 := percentile(res.NewNamespaceLatencies, 50), percentile(res.NewNamespaceLatencies, 99)
	res.add("newns.p50", float64(p50.Microseconds())/1000, "ms")
	res.add("newns.p99", float64(p99.Microseconds())/1000, "ms")
	res.add("newns.max", float64(percentile(res.NewNamespaceLatencies, 100).Microseconds())/1000, "ms")
	res.check("newns.p99", "<= 100 ms", float64(p99.Microseconds())/1000, "ms", p99 <= 100*time.Millisecond)
	r.say("Served new namespaces: p50 %s, p99 %s.", p50, p99)
	return nil
}

func (r *runner) floor(ctx context.Context) error {
	cfg, res, kube := r.cfg, r.res, r.cp.Kube
	floorNS := names("floor", cfg.Namespaces)
	rvs, err := createNamespaces(ctx, kube, cfg.FixtureWorkers, floorNS)
	if err != nil {
		return err
	}
	r.say("Running the floor client (%d workers) on %d fresh namespaces...", cfg.FloorWorkers, cfg.Namespaces)
	cred := credential{Server: r.cred.Server, Username: r.cred.Username, Password: "first-password"}
	t0 := time.Now()
	if err := floorDistribute(ctx, kube, cfg.FloorWorkers, CRName, cred, floorNS, rvs); err != nil {
		return err
	}
	floor := time.Since(t0)
	cred.Password = "second-password"
	t0 = time.Now()
	if err := floorRotate(ctx, kube, cfg.FloorWorkers, CRName, cred, floorNS); err != nil {
		return err
	}
	floorRot := time.Since(t0)
	r.say("Floor: %s to distribute, %s to rotate.", floor.Round(time.Millisecond), floorRot.Round(time.Millisecond))
	res.add("floor", floor.Seconds(), "s")
	res.add("rotation.floor", floorRot.Seconds(), "s")
	if conv, ok := res.Figure("convergence"); ok {
		ratio := conv / floor.Seconds()
		res.add("convergence.ratio", ratio, "x")
		res.check("convergence.ratio", "<= 1.2", ratio, "x", ratio <= 1.2)
	}
	if rot, ok := res.Figure("rotation"); ok {
		ratio := rot / floorRot.Seconds()
		res.add("rotation.ratio", ratio, "x")
		res.check("rotation.ratio", "<= 1.5", ratio, "x", ratio <= 1.5)
	}
	return nil
}
