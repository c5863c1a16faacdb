package controllers

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
)

// lastAppliedAnnotation is dropped from cached ServiceAccounts: rules may read annotations, but
// this one only repeats the object and can be large.
const lastAppliedAnnotation = "kubectl.kubernetes.io/last-applied-configuration"

// CacheOptions returns the manager cache configuration the reconciler needs, so that the manager
// holds only what the controller owns or reads: Secrets carrying ManagedByLabel in every
// namespace plus every Secret of the controller's own namespace (where passwordSecretRef points),
// never every Secret in the cluster; ServiceAccounts without managedFields and token Secret
// lists; Namespaces are watched metadata-only by the reconciler itself.
func CacheOptions(ownNamespace string) cache.Options {
	managed := labels.SelectorFromSet(labels.Set{tcrv1.ManagedByLabel: tcrv1.ManagedByValue})
	return cache.Options{
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}: {Namespaces: map[string]cache.Config{
				ownNamespace:        {LabelSelector: labels.Everything()},
				cache.AllNamespaces: {LabelSelector: managed},
			}},
			&corev1.ServiceAccount{}: {Transform: stripServiceAccount},
		},
	}
}

// stripServiceAccount keeps of a ServiceAccount only what rules and the reconciler read, to keep
// the cache small with tens of thousands of ServiceAccounts.
func stripServiceAccount(in any) (any, error) {
	if sa, ok := in.(*corev1.ServiceAccount); ok {
		sa.ManagedFields = nil
		sa.Secrets = nil
		if _, ok := sa.Annotations[lastAppliedAnnotation]; ok {
			delete(sa.Annotations, lastAppliedAnnotation)
		}
	}
	return in, nil
}
