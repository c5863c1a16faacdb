// Package controllers holds the ImagePullSecret reconciler: it distributes one registry
// credential as a Secret to every matching namespace, references it from every matching
// ServiceAccount, keeps both up to date, cleans up symmetrically and reports exact status.
package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/source"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
	"github.com/tcr-assistant/tcr-assistant/engine"
)

// FieldManager is the field manager name of every write this controller makes.
const FieldManager = "tcr-assistant"

// Defaults of Options, chosen so that 1,000 namespaces converge in seconds.
const (
	DefaultStatusListLimit         = 100
	DefaultMaxConcurrentReconciles = 8
	DefaultPassParallelism         = 16
	// DefaultStatusDelay coalesces the status passes that a burst of Secret, ServiceAccount and
	// Namespace events asks for into at most one per delay and ImagePullSecret.
	DefaultStatusDelay = time.Second
	// statusPassShare bounds the cost of the full passes that events ask for: the next one waits
	// at least this many times as long as the last one took, so that namespace churn in a large
	// cluster keeps a full pass from running back to back (at 10,000 namespaces a pass takes
	// about half a second of CPU).
	statusPassShare = 10
	// maxStatusDelay caps that wait: status never lags events by more than this.
	maxStatusDelay = 10 * time.Second
	// foreignRecheck is how often a namespace whose Secret name is held by a foreign Secret is
	// checked again: that Secret is outside the label-filtered cache, so no event tells us.
	foreignRecheck = time.Minute
)

// Options configures the reconciler.
type Options struct {
	// Namespace is the controller's own namespace, the only one passwordSecretRef may point to.
	Namespace string
	// StatusListLimit caps status.secretUpdateSuccessful, serviceAccountsModifySuccessful and
	// failures.
	StatusListLimit int
	// MaxConcurrentReconciles is the number of workers of the controller's queue.
	MaxConcurrentReconciles int
	// PassParallelism is the number of namespaces a full pass syncs at the same time.
	PassParallelism int
	// StatusDelay is how long a status pass waits after the event that asked for it.
	StatusDelay time.Duration
}

// Reconciler reconciles ImagePullSecrets.
//
// Its queue holds two kinds of keys. {Name: cr} is a full pass over one ImagePullSecret: the
// finalizer, every namespace (from the cache, writing only what differs, in parallel) and the
// one status write. {Namespace: ns, Name: cr} is the pair (ImagePullSecret, namespace): a
// namespace or ServiceAccount that appears or changes is served by that small pass at once,
// without waiting behind a walk over every namespace; the status pass (a full pass) follows
// after statusDelay, coalesced with others and spaced by its own cost.
type Reconciler struct {
	client   client.Client
	reader   client.Reader
	store    *store
	own      client.Reader // Secrets of the own namespace, where passwordSecretRef points
	recorder events.EventRecorder
	rules    *engine.Cache
	opts     Options

	tracker *tracker
	memory  *memory
	locks   pairLocks

	mu    sync.Mutex
	names map[string]types.UID // ImagePullSecret name -> UID, to forget a deleted one
	// written remembers, per ImagePullSecret, the last status this controller wrote and the
	// resourceVersion it wrote it over, so that a pass reading a cache that has not yet seen that
	// write does not write the same status again (it would only meet a conflict).
	written map[types.UID]writtenStatus
	// passTime is how long the last full pass of each ImagePullSecret took.
	passTime map[string]time.Duration
}

// +kubebuilder:rbac:groups=tcr.tencentcloudcr.com,resources=imagepullsecrets,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=tcr.tencentcloudcr.com,resources=imagepullsecrets/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=tcr.tencentcloudcr.com,resources=imagepullsecrets/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups="",resources=serviceaccounts,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch

// New returns a Reconciler; call SetupWithManager to start it.
func New(opts Options) *Reconciler {
	if opts.StatusListLimit <= 0 {
		opts.StatusListLimit = DefaultStatusListLimit
	}
	if opts.MaxConcurrentReconciles <= 0 {
		opts.MaxConcurrentReconciles = DefaultMaxConcurrentReconciles
	}
	if opts.PassParallelism <= 0 {
		opts.PassParallelism = DefaultPassParallelism
	}
	if opts.StatusDelay <= 0 {
		opts.StatusDelay = DefaultStatusDelay
	}
	return &Reconciler{
		opts:     opts,
		rules:    engine.NewCache(),
		tracker:  newTracker(),
		memory:   newMemory(opts.StatusListLimit),
		names:    map[string]types.UID{},
		written:  map[types.UID]writtenStatus{},
		passTime: map[string]time.Duration{},
	}
}

// SetupWithManager registers the reconciler and its watches with mgr, whose cache must have been
// configured with CacheOptions.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	r.client = client.WithFieldOwner(mgr.GetClient(), FieldManager)
	r.reader = mgr.GetAPIReader()
	r.recorder = mgr.GetEventRecorder(FieldManager)
	if r.opts.Namespace == "" {
		return errors.New("the controller's own namespace must be set")
	}
	s, err := newStore(context.Background(), mgr.GetCache())
	if err != nil {
		return err
	}
	r.store = s
	// The own namespace's Secrets are not labelled; a cache of their own keeps them out of the
	// cluster-wide, label-selected Secret informer.
	own, err := cache.New(mgr.GetConfig(), cache.Options{
		HTTPClient: mgr.GetHTTPClient(), Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper(),
		DefaultNamespaces: map[string]cache.Config{r.opts.Namespace: {}},
		DefaultTransform:  cache.TransformStripManagedFields(),
	})
	if err != nil {
		return fmt.Errorf("creating the cache of namespace %s: %w", r.opts.Namespace, err)
	}
	if err := mgr.Add(ownCache{own}); err != nil {
		return err
	}
	r.own = own
	return ctrl.NewControllerManagedBy(mgr).
		Named("imagepullsecret").
		For(&tcrv1.ImagePullSecret{}).
		WatchesMetadata(&corev1.Namespace{}, r.namespaceHandler()).
		Watches(&corev1.ServiceAccount{}, r.serviceAccountHandler()).
		Watches(&corev1.Secret{}, r.secretHandler()).
		WatchesRawSource(source.Kind(own, client.Object(&corev1.Secret{}), r.passwordSecretHandler())).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.opts.MaxConcurrentReconciles}).
		Complete(r)
}

// ownCache runs on every replica, leader or not, as the manager's own cache does, so that a
// standby replica is warm when it takes over.
type ownCache struct{ cache.Cache }

func (ownCache) NeedLeaderElection() bool { return false }

// Reconcile dispatches a key to the full pass or the pair pass.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	if req.Namespace == "" {
		return r.reconcileImagePullSecret(ctx, req.Name)
	}
	return r.reconcilePair(ctx, req.Name, req.Namespace)
}

// invalid is a user misconfiguration: it sets Ready=False and is not retried.
type invalid struct{ reason, message string }

// prepare compiles the rule of ips and renders its Secret content.
func (r *Reconciler) prepare(ctx context.Context, ips *tcrv1.ImagePullSecret) (*target, *invalid, error) {
	rule, errs := r.rules.Get(ips)
	if len(errs) > 0 {
		return nil, &invalid{reason: "InvalidSpec", message: describe(errs)}, nil
	}
	password := ips.Spec.Docker.Password
	if ref := ips.Spec.Docker.PasswordSecretRef; ref != nil {
		s := &corev1.Secret{}
		if err := r.own.Get(ctx, types.NamespacedName{Namespace: r.opts.Namespace, Name: ref.Name}, s); err != nil {
			if apierrors.IsNotFound(err) {
				return nil, &invalid{reason: "PasswordSecretNotFound", message: fmt.Sprintf(
					"Secret %s/%s named by docker.passwordSecretRef does not exist", r.opts.Namespace, ref.Name)}, nil
			}
			return nil, nil, fmt.Errorf("reading Secret %s/%s named by docker.passwordSecretRef: %w", r.opts.Namespace, ref.Name, err)
		}
		v, ok := s.Data[ref.Key]
		if !ok {
			return nil, &invalid{reason: "PasswordKeyNotFound", message: fmt.Sprintf(
				"Secret %s/%s named by docker.passwordSecretRef has no key %q", r.opts.Namespace, ref.Name, ref.Key)}, nil
		}
		password = string(v)
	}
	data, err := renderDockerConfig(ips.Spec.Docker.Server, ips.Spec.Docker.Username, password)
	if err != nil {
		return nil, &invalid{reason: "InvalidSpec", message: err.Error()}, nil
	}
	return &target{ips: ips, rule: rule, data: newSecretData(data)}, nil, nil
}

// describe renders field errors without their values, which could be credentials.
func describe(errs field.ErrorList) string {
	msgs := make([]string, 0, len(errs))
	for _, e := range errs {
		msg := e.Field + ": " + e.Type.String()
		if e.Detail != "" {
			msg += ": " + e.Detail
		}
		msgs = append(msgs, msg)
	}
	return strings.Join(msgs, "; ")
}

// reconcilePair syncs one namespace for one ImagePullSecret.
func (r *Reconciler) reconcilePair(ctx context.Context, name, namespace string) (ctrl.Result, error) {
	// Shared with the cache and only read: a pair pass must stay cheap, and the status of a
	// large ImagePullSecret is tens of KiB.
	ips := &tcrv1.ImagePullSecret{}
	if err := r.client.Get(ctx, types.NamespacedName{Name: name}, ips, client.UnsafeDisableDeepCopy); err != nil {
		if apierrors.IsNotFound(err) {
			// A Secret of a deleted ImagePullSecret outlived its cleanup (a race with the
			// finalizer): remove it and its references.
			defer r.locks.lock(name, namespace)()
			return ctrl.Result{}, r.cleanNamespace(ctx, name, "", namespace)
		}
		return ctrl.Result{}, err
	}
	if !ips.DeletionTimestamp.IsZero() || !controllerutil.ContainsFinalizer(ips, tcrv1.Finalizer) {
		return ctrl.Result{}, nil // the full pass owns the finalizer and the cleanup
	}
	t, bad, err := r.prepare(ctx, ips)
	if err != nil || bad != nil {
		return ctrl.Result{}, err
	}
	ns := r.store.namespace(namespace)
	if ns == nil {
		return ctrl.Result{}, nil
	}
	res, err := r.syncNamespace(ctx, t, ns)
	if err != nil {
		return ctrl.Result{}, err
	}
	if res.foreign {
		return ctrl.Result{RequeueAfter: foreignRecheck}, nil
	}
	return ctrl.Result{}, nil
}

// reconcileImagePullSecret is the full pass over one ImagePullSecret.
func (r *Reconciler) reconcileImagePullSecret(ctx context.Context, name string) (ctrl.Result, error) {
	log := ctrl.LoggerFrom(ctx)
	ips := &tcrv1.ImagePullSecret{}
	if err := r.client.Get(ctx, types.NamespacedName{Name: name}, ips); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(name)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	r.mu.Lock()
	r.names[ips.Name] = ips.UID
	r.mu.Unlock()
	if !ips.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.finalize(ctx, ips)
	}
	if !controllerutil.ContainsFinalizer(ips, tcrv1.Finalizer) {
		orig := ips.DeepCopy()
		controllerutil.AddFinalizer(ips, tcrv1.Finalizer)
		if err := r.client.Patch(ctx, ips, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
			return ctrl.Result{}, fmt.Errorf("adding the finalizer to ImagePullSecret %s: %w", name, err)
		}
	}

	t, bad, err := r.prepare(ctx, ips)
	if err != nil {
		return ctrl.Result{}, err
	}
	if bad != nil {
		st := ips.Status.DeepCopy()
		st.ObservedGeneration = ips.Generation
		setReady(st, ips.Generation, metav1.ConditionFalse, bad.reason, bad.message)
		if r.memory.report(targetKey{uid: ips.UID, kind: "ImagePullSecret", name: ips.Name}, bad.reason) {
			r.recorder.Eventf(ips, nil, corev1.EventTypeWarning, bad.reason, "Distribute", "%s", bad.message)
		}
		return ctrl.Result{}, r.writeStatus(ctx, ips, st)
	}
	r.memory.resolved(targetKey{uid: ips.UID, kind: "ImagePullSecret", name: ips.Name})

	namespaces := r.store.allNamespaces()
	results := make([]nsResult, len(namespaces))
	errs := make([]error, len(namespaces))
	start := time.Now()
	parallel(r.opts.PassParallelism, len(namespaces), func(i int) {
		results[i], errs[i] = r.syncNamespace(ctx, t, namespaces[i])
	})
	r.mu.Lock()
	r.passTime[ips.Name] = time.Since(start)
	r.mu.Unlock()
	st, ready := r.buildStatus(ips, results, start)
	wasReady := isReady(&ips.Status)
	if err := r.writeStatus(ctx, ips, st); err != nil {
		if apierrors.IsConflict(err) {
			// The ImagePullSecret changed meanwhile; its update event brings a new pass.
			return ctrl.Result{RequeueAfter: r.statusDelay(ips.Name)}, nil
		}
		return ctrl.Result{}, err
	}
	setGauges(ips.Name, st.SecretsDesired, st.SecretsSuccess, st.SAsDesired, st.SAsSuccess)
	if ready && !wasReady {
		r.recorder.Eventf(ips, nil, corev1.EventTypeNormal, "Distributed", "Distribute",
			"Secret %s is in %d namespaces and referenced by %d ServiceAccounts", ips.SecretName(), st.SecretsSuccess, st.SAsSuccess)
		log.Info("Distributed ImagePullSecret", "imagePullSecret", ips.Name,
			"secrets", st.SecretsSuccess, "serviceAccounts", st.SAsSuccess)
	}
	if err := errors.Join(errs...); err != nil {
		return ctrl.Result{}, err
	}
	for _, res := range results {
		if res.foreign {
			return ctrl.Result{RequeueAfter: foreignRecheck}, nil
		}
	}
	return ctrl.Result{}, nil
}

// statusDelay is how long the status pass of the ImagePullSecret name waits after an event:
// StatusDelay, or longer when its last full pass was expensive (statusPassShare).
func (r *Reconciler) statusDelay(name string) time.Duration {
	r.mu.Lock()
	d := statusPassShare * r.passTime[name]
	r.mu.Unlock()
	return min(max(d, r.opts.StatusDelay), max(maxStatusDelay, r.opts.StatusDelay))
}

// parallel runs fn(0..n-1) on at most workers goroutines.
func parallel(workers, n int, fn func(int)) {
	if workers > n {
		workers = n
	}
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range next {
				fn(i)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

// writtenStatus is a status this controller wrote over the object at resourceVersion over.
type writtenStatus struct {
	over   string
	status *tcrv1.ImagePullSecretStatus
}

// writeStatus writes st as the status of ips, unless it is what the API server already holds:
// either what ips says, or, while the cache still shows the version our last write replaced,
// what we wrote then.
func (r *Reconciler) writeStatus(ctx context.Context, ips *tcrv1.ImagePullSecret, st *tcrv1.ImagePullSecretStatus) error {
	if statusEqual(&ips.Status, st) {
		return nil
	}
	r.mu.Lock()
	last, ok := r.written[ips.UID]
	r.mu.Unlock()
	if ok && last.over == ips.ResourceVersion && statusEqual(last.status, st) {
		return nil
	}
	// An update, not a merge patch: the status is entirely ours, the counters must be sent even
	// when zero, and lists that became empty must be cleared. resourceVersion guards it.
	over := ips.ResourceVersion
	ips = ips.DeepCopy()
	ips.Status = *st
	if err := r.client.Status().Update(ctx, ips); err != nil {
		return fmt.Errorf("writing the status of ImagePullSecret %s: %w", ips.Name, err)
	}
	r.mu.Lock()
	r.written[ips.UID] = writtenStatus{over: over, status: st}
	r.mu.Unlock()
	ctrl.LoggerFrom(ctx).V(1).Info("Updated status of ImagePullSecret", "imagePullSecret", ips.Name,
		"secretsDesired", st.SecretsDesired, "secretsSuccess", st.SecretsSuccess,
		"sAsDesired", st.SAsDesired, "sAsSuccess", st.SAsSuccess)
	return nil
}

// finalize removes every Secret and reference ips made, then its finalizer.
func (r *Reconciler) finalize(ctx context.Context, ips *tcrv1.ImagePullSecret) error {
	if !controllerutil.ContainsFinalizer(ips, tcrv1.Finalizer) {
		return nil
	}
	// The Secrets from the API server, not the cache: a Secret created a moment ago must go too.
	// Their metadata is all a delete needs.
	secrets := &metav1.PartialObjectMetadataList{}
	secrets.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("SecretList"))
	if err := r.reader.List(ctx, secrets, client.MatchingLabels{
		tcrv1.ManagedByLabel: tcrv1.ManagedByValue, tcrv1.OwnerLabel: OwnerLabelValue(ips.Name),
	}); err != nil {
		return fmt.Errorf("listing the Secrets of ImagePullSecret %s: %w", ips.Name, err)
	}
	errs := make([]error, len(secrets.Items))
	parallel(r.opts.PassParallelism, len(secrets.Items), func(i int) {
		errs[i] = r.deleteSecret(ctx, &secrets.Items[i])
	})
	secretName := ips.SecretName()
	var refs []*slimServiceAccount
	for _, cached := range r.store.allServiceAccounts() {
		o := r.tracker.overlay(kindServiceAccount, cached.namespace, cached.name, cached)
		if sa, ok := o.(*slimServiceAccount); ok && sa != nil && slices.ContainsFunc(sa.imagePullSecrets,
			func(ref corev1.LocalObjectReference) bool { return ref.Name == secretName }) {
			refs = append(refs, sa)
		}
	}
	saErrs := make([]error, len(refs))
	parallel(r.opts.PassParallelism, len(refs), func(i int) {
		_, saErrs[i] = r.patchServiceAccount(ctx, refs[i], secretName, false)
	})
	if err := errors.Join(append(errs, saErrs...)...); err != nil {
		return err
	}
	orig := ips.DeepCopy()
	controllerutil.RemoveFinalizer(ips, tcrv1.Finalizer)
	if err := r.client.Patch(ctx, ips, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		return client.IgnoreNotFound(err)
	}
	ctrl.LoggerFrom(ctx).Info("Cleaned up ImagePullSecret", "imagePullSecret", ips.Name,
		"secrets", len(secrets.Items), "serviceAccounts", len(refs))
	r.forget(ips.Name)
	return nil
}

// forget drops everything kept in memory about a deleted ImagePullSecret.
func (r *Reconciler) forget(name string) {
	r.mu.Lock()
	uid, ok := r.names[name]
	delete(r.names, name)
	delete(r.written, uid)
	delete(r.passTime, name)
	r.mu.Unlock()
	if ok {
		r.rules.Forget(uid)
		r.memory.forgetCR(uid)
	}
	deleteGauges(name)
}
