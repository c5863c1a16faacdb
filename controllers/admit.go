package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
)

// MaxAdmissionImagePullSecrets bounds the ImagePullSecrets one ServiceAccount admission
// evaluates: the webhook answers within a few seconds or not at all, and the controller adds
// whatever a review left out.
const MaxAdmissionImagePullSecrets = 256

// Admission is the admission-time half of the reconciler (docs/design.md, "References at
// admission"): for a ServiceAccount being created or updated, it answers which references the
// namespace pass would add to it, so that the mutating webhook can add them before the
// ServiceAccount is stored and no Pod created right after it misses the credential. It asks the
// same question as the controller, through the same plan, over the same caches.
type Admission struct{ r *Reconciler }

// Admission returns the admission-time half of r; it works once SetupWithManager has run, on
// every replica (the caches it reads are not leader-elected).
func (r *Reconciler) Admission() Admission { return Admission{r: r} }

// References returns the names of the Secrets to append to sa.imagePullSecrets, in the order
// of the ImagePullSecrets' names: those of every live ImagePullSecret that selects sa and that
// sa does not reference yet. A namespace whose Secret name is held by a foreign Secret gets no
// reference, as in the namespace pass. When a reference is added and the namespace has no
// Secret yet, the namespace pass is queued at once, so that the Secret is created without
// waiting for the informers.
func (a Admission) References(ctx context.Context, sa *corev1.ServiceAccount) ([]string, error) {
	r := a.r
	if r.store == nil {
		return nil, nil
	}
	ns, err := a.namespace(ctx, sa.Namespace)
	if err != nil || ns == nil {
		return nil, err
	}
	// The ServiceAccount as the cache would hold it, so that rules see what they see in a pass.
	slim := &slimServiceAccount{
		slimMeta:         slimMeta{namespace: sa.Namespace, name: sa.Name, labels: sa.Labels, annotations: withoutLastApplied(sa.Annotations)},
		imagePullSecrets: sa.ImagePullSecrets,
	}
	list := r.imagePullSecrets(ctx)
	slices.SortFunc(list, func(a, b tcrv1.ImagePullSecret) int { return strings.Compare(a.Name, b.Name) })
	var refs []string
	for i, ips := range list {
		if i == MaxAdmissionImagePullSecrets {
			break
		}
		if !ips.DeletionTimestamp.IsZero() || !controllerutil.ContainsFinalizer(&ips, tcrv1.Finalizer) {
			continue // the full pass has not taken it on, or is cleaning it up
		}
		add, missing, err := a.wants(ctx, &ips, ns, slim)
		if err != nil {
			return refs, err
		}
		if !add {
			continue
		}
		refs = append(refs, ownerOf(&ips).secretName())
		if missing {
			r.nudge(key{ImagePullSecret: ips.Name, Namespace: ns.Name})
		}
	}
	return refs, nil
}

// wants plans ns for one ImagePullSecret with sa as its only ServiceAccount, and reports
// whether the plan adds the reference to sa and whether the Secret is yet to be created.
func (a Admission) wants(ctx context.Context, ips *tcrv1.ImagePullSecret, ns *metav1.PartialObjectMetadata, sa *slimServiceAccount) (add, missing bool, err error) {
	r := a.r
	if !ips.Spec.DeliversSecrets() {
		return false, false, nil // delivery CredentialProvider: no reference
	}
	t, bad, err := r.prepare(ctx, ips)
	if err != nil || bad != nil {
		return false, false, err
	}
	// The content the last full pass decided to distribute, as the namespace pass plans with it.
	r.decided(t)
	in := planInput{owner: t.owner, rule: t.rule, data: t.data, namespace: ns, serviceAccounts: []*slimServiceAccount{sa}}
	name := t.owner.secretName()
	in.secret = r.cachedSecret(ns.Name, name)
	add = adds(plan(in))
	if !add || in.secret != nil {
		return add, false, nil
	}
	// The name is free in the label-filtered cache: the Secret is absent, or an unlabelled one
	// (foreign) holds it. Only the API server can tell, and only now does it matter.
	if in.secret, err = r.liveSecret(ctx, ns.Name, name); err != nil {
		return false, false, err
	}
	return adds(plan(in)), in.secret == nil, nil
}

// adds reports whether p adds a reference to its one ServiceAccount.
func adds(p nsPlan) bool {
	return len(p.refs) == 1 && p.refs[0].add
}

// namespace returns the Namespace name from the cache, or from the API server when the cache
// has not seen it yet: a Namespace created a moment before its first ServiceAccount (as Helm or
// a GitOps sync does) is exactly the case admission is for.
func (a Admission) namespace(ctx context.Context, name string) (*metav1.PartialObjectMetadata, error) {
	if ns := a.r.store.namespace(name); ns != nil {
		return ns, nil
	}
	ns := &metav1.PartialObjectMetadata{}
	ns.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	if err := a.r.reader.Get(ctx, types.NamespacedName{Name: name}, ns); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("reading Namespace %s: %w", name, err)
	}
	return ns, nil
}

// nudge queues the namespace pass of k when the controller runs in this replica; a standby
// replica's webhook leaves it to the leader's namespace and ServiceAccount events.
func (r *Reconciler) nudge(k key) {
	if q := r.started.Load(); q != nil {
		(*q).Add(k)
	}
}
