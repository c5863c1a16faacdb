package controllers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
)

// apply is the second stage of a namespace pass: it makes the writes of a plan and reports what
// they left (docs/design.md, "Minimal writes"). Every write is one request of only what differs:
// a create, a delete preconditioned on the UID, or a JSON merge patch guarded by the
// resourceVersion the plan was made over. Each is recorded in the expectations store.

// maxConflictRetries bounds the re-read-and-retry loop of a write refused with 409 Conflict.
const maxConflictRetries = 5

// errReplan is returned by applySecret when the Secret was not as the plan believed (a create
// met an existing Secret, a patch met a newer version): the pass plans again over live.
type errReplan struct{ live *slimSecret }

func (errReplan) Error() string { return "the Secret changed since the plan; planning again" }

// nsResult is what a pass left in one namespace for one ImagePullSecret: what record keeps and
// the status adds up.
type nsResult struct {
	wantSecret bool
	secretOK   bool
	// secretAt is when this controller last wrote the Secret (Unix seconds), 0 when unknown;
	// secretCreated is the Secret's creation, the updatedAt of last resort.
	secretAt, secretCreated int64
	sas                     []saResult // the matching ServiceAccounts
	failures                []tcrv1.TargetFailure
	foreign                 bool
}

type saResult struct {
	name string
	ok   bool
	at   int64 // when this controller added the reference (Unix seconds), 0 when unknown
}

// apply makes the writes of p, made for the ImagePullSecret of t, at time now (Unix seconds). prev
// is the namespace's previous result, whose write times carry over where nothing is written.
func (r *Reconciler) apply(ctx context.Context, t *target, p *nsPlan, prev *nsResult, now int64) (nsResult, error) {
	res := nsResult{wantSecret: p.wantSecret, foreign: p.foreign, failures: p.failures}
	if prev != nil {
		res.secretAt = prev.secretAt
	}
	secretName := t.owner.secretName()
	created, err := r.applySecret(ctx, t, p)
	switch {
	case err != nil:
		var replan errReplan
		if errors.As(err, &replan) {
			return res, err
		}
		res.failures = append(res.failures, tcrv1.TargetFailure{
			Kind: kindSecret, NamespacedName: p.namespace + "/" + secretName, Reason: tcrv1.ReasonWriteFailed, Message: err.Error(),
		})
	case p.wantSecret && !p.foreign:
		res.secretOK = true
		if created != nil {
			res.secretCreated = created.creationTimestamp.Unix()
		}
		if p.secret != secretKeep {
			res.secretAt = now
		}
	}

	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	// done[i] says whether the edit p.refs[i] was made (or needed nothing).
	done := make([]bool, len(p.refs))
	for i, e := range p.refs {
		if e.add && !res.secretOK {
			continue // never point a ServiceAccount at a Secret we do not hold
		}
		if err := r.patchServiceAccount(ctx, e.sa, secretName, e.add); err != nil {
			errs = append(errs, err)
			res.failures = append(res.failures, tcrv1.TargetFailure{
				Kind: kindServiceAccount, NamespacedName: e.sa.namespace + "/" + e.sa.name, Reason: tcrv1.ReasonWriteFailed, Message: err.Error(),
			})
			continue
		}
		done[i] = true
	}
	res.sas = make([]saResult, 0, len(p.wantSAs))
	for _, name := range p.wantSAs {
		sr := saResult{name: name, ok: res.secretOK}
		edit := slices.IndexFunc(p.refs, func(e refEdit) bool { return e.sa.name == name })
		switch {
		case edit >= 0 && p.refs[edit].add && !done[edit]:
			sr.ok = false // the reference could not be added
		case edit >= 0 && p.refs[edit].add:
			sr.at = now
		case prev != nil:
			if i := slices.IndexFunc(prev.sas, func(s saResult) bool { return s.name == name }); i >= 0 {
				sr.at = prev.sas[i].at
			}
		}
		res.sas = append(res.sas, sr)
	}
	return res, errors.Join(errs...)
}

// applySecret makes the Secret step of p. It returns the Secret as it now is when the plan wants
// it, or errReplan.
func (r *Reconciler) applySecret(ctx context.Context, t *target, p *nsPlan) (*slimSecret, error) {
	name := t.owner.secretName()
	switch p.secret {
	case secretKeep:
		return p.current, nil
	case secretCreate:
		s := desiredSecret(t, p.namespace)
		if err := r.client.Create(ctx, s); err != nil {
			if apierrors.IsAlreadyExists(err) {
				return nil, r.replan(ctx, p.namespace, name)
			}
			return nil, fmt.Errorf("creating Secret %s/%s: %w", p.namespace, name, err)
		}
		created := newSlimSecret(s)
		r.expect.wrote(kindSecret, created, "")
		ctrl.LoggerFrom(ctx).V(1).Info("Created Secret", "secret", p.namespace+"/"+name)
		return created, nil
	case secretPatch, secretAdopt:
		adopt := p.secret == secretAdopt
		patched, err := r.patchSecret(ctx, t, p.current, adopt)
		if err != nil {
			if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
				return nil, r.replan(ctx, p.namespace, name)
			}
			verb := "updating"
			if adopt {
				verb = "adopting"
			}
			return nil, fmt.Errorf("%s Secret %s/%s: %w", verb, p.namespace, name, err)
		}
		s := newSlimSecret(patched)
		if adopt {
			// To the label-filtered cache the adopted Secret is new: its event is an add.
			r.expect.wrote(kindSecret, s, "")
			ctrl.LoggerFrom(ctx).Info("Adopted Secret left by the original TCR Assistant", "secret", p.namespace+"/"+name)
			return s, nil
		}
		r.expect.wrote(kindSecret, s, p.current.resourceVersion)
		ctrl.LoggerFrom(ctx).V(1).Info("Updated Secret", "secret", p.namespace+"/"+name)
		return s, nil
	case secretReplace, secretDelete:
		if err := r.deleteSecret(ctx, p.current); err != nil {
			return nil, err
		}
		if p.secret == secretReplace {
			return nil, errReplan{} // now absent: the next plan creates it
		}
		return nil, nil
	}
	return nil, fmt.Errorf("unknown Secret step %v", p.secret)
}

// replan reads the Secret namespace/name from the API server and returns it in an errReplan.
func (r *Reconciler) replan(ctx context.Context, namespace, name string) error {
	live, err := r.liveSecret(ctx, namespace, name)
	if err != nil {
		return err
	}
	return errReplan{live: live}
}

// desiredSecret is the Secret t distributes into namespace.
func desiredSecret(t *target, namespace string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:            t.owner.secretName(),
			Namespace:       namespace,
			Labels:          map[string]string{tcrv1.ManagedByLabel: tcrv1.ManagedByValue, tcrv1.OwnerLabel: OwnerLabelValue(t.owner.name)},
			OwnerReferences: []metav1.OwnerReference{controllerRef(t.owner)},
		},
		Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: t.data.dockerConfigJSON},
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

// patchSecret writes the desired data over cur with a merge patch guarded by cur's
// resourceVersion; any other data key is removed, and labels, annotations and every other field
// are left as they are. To adopt cur, the same patch adds our two labels and our controller
// reference (after the references cur already has: a merge patch replaces the whole list). It
// returns the Secret as the API server stored it.
func (r *Reconciler) patchSecret(ctx context.Context, t *target, cur *slimSecret, adopt bool) (*corev1.Secret, error) {
	data := map[string]any{corev1.DockerConfigJsonKey: t.data.dockerConfigJSON}
	for _, k := range cur.otherKeys {
		data[k] = nil
	}
	meta := map[string]any{"resourceVersion": cur.resourceVersion}
	if adopt {
		meta["labels"] = map[string]string{tcrv1.ManagedByLabel: tcrv1.ManagedByValue, tcrv1.OwnerLabel: OwnerLabelValue(t.owner.name)}
		meta["ownerReferences"] = append(slices.Clone(cur.ownerReferences), controllerRef(t.owner))
	}
	patch, err := json.Marshal(map[string]any{"metadata": meta, "data": data})
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

// deleteSecret deletes s, the version with its UID only. Only Secrets that passed owned come
// here.
func (r *Reconciler) deleteSecret(ctx context.Context, s client.Object) error {
	uid := s.GetUID()
	switch err := r.client.Delete(ctx, secretRef(s), client.Preconditions{UID: &uid}); {
	case err == nil:
		r.expect.deleted(kindSecret, s)
		ctrl.LoggerFrom(ctx).V(1).Info("Deleted Secret", "secret", s.GetNamespace()+"/"+s.GetName())
	case !apierrors.IsNotFound(err) && !apierrors.IsConflict(err):
		return fmt.Errorf("deleting Secret %s/%s: %w", s.GetNamespace(), s.GetName(), err)
	}
	return nil
}

// patchServiceAccount adds (add) or removes (!add) the reference to secretName in the
// imagePullSecrets of sa, keeping every other entry in its place and never adding a duplicate.
// The list is atomic, so the write is a merge patch of the whole list guarded by
// resourceVersion, re-read and retried on conflict. sa may be shared with the cache and is not
// modified. A ServiceAccount that is gone needs nothing.
func (r *Reconciler) patchServiceAccount(ctx context.Context, sa *slimServiceAccount, secretName string, add bool) error {
	cur := sa
	for attempt := 0; ; attempt++ {
		if hasRef(cur, secretName) == add {
			return nil
		}
		var refs []corev1.LocalObjectReference
		if add {
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
			return err
		}
		obj := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: sa.namespace, Name: sa.name}}
		err = r.client.Patch(ctx, obj, client.RawPatch(types.MergePatchType, patch))
		if err == nil {
			r.expect.wrote(kindServiceAccount, newSlimServiceAccount(obj), cur.resourceVersion)
			verb := "Added"
			if !add {
				verb = "Removed"
			}
			ctrl.LoggerFrom(ctx).V(1).Info(verb+" image pull secret reference on ServiceAccount",
				"serviceAccount", sa.namespace+"/"+sa.name, "secret", secretName)
			return nil
		}
		if apierrors.IsNotFound(err) {
			return nil
		}
		if !apierrors.IsConflict(err) || attempt >= maxConflictRetries {
			return fmt.Errorf("patching imagePullSecrets of ServiceAccount %s/%s: %w", sa.namespace, sa.name, err)
		}
		fresh := &corev1.ServiceAccount{}
		if err := r.reader.Get(ctx, types.NamespacedName{Namespace: sa.namespace, Name: sa.name}, fresh); err != nil {
			if apierrors.IsNotFound(err) {
				return nil
			}
			return fmt.Errorf("reading ServiceAccount %s/%s: %w", sa.namespace, sa.name, err)
		}
		cur = newSlimServiceAccount(fresh)
	}
}
