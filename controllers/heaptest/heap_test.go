// Package heaptest measures the manager's heap when tenants load ServiceAccounts with
// annotations. It is a package of its own so that the process holds nothing but the control
// plane's clients, the in-process manager and this test.
package heaptest

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
	"github.com/tcr-assistant/tcr-assistant/controllers"
	"github.com/tcr-assistant/tcr-assistant/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	ctrl.SetLogger(logr.Discard())
	os.Exit(testenv.Main(m, &env))
}

const (
	namespaces     = 20
	perNamespace   = 100 // 2,000 ServiceAccounts
	annotationSize = 200 << 10
	// heapLimit is the bound of issue 13 on the manager's live heap.
	heapLimit = 64 << 20
	timeout   = 5 * time.Minute
)

// liveHeap is the heap in use after a full collection: what the process keeps alive. It holds
// the manager and this test's small state; the test's request garbage is collected.
func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// peakSampler records the largest heap (live and not yet collected objects) seen while it runs.
type peakSampler struct {
	stop chan struct{}
	done sync.WaitGroup
	peak atomic.Uint64
}

func samplePeak() *peakSampler {
	p := &peakSampler{stop: make(chan struct{})}
	p.done.Go(func() {
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		for {
			metrics.Read(s)
			if v := s[0].Value.Uint64(); v > p.peak.Load() {
				p.peak.Store(v)
			}
			select {
			case <-p.stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	})
	return p
}

func (p *peakSampler) end() uint64 {
	close(p.stop)
	p.done.Wait()
	return p.peak.Load()
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// TestServiceAccountAnnotationsDoNotGrowTheHeap loads 2,000 ServiceAccounts with 200 KiB of
// annotations each (400 MB) and checks the live heap of the process running the manager: under
// 64 MiB while rules read no ServiceAccount metadata and while a serviceAccountSelector reads one
// label key; above the 400 MB while a rule's expression may read annotations (which shows that
// the measure sees the caches); and under 64 MiB again once that rule is gone.
func TestServiceAccountAnnotationsDoNotGrowTheHeap(t *testing.T) {
	start := time.Now()
	ctx := context.Background()
	cfg := *env.Config
	cfg.QPS, cfg.Burst = 1000, 2000
	c, err := client.New(&cfg, client.Options{Scheme: env.Scheme})
	require.NoError(t, err)

	blob := strings.Repeat("x", annotationSize)
	for i := range namespaces {
		require.NoError(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("heap-%02d", i)}}))
	}
	require.NoError(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "tcr-assistant-system"}}))
	next := make(chan int)
	var wg sync.WaitGroup
	var createErr atomic.Pointer[error]
	for range 16 {
		wg.Go(func() {
			for i := range next {
				sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{
					Namespace: fmt.Sprintf("heap-%02d", i%namespaces), Name: fmt.Sprintf("sa-%04d", i),
					Annotations: map[string]string{"tenant.example.com/blob": blob},
				}}
				if i%10 == 0 {
					sa.Labels = map[string]string{"team": "a"}
				}
				if err := c.Create(ctx, sa); err != nil {
					createErr.CompareAndSwap(nil, &err)
				}
			}
		})
	}
	for i := range namespaces * perNamespace {
		next <- i
	}
	close(next)
	wg.Wait()
	if p := createErr.Load(); p != nil {
		require.NoError(t, *p)
	}
	t.Logf("%s: ServiceAccounts created", time.Since(start))
	before := liveHeap()
	t.Logf("live heap before the manager starts: %s", mib(before))

	// The manager as cmd/manager configures it, started once the ServiceAccounts exist, so that
	// its first list carries them all.
	peak := samplePeak()
	mgr, err := ctrl.NewManager(&cfg, ctrl.Options{
		Scheme: env.Scheme, Cache: controllers.CacheOptions(),
		Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
	})
	require.NoError(t, err)
	require.NoError(t, controllers.New(controllers.Options{Namespace: "tcr-assistant-system", StatusDelay: 200 * time.Millisecond}).SetupWithManager(mgr))
	mctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	go func() { _ = mgr.Start(mctx) }()
	require.True(t, mgr.GetCache().WaitForCacheSync(mctx))

	// status waits until the ImagePullSecret name reports the given ServiceAccounts, all
	// referencing its Secret, which shows the manager has read every ServiceAccount.
	status := func(name string, sas int32) {
		t.Helper()
		require.EventuallyWithT(t, func(ct *assert.CollectT) {
			ips := &tcrv1.ImagePullSecret{}
			if !assert.NoError(ct, c.Get(ctx, types.NamespacedName{Name: name}, ips)) {
				return
			}
			st := ips.Status
			assert.Equal(ct, [4]int32{namespaces, namespaces, sas, sas}, [4]int32{st.SecretsDesired, st.SecretsSuccess, st.SAsDesired, st.SAsSuccess})
		}, timeout, 500*time.Millisecond)
	}
	create := func(name string, edit func(*tcrv1.ImagePullSecretSpec)) {
		t.Helper()
		ips := &tcrv1.ImagePullSecret{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: tcrv1.ImagePullSecretSpec{
			Namespaces: "heap-*", ServiceAccounts: "*",
			Docker: tcrv1.DockerCredential{Server: "heap.tencentcloudcr.com", Username: "u", Password: "p"},
		}}
		ips.Spec.Namespaces = ""
		for i := range namespaces {
			ips.Spec.Namespaces += fmt.Sprintf("heap-%02d,", i)
		}
		edit(&ips.Spec)
		require.NoError(t, c.Create(ctx, ips))
	}

	// Names only, of the labelled tenth, so that the test writes little.
	t.Logf("%s: the manager's caches synced", time.Since(start))
	create("names", func(s *tcrv1.ImagePullSecretSpec) {
		var names []string
		for i := 0; i < namespaces*perNamespace; i += 10 {
			names = append(names, fmt.Sprintf("sa-%04d", i))
		}
		s.ServiceAccounts = strings.Join(names, ",")
	})
	status("names", namespaces*perNamespace/10)
	t.Logf("%s: names distributed", time.Since(start))
	t.Logf("transient peak of the heap while the manager lists and distributes: %s", mib(peak.end()))
	h := liveHeap()
	t.Logf("live heap, no rule reads ServiceAccount metadata: %s", mib(h))
	assert.Less(t, h, uint64(heapLimit))

	// A serviceAccountSelector reads the label key team only.
	peak = samplePeak()
	create("selector", func(s *tcrv1.ImagePullSecretSpec) {
		s.ServiceAccountSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}}
	})
	status("selector", namespaces*perNamespace/10)
	t.Logf("transient peak while the metadata cache lists for the selector: %s", mib(peak.end()))
	h = liveHeap()
	t.Logf("live heap, a selector reads one label key: %s", mib(h))
	assert.Less(t, h, uint64(heapLimit))

	// An expression may read any annotation: the annotations are kept while it exists.
	create("expression", func(s *tcrv1.ImagePullSecretSpec) {
		s.ServiceAccountExpression = `serviceAccount.annotations.size() > 0 && "team" in serviceAccount.labels`
	})
	status("expression", namespaces*perNamespace/10)
	t.Logf("%s: expression distributed", time.Since(start))
	h = liveHeap()
	t.Logf("live heap, an expression reads annotations: %s", mib(h))
	assert.Greater(t, h, uint64(namespaces*perNamespace*annotationSize), "the measure sees the annotations a rule reads")

	require.NoError(t, c.Delete(ctx, &tcrv1.ImagePullSecret{ObjectMeta: metav1.ObjectMeta{Name: "expression"}}))
	require.Eventually(t, func() bool { return liveHeap() < heapLimit }, timeout, time.Second,
		"the annotations are dropped once no rule reads them")
	t.Logf("live heap after the expression is deleted: %s", mib(liveHeap()))
}
