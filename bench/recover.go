package bench

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
)

// The recoverPods scenario (issue 23, `make bench RECOVER=1`): the same cluster plus
// PodsPerNamespace Running Pods in every benchmark namespace, pulling from the rule's registry.
// While a rule has recoverPods the manager runs an informer of the Pending Pods only (a field
// selector), so the Running Pods must cost it neither memory nor writes. The comparison is made
// in one run, between two manager processes doing the same work over the same objects: first a
// baseline manager converges and idles with a rule without recoverPods, is read, deletes the
// rule (its finalizer removes every Secret and reference) and stops; then the measured phases run
// as always with recoverPods on, and the second manager is read at the same point, after the idle
// window. The audit log records the manager's reads of Pods, to show that the baseline made none
// and that every one of the other's carried the field selector.

const (
	// pendingSelector is the field selector of the manager's Pod informer (controllers.CacheOptions).
	pendingSelector = "status.phase=Pending"
	// podImage is the image of the benchmark's Pods: on the rule's registry, so that only their
	// phase keeps them out of recovery.
	podImage = "bench.tencentcloudcr.com/bench/app:1.0"
	// podTemplateHash names the ReplicaSet that owns the benchmark's Pods in each namespace.
	podTemplateHash = "5d8f7c9b4d"
	// recoverRSSTarget is what recoverPods may add to the manager's peak RSS, in MiB.
	recoverRSSTarget = 8
)

// benchPod is Pod j of namespace (the nsIndex-th) as a Deployment's ReplicaSet creates it, bound
// to a node: the API server sets its phase to Pending on create, as for every Pod.
func benchPod(namespace string, nsIndex, j int) *corev1.Pod {
	rs := "app-" + podTemplateHash
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: fmt.Sprintf("%s-%05d", rs, j), Namespace: namespace,
			Labels: map[string]string{"app": "app", "pod-template-hash": podTemplateHash},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs,
				UID:        types.UID(fmt.Sprintf("00000000-0000-4000-8000-%012d", nsIndex)),
				Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}},
		},
		Spec: corev1.PodSpec{
			ServiceAccountName: ServiceAccountNames[j%len(ServiceAccountNames)],
			NodeName:           "bench-node",
			Containers:         []corev1.Container{{Name: "app", Image: podImage}},
		},
	}
}

// setRunning gives pod (as created) the status a kubelet reports for it once its container runs;
// i numbers its IP.
func setRunning(pod *corev1.Pod, i int, at metav1.Time) {
	ip := fmt.Sprintf("10.%d.%d.%d", 1+(i>>16)&0xff, (i>>8)&0xff, i&0xff)
	s := &pod.Status
	s.Phase = corev1.PodRunning
	s.HostIP, s.HostIPs = "192.168.0.10", []corev1.HostIP{{IP: "192.168.0.10"}}
	s.PodIP, s.PodIPs = ip, []corev1.PodIP{{IP: ip}}
	s.StartTime = &at
	s.Conditions = nil
	for _, c := range []corev1.PodConditionType{corev1.PodReadyToStartContainers, corev1.PodInitialized,
		corev1.PodReady, corev1.ContainersReady, corev1.PodScheduled} {
		s.Conditions = append(s.Conditions, corev1.PodCondition{Type: c, Status: corev1.ConditionTrue, LastTransitionTime: at})
	}
	s.ContainerStatuses = []corev1.ContainerStatus{{
		Name: "app", Image: podImage, Ready: true, Started: ptr.To(true),
		ImageID:     "bench.tencentcloudcr.com/bench/app@sha256:" + fmt.Sprintf("%064x", 1),
		ContainerID: fmt.Sprintf("containerd://%064x", i+1),
		State:       corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: at}},
	}}
}

// createRunningPods creates perNS Pods in each namespace, each followed at once by the update of
// its status subresource that makes it Running (a create cannot set a status), from workers
// goroutines with no client rate limit.
func createRunningPods(ctx context.Context, kube kubernetes.Interface, workers int, namespaces []string, perNS int) error {
	at := metav1.NewTime(time.Now().Truncate(time.Second))
	return parallel(ctx, workers, len(namespaces)*perNS, func(ctx context.Context, i int) error {
		ns := namespaces[i/perNS]
		pod, err := kube.CoreV1().Pods(ns).Create(ctx, benchPod(ns, i/perNS, i%perNS), metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("creating Pod %s/%s: %w", ns, benchPod(ns, i/perNS, i%perNS).Name, err)
		}
		setRunning(pod, i, at)
		if _, err := kube.CoreV1().Pods(ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("setting Pod %s/%s Running: %w", ns, pod.Name, err)
		}
		return nil
	})
}

// countPods counts the Pods that fieldSelector matches, listing their metadata in pages.
func countPods(ctx context.Context, c client.Client, fieldSelector string) (int, error) {
	sel, err := fields.ParseSelector(fieldSelector)
	if err != nil {
		return 0, err
	}
	n := 0
	cont := ""
	for {
		list := &metav1.PartialObjectMetadataList{}
		list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("PodList"))
		if err := c.List(ctx, list, client.MatchingFieldsSelector{Selector: sel}, client.Limit(5000), client.Continue(cont)); err != nil {
			return n, fmt.Errorf("listing the Pods with %s: %w", fieldSelector, err)
		}
		n += len(list.Items)
		if cont = list.Continue; cont == "" {
			return n, nil
		}
	}
}

// createPods creates the scenario's Running Pods in namespaces.
func (r *runner) createPods(ctx context.Context, namespaces []string) error {
	n := len(namespaces) * r.cfg.PodsPerNamespace
	r.say("Creating %d Running Pods (%d per namespace: a create and a status update each)...", n, r.cfg.PodsPerNamespace)
	start := time.Now()
	if err := createRunningPods(ctx, r.cp.Kube, r.cfg.FixtureWorkers, namespaces, r.cfg.PodsPerNamespace); err != nil {
		return err
	}
	took := time.Since(start)
	r.res.add("fixtures.pods", float64(n), "pods")
	r.res.add("fixtures.pods.create", took.Seconds(), "s")
	r.res.add("fixtures.pods.rate", float64(n)/took.Seconds(), "pods/s")
	r.say("Created %d Running Pods in %s.", n, took.Round(time.Millisecond))
	return nil
}

// podReads returns the manager's reads of Pods so far, from the audit log.
func (r *runner) podReads() ([]Read, error) {
	return readAuditReads(r.cp.AuditLog, ManagerUser, "pods")
}

// addMemory adds the resident set of p (prefix.rss, .rss.peak, .rss.anon, .rss.file), the CPU
// time it used since it started (prefix.cpu) and the Go runtime's heap (prefix.heap_inuse,
// .sys), and returns the resident set.
func (r *runner) addMemory(prefix string, p *process, metricsAddr string) (Memory, error) {
	if err := p.alive(); err != nil {
		return Memory{}, err
	}
	mem, err := processMemory(p.Pid())
	if err != nil {
		return Memory{}, err
	}
	r.res.add(prefix+".rss", mem.RSS/mib, "MiB")
	r.res.add(prefix+".rss.peak", mem.PeakRSS/mib, "MiB")
	r.res.add(prefix+".rss.anon", mem.Anon/mib, "MiB")
	r.res.add(prefix+".rss.file", mem.File/mib, "MiB")
	if cpu, err := processCPU(p.Pid()); err == nil {
		r.res.add(prefix+".cpu", cpu.Seconds(), "s")
	}
	if text, err := scrape(metricsAddr); err == nil {
		for _, m := range []string{"go_memstats_heap_inuse_bytes", "go_memstats_sys_bytes"} {
			if v, ok := metricValue(text, m); ok {
				r.res.add(prefix+"."+m[len("go_memstats_"):len(m)-len("_bytes")], v/mib, "MiB")
			}
		}
	}
	return mem, nil
}

// recoverBaseline runs the baseline of the comparison: a manager of its own, started like the
// measured one, converges the benchmark's ImagePullSecret without recoverPods and idles for
// cfg.Idle; then its memory and Pod reads are read (recover.off.*), the rule is deleted and
// cleaned up by that manager, and it stops. The measured phases then start from the same state.
func (r *runner) recoverBaseline(ctx context.Context) error {
	cfg, res := r.cfg, r.res
	mgr, metricsAddr, err := r.startManager(ctx, "manager-baseline")
	if err != nil {
		return err
	}
	defer mgr.Stop()
	if err := r.warmUp(ctx, mgr, "recover.off.warmup"); err != nil {
		return err
	}
	targets, err := r.targets(ctx)
	if err != nil {
		return err
	}
	sas := 0
	for _, s := range targets {
		sas += len(s)
	}
	before, err := r.audit()
	if err != nil {
		return err
	}
	r.say("Baseline: creating ImagePullSecret %s without recoverPods for %d namespaces and %d ServiceAccounts...", CRName, len(targets), sas)
	ips := &tcrv1.ImagePullSecret{ObjectMeta: metav1.ObjectMeta{Name: CRName}, Spec: benchSpec(firstCredential, false)}
	t0 := time.Now()
	if err := r.cp.Client.Create(ctx, ips); err != nil {
		return fmt.Errorf("creating ImagePullSecret %s: %w", CRName, err)
	}
	if _, err := r.waitStatus(ctx, ips.Generation, int32(len(targets)), int32(sas)); err != nil {
		return fmt.Errorf("baseline: %w (manager log: %s)", err, mgr.log)
	}
	// Observed by polling the status, so a little later than the measured phases' watch would.
	res.add("recover.off.convergence", time.Since(t0).Seconds(), "s")
	converged, err := r.auditUntil(ctx, distributedWait, func(w Writes) bool { return w.Sub(before).Count("events create") > 0 })
	if err != nil {
		return err
	}
	res.add("recover.off.writes.convergence", float64(converged.Sub(before).Total), "requests")
	r.say("Baseline: converged in %s; watching the manager's writes for %s of idleness...", time.Since(t0).Round(time.Millisecond), cfg.Idle)
	select {
	case <-time.After(cfg.Idle):
	case <-ctx.Done():
		return ctx.Err()
	}
	idle, err := r.audit()
	if err != nil {
		return err
	}
	res.add("recover.off.writes.idle", float64(idle.Sub(converged).Total), "requests")
	if r.recoverOff, err = r.addMemory("recover.off", mgr, metricsAddr); err != nil {
		return err
	}
	reads, err := r.podReads()
	if err != nil {
		return err
	}
	res.add("recover.off.requests.pods", float64(len(reads)), "requests")
	res.check("recover.off.requests.pods", "= 0", float64(len(reads)), "requests", len(reads) == 0)

	r.say("Baseline: peak RSS %.1f MiB; deleting ImagePullSecret %s, which the manager cleans up...", r.recoverOff.PeakRSS/mib, CRName)
	t0 = time.Now()
	if err := r.cp.Client.Delete(ctx, ips); err != nil {
		return fmt.Errorf("deleting ImagePullSecret %s: %w", CRName, err)
	}
	wctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	for {
		err := r.cp.Client.Get(wctx, client.ObjectKey{Name: CRName}, ips)
		if apierrors.IsNotFound(err) {
			break
		}
		if err != nil {
			return fmt.Errorf("baseline: waiting for the cleanup of ImagePullSecret %s: %w (manager log: %s)", CRName, err, mgr.log)
		}
		if err := mgr.alive(); err != nil {
			return err
		}
		select {
		case <-wctx.Done():
			return fmt.Errorf("baseline: ImagePullSecret %s never went (manager log: %s): %w", CRName, mgr.log, wctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	res.add("recover.off.cleanup", time.Since(t0).Seconds(), "s")
	left, err := r.cp.Kube.CoreV1().Secrets("").List(ctx, metav1.ListOptions{LabelSelector: tcrv1.OwnerLabel + "=" + CRName, Limit: 1})
	if err != nil {
		return err
	}
	if len(left.Items) > 0 {
		return fmt.Errorf("baseline: Secret %s/%s outlived the cleanup of ImagePullSecret %s", left.Items[0].Namespace, left.Items[0].Name, CRName)
	}
	mgr.Stop()
	if reads, err = r.podReads(); err != nil {
		return err
	}
	r.offReads = len(reads)
	r.say("Baseline: cleaned up in %s; stopped its manager.", time.Since(t0).Round(time.Millisecond))
	return nil
}

// recoverMeasured reads the measured manager, recoverPods on, where recoverBaseline read the
// baseline's (after the idle window), and counts the Pods its informer's selector matches.
func (r *runner) recoverMeasured(ctx context.Context, mgr *process, metricsAddr string) error {
	res := r.res
	on, err := r.addMemory("recover.on", mgr, metricsAddr)
	if err != nil {
		return err
	}
	delta := (on.PeakRSS - r.recoverOff.PeakRSS) / mib
	res.add("recover.rss.peak.delta", delta, "MiB")
	res.check("recover.rss.peak.delta", fmt.Sprintf("<= %d MiB", recoverRSSTarget), delta, "MiB", delta <= recoverRSSTarget)
	pending, err := countPods(ctx, r.cp.Client, pendingSelector)
	if err != nil {
		return err
	}
	running, err := countPods(ctx, r.cp.Client, "status.phase=Running")
	if err != nil {
		return err
	}
	res.add("recover.pods.pending", float64(pending), "pods")
	res.add("recover.pods.running", float64(running), "pods")
	r.say("recoverPods on: peak RSS %.1f MiB (baseline %.1f MiB, %+.1f MiB); the manager's selector %s matches %d of %d Running Pods.",
		on.PeakRSS/mib, r.recoverOff.PeakRSS/mib, delta, pendingSelector, pending, running)
	return nil
}

// recoverRequests counts the Pod reads of the managers that ran with recoverPods (the measured
// one and the one with webhooks), once both have stopped: every one must carry the selector.
func (r *runner) recoverRequests() error {
	reads, err := r.podReads()
	if err != nil {
		return err
	}
	on := reads[min(r.offReads, len(reads)):]
	unselected := 0
	seen := map[string]bool{}
	for _, rd := range on {
		if rd.FieldSelector != pendingSelector {
			unselected++
		}
		if k := rd.Verb + " " + rd.URI; !seen[k] && len(seen) < 4 {
			seen[k] = true
			r.say("The manager's Pod request: %s %s", rd.Verb, rd.URI)
		}
	}
	r.res.add("recover.requests.pods", float64(len(on)), "requests")
	r.res.add("recover.requests.pods.unselected", float64(unselected), "requests")
	// No request at all would mean the informer never started: not a pass.
	r.res.check("recover.requests.pods.unselected", "= 0 of > 0", float64(unselected), "requests", unselected == 0 && len(on) > 0)
	return nil
}
