// Package controllers holds the ImagePullSecret reconciler: it distributes one registry
// credential as a Secret to every matching namespace, references it from every matching
// ServiceAccount, keeps both up to date, cleans up symmetrically and reports exact status.
//
// Read it in this order (docs/design.md, "Data path"): Reconcile below dispatches a queue key to
// the full pass of an ImagePullSecret or to one namespace pass; each namespace goes through
// plan (plan.go), apply (apply.go) and record (record.go); the full pass then writes the status
// that record adds up.
package controllers

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/controller/priorityqueue"
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
	// DefaultStatusDelay coalesces the status passes that a burst of namespace passes asks for
	// into at most one per delay and ImagePullSecret.
	DefaultStatusDelay = time.Second
	// foreignRecheck is how often a namespace whose Secret name is held by a foreign Secret is
	// checked again: that Secret is outside the label-filtered cache, so no event tells us.
	foreignRecheck = time.Minute
)

const (
	kindSecret          = "Secret"
	kindServiceAccount  = "ServiceAccount"
	kindImagePullSecret = "ImagePullSecret"
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
	// StatusDelay is how long a status pass waits after the namespace pass that asked for it.
	StatusDelay time.Duration
	// WebhookSecretName is the webhook's certificate Secret in Namespace, which is never a
	// password source.
	WebhookSecretName string
	// CredentialCheckInterval is how often each credential is checked against its registry
	// besides every change of it (credential.go).
	CredentialCheckInterval time.Duration
	// CredentialExpiryWarning is how long before a token's expiry CredentialExpiring turns True.
	CredentialExpiryWarning time.Duration
	// RegistryCAFile is a PEM bundle of CAs trusted for registries besides the system's.
	RegistryCAFile string
	// TCRAPIEndpoint is host[:port] of the TCR API that docker.instanceToken mints tokens with;
	// tcrapi.DefaultEndpoint when empty.
	TCRAPIEndpoint string
	// TCRAPICAFile is a PEM bundle of CAs trusted for TCRAPIEndpoint besides the system's.
	TCRAPICAFile string
	// Now is the clock of the credential check (token expiry, check interval); time.Now when nil.
	Now func() time.Time
	// PodRecoveryRate is how many stuck Pods recoverPods evicts per second, all rules together.
	PodRecoveryRate float64
}

// DefaultWebhookSecretName is the certificate Secret of the bundle's webhook.
const DefaultWebhookSecretName = "tcr-assistant-webhook-server-cert"

// key is an item of the controller's queue.
type key struct {
	// ImagePullSecret is the name of the ImagePullSecret.
	ImagePullSecret string
	// Namespace is empty for the full pass of the ImagePullSecret (finalizer, every namespace
	// when its spec or password changed, then the status); else the namespace of a namespace
	// pass, which serves an event in that namespace at once.
	Namespace string
}

// Reconciler reconciles ImagePullSecrets.
type Reconciler struct {
	client   client.Client
	reader   client.Reader
	store    *store
	own      client.Reader // Secrets of the own namespace, where passwordSecretRef points
	recorder events.EventRecorder
	rules    *engine.Cache
	saMeta   *samCache // labels and annotations of ServiceAccounts, while some rule reads them
	opts     Options
	queue    workqueue.TypedRateLimitingInterface[key]
	// started is the queue once the controller runs (on the leader), for the admission webhook,
	// which serves requests on its own goroutines from before the controller starts.
	started atomic.Pointer[workqueue.TypedRateLimitingInterface[key]]

	expect   *expectations
	results  *results
	creds    *credentials
	minter   *minter   // the source of docker.instanceToken (minted.go)
	recovery *recovery // recoverPods (recovery.go)
	locks    pairLocks
	owners   ownerLocks

	mu sync.Mutex
	// passed says, per ImagePullSecret UID, what its last complete walk over every namespace
	// was made for; a full pass walks again only when that changed.
	passed map[types.UID]passMark
	// names maps the name of each ImagePullSecret seen to its UID, to forget a deleted one.
	names map[string]types.UID
	// decisions holds, per ImagePullSecret UID, what its last full pass decided to distribute
	// (rotation.go), which its namespace passes distribute.
	decisions map[types.UID]*decision
	// servedTo holds, per ImagePullSecret UID, the ServiceAccounts ("namespace/name") the
	// credential endpoint served its credential to (provider.go).
	servedTo map[types.UID]map[string]struct{}
}

// passMark is what a walk over every namespace was made for.
type passMark struct {
	generation int64
	data       [32]byte // the hash of the Secret content
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
	if opts.WebhookSecretName == "" {
		opts.WebhookSecretName = DefaultWebhookSecretName
	}
	if opts.CredentialCheckInterval <= 0 {
		opts.CredentialCheckInterval = DefaultCredentialCheckInterval
	}
	if opts.CredentialExpiryWarning <= 0 {
		opts.CredentialExpiryWarning = DefaultCredentialExpiryWarning
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	r := &Reconciler{
		opts:    opts,
		rules:   engine.NewCache(),
		expect:  newExpectations(),
		results: newResults(),
		passed:  map[types.UID]passMark{},
		names:   map[string]types.UID{},

		decisions: map[types.UID]*decision{},
		servedTo:  map[types.UID]map[string]struct{}{},
	}
	r.minter = newMinter(r, opts)
	// A probe that ends asks for a status pass, which adds its result to the status.
	r.creds = newCredentials(opts, r.requestStatus)
	return r
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
	enqueue := func(namespace string) {
		if r.queue != nil {
			r.enqueueNamespace(context.Background(), r.queue, namespace)
		}
	}
	r.saMeta = newSAMCache(startSAMetadata(mgr, enqueue), enqueue)
	if err := mgr.Add(r.saMeta); err != nil {
		return err
	}
	core, err := typedcorev1.NewForConfigAndClient(mgr.GetConfig(), mgr.GetHTTPClient())
	if err != nil {
		return fmt.Errorf("creating the client of evictions: %w", err)
	}
	r.recovery = newRecovery(r, mgr.GetCache(), core, r.opts.PodRecoveryRate, mgr.GetLogger())
	if err := mgr.Add(r.recovery); err != nil {
		return err
	}
	log := mgr.GetLogger().WithValues("controller", "imagepullsecret")
	return builder.TypedControllerManagedBy[key](mgr).
		Named("imagepullsecret").
		Watches(&tcrv1.ImagePullSecret{}, r.imagePullSecretHandler()).
		WatchesMetadata(&corev1.Namespace{}, r.namespaceHandler()).
		Watches(&corev1.ServiceAccount{}, r.serviceAccountHandler()).
		Watches(&corev1.Secret{}, r.secretHandler()).
		WatchesRawSource(source.TypedKind(own, client.Object(&corev1.Secret{}), r.passwordSecretHandler())).
		WithOptions(controller.TypedOptions[key]{
			MaxConcurrentReconciles: r.opts.MaxConcurrentReconciles,
			// The queue is kept so that a namespace pass can ask for the status pass of its
			// ImagePullSecret.
			NewQueue: func(name string, rl workqueue.TypedRateLimiter[key]) workqueue.TypedRateLimitingInterface[key] {
				r.queue = priorityqueue.New(name, func(o *priorityqueue.Opts[key]) {
					o.RateLimiter = rl
					o.Log = log
				})
				q := r.queue
				r.started.Store(&q)
				return r.queue
			},
		}).
		WithLogConstructor(func(k *key) logr.Logger {
			if k == nil {
				return log
			}
			if k.Namespace == "" {
				return log.WithValues("imagePullSecret", k.ImagePullSecret)
			}
			return log.WithValues("imagePullSecret", k.ImagePullSecret, "namespace", k.Namespace)
		}).
		Complete(r)
}

// ownCache runs on every replica, leader or not, as the manager's own cache does, so that a
// standby replica is warm when it takes over.
type ownCache struct{ cache.Cache }

func (ownCache) NeedLeaderElection() bool { return false }

// Reconcile dispatches a key to the full pass or to a namespace pass.
func (r *Reconciler) Reconcile(ctx context.Context, k key) (ctrl.Result, error) {
	if k.Namespace == "" {
		return r.reconcileImagePullSecret(ctx, k.ImagePullSecret)
	}
	return r.reconcileNamespace(ctx, k.ImagePullSecret, k.Namespace)
}

// requestStatus asks for the status pass of the ImagePullSecret name after StatusDelay.
func (r *Reconciler) requestStatus(name string) {
	if r.queue != nil {
		r.queue.AddAfter(key{ImagePullSecret: name}, r.opts.StatusDelay)
	}
}

// target is one ImagePullSecret ready to be applied: its compiled rule and the Secret content.
type target struct {
	ips   *tcrv1.ImagePullSecret
	owner owner
	rule  *engine.Rule
	data  secretData
	login registryLogin // what data is for, which adoption compares
	cred  credential    // what the credential check probes
	// saNeeds is what rule reads of ServiceAccount metadata, which syncNamespace joins in.
	saNeeds saNeeds
}

// invalid is a user misconfiguration: it sets Ready=False and is not retried.
type invalid struct {
	reason, message string
	// retryAt, when set, is when the full pass tries again: the retry of a failed mint.
	retryAt time.Time
}

// prepare compiles the rule of ips. The Secret content comes from the rule's credential source
// (full pass) or from the decision of the last full pass (namespace pass).
func (r *Reconciler) prepare(ctx context.Context, ips *tcrv1.ImagePullSecret) (*target, *invalid, error) {
	rule, errs := r.rules.Get(ips)
	// Before anything else reads ServiceAccounts for this rule, the metadata cache keeps what
	// it reads (a rule that does not compile reads nothing).
	needs := needsOf(rule)
	if err := r.saMeta.use(ctx, ips.UID, needs); err != nil {
		return nil, nil, err
	}
	if len(errs) > 0 {
		return nil, &invalid{reason: tcrv1.ReasonInvalidSpec, message: describe(errs)}, nil
	}
	return &target{ips: ips, owner: ownerOf(ips), rule: rule, saNeeds: needs}, nil, nil
}

// source asks the credential source of t's rule for the credential to distribute now and
// renders it into t (the candidate, which rotate may hold back).
func (r *Reconciler) source(ctx context.Context, t *target) (sourced, *invalid, error) {
	src, bad, err := r.sourceOf(t.ips).credential(ctx, t.ips)
	if bad != nil || err != nil {
		return src, bad, err
	}
	data, err := renderDockerConfig(src.cred.server, src.cred.username, src.cred.password)
	if err != nil {
		return src, &invalid{reason: tcrv1.ReasonInvalidSpec, message: err.Error()}, nil
	}
	t.data, t.cred = newSecretData(data), src.cred
	t.login = registryLogin{server: src.cred.server, username: src.cred.username}
	return src, nil, nil
}

// describe renders field errors as the webhook does, except that the values of spec.docker,
// which could be credentials, are left out.
func describe(errs field.ErrorList) string {
	msgs := make([]string, 0, len(errs))
	for _, e := range errs {
		if !strings.HasPrefix(e.Field, "spec.docker") {
			msgs = append(msgs, e.Error())
			continue
		}
		msg := e.Field + ": " + e.Type.String()
		if e.Detail != "" {
			msg += ": " + e.Detail
		}
		msgs = append(msgs, msg)
	}
	return strings.Join(msgs, "; ")
}

// reconcileNamespace is the namespace pass: one namespace for one ImagePullSecret.
func (r *Reconciler) reconcileNamespace(ctx context.Context, name, namespace string) (ctrl.Result, error) {
	defer r.owners.rlock(name)()
	// Shared with the cache and only read: a namespace pass must stay cheap, and the status of a
	// large ImagePullSecret is tens of KiB.
	ips := &tcrv1.ImagePullSecret{}
	if err := r.client.Get(ctx, types.NamespacedName{Name: name}, ips, client.UnsafeDisableDeepCopy); err != nil {
		if apierrors.IsNotFound(err) {
			return ctrl.Result{}, r.cleanOrphan(ctx, name, namespace)
		}
		return ctrl.Result{}, err
	}
	if !ips.DeletionTimestamp.IsZero() || !controllerutil.ContainsFinalizer(ips, tcrv1.Finalizer) {
		return ctrl.Result{}, nil // the full pass owns the finalizer and the cleanup
	}
	t, bad, err := r.prepare(ctx, ips)
	if err != nil || bad != nil {
		return ctrl.Result{}, err // the full pass reports a bad spec
	}
	if !r.decided(t) {
		return ctrl.Result{}, nil // the first full pass since the start walks every namespace
	}
	ns := r.store.namespace(namespace)
	if ns == nil {
		return ctrl.Result{}, nil
	}
	res, changed, err := r.syncNamespace(ctx, t, ns)
	if changed {
		r.requestStatus(name)
		r.recovery.namespaceChanged(name)
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	if res.foreign {
		return ctrl.Result{RequeueAfter: foreignRecheck}, nil
	}
	return ctrl.Result{}, nil
}

// syncNamespace runs plan, apply and record for one namespace and one ImagePullSecret. It
// reports whether the namespace's result changed, which a namespace pass answers with a status
// pass (a walk writes the status when it ends).
func (r *Reconciler) syncNamespace(ctx context.Context, t *target, ns *metav1.PartialObjectMetadata) (nsResult, bool, error) {
	defer r.locks.lock(t.owner.name, ns.Name)()
	prev := r.results.get(t.owner.uid, ns.Name)
	in, err := r.gather(ctx, t.owner, ns, prev != nil && prev.foreign)
	if err != nil {
		return nsResult{}, false, err
	}
	in.rule, in.data, in.login = t.rule, t.data, t.login
	if !t.ips.Spec.DeliversSecrets() {
		in.rule = nil // delivery CredentialProvider: no copy anywhere; plan removes ours
	}
	if in.serviceAccounts, err = r.saMeta.join(t.saNeeds, in.serviceAccounts); err != nil {
		return nsResult{}, false, err
	}
	now := time.Now().Unix()
	for attempt := 0; ; attempt++ {
		p := plan(in)
		res, err := r.apply(ctx, t, &p, prev, now)
		if replan, ok := errors.AsType[errReplan](err); ok {
			if attempt < maxConflictRetries {
				in.secret = replan.live
				continue
			}
			res.failures = append(res.failures, tcrv1.TargetFailure{
				Kind: kindSecret, NamespacedName: ns.Name + "/" + t.owner.secretName(), Reason: tcrv1.ReasonWriteFailed,
				Message: "the Secret kept changing while it was written; retrying",
			})
		}
		r.record(t, ns.Name, res)
		return res, !resultEqual(prev, &res), err
	}
}

// gather reads what a plan needs about one namespace: the cached ServiceAccounts and Secret,
// overlaid with this controller's recent writes. A Secret outside the label-filtered cache can
// only be foreign, or one the original TCR Assistant left that plan adopts; it is read from the
// API server when it may matter: when the last pass found one, or when a ServiceAccount
// references the name (whose reference must not be removed if the Secret is someone else's).
// Elsewhere a create meets it (AlreadyExists) and the pass plans again over it.
func (r *Reconciler) gather(ctx context.Context, o owner, ns *metav1.PartialObjectMetadata, foreign bool) (planInput, error) {
	in := planInput{owner: o, namespace: ns, serviceAccounts: r.serviceAccounts(ns.Name)}
	name := o.secretName()
	in.secret = r.cachedSecret(ns.Name, name)
	if in.secret != nil || ns.DeletionTimestamp != nil {
		return in, nil
	}
	referenced := false
	for _, sa := range in.serviceAccounts {
		referenced = referenced || hasRef(sa, name)
	}
	if foreign || referenced {
		live, err := r.liveSecret(ctx, ns.Name, name)
		if err != nil {
			return in, err
		}
		in.secret = live
	}
	return in, nil
}

// cleanOrphan is the namespace pass of an ImagePullSecret that no longer exists: a Secret of it
// outlived its cleanup (its finalizer was removed by hand, or a pass raced with it). The Secret
// is removed when it is ours by the ownership rule for the owner its controller reference names,
// and so are the references to it.
func (r *Reconciler) cleanOrphan(ctx context.Context, name, namespace string) error {
	ns := r.store.namespace(namespace)
	if ns == nil {
		return nil
	}
	defer r.locks.lock(name, namespace)()
	o := owner{name: name}
	if s := r.cachedSecret(namespace, o.secretName()); s != nil {
		if claimed, ok := claimedOwner(s); ok && claimed.name == name {
			o = claimed
		}
	}
	in, err := r.gather(ctx, o, ns, false)
	if err != nil {
		return err
	}
	p := plan(in) // no rule: remove what is ours
	if _, err := r.apply(ctx, &target{owner: o}, &p, nil, time.Now().Unix()); err != nil {
		if _, ok := errors.AsType[errReplan](err); !ok {
			return err
		}
	}
	return nil
}

// reconcileImagePullSecret is the full pass over one ImagePullSecret: its finalizer, a walk over
// every namespace when what it distributes changed, and its status.
func (r *Reconciler) reconcileImagePullSecret(ctx context.Context, name string) (ctrl.Result, error) {
	unlock := r.owners.rlock(name)
	ips := &tcrv1.ImagePullSecret{}
	if err := r.client.Get(ctx, types.NamespacedName{Name: name}, ips); err != nil {
		unlock()
		if apierrors.IsNotFound(err) {
			r.forget(name)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	if !ips.DeletionTimestamp.IsZero() {
		unlock()
		// Cleanup waits for every namespace pass of this ImagePullSecret to end, and those that
		// start later see it deleting.
		defer r.owners.lock(name)()
		return ctrl.Result{}, r.finalize(ctx, name)
	}
	defer unlock()
	r.mu.Lock()
	r.names[ips.Name] = ips.UID
	r.mu.Unlock()
	if !controllerutil.ContainsFinalizer(ips, tcrv1.Finalizer) {
		orig := ips.DeepCopy()
		controllerutil.AddFinalizer(ips, tcrv1.Finalizer)
		if err := r.client.Patch(ctx, ips, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
			return ctrl.Result{}, fmt.Errorf("adding the finalizer to ImagePullSecret %s: %w", name, err)
		}
		r.expect.wrote(kindImagePullSecret, ips, orig.ResourceVersion)
	}
	// The status as the API server holds it: ours when the cache has not caught up with our
	// last write.
	if o, ok := r.expect.overlay(kindImagePullSecret, "", ips.Name, ips).(*tcrv1.ImagePullSecret); ok && o != nil {
		ips = o
	}
	cur := &ips.Status
	var (
		mint *mintReport
		next time.Time
	)

	valid := r.validate(ips, cur)
	t, bad, err := r.prepare(ctx, ips)
	if err != nil {
		return ctrl.Result{}, err
	}
	if r.revokeOnSwitch(ctx, ips); bad == nil {
		// The credential to distribute now (minted.go mints here, and only here).
		var src sourced
		src, bad, err = r.source(ctx, t)
		if err != nil {
			return ctrl.Result{}, err
		}
		mint = src.minted
		next = src.next
	}
	if bad != nil {
		r.mu.Lock()
		delete(r.decisions, ips.UID)
		r.mu.Unlock()
		st := cur.DeepCopy()
		st.ObservedGeneration = ips.Generation
		setValid(st, ips.Generation, valid)
		r.mintedStatus(ips, mint, cur, st)
		if c := meta.FindStatusCondition(cur.Conditions, tcrv1.ConditionReady); c == nil || c.Reason != bad.reason || c.Message != bad.message {
			r.recorder.Eventf(ips, nil, corev1.EventTypeWarning, bad.reason, "Distribute", "%s", bad.message)
		}
		setCondition(st, ips.Generation, tcrv1.ConditionReady, metav1.ConditionFalse, bad.reason, bad.message)
		_, err := r.writeStatus(ctx, ips, cur, st)
		if err == nil && !bad.retryAt.IsZero() {
			return ctrl.Result{RequeueAfter: max(bad.retryAt.Sub(r.opts.Now()), time.Second)}, nil
		}
		return ctrl.Result{}, err
	}

	// A probe of the credential, when due, runs on its own and its result comes with a later
	// status pass; a new credential waits for it (rotate). So does the recovery of stuck Pods,
	// off the write path with a status write of its own.
	r.creds.check(ctx, ips.UID, ips.Name, t.cred)
	rotation := r.rotate(ctx, t)
	r.recovery.ruleChanged(ips.Name, ips.Spec.RecoverPods && ips.Spec.DeliversSecrets())
	var passErr error
	if mark, walk := r.needsWalk(t); walk {
		if passErr = r.walk(ctx, t); passErr == nil {
			r.mu.Lock()
			r.passed[t.owner.uid] = mark
			r.mu.Unlock()
		}
	}

	st := buildStatus(ips, cur, r.results, r.opts.StatusListLimit)
	st.ServiceAccountsServed = r.servedCount(ips.UID)
	setValid(st, ips.Generation, valid)
	r.credentialStatus(ips, cur, st)
	r.mintedStatus(ips, mint, cur, st)
	r.rotationStatus(ips, rotation, cur, st)
	wrote, err := r.writeStatus(ctx, ips, cur, st)
	if err != nil {
		if apierrors.IsConflict(err) {
			// The ImagePullSecret changed meanwhile; its update event brings a new pass.
			return ctrl.Result{RequeueAfter: r.opts.StatusDelay}, nil
		}
		return ctrl.Result{}, err
	}
	setGauges(ips.Name, st.SecretsDesired, st.SecretsSuccess, st.SAsDesired, st.SAsSuccess)
	setCredentialGauges(ips.Name, st)
	if r.queue != nil {
		// The next periodic check, the token entering its warning period or expiring, or the
		// source's refresh.
		after := r.creds.next(ips.UID)
		if !next.IsZero() {
			after = min(after, max(next.Sub(r.opts.Now()), time.Second))
		}
		r.queue.AddAfter(key{ImagePullSecret: name}, after)
	}
	if wrote && meta.IsStatusConditionTrue(st.Conditions, tcrv1.ConditionReady) && !meta.IsStatusConditionTrue(cur.Conditions, tcrv1.ConditionReady) {
		r.recorder.Eventf(ips, nil, corev1.EventTypeNormal, tcrv1.ReasonDistributed, "Distribute",
			"Secret %s is in %d namespaces and referenced by %d ServiceAccounts", ips.SecretName(), st.SecretsSuccess, st.SAsSuccess)
		ctrl.LoggerFrom(ctx).Info("Distributed ImagePullSecret", "secrets", st.SecretsSuccess, "serviceAccounts", st.SAsSuccess)
	}
	return ctrl.Result{}, passErr
}

// needsWalk reports whether the full pass of t must walk every namespace: when the spec or the
// Secret content changed since the last complete walk. Otherwise the namespace passes have kept
// every result current and the status needs only adding them up.
func (r *Reconciler) needsWalk(t *target) (passMark, bool) {
	mark := passMark{generation: t.ips.Generation, data: t.data.hash}
	r.mu.Lock()
	last, ok := r.passed[t.owner.uid]
	r.mu.Unlock()
	return mark, !ok || last != mark
}

// walk runs the namespace pass of t over every cached namespace, PassParallelism at a time. A
// namespace whose name is held by a foreign Secret gets its own namespace pass again after
// foreignRecheck: that Secret is outside the label-filtered cache, so no event tells us when it
// goes.
func (r *Reconciler) walk(ctx context.Context, t *target) error {
	namespaces := r.store.allNamespaces()
	errs := make([]error, len(namespaces))
	parallel(r.opts.PassParallelism, len(namespaces), func(i int) {
		var res nsResult
		res, _, errs[i] = r.syncNamespace(ctx, t, namespaces[i])
		if res.foreign && r.queue != nil {
			r.queue.AddAfter(key{ImagePullSecret: t.owner.name, Namespace: namespaces[i].Name}, foreignRecheck)
		}
	})
	return errors.Join(errs...)
}

// validate checks the spec of ips as the admission webhook does, with one Warning Event when it
// turns invalid. The controller keeps the original's lenient reading of such a spec.
func (r *Reconciler) validate(ips *tcrv1.ImagePullSecret, cur *tcrv1.ImagePullSecretStatus) *invalid {
	errs, _ := engine.Validate(&ips.Spec)
	if len(errs) == 0 {
		return nil
	}
	bad := &invalid{reason: tcrv1.ReasonInvalidSpec, message: "the admission webhook would refuse this spec: " + describe(errs)}
	if c := meta.FindStatusCondition(cur.Conditions, tcrv1.ConditionValid); c == nil || c.Status != metav1.ConditionFalse || c.Message != bad.message {
		r.recorder.Eventf(ips, nil, corev1.EventTypeWarning, bad.reason, "Validate", "%s", bad.message)
	}
	return bad
}

func setValid(st *tcrv1.ImagePullSecretStatus, generation int64, bad *invalid) {
	if bad != nil {
		setCondition(st, generation, tcrv1.ConditionValid, metav1.ConditionFalse, bad.reason, bad.message)
		return
	}
	setCondition(st, generation, tcrv1.ConditionValid, metav1.ConditionTrue, tcrv1.ReasonValidSpec, "the admission webhook accepts this spec")
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

// finalize removes every Secret the ImagePullSecret name made and every reference to it, then
// its finalizer. It runs under the exclusive lock of name: no namespace pass runs meanwhile.
func (r *Reconciler) finalize(ctx context.Context, name string) error {
	ips := &tcrv1.ImagePullSecret{}
	if err := r.client.Get(ctx, types.NamespacedName{Name: name}, ips); err != nil {
		return client.IgnoreNotFound(err)
	}
	if !controllerutil.ContainsFinalizer(ips, tcrv1.Finalizer) {
		return nil
	}
	o := ownerOf(ips)
	secretName := o.secretName()
	// The Secrets from the API server, not the cache: a Secret created a moment ago must go too.
	// Their metadata is all the ownership rule and a delete need.
	secrets := &metav1.PartialObjectMetadataList{}
	secrets.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("SecretList"))
	if err := r.reader.List(ctx, secrets, client.MatchingLabels{
		tcrv1.ManagedByLabel: tcrv1.ManagedByValue, tcrv1.OwnerLabel: OwnerLabelValue(ips.Name),
	}); err != nil {
		return fmt.Errorf("listing the Secrets of ImagePullSecret %s: %w", ips.Name, err)
	}
	// held says, per namespace, whether the name is held by a Secret that is not ours: there,
	// references to it are someone else's and stay.
	held := map[string]bool{}
	var ours []*metav1.PartialObjectMetadata
	for i := range secrets.Items {
		s := &secrets.Items[i]
		if s.Name != secretName {
			continue
		}
		if owned(s, o) {
			ours = append(ours, s)
			held[s.Namespace] = false
		} else {
			held[s.Namespace] = true
		}
	}
	errs := make([]error, len(ours))
	parallel(r.opts.PassParallelism, len(ours), func(i int) {
		errs[i] = r.deleteSecret(ctx, ours[i])
	})
	var refs []*slimServiceAccount
	for _, sa := range r.store.allServiceAccounts() {
		if o, ok := r.expect.overlay(kindServiceAccount, sa.namespace, sa.name, sa).(*slimServiceAccount); ok && o != nil && hasRef(o, secretName) {
			refs = append(refs, o)
		}
	}
	for _, sa := range refs {
		if _, known := held[sa.namespace]; known {
			continue
		}
		// No labelled Secret of that name: an unlabelled one would be someone else's.
		live, err := r.liveSecret(ctx, sa.namespace, secretName)
		if err != nil {
			return err
		}
		held[sa.namespace] = live != nil
	}
	saErrs := make([]error, len(refs))
	parallel(r.opts.PassParallelism, len(refs), func(i int) {
		if !held[refs[i].namespace] {
			saErrs[i] = r.patchServiceAccount(ctx, refs[i], secretName, false)
		}
	})
	if err := errors.Join(append(errs, saErrs...)...); err != nil {
		return err
	}
	if err := r.revokeTokens(ctx, ips); err != nil {
		return err
	}
	orig := ips.DeepCopy()
	controllerutil.RemoveFinalizer(ips, tcrv1.Finalizer)
	if err := r.client.Patch(ctx, ips, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		return client.IgnoreNotFound(err)
	}
	ctrl.LoggerFrom(ctx).Info("Cleaned up ImagePullSecret", "secrets", len(ours), "serviceAccounts", len(refs))
	r.forget(ips.Name)
	return nil
}

// forget drops everything kept in memory about a deleted ImagePullSecret.
func (r *Reconciler) forget(name string) {
	r.mu.Lock()
	uid, ok := r.names[name]
	delete(r.names, name)
	delete(r.passed, uid)
	r.mu.Unlock()
	if ok {
		r.rules.Forget(uid)
		r.saMeta.forget(uid)
		r.results.forgetOwner(uid)
		r.creds.forget(uid)
		r.minter.forget(uid)
		r.mu.Lock()
		delete(r.decisions, uid)
		delete(r.servedTo, uid)
		r.mu.Unlock()
	}
	r.recovery.ruleChanged(name, false)
	deleteGauges(name)
}

// serviceAccounts returns the ServiceAccounts of a namespace from the cache, overlaid with this
// controller's own recent writes. The objects are shared with the cache: never modify them.
func (r *Reconciler) serviceAccounts(namespace string) []*slimServiceAccount {
	cached := r.store.serviceAccountsIn(namespace)
	out := cached[:0]
	for _, sa := range cached {
		if o := r.expect.overlay(kindServiceAccount, namespace, sa.name, sa); o != nil {
			out = append(out, o.(*slimServiceAccount))
		}
	}
	return out
}

// cachedSecret returns the labelled Secret namespace/name from the cache overlaid with this
// controller's recent writes, or nil. The object may be shared with the cache: never modify it.
func (r *Reconciler) cachedSecret(namespace, name string) *slimSecret {
	var cached client.Object
	if s := r.store.secret(namespace, name); s != nil {
		cached = s
	}
	if o := r.expect.overlay(kindSecret, namespace, name, cached); o != nil {
		return o.(*slimSecret)
	}
	return nil
}

// resultEqual reports whether two results show the same in the status.
func resultEqual(a, b *nsResult) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.wantSecret == b.wantSecret && a.secretOK == b.secretOK && a.secretAt == b.secretAt &&
		a.foreign == b.foreign && slices.Equal(a.sas, b.sas) && slices.Equal(a.failures, b.failures)
}

// pairLocks serialise work on one (ImagePullSecret, namespace) pair, so that a full pass and a
// namespace pass never write the same objects at the same time.
type pairLocks [256]sync.Mutex

func (l *pairLocks) lock(ips, namespace string) func() {
	m := &l[hash(ips, namespace)%uint32(len(l))]
	m.Lock()
	return m.Unlock
}

// ownerLocks let the passes of one ImagePullSecret run together (read locks) and its cleanup
// run alone (write lock), so that no pass writes a Secret after the cleanup listed them.
// A pass takes its read lock once, before it reads the ImagePullSecret.
type ownerLocks [64]sync.RWMutex

func (l *ownerLocks) rlock(ips string) func() {
	m := &l[hash(ips)%uint32(len(l))]
	m.RLock()
	return m.RUnlock
}

func (l *ownerLocks) lock(ips string) func() {
	m := &l[hash(ips)%uint32(len(l))]
	m.Lock()
	return m.Unlock
}

func hash(parts ...string) uint32 {
	h := fnv.New32a()
	for _, p := range parts {
		_, _ = h.Write([]byte(p))
		_, _ = h.Write([]byte{0})
	}
	return h.Sum32()
}
