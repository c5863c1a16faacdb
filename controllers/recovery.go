package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
)

// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=pods/eviction,verbs=create

// DefaultPodRecoveryRate is the default of --pod-recovery-rate: evictions per second, all rules
// together.
const DefaultPodRecoveryRate = 5

// recoveryRetry is how soon recovery looks again at a rule that has stuck Pods it could not yet
// act on: an eviction a PodDisruptionBudget refused, or a Pod whose ServiceAccount does not yet
// reference the Secret.
const recoveryRetry = 10 * time.Second

var podsRecoveredCounter = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "tcr_assistant_pods_recovered_total",
	Help: "Pods an ImagePullSecret with recoverPods evicted so that their controller recreates them with the credential.",
}, []string{"imagepullsecret"})

func init() { metrics.Registry.MustRegister(podsRecoveredCounter) }

// recovery runs recoverPods: a queue of rule names, one worker, on the leader only. While no
// rule has recoverPods it holds no Pod and makes no Pod request: the informer of Pending Pods
// (CacheOptions: a field selector and the slim form) is started by the first rule that turns
// it on and removed after the last one turns it off.
type recovery struct {
	r       *Reconciler
	cache   cache.Cache
	queue   workqueue.TypedRateLimitingInterface[string]
	limiter *rate.Limiter
	log     logr.Logger
	// evictions are made through client-go's typed client, which reads the API server's answer (a
	// Status) as a Status: controller-runtime's SubResource client decodes it into the Pod given,
	// and that fails on the protobuf it asks built-in types in ("unexpected EOF") even though the
	// eviction was made.
	evictions typedcorev1.PodsGetter

	mu sync.Mutex
	// rules are the names of the rules with recoverPods.
	rules map[string]struct{}
	// pods is the indexer of the Pending Pods' informer, nil while it does not run.
	pods toolscache.Indexer
	// acted holds the UIDs of the Pods evicted or reported: each is acted on at most once. An
	// entry goes with its Pod (the informer's delete).
	acted map[types.UID]struct{}
}

func newRecovery(r *Reconciler, c cache.Cache, evictions typedcorev1.PodsGetter, perSecond float64, log logr.Logger) *recovery {
	if perSecond <= 0 {
		perSecond = DefaultPodRecoveryRate
	}
	return &recovery{
		r: r, cache: c, evictions: evictions, log: log.WithValues("controller", "podrecovery"),
		queue:   workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](), workqueue.TypedRateLimitingQueueConfig[string]{Name: "podrecovery"}),
		limiter: rate.NewLimiter(rate.Limit(perSecond), 1),
		rules:   map[string]struct{}{}, acted: map[types.UID]struct{}{},
	}
}

// NeedLeaderElection: only the leader evicts.
func (*recovery) NeedLeaderElection() bool { return true }

// Start runs the worker until ctx ends.
func (rc *recovery) Start(ctx context.Context) error {
	go func() {
		<-ctx.Done()
		rc.queue.ShutDown()
	}()
	for {
		name, shutdown := rc.queue.Get()
		if shutdown {
			return nil
		}
		after, err := rc.reconcile(ctx, name)
		switch {
		case err != nil:
			rc.log.Error(err, "Pod recovery failed; retrying", "imagePullSecret", name)
			rc.queue.AddRateLimited(name)
		case after > 0:
			rc.queue.Forget(name)
			rc.queue.AddAfter(name, after)
		default:
			rc.queue.Forget(name)
		}
		rc.queue.Done(name)
	}
}

// ruleChanged is called by the full pass of every rule and when a rule is gone: it asks for the
// recovery pass of a rule that has recoverPods, or of one that just turned it off.
func (rc *recovery) ruleChanged(name string, on bool) {
	rc.mu.Lock()
	_, was := rc.rules[name]
	rc.mu.Unlock()
	if on || was {
		rc.queue.Add(name)
	}
}

// namespaceChanged is called when a namespace pass of a rule changed its result: a
// ServiceAccount may now reference the Secret.
func (rc *recovery) namespaceChanged(name string) {
	rc.mu.Lock()
	_, on := rc.rules[name]
	rc.mu.Unlock()
	if on {
		rc.queue.Add(name)
	}
}

// reconcile is the recovery pass of one rule: gather, plan, apply, record.
func (rc *recovery) reconcile(ctx context.Context, name string) (time.Duration, error) {
	ips := &tcrv1.ImagePullSecret{}
	err := rc.r.client.Get(ctx, types.NamespacedName{Name: name}, ips)
	if client.IgnoreNotFound(err) != nil {
		return 0, err
	}
	on := err == nil && ips.DeletionTimestamp.IsZero() && ips.Spec.RecoverPods
	if !on {
		return 0, rc.turnOff(ctx, name, ips, err == nil)
	}
	pods, err := rc.turnOn(ctx, name)
	if err != nil {
		return 0, err
	}
	facts, waiting := rc.gather(ips, pods)
	p := planRecovery(ips.SecretName(), ips.Spec.Docker.Server, facts)
	evicted, refused, err := rc.apply(ctx, ips, &p)
	if rerr := rc.record(ctx, ips, evicted, &p); err == nil {
		err = rerr
	}
	if err != nil {
		return 0, err
	}
	if refused || waiting {
		return recoveryRetry, nil
	}
	return 0, nil
}

// turnOn notes name as a rule with recoverPods and returns the Pending Pods, starting their
// informer if it does not run.
func (rc *recovery) turnOn(ctx context.Context, name string) ([]*slimPod, error) {
	rc.mu.Lock()
	rc.rules[name] = struct{}{}
	pods := rc.pods
	rc.mu.Unlock()
	if pods == nil {
		inf, err := rc.cache.GetInformer(ctx, &corev1.Pod{})
		if err != nil {
			return nil, fmt.Errorf("starting the informer of Pending Pods: %w", err)
		}
		idx, ok := inf.(interface{ GetIndexer() toolscache.Indexer })
		if !ok {
			return nil, fmt.Errorf("the informer of Pods has no indexer (%T)", inf)
		}
		if _, err := inf.AddEventHandler(rc.podHandler()); err != nil {
			return nil, err
		}
		rc.mu.Lock()
		rc.pods, pods = idx.GetIndexer(), idx.GetIndexer()
		rc.mu.Unlock()
		rc.log.Info("Watching Pending Pods: a rule has recoverPods", "imagePullSecret", name)
	}
	var out []*slimPod
	for _, o := range pods.List() {
		if p, ok := o.(*slimPod); ok {
			out = append(out, p)
		}
	}
	return out, nil
}

// turnOff forgets name; after the last rule with recoverPods, the Pods' informer is removed. A
// rule that still exists gets its recovery status cleared.
func (rc *recovery) turnOff(ctx context.Context, name string, ips *tcrv1.ImagePullSecret, exists bool) error {
	rc.mu.Lock()
	delete(rc.rules, name)
	stop := len(rc.rules) == 0 && rc.pods != nil
	if stop {
		rc.pods = nil
		clear(rc.acted)
	}
	rc.mu.Unlock()
	if stop {
		if err := rc.cache.RemoveInformer(ctx, &corev1.Pod{}); err != nil {
			return fmt.Errorf("stopping the informer of Pending Pods: %w", err)
		}
		rc.log.Info("Stopped watching Pods: no rule has recoverPods")
	}
	podsRecoveredCounter.DeleteLabelValues(name)
	if exists && ips.DeletionTimestamp.IsZero() && (ips.Status.PodsStuck != 0 || len(ips.Status.StuckPods) > 0) {
		return rc.patchStatus(ctx, ips, ips.Status.PodsRecovered, nil, 0)
	}
	return nil
}

// podHandler asks for the recovery pass of every rule with recoverPods when a Pending Pod
// appears, goes, or its waiting reasons change.
func (rc *recovery) podHandler() toolscache.ResourceEventHandler {
	all := func() {
		rc.mu.Lock()
		names := make([]string, 0, len(rc.rules))
		for n := range rc.rules {
			names = append(names, n)
		}
		rc.mu.Unlock()
		for _, n := range names {
			rc.queue.Add(n)
		}
	}
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(o any) {
			if p, ok := o.(*slimPod); ok && len(p.waiting) > 0 {
				all()
			}
		},
		UpdateFunc: func(o, n any) {
			op, ok1 := o.(*slimPod)
			np, ok2 := n.(*slimPod)
			if ok1 && ok2 && !slices.Equal(op.waiting, np.waiting) {
				all()
			}
		},
		DeleteFunc: func(o any) {
			if t, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
				o = t.Obj
			}
			if p, ok := o.(*slimPod); ok {
				rc.mu.Lock()
				delete(rc.acted, p.uid)
				rc.mu.Unlock()
				all()
			}
		},
	}
}

// gather gives each Pending Pod what the rule's last namespace pass found: whether the rule
// selects its namespace and ServiceAccount, and whether that ServiceAccount references the
// Secret, up to date in the namespace. waiting reports a selected Pod whose ServiceAccount does
// not reference it yet.
func (rc *recovery) gather(ips *tcrv1.ImagePullSecret, pods []*slimPod) (facts []podFacts, waiting bool) {
	for _, pod := range pods {
		if len(pod.waiting) == 0 {
			continue
		}
		f := podFacts{pod: pod}
		if res := rc.r.results.get(ips.UID, pod.namespace); res != nil && res.wantSecret {
			for _, sa := range res.sas {
				if sa.name == pod.serviceAccount {
					f.selected, f.referenced = true, sa.ok && res.secretOK
				}
			}
		}
		waiting = waiting || f.selected && !f.referenced
		facts = append(facts, f)
	}
	return facts, waiting
}

// apply evicts the Pods of p not acted on yet, at the recovery rate, and sends a PodStuck Event
// on each stuck Pod not reported yet. refused reports an eviction the API server refused with
// 429 (a PodDisruptionBudget, which it consults for Pods that are not Pending), to be tried
// again.
func (rc *recovery) apply(ctx context.Context, ips *tcrv1.ImagePullSecret, p *recoveryPlan) (evicted int64, refused bool, err error) {
	for _, pod := range p.evict {
		if !rc.firstTime(pod.uid) {
			continue
		}
		if err := rc.limiter.Wait(ctx); err != nil {
			return evicted, refused, err
		}
		eviction := &policyv1.Eviction{
			ObjectMeta:    metav1.ObjectMeta{Namespace: pod.namespace, Name: pod.name},
			DeleteOptions: &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &pod.uid}},
		}
		switch err := rc.evictions.Pods(pod.namespace).EvictV1(ctx, eviction); {
		case err == nil:
			evicted++
			podsRecoveredCounter.WithLabelValues(ips.Name).Inc()
			// The Pod as the related object: Events that differ only in their note would be one
			// Event with a series count.
			rc.r.recorder.Eventf(ips, pod.ref(), corev1.EventTypeNormal, tcrv1.ReasonPodRecovered, "Evict",
				"Evicted Pod %s, stuck pulling from %s without Secret %s, so that its %s %s recreates it with the reference",
				pod.key(), ips.Spec.Docker.Server, ips.SecretName(), pod.controller.Kind, pod.controller.Name)
			rc.log.Info("Evicted a Pod stuck without the credential", "imagePullSecret", ips.Name, "pod", pod.key())
		case apierrors.IsNotFound(err) || apierrors.IsConflict(err):
			// Gone, or another Pod of the same name: nothing to recover.
		case apierrors.IsTooManyRequests(err):
			rc.unact(pod.uid)
			refused = true
			rc.log.Info("The eviction of a stuck Pod was refused; trying again later", "pod", pod.key(), "reason", err.Error())
		default:
			rc.unact(pod.uid)
			return evicted, refused, fmt.Errorf("evicting Pod %s: %w", pod.key(), err)
		}
	}
	for _, s := range p.stuck {
		if !rc.firstTime(s.pod.uid) {
			continue
		}
		why := "it has no controller that would recreate it"
		switch {
		case s.reason == tcrv1.ReasonOwnPullSecrets:
			why = "it lists imagePullSecrets of its own, so it does not inherit its ServiceAccount's"
		case s.pod.controller != nil:
			why = fmt.Sprintf("its controller, %s %s, is not one known to recreate an evicted Pod (%s)",
				s.pod.controller.Kind, s.pod.controller.Name, strings.Join(recoverable, ", "))
		}
		rc.r.recorder.Eventf(s.pod.ref(), ips, corev1.EventTypeWarning, tcrv1.ReasonPodStuck, "Recover",
			"Pod is stuck pulling from %s without Secret %s of ImagePullSecret %s, and is left alone: %s. Recreate it to get the credential",
			ips.Spec.Docker.Server, ips.SecretName(), ips.Name, why)
	}
	return evicted, refused, nil
}

// firstTime marks uid acted on and tells whether it was not before.
func (rc *recovery) firstTime(uid types.UID) bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if _, done := rc.acted[uid]; done {
		return false
	}
	rc.acted[uid] = struct{}{}
	return true
}

func (rc *recovery) unact(uid types.UID) {
	rc.mu.Lock()
	delete(rc.acted, uid)
	rc.mu.Unlock()
}

// record writes podsRecovered, podsStuck and stuckPods when they changed.
func (rc *recovery) record(ctx context.Context, ips *tcrv1.ImagePullSecret, evicted int64, p *recoveryPlan) error {
	stuck := make([]tcrv1.StuckPod, 0, len(p.stuck))
	for _, s := range p.stuck {
		stuck = append(stuck, tcrv1.StuckPod{NamespacedName: s.pod.key(), Reason: s.reason})
	}
	count := int32(len(stuck))
	if len(stuck) > rc.r.opts.StatusListLimit {
		stuck = stuck[:rc.r.opts.StatusListLimit]
	}
	if evicted == 0 && ips.Status.PodsStuck == count && slices.Equal(ips.Status.StuckPods, stuck) {
		return nil
	}
	return rc.patchStatus(ctx, ips, ips.Status.PodsRecovered+evicted, stuck, count)
}

// patchStatus sets the recovery fields of the status with a merge patch under an optimistic
// lock, so that no eviction is counted twice or lost: on a conflict it reads the rule again from
// the API server and adds evicted to what that holds.
func (rc *recovery) patchStatus(ctx context.Context, ips *tcrv1.ImagePullSecret, recovered int64, stuck []tcrv1.StuckPod, count int32) error {
	evicted := recovered - ips.Status.PodsRecovered
	for attempt := 0; ; attempt++ {
		orig := ips.DeepCopy()
		ips.Status.PodsRecovered = orig.Status.PodsRecovered + evicted
		ips.Status.PodsStuck, ips.Status.StuckPods = count, stuck
		err := rc.r.client.Status().Patch(ctx, ips, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{}))
		if !apierrors.IsConflict(err) || attempt == maxConflictRetries {
			if err != nil {
				return fmt.Errorf("writing the recovery status of ImagePullSecret %s: %w", ips.Name, err)
			}
			return nil
		}
		ips = &tcrv1.ImagePullSecret{}
		if err := rc.r.reader.Get(ctx, types.NamespacedName{Name: orig.Name}, ips); err != nil {
			return err
		}
	}
}
