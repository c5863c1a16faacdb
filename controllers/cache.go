package controllers

import (
	"context"
	"fmt"
	"maps"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
)

// lastAppliedAnnotation is dropped from cached objects: rules may read annotations, but this
// one only repeats the object and can be large.
const lastAppliedAnnotation = "kubectl.kubernetes.io/last-applied-configuration"

// withoutLastApplied returns annotations without lastAppliedAnnotation; it copies them only
// when that annotation is there, so a shared map is never modified.
func withoutLastApplied(annotations map[string]string) map[string]string {
	if _, ok := annotations[lastAppliedAnnotation]; ok {
		annotations = maps.Clone(annotations)
		delete(annotations, lastAppliedAnnotation)
	}
	return annotations
}

// CacheOptions returns the manager cache configuration the reconciler needs, so that the manager
// holds only what the controller owns or reads: the Secrets carrying ManagedByLabel, never every
// Secret in the cluster, and ServiceAccounts, both in their slim forms (see slimMeta);
// Namespaces are watched metadata-only by the reconciler itself. The Secrets of the controller's
// own namespace (where passwordSecretRef points) are watched by a small cache of their own that
// SetupWithManager adds.
func CacheOptions() cache.Options {
	stripManagedFields := cache.TransformStripManagedFields()
	managed := labels.SelectorFromSet(labels.Set{tcrv1.ManagedByLabel: tcrv1.ManagedByValue})
	return cache.Options{
		DefaultTransform: func(in any) (any, error) {
			if ns, ok := in.(*metav1.PartialObjectMetadata); ok {
				compactNamespace(ns)
			}
			return stripManagedFields(in)
		},
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}:         {Label: managed, Transform: slimTransform},
			&corev1.ServiceAccount{}: {Transform: slimTransform},
			// Started only while a rule has recoverPods (recovery.go): Pending Pods, slim.
			&corev1.Pod{}: {Field: fields.OneTermEqualSelector("status.phase", string(corev1.PodPending)), Transform: slimTransform},
		},
	}
}

// store reads the informer caches in place: a full pass over 10,000 namespaces reads tens of
// thousands of objects, and reading them through the client would copy each one (and look up
// its REST mapping) only to throw the copy away. The objects are shared with the cache and must
// never be modified.
type store struct {
	namespaces      toolscache.Indexer // *metav1.PartialObjectMetadata
	serviceAccounts toolscache.Indexer // *slimServiceAccount
	secrets         toolscache.Indexer // *slimSecret carrying ManagedByLabel
}

func newStore(ctx context.Context, c cache.Cache) (*store, error) {
	ns := &metav1.PartialObjectMetadata{}
	ns.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	var s store
	for _, x := range []struct {
		obj client.Object
		to  *toolscache.Indexer
	}{{ns, &s.namespaces}, {&corev1.ServiceAccount{}, &s.serviceAccounts}, {&corev1.Secret{}, &s.secrets}} {
		inf, err := c.GetInformer(ctx, x.obj, cache.BlockUntilSynced(false))
		if err != nil {
			return nil, fmt.Errorf("getting the informer of %T: %w", x.obj, err)
		}
		idx, ok := inf.(interface{ GetIndexer() toolscache.Indexer })
		if !ok {
			return nil, fmt.Errorf("the informer of %T has no indexer (%T)", x.obj, inf)
		}
		*x.to = idx.GetIndexer()
	}
	return &s, nil
}

// namespace returns the cached Namespace name, or nil.
func (s *store) namespace(name string) *metav1.PartialObjectMetadata {
	o, ok, _ := s.namespaces.GetByKey(name)
	if !ok {
		return nil
	}
	return o.(*metav1.PartialObjectMetadata)
}

// allNamespaces returns every cached Namespace.
func (s *store) allNamespaces() []*metav1.PartialObjectMetadata {
	return typed[*metav1.PartialObjectMetadata](s.namespaces.List())
}

// serviceAccountsIn returns the cached ServiceAccounts of namespace.
func (s *store) serviceAccountsIn(namespace string) []*slimServiceAccount {
	objs, _ := s.serviceAccounts.ByIndex(toolscache.NamespaceIndex, namespace)
	return typed[*slimServiceAccount](objs)
}

// allServiceAccounts returns every cached ServiceAccount.
func (s *store) allServiceAccounts() []*slimServiceAccount {
	return typed[*slimServiceAccount](s.serviceAccounts.List())
}

// secret returns the cached labelled Secret namespace/name, or nil.
func (s *store) secret(namespace, name string) *slimSecret {
	o, ok, _ := s.secrets.GetByKey(namespace + "/" + name)
	if !ok {
		return nil
	}
	s2, _ := o.(*slimSecret)
	return s2
}

func typed[T any](objs []any) []T {
	out := make([]T, 0, len(objs))
	for _, o := range objs {
		if t, ok := o.(T); ok {
			out = append(out, t)
		}
	}
	return out
}
