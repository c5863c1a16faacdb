package controllers

import (
	"context"
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
)

type queue = workqueue.TypedRateLimitingInterface[reconcile.Request]

// imagePullSecrets lists the ImagePullSecrets in the cache; handlers map events through it.
func (r *Reconciler) imagePullSecrets(ctx context.Context) []tcrv1.ImagePullSecret {
	list := &tcrv1.ImagePullSecretList{}
	if err := r.client.List(ctx, list, client.UnsafeDisableDeepCopy); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Failed to list ImagePullSecrets from the cache")
		return nil
	}
	return list.Items
}

// enqueuePair asks for the pair pass of (name, namespace) now and the status pass of name after
// statusDelay.
func (r *Reconciler) enqueuePair(q queue, name, namespace string) {
	q.Add(reconcile.Request{NamespacedName: types.NamespacedName{Namespace: namespace, Name: name}})
	q.AddAfter(reconcile.Request{NamespacedName: types.NamespacedName{Name: name}}, r.statusDelay(name))
}

// enqueueNamespace asks for the pair pass of every ImagePullSecret with namespace. Events of the
// initial list are skipped: every ImagePullSecret gets a full pass at start anyway.
func (r *Reconciler) enqueueNamespace(ctx context.Context, q queue, namespace string) {
	for _, ips := range r.imagePullSecrets(ctx) {
		r.enqueuePair(q, ips.Name, namespace)
	}
}

func (r *Reconciler) namespaceHandler() handler.EventHandler {
	return handler.Funcs{
		CreateFunc: func(ctx context.Context, e event.CreateEvent, q queue) {
			if !e.IsInInitialList {
				r.enqueueNamespace(ctx, q, e.Object.GetName())
			}
		},
		UpdateFunc: func(ctx context.Context, e event.UpdateEvent, q queue) {
			o, n := e.ObjectOld, e.ObjectNew
			if !maps.Equal(o.GetLabels(), n.GetLabels()) || !maps.Equal(o.GetAnnotations(), n.GetAnnotations()) ||
				(o.GetDeletionTimestamp() == nil) != (n.GetDeletionTimestamp() == nil) {
				r.enqueueNamespace(ctx, q, n.GetName())
			}
		},
		DeleteFunc: func(ctx context.Context, e event.DeleteEvent, q queue) {
			for _, ips := range r.imagePullSecrets(ctx) {
				q.AddAfter(reconcile.Request{NamespacedName: types.NamespacedName{Name: ips.Name}}, r.statusDelay(ips.Name))
			}
		},
	}
}

func (r *Reconciler) serviceAccountHandler() handler.EventHandler {
	return handler.Funcs{
		CreateFunc: func(ctx context.Context, e event.CreateEvent, q queue) {
			r.tracker.observed(kindServiceAccount, e.Object, nil, false)
			if !e.IsInInitialList {
				r.enqueueNamespace(ctx, q, e.Object.GetNamespace())
			}
		},
		UpdateFunc: func(ctx context.Context, e event.UpdateEvent, q queue) {
			if r.tracker.observed(kindServiceAccount, e.ObjectNew, e.ObjectOld, false) {
				return // the echo of our own patch
			}
			o, ok1 := e.ObjectOld.(*slimServiceAccount)
			n, ok2 := e.ObjectNew.(*slimServiceAccount)
			if !ok1 || !ok2 {
				return
			}
			if !maps.Equal(o.labels, n.labels) || !maps.Equal(o.annotations, n.annotations) ||
				!slices.Equal(o.imagePullSecrets, n.imagePullSecrets) {
				r.enqueueNamespace(ctx, q, n.namespace)
			}
		},
		DeleteFunc: func(ctx context.Context, e event.DeleteEvent, q queue) {
			r.tracker.observed(kindServiceAccount, e.Object, nil, true)
			for _, ips := range r.imagePullSecrets(ctx) {
				q.AddAfter(reconcile.Request{NamespacedName: types.NamespacedName{Name: ips.Name}}, r.statusDelay(ips.Name))
			}
		},
	}
}

// secretHandler maps a distributed Secret to the pair it belongs to. The watch events of this
// controller's own writes need no pass: the tracker already expects them.
func (r *Reconciler) secretHandler() handler.EventHandler {
	handle := func(q queue, s, old client.Object, gone, initial bool) {
		owner := ownerName(s)
		if owner == "" {
			return
		}
		echo := r.tracker.observed(kindSecret, s, old, gone)
		if initial || echo || (old != nil && equality.Semantic.DeepEqual(secretContent(old), secretContent(s))) {
			return
		}
		r.enqueuePair(q, owner, s.GetNamespace())
	}
	return handler.Funcs{
		CreateFunc: func(_ context.Context, e event.CreateEvent, q queue) {
			handle(q, e.Object, nil, false, e.IsInInitialList)
		},
		UpdateFunc: func(_ context.Context, e event.UpdateEvent, q queue) {
			handle(q, e.ObjectNew, e.ObjectOld, false, false)
		},
		DeleteFunc: func(_ context.Context, e event.DeleteEvent, q queue) {
			handle(q, e.Object, nil, true, false)
		},
	}
}

// passwordSecretHandler maps a Secret of the own namespace to the ImagePullSecrets whose
// passwordSecretRef names it: a full pass, which rotates the password everywhere.
func (r *Reconciler) passwordSecretHandler() handler.EventHandler {
	handle := func(ctx context.Context, q queue, s, old client.Object, initial bool) {
		if initial || (old != nil && equality.Semantic.DeepEqual(secretContent(old), secretContent(s))) {
			return
		}
		for _, ips := range r.imagePullSecrets(ctx) {
			if ref := ips.Spec.Docker.PasswordSecretRef; ref != nil && ref.Name == s.GetName() {
				q.Add(reconcile.Request{NamespacedName: types.NamespacedName{Name: ips.Name}})
			}
		}
	}
	return handler.Funcs{
		CreateFunc: func(ctx context.Context, e event.CreateEvent, q queue) {
			handle(ctx, q, e.Object, nil, e.IsInInitialList)
		},
		UpdateFunc: func(ctx context.Context, e event.UpdateEvent, q queue) {
			handle(ctx, q, e.ObjectNew, e.ObjectOld, false)
		},
		DeleteFunc: func(ctx context.Context, e event.DeleteEvent, q queue) {
			handle(ctx, q, e.Object, nil, false)
		},
	}
}

// secretContent is what matters of a Secret for the reconciler: a change elsewhere (e.g. an
// annotation added by someone) needs no pass. Distributed Secrets come in their slim form,
// those of the own namespace as they are.
func secretContent(o client.Object) any {
	switch s := o.(type) {
	case *slimSecret:
		return struct {
			Labels    map[string]string
			Owners    any
			Type      corev1.SecretType
			Hash      [32]byte
			Has       bool
			OtherKeys []string
			Del       bool
		}{s.labels, s.ownerReferences, s.secretType, s.dataHash, s.hasData, s.otherKeys, s.deletionTimestamp != nil}
	case *corev1.Secret:
		return struct {
			Labels map[string]string
			Owners any
			Type   corev1.SecretType
			Data   map[string][]byte
			Del    bool
		}{s.Labels, s.OwnerReferences, s.Type, s.Data, s.DeletionTimestamp != nil}
	}
	return nil
}
