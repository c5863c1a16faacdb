package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
	"github.com/tcr-assistant/tcr-assistant/engine"
)

const (
	kindSecret         = "Secret"
	kindServiceAccount = "ServiceAccount"

	// maxConflictRetries bounds the re-read-and-retry loop of a write refused with 409 Conflict.
	maxConflictRetries = 5
)

// Failure reasons reported in status.failures and in Events.
const (
	ReasonSecretNotOwned       = "SecretNotOwned"
	ReasonWriteFailed          = "WriteFailed"
	ReasonRuleEvaluationFailed = "RuleEvaluationFailed"
)

// target is one ImagePullSecret ready to be applied: its compiled rule and the Secret content.
type target struct {
	ips  *tcrv1.ImagePullSecret
	rule *engine.Rule
	data secretData
}

// nsResult is the state of one namespace for one ImagePullSecret after a sync.
type nsResult struct {
	namespace     string
	secretDesired bool
	secretOK      bool
	secretCreated metav1.Time
	sas           []saResult // the matching ServiceAccounts only
	failures      []tcrv1.TargetFailure
	foreign       bool
}

type saResult struct {
	name string
	ok   bool
}

// pairLocks serialises work on one (ImagePullSecret, namespace) pair, so that a full pass and a
// single-namespace pass never write the same objects at the same time.
type pairLocks [256]sync.Mutex

func (l *pairLocks) lock(ips, namespace string) func() {
	h := fnv.New32a()
	_, _ = h.Write([]byte(ips))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(namespace))
	m := &l[h.Sum32()%uint32(len(l))]
	m.Lock()
	return m.Unlock
}

// maxLabelValue is the longest label value Kubernetes accepts.
const maxLabelValue = 63

// OwnerLabelValue is the value of OwnerLabel on the Secrets of the ImagePullSecret name: the name
// itself, or, for names longer than a label value may be (CR names go up to 246 characters), its
// first 52 characters, a dash and 10 hex digits of its SHA-256.
func OwnerLabelValue(name string) string {
	if len(name) <= maxLabelValue {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return name[:maxLabelValue-11] + "-" + hex.EncodeToString(sum[:])[:10]
}

// ownerName returns the name of the ImagePullSecret a distributed Secret belongs to, from its
// controller reference (the label may be a hash), or "".
func ownerName(o metav1.Object) string {
	if o.GetLabels()[tcrv1.ManagedByLabel] != tcrv1.ManagedByValue || o.GetLabels()[tcrv1.OwnerLabel] == "" {
		return ""
	}
	for _, ref := range o.GetOwnerReferences() {
		if ref.Controller != nil && *ref.Controller && ref.Kind == "ImagePullSecret" && ref.APIVersion == tcrv1.GroupVersion.String() {
			return ref.Name
		}
	}
	return ""
}

func nsFacts(ns *metav1.PartialObjectMetadata) engine.Namespace {
	return engine.Namespace{Name: ns.Name, Labels: ns.Labels, Annotations: ns.Annotations}
}

func saFacts(sa *slimServiceAccount) engine.ServiceAccount {
	return engine.ServiceAccount{Name: sa.name, Namespace: sa.namespace, Labels: sa.labels, Annotations: sa.annotations}
}

// syncNamespace brings one namespace in line with one ImagePullSecret: the Secret and the
// ServiceAccount references where it matches, neither where it does not. It reads only the
// caches and writes only what differs.
func (r *Reconciler) syncNamespace(ctx context.Context, t *target, ns *metav1.PartialObjectMetadata) (nsResult, error) {
	defer r.locks.lock(t.ips.Name, ns.Name)()
	res := nsResult{namespace: ns.Name}
	if ns.DeletionTimestamp != nil {
		return res, nil // terminating: skipped, never written
	}
	secretName := t.ips.SecretName()
	match, err := t.rule.MatchNamespace(nsFacts(ns))
	if err != nil {
		res.failures = append(res.failures, tcrv1.TargetFailure{
			Kind: kindSecret, NamespacedName: ns.Name + "/" + secretName, Reason: ReasonRuleEvaluationFailed,
			Message: fmt.Sprintf("evaluating the namespace rule failed: %v", err),
		})
		return res, nil
	}
	if !match {
		return res, r.cleanNamespace(ctx, t.ips.Name, t.ips.UID, ns.Name)
	}

	res.secretDesired = true
	var errs []error
	secret, failure, err := r.ensureSecret(ctx, t, ns.Name)
	switch {
	case err != nil:
		errs = append(errs, err) // retried with backoff
		res.failures = append(res.failures, tcrv1.TargetFailure{
			Kind: kindSecret, NamespacedName: ns.Name + "/" + secretName, Reason: ReasonWriteFailed, Message: err.Error(),
		})
		r.writeFailed(t, targetKey{uid: t.ips.UID, kind: kindSecret, namespace: ns.Name, name: secretName}, err)
	case failure != nil:
		res.failures = append(res.failures, *failure)
		res.foreign = failure.Reason == ReasonSecretNotOwned
	case secret != nil:
		res.secretOK = true
		res.secretCreated = secret.creationTimestamp
	}

	for _, sa := range r.serviceAccounts(ns.Name) {
		want, err := t.rule.MatchServiceAccount(nsFacts(ns), saFacts(sa))
		if err != nil {
			res.failures = append(res.failures, tcrv1.TargetFailure{
				Kind: kindServiceAccount, NamespacedName: sa.namespace + "/" + sa.name, Reason: ReasonRuleEvaluationFailed,
				Message: fmt.Sprintf("evaluating the ServiceAccount rule failed: %v", err),
			})
			continue
		}
		if want && !res.secretOK {
			// Never point a ServiceAccount at a Secret we do not hold (or a foreign one).
			res.sas = append(res.sas, saResult{name: sa.name, ok: false})
			continue
		}
		key := targetKey{uid: t.ips.UID, kind: kindServiceAccount, namespace: sa.namespace, name: sa.name}
		changed, err := r.patchServiceAccount(ctx, sa, secretName, want)
		if err != nil {
			errs = append(errs, err)
			r.writeFailed(t, key, err)
			if want {
				res.sas = append(res.sas, saResult{name: sa.name})
				res.failures = append(res.failures, tcrv1.TargetFailure{
					Kind: kindServiceAccount, NamespacedName: sa.namespace + "/" + sa.name, Reason: ReasonWriteFailed, Message: err.Error(),
				})
			}
			continue
		}
		r.memory.resolved(key)
		if want {
			res.sas = append(res.sas, saResult{name: sa.name, ok: true})
			if changed {
				r.memory.wrote(key, now())
			}
		} else if changed {
			r.memory.forgetTarget(key)
		}
	}
	if len(errs) > 0 {
		return res, errs[0]
	}
	return res, nil
}

func now() metav1.Time { return metav1.NewTime(time.Now().Truncate(time.Second)) }

// serviceAccounts returns the ServiceAccounts of a namespace from the cache, overlaid with this
// controller's own recent writes. The objects are shared with the cache: never modify them.
func (r *Reconciler) serviceAccounts(namespace string) []*slimServiceAccount {
	cached := r.store.serviceAccountsIn(namespace)
	out := cached[:0]
	for _, sa := range cached {
		if o := r.tracker.overlay(kindServiceAccount, namespace, sa.name, sa); o != nil {
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
	if o := r.tracker.overlay(kindSecret, namespace, name, cached); o != nil {
		return o.(*slimSecret)
	}
	return nil
}

// owns reports whether s is the Secret distributed for ips (possibly by an earlier incarnation
// of an ImagePullSecret of the same name, whose Secret is then re-owned).
func owns(ips *tcrv1.ImagePullSecret, s metav1.Object) bool {
	l := s.GetLabels()
	if l[tcrv1.ManagedByLabel] != tcrv1.ManagedByValue || l[tcrv1.OwnerLabel] != OwnerLabelValue(ips.Name) {
		return false
	}
	ref := metav1.GetControllerOfNoCopy(s)
	return ref != nil && ref.Kind == "ImagePullSecret" && ref.Name == ips.Name &&
		ref.APIVersion == tcrv1.GroupVersion.String()
}

func (r *Reconciler) desiredSecret(t *target, namespace string) *corev1.Secret {
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:      t.ips.SecretName(),
			Namespace: namespace,
			Labels:    map[string]string{tcrv1.ManagedByLabel: tcrv1.ManagedByValue, tcrv1.OwnerLabel: OwnerLabelValue(t.ips.Name)},
		},
		Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: t.data.dockerConfigJSON},
	}
	s.OwnerReferences = []metav1.OwnerReference{controllerRef(t.ips)}
	return s
}

func controllerRef(ips *tcrv1.ImagePullSecret) metav1.OwnerReference {
	yes := true
	return metav1.OwnerReference{
		APIVersion: tcrv1.GroupVersion.String(), Kind: "ImagePullSecret", Name: ips.Name, UID: ips.UID,
		Controller: &yes, BlockOwnerDeletion: &yes,
	}
}

func hasControllerRef(s metav1.Object, ips *tcrv1.ImagePullSecret) bool {
	ref := metav1.GetControllerOfNoCopy(s)
	return ref != nil && ref.UID == ips.UID
}

// ensureSecret makes the Secret of t exist in namespace with the desired content. It returns the
// Secret, or a failure when a foreign Secret holds the name, or an error.
func (r *Reconciler) ensureSecret(ctx context.Context, t *target, namespace string) (*slimSecret, *tcrv1.TargetFailure, error) {
	name := t.ips.SecretName()
	key := targetKey{uid: t.ips.UID, kind: kindSecret, namespace: namespace, name: name}
	cur := r.cachedSecret(namespace, name)
	if cur == nil && r.memory.isForeign(key) {
		// A foreign Secret is not in our label-filtered cache: check it with a read, not a create.
		live, err := r.liveSecret(ctx, namespace, name)
		switch {
		case err != nil:
			return nil, nil, err
		case live == nil:
			r.memory.setForeign(key, false)
		case !owns(t.ips, live):
			return nil, r.foreignSecret(ctx, t, key), nil
		default:
			r.memory.setForeign(key, false)
			cur = live
		}
	}
	for attempt := 0; ; attempt++ {
		if cur == nil {
			s := r.desiredSecret(t, namespace)
			err := r.client.Create(ctx, s)
			if err == nil {
				cur = newSlimSecret(s)
				r.tracker.wrote(kindSecret, cur, "")
				r.memory.wrote(key, now())
				r.memory.resolved(key)
				ctrl.LoggerFrom(ctx).V(1).Info("Created Secret", "secret", namespace+"/"+name)
				return cur, nil, nil
			}
			if !apierrors.IsAlreadyExists(err) || attempt >= maxConflictRetries {
				return nil, nil, fmt.Errorf("creating Secret %s/%s: %w", namespace, name, err)
			}
			live, err := r.liveSecret(ctx, namespace, name)
			if err != nil {
				return nil, nil, err
			}
			if live != nil && !owns(t.ips, live) {
				r.memory.setForeign(key, true)
				return nil, r.foreignSecret(ctx, t, key), nil
			}
			cur = live
			continue
		}
		if !owns(t.ips, cur) {
			return nil, r.foreignSecret(ctx, t, key), nil
		}
		if cur.secretType != corev1.SecretTypeDockerConfigJson {
			// The type is immutable: replace the Secret.
			switch err := r.client.Delete(ctx, secretRef(cur), client.Preconditions{UID: &cur.uid}); {
			case err == nil:
				r.tracker.deleted(kindSecret, cur)
			case !apierrors.IsNotFound(err):
				return nil, nil, fmt.Errorf("deleting Secret %s/%s of the wrong type: %w", namespace, name, err)
			}
			cur = nil
			continue
		}
		if t.data.matches(cur) && hasControllerRef(cur, t.ips) {
			r.memory.resolved(key)
			return cur, nil, nil
		}
		patched, err := r.patchSecret(ctx, t, cur)
		if err == nil {
			base := cur.resourceVersion
			cur = newSlimSecret(patched)
			r.tracker.wrote(kindSecret, cur, base)
			r.memory.wrote(key, now())
			r.memory.resolved(key)
			ctrl.LoggerFrom(ctx).V(1).Info("Updated Secret", "secret", namespace+"/"+name)
			return cur, nil, nil
		}
		if !(apierrors.IsConflict(err) || apierrors.IsNotFound(err)) || attempt >= maxConflictRetries {
			return nil, nil, fmt.Errorf("updating Secret %s/%s: %w", namespace, name, err)
		}
		if cur, err = r.liveSecret(ctx, namespace, name); err != nil {
			return nil, nil, err
		}
	}
}

// liveSecret reads namespace/name from the API server, or returns nil if it does not exist.
func (r *Reconciler) liveSecret(ctx context.Context, namespace, name string) (*slimSecret, error) {
	live := &corev1.Secret{}
	if err := r.reader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, live); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("reading Secret %s/%s: %w", namespace, name, err)
	}
	return newSlimSecret(live), nil
}

// patchSecret writes what differs of the desired data and controller reference over cur, with a
// merge patch guarded by cur's resourceVersion; any other data key is removed. It returns the
// Secret as the API server stored it.
func (r *Reconciler) patchSecret(ctx context.Context, t *target, cur *slimSecret) (*corev1.Secret, error) {
	meta := map[string]any{"resourceVersion": cur.resourceVersion}
	if !hasControllerRef(cur, t.ips) {
		meta["ownerReferences"] = []metav1.OwnerReference{controllerRef(t.ips)}
	}
	p := map[string]any{"metadata": meta}
	if !t.data.matches(cur) {
		data := map[string]any{corev1.DockerConfigJsonKey: t.data.dockerConfigJSON}
		for _, k := range cur.otherKeys {
			data[k] = nil
		}
		p["data"] = data
	}
	patch, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	s := secretRef(cur)
	return s, r.client.Patch(ctx, s, client.RawPatch(types.MergePatchType, patch))
}

// secretRef is a Secret object naming s, to address requests.
func secretRef(s metav1.Object) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: s.GetNamespace(), Name: s.GetName()}}
}

// foreignSecret reports that a Secret this controller does not own holds the name, with one
// Event per occurrence.
func (r *Reconciler) foreignSecret(ctx context.Context, t *target, key targetKey) *tcrv1.TargetFailure {
	nn := key.namespace + "/" + key.name
	f := &tcrv1.TargetFailure{
		Kind: kindSecret, NamespacedName: nn, Reason: ReasonSecretNotOwned,
		Message: fmt.Sprintf("Secret %s exists and is not managed by this ImagePullSecret; it was left untouched: delete or rename it to let tcr-assistant create its own", nn),
	}
	if r.memory.report(key, ReasonSecretNotOwned) {
		r.recorder.Eventf(t.ips, nil, corev1.EventTypeWarning, ReasonSecretNotOwned, "Distribute",
			"Secret %s exists and is not managed by this ImagePullSecret; it was left untouched", nn)
		ctrl.LoggerFrom(ctx).Info("Skipped foreign Secret", "secret", nn)
	}
	return f
}

// writeFailed reports a failed write of a target with one Event per occurrence.
func (r *Reconciler) writeFailed(t *target, key targetKey, err error) {
	if r.memory.report(key, ReasonWriteFailed) {
		r.recorder.Eventf(t.ips, nil, corev1.EventTypeWarning, ReasonWriteFailed, "Distribute",
			"Writing %s %s/%s failed: %v", key.kind, key.namespace, key.name, err)
	}
}

// patchServiceAccount adds (want) or removes (!want) the reference to secretName in the
// imagePullSecrets of sa, keeping every other entry in order and never adding a duplicate. The
// list is atomic, so the write is a merge patch of the whole list guarded by resourceVersion,
// re-read and retried on conflict. sa may be shared with the cache and is not modified.
func (r *Reconciler) patchServiceAccount(ctx context.Context, sa *slimServiceAccount, secretName string, want bool) (bool, error) {
	cur := sa
	for attempt := 0; ; attempt++ {
		has := slices.ContainsFunc(cur.imagePullSecrets, func(ref corev1.LocalObjectReference) bool { return ref.Name == secretName })
		if has == want {
			return false, nil
		}
		var refs []corev1.LocalObjectReference
		if want {
			refs = append(slices.Clip(cur.imagePullSecrets), corev1.LocalObjectReference{Name: secretName})
		} else {
			refs = slices.DeleteFunc(slices.Clone(cur.imagePullSecrets), func(ref corev1.LocalObjectReference) bool { return ref.Name == secretName })
		}
		var list any = refs
		if len(refs) == 0 {
			list = nil // removes the field, as the API server omits an empty list
		}
		patch, err := json.Marshal(map[string]any{
			"metadata":         map[string]any{"resourceVersion": cur.resourceVersion},
			"imagePullSecrets": list,
		})
		if err != nil {
			return false, err
		}
		obj := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: sa.namespace, Name: sa.name}}
		err = r.client.Patch(ctx, obj, client.RawPatch(types.MergePatchType, patch))
		if err == nil {
			r.tracker.wrote(kindServiceAccount, newSlimServiceAccount(obj), cur.resourceVersion)
			verb := "Added"
			if !want {
				verb = "Removed"
			}
			ctrl.LoggerFrom(ctx).V(1).Info(verb+" image pull secret reference on ServiceAccount",
				"serviceAccount", sa.namespace+"/"+sa.name, "secret", secretName)
			return true, nil
		}
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		if !apierrors.IsConflict(err) || attempt >= maxConflictRetries {
			return false, fmt.Errorf("patching imagePullSecrets of ServiceAccount %s/%s: %w", sa.namespace, sa.name, err)
		}
		fresh := &corev1.ServiceAccount{}
		if err := r.reader.Get(ctx, types.NamespacedName{Namespace: sa.namespace, Name: sa.name}, fresh); err != nil {
			if apierrors.IsNotFound(err) {
				return false, nil
			}
			return false, fmt.Errorf("reading ServiceAccount %s/%s: %w", sa.namespace, sa.name, err)
		}
		cur = newSlimServiceAccount(fresh)
	}
}

// cleanNamespace removes, in one namespace, the Secret of the ImagePullSecret named ips (only if
// it owns it) and its reference from every ServiceAccount there.
func (r *Reconciler) cleanNamespace(ctx context.Context, ips string, uid types.UID, namespace string) error {
	secretName := tcrv1.SecretNamePrefix + ips
	if s := r.cachedSecret(namespace, secretName); s != nil && s.labels[tcrv1.ManagedByLabel] == tcrv1.ManagedByValue && s.labels[tcrv1.OwnerLabel] == OwnerLabelValue(ips) {
		if err := r.deleteSecret(ctx, s); err != nil {
			return err
		}
	}
	if uid != "" {
		r.memory.forgetTarget(targetKey{uid: uid, kind: kindSecret, namespace: namespace, name: secretName})
	}
	for _, sa := range r.serviceAccounts(namespace) {
		if _, err := r.patchServiceAccount(ctx, sa, secretName, false); err != nil {
			return err
		}
		if uid != "" {
			r.memory.forgetTarget(targetKey{uid: uid, kind: kindServiceAccount, namespace: namespace, name: sa.name})
		}
	}
	return nil
}

// deleteSecret deletes s, the version with its UID only.
func (r *Reconciler) deleteSecret(ctx context.Context, s client.Object) error {
	uid := s.GetUID()
	switch err := r.client.Delete(ctx, secretRef(s), client.Preconditions{UID: &uid}); {
	case err == nil:
		r.tracker.deleted(kindSecret, s)
		ctrl.LoggerFrom(ctx).V(1).Info("Deleted Secret", "secret", s.GetNamespace()+"/"+s.GetName())
	case !apierrors.IsNotFound(err) && !apierrors.IsConflict(err):
		return fmt.Errorf("deleting Secret %s/%s: %w", s.GetNamespace(), s.GetName(), err)
	}
	return nil
}
