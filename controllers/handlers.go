package controllers

import (
	"context"
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
)

// The handlers map watch events to queue keys: an ImagePullSecret event to its full pass; an
// event in a namespace to the namespace pass of every ImagePullSecret there, which asks for the
// status pass itself when the namespace's result changed. The echo of this controller's own
// write needs no pass (expectations.observed). Events of the initial lists are skipped: every
// ImagePullSecret gets a full pass at start anyway.

type queue = workqueue.TypedRateLimitingInterface[key]

type funcs = handler.TypedFuncs[client.Object, key]

// imagePullSecrets lists the ImagePullSecrets in the cache.
func (r *Reconciler) imagePullSecrets(ctx context.Context) []tcrv1.ImagePullSecret {
	list := &tcrv1.ImagePullSecretList{}
	if err := r.client.List(ctx, list, client.UnsafeDisableDeepCopy); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Failed to list ImagePullSecrets from the cache")
		return nil
	}
	return list.Items
}

// enqueueNamespace asks for the namespace pass of every ImagePullSecret in namespace.
func (r *Reconciler) enqueueNamespace(ctx context.Context, q queue, namespace string) {
	for _, ips := range r.imagePullSecrets(ctx) {
		q.Add(key{ImagePullSecret: ips.Name, Namespace: namespace})
	}
}

// imagePullSecretHandler asks for the full pass of an ImagePullSecret when something the pass
// reads changed: not for the echo of our own status write or finalizer patch.
func (r *Reconciler) imagePullSecretHandler() handler.TypedEventHandler[client.Object, key] {
	full := func(q queue, o client.Object) { q.Add(key{ImagePullSecret: o.GetName()}) }
	return funcs{
		CreateFunc: func(_ context.Context, e event.CreateEvent, q queue) { full(q, e.Object) },
		UpdateFunc: func(_ context.Context, e event.UpdateEvent, q queue) {
			if r.expect.observed(kindImagePullSecret, e.ObjectNew, e.ObjectOld, false) {
				return
			}
			full(q, e.ObjectNew)
		},
		DeleteFunc: func(_ context.Context, e event.DeleteEvent, q queue) {
			r.expect.observed(kindImagePullSecret, e.Object, nil, true)
			full(q, e.Object)
		},
	}
}

func (r *Reconciler) namespaceHandler() handler.TypedEventHandler[client.Object, key] {
	return funcs{
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
			r.results.forgetNamespace(e.Object.GetName())
			for _, ips := range r.imagePullSecrets(ctx) {
				r.requestStatus(ips.Name)
			}
		},
	}
}

func (r *Reconciler) serviceAccountHandler() handler.TypedEventHandler[client.Object, key] {
	return funcs{
		CreateFunc: func(ctx context.Context, e event.CreateEvent, q queue) {
			r.expect.observed(kindServiceAccount, e.Object, nil, false)
			if !e.IsInInitialList {
				r.enqueueNamespace(ctx, q, e.Object.GetNamespace())
			}
		},
		UpdateFunc: func(ctx context.Context, e event.UpdateEvent, q queue) {
			if r.expect.observed(kindServiceAccount, e.ObjectNew, e.ObjectOld, false) {
				return // the echo of our own patch
			}
			o, ok1 := e.ObjectOld.(*slimServiceAccount)
			n, ok2 := e.ObjectNew.(*slimServiceAccount)
			if !ok1 || !ok2 {
				return
			}
			// Labels and annotations are not in this cache: the ServiceAccount metadata cache
			// (sametadata.go) asks for the pass when what a rule reads of them changed.
			if !slices.Equal(o.imagePullSecrets, n.imagePullSecrets) {
				r.enqueueNamespace(ctx, q, n.namespace)
			}
		},
		DeleteFunc: func(ctx context.Context, e event.DeleteEvent, q queue) {
			r.expect.observed(kindServiceAccount, e.Object, nil, true)
			r.enqueueNamespace(ctx, q, e.Object.GetNamespace())
		},
	}
}

// secretHandler maps a distributed Secret to the namespace pass of the ImagePullSecret its
// controller reference names.
func (r *Reconciler) secretHandler() handler.TypedEventHandler[client.Object, key] {
	handle := func(q queue, s, old client.Object, gone, initial bool) {
		o, ok := claimedOwner(s)
		if !ok {
			return
		}
		echo := r.expect.observed(kindSecret, s, old, gone)
		if initial || echo || (old != nil && equality.Semantic.DeepEqual(secretContent(old), secretContent(s))) {
			return
		}
		q.Add(key{ImagePullSecret: o.name, Namespace: s.GetNamespace()})
	}
	return funcs{
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

// passwordSecretHandler maps a Secret of the own namespace to the full pass of the
// ImagePullSecrets whose passwordSecretRef names it, which rotates the password everywhere, and
// of those whose instanceToken.apiKeySecretRef names it, which mints with the new key.
func (r *Reconciler) passwordSecretHandler() handler.TypedEventHandler[client.Object, key] {
	handle := func(ctx context.Context, q queue, s, old client.Object, initial bool) {
		if initial || (old != nil && equality.Semantic.DeepEqual(secretContent(old), secretContent(s))) {
			return
		}
		for _, ips := range r.imagePullSecrets(ctx) {
			if ref := ips.Spec.Docker.PasswordSecretRef; ref != nil && ref.Name == s.GetName() {
				q.Add(key{ImagePullSecret: ips.Name})
			}
			if it := ips.Spec.Docker.InstanceToken; it != nil && it.APIKeySecretRef != nil && it.APIKeySecretRef.Name == s.GetName() {
				q.Add(key{ImagePullSecret: ips.Name}) // a new API key mints again at once
			}
		}
	}
	return funcs{
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
