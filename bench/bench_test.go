package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
	"github.com/tcr-assistant/tcr-assistant/internal/testenv"
)

// buildBinaries builds the manager and hosts-updater from the working tree, so the tiny run
// exercises the code under test rather than whatever bin/ holds.
func buildBinaries(t *testing.T) (manager, hostsUpdater string) {
	t.Helper()
	root, err := testenv.RepoRoot()
	require.NoError(t, err)
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/manager", "./cmd/hosts-updater")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "building the manager and hosts-updater: %s", out)
	return filepath.Join(dir, "manager"), filepath.Join(dir, "hosts-updater")
}

// TestTinyRun runs every phase of `make bench` at N = 20 so the benchmark cannot rot. It
// asserts that everything converged, that the manager's writes were counted and what the run
// left in the API server; it never asserts on wall time.
func TestTinyRun(t *testing.T) {
	manager, hostsUpdater := buildBinaries(t)
	const n, newNS = 20, 5
	var out strings.Builder
	cfg := Config{
		Namespaces: n, UnrelatedSecrets: 40, UnrelatedSecretBytes: 1024,
		Idle: 2 * time.Second, NewNamespaces: newNS, WebhookNamespaces: 5, HostsEdits: 3, Timeout: time.Minute,
		ManagerBin: manager, HostsUpdaterBin: hostsUpdater, LogDir: t.TempDir(), Progress: &out,
		BeforeStop: func(ctx context.Context, c client.Client) error {
			return checkState(ctx, c, n, newNS)
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	res, err := Run(ctx, cfg)
	require.NoError(t, err, "progress:\n%s", &out)
	assertTinyRun(t, res, n, newNS)
}

// assertTinyRun asserts what every tiny run must show, whatever its scenario.
func assertTinyRun(t *testing.T, res *Result, n, newNS int) {
	t.Helper()
	// The CR selects every namespace: the n benchmark ones, which alone hold ServiceAccounts,
	// and those of the control plane.
	assert.GreaterOrEqual(t, res.TargetNamespaces, n, "every benchmark namespace is a target")
	assert.Equal(t, 3*n, res.TargetServiceAccounts, "only the benchmark namespaces hold ServiceAccounts")
	assert.Equal(t, res.TargetNamespaces, res.ConvergenceWrites.Count("secrets create"),
		"every distributed Secret was created once by the manager and counted")
	assert.Equal(t, res.TargetServiceAccounts, res.ConvergenceWrites.Count("serviceaccounts patch"),
		"every ServiceAccount reference was written once by the manager and counted")
	assert.Equal(t, res.TargetNamespaces, res.RotationWrites.Count("secrets patch"),
		"every rotated Secret was written once by the manager and counted")
	assert.Equal(t, newNS, res.NewNamespaceWrites.Count("secrets create"))
	// A new namespace with 3 ServiceAccounts: the Secret and 3 references without the webhook,
	// the Secret alone with it.
	for name, want := range map[string]float64{"writes.newns3.off": 4, "writes.newns3.on": 1} {
		v, ok := res.Figure(name)
		if assert.True(t, ok, "figure %s is reported", name) {
			assert.Equal(t, want, v, "figure %s", name)
		}
	}
	assert.Len(t, res.NewNamespaceLatencies, newNS, "every new namespace was served")
	assert.Empty(t, res.Skipped)
	assert.Zero(t, res.IdleWrites.Total, "the manager writes nothing while idle: %v", res.IdleWrites)

	// Beyond one write per target, convergence costs the finalizer, the status (written once the
	// walk is done, and at most twice more as the last results come in) and one Event; nothing
	// else, and no conflict. (At N = 20 these few writes are 3% of the total, so writes.ratio is
	// judged by make bench at N = 1,000.)
	conv := res.ConvergenceWrites
	assert.Zero(t, conv.Conflicts, "convergence met a conflict: %v", conv.ByKind)
	assert.Zero(t, conv.Errors, "convergence met an error: %v", conv.ByKind)
	assert.Equal(t, 1, conv.Count("imagepullsecrets patch"), "the finalizer: %v", conv.ByKind)
	assert.Equal(t, 1, conv.Count("events create"), "one Distributed Event: %v", conv.ByKind)
	assert.GreaterOrEqual(t, conv.Count("imagepullsecrets/status update"), 1, "%v", conv.ByKind)
	assert.LessOrEqual(t, conv.Count("imagepullsecrets/status update"), 3, "%v", conv.ByKind)
	assert.Equal(t, conv.Total, res.TargetNamespaces+res.TargetServiceAccounts+2+conv.Count("imagepullsecrets/status update"),
		"no write of another kind: %v", conv.ByKind)
	for _, c := range res.Checks {
		if c.Figure == "writes.idle" || c.Figure == "status.size" {
			assert.True(t, c.Pass, "check %s: %v %s, target %s", c.Figure, c.Value, c.Unit, c.Target)
		}
	}
	for _, name := range []string{"convergence", "floor", "convergence.ratio", "writes.min", "writes.ratio",
		"manager.warmup", "rotation", "rotation.floor", "rotation.ratio", "newns.p50", "newns.p99",
		"manager.rss.peak", "manager.cpu.convergence", "manager.cpu.rotation", "status.size", "hosts-updater.rss", "hosts.p50", "hosts.p99"} {
		v, ok := res.Figure(name)
		if assert.True(t, ok, "figure %s is reported", name) {
			assert.Positive(t, v, "figure %s", name)
		}
	}
	v, ok := res.Figure("writes.idle")
	assert.True(t, ok)
	assert.Zero(t, v)
	v, _ = res.Figure("writes.min")
	assert.Equal(t, float64(res.TargetNamespaces+res.TargetServiceAccounts), v)

	var printed strings.Builder
	res.Print(&printed)
	assert.Contains(t, printed.String(), fmt.Sprintf("bench: writes.min=%d requests\n", res.TargetNamespaces+res.TargetServiceAccounts))
	assert.Regexp(t, `\nFIGURE +VALUE +TARGET +RESULT\n`, printed.String())
	for _, c := range res.Checks {
		assert.Contains(t, printed.String(), c.Figure+" ")
	}
	logs, err := os.ReadDir(res.LogDir)
	require.NoError(t, err)
	assert.NotEmpty(t, logs, "the child processes' logs are kept")
}

// TestTinyRunRecoverPods runs the recoverPods scenario (`make bench RECOVER=1`) at N = 20 with 5
// Running Pods per namespace: everything TestTinyRun asserts, plus that the baseline manager
// (recoverPods off) read no Pod, that every Pod read of the managers with recoverPods carried the
// Pending field selector, which matches none of the Running Pods, and that no manager wrote
// anything while idle or touched a Pod. Memory is reported, never asserted.
func TestTinyRunRecoverPods(t *testing.T) {
	manager, hostsUpdater := buildBinaries(t)
	const n, newNS, perNS = 20, 5, 5
	var out strings.Builder
	cfg := Config{
		Namespaces: n, UnrelatedSecrets: 40, UnrelatedSecretBytes: 1024,
		Idle: 2 * time.Second, NewNamespaces: newNS, WebhookNamespaces: 5, HostsEdits: 3, Timeout: time.Minute,
		ManagerBin: manager, HostsUpdaterBin: hostsUpdater, LogDir: t.TempDir(), Progress: &out,
		RecoverPods: true, PodsPerNamespace: perNS,
		BeforeStop: func(ctx context.Context, c client.Client) error {
			if err := checkState(ctx, c, n, newNS); err != nil {
				return err
			}
			return checkPods(ctx, c, n, perNS)
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	res, err := Run(ctx, cfg)
	require.NoError(t, err, "progress:\n%s", &out)
	assertTinyRun(t, res, n, newNS)

	for name, want := range map[string]float64{
		"fixtures.pods": n * perNS, "recover.pods.running": n * perNS, "recover.pods.pending": 0,
		"recover.off.writes.idle": 0, "recover.off.requests.pods": 0, "recover.requests.pods.unselected": 0,
	} {
		v, ok := res.Figure(name)
		if assert.True(t, ok, "figure %s is reported", name) {
			assert.Equal(t, want, v, "figure %s", name)
		}
	}
	// The baseline converged the same targets as the measured phases: one write each, the
	// finalizer, one Event and one to three status writes.
	v, _ := res.Figure("recover.off.writes.convergence")
	targets := float64(res.TargetNamespaces + res.TargetServiceAccounts)
	assert.GreaterOrEqual(t, v, targets+3, "baseline convergence writes")
	assert.LessOrEqual(t, v, targets+5, "baseline convergence writes")
	// The informer of Pending Pods ran: its list and watch are the manager's Pod reads.
	v, _ = res.Figure("recover.requests.pods")
	assert.GreaterOrEqual(t, v, 1.0, "the managers with recoverPods listed and watched Pods")
	for _, name := range []string{"recover.off.rss.peak", "recover.on.rss.peak", "recover.off.cleanup", "fixtures.pods.create"} {
		v, ok := res.Figure(name)
		if assert.True(t, ok, "figure %s is reported", name) {
			assert.Positive(t, v, "figure %s", name)
		}
	}
	_, ok := res.Figure("recover.rss.peak.delta")
	assert.True(t, ok, "the peak RSS difference is reported")
	for _, c := range res.Checks {
		if c.Figure == "recover.off.requests.pods" || c.Figure == "recover.requests.pods.unselected" {
			assert.True(t, c.Pass, "check %s: %v %s, target %s", c.Figure, c.Value, c.Unit, c.Target)
		}
	}
	// Recovery acts on no Running Pod: no eviction, no Event on a Pod, no status write of its own.
	for _, w := range []Writes{res.ConvergenceWrites, res.IdleWrites, res.RotationWrites, res.NewNamespaceWrites} {
		assert.Zero(t, w.Count("pods/eviction create"), "%v", w.ByKind)
		assert.Zero(t, w.Count("imagepullsecrets/status patch"), "%v", w.ByKind)
	}
}

// checkPods asserts that every benchmark Pod is still there (none was evicted) and Running.
func checkPods(ctx context.Context, c client.Client, n, perNS int) error {
	for _, ns := range names("bench", n) {
		var pods corev1.PodList
		if err := c.List(ctx, &pods, client.InNamespace(ns)); err != nil {
			return err
		}
		if len(pods.Items) != perNS {
			return fmt.Errorf("namespace %s holds %d Pods, want %d", ns, len(pods.Items), perNS)
		}
		for _, p := range pods.Items {
			if p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil {
				return fmt.Errorf("pod %s/%s is %s (deleting: %v)", ns, p.Name, p.Status.Phase, p.DeletionTimestamp != nil)
			}
		}
	}
	return nil
}

// checkState asserts what a run left in the API server: every benchmark, new and floor
// namespace holds an owned Secret with the rotated password and every ServiceAccount there
// references it exactly once.
func checkState(ctx context.Context, c client.Client, n, newNS int) error {
	rotated := credential{Server: "bench.tencentcloudcr.com", Username: "100012345678", Password: "second-password"}
	secretName := tcrv1.SecretNamePrefix + CRName
	check := func(ns string, sas []string) error {
		var s corev1.Secret
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: secretName}, &s); err != nil {
			return fmt.Errorf("reading Secret %s/%s: %w", ns, secretName, err)
		}
		if !rotated.holds(&s) {
			return fmt.Errorf("secret %s/%s does not hold the rotated credential", ns, secretName)
		}
		if s.Labels[tcrv1.ManagedByLabel] != tcrv1.ManagedByValue || s.Labels[tcrv1.OwnerLabel] != CRName {
			return fmt.Errorf("secret %s/%s has labels %v", ns, secretName, s.Labels)
		}
		for _, name := range sas {
			var sa corev1.ServiceAccount
			if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &sa); err != nil {
				return fmt.Errorf("reading ServiceAccount %s/%s: %w", ns, name, err)
			}
			refs := 0
			for _, r := range sa.ImagePullSecrets {
				if r.Name == secretName {
					refs++
				}
			}
			if refs != 1 {
				return fmt.Errorf("serviceAccount %s/%s references %s %d times: %v", ns, name, secretName, refs, sa.ImagePullSecrets)
			}
		}
		return nil
	}
	// The warm-up ImagePullSecret is gone, and the manager cleaned up after it.
	var warm tcrv1.ImagePullSecret
	if err := c.Get(ctx, client.ObjectKey{Name: WarmUpCRName}, &warm); !apierrors.IsNotFound(err) {
		return fmt.Errorf("ImagePullSecret %s still readable (error %w)", WarmUpCRName, err)
	}
	var warmSecret corev1.Secret
	if err := c.Get(ctx, client.ObjectKey{Namespace: OwnNamespace, Name: tcrv1.SecretNamePrefix + WarmUpCRName}, &warmSecret); !apierrors.IsNotFound(err) {
		return fmt.Errorf("secret %s/%s%s still readable (error %w)", OwnNamespace, tcrv1.SecretNamePrefix, WarmUpCRName, err)
	}
	for _, ns := range names("bench", n) {
		if err := check(ns, ServiceAccountNames); err != nil {
			return err
		}
	}
	for _, ns := range names("newns", newNS) {
		if err := check(ns, []string{"default"}); err != nil {
			return err
		}
	}
	for _, ns := range names("floor", n) {
		if err := check(ns, ServiceAccountNames); err != nil {
			return err
		}
	}
	return nil
}
