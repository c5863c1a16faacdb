package controllers

import (
	"sync"
	"unique"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
)

// At 10,000 namespaces the caches hold some 50,000 objects whose metadata mostly repeats: every
// distributed Secret of one ImagePullSecret carries the same two labels and the same controller
// reference, every ServiceAccount it patched the same reference, and every Namespace the same
// few label keys. Decoding gives each object copies of its own; compact makes the cached forms share
// them (docs/design.md, "Caches"). Cached objects are never modified (see store), so sharing a
// map or a slice between them is safe; deepCopy still copies.

// shareLimit bounds each table of shared values. The values come from objects anyone with write
// access to a namespace may create; past the limit, objects keep their own copies.
const shareLimit = 1024

// shared is a bounded table of canonical values by key.
type shared[K comparable, V any] struct {
	mu sync.Mutex
	m  map[K]V
}

// get returns the canonical value of k: the first one stored, or v, which is stored when there
// is room.
func (s *shared[K, V]) get(k K, v V) V {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.m[k]; ok {
		return c
	}
	if s.m == nil {
		s.m = map[K]V{}
	}
	if len(s.m) < shareLimit {
		s.m[k] = v
	}
	return v
}

var (
	// ownerLabels are the label maps of distributed Secrets that carry exactly the managed-by
	// and owner labels, by owner label value.
	ownerLabels shared[string, map[string]string]
	// controllerRefs are the ownerReferences of distributed Secrets that hold exactly one
	// controller reference to an ImagePullSecret, by its name and UID.
	controllerRefs shared[owner, []metav1.OwnerReference]
	// pullSecretLists are the imagePullSecrets of ServiceAccounts that hold one reference, by
	// its name.
	pullSecretLists shared[string, []corev1.LocalObjectReference]
)

// compactMeta makes m share what it has in common with other cached objects.
func compactMeta(m *slimMeta) {
	m.labels = compactLabels(m.labels)
	if len(m.ownerReferences) == 1 {
		if o, ok := claimedOwner(m); ok && equalRef(m.ownerReferences[0], controllerRef(o)) {
			m.ownerReferences = controllerRefs.get(o, m.ownerReferences)
		}
	}
}

// compactLabels returns the shared map for the labels of a distributed Secret, or labels with
// interned keys.
func compactLabels(labels map[string]string) map[string]string {
	if len(labels) == 2 && labels[tcrv1.ManagedByLabel] == tcrv1.ManagedByValue {
		if v, ok := labels[tcrv1.OwnerLabel]; ok {
			return ownerLabels.get(v, labels)
		}
	}
	internKeys(labels)
	return labels
}

// internKeys replaces the keys of m by their canonical copies: label and annotation keys are
// few and repeat across objects. Assigning to an existing string key stores the new key.
func internKeys(m map[string]string) {
	for k, v := range m {
		m[unique.Make(k).Value()] = v
	}
}

// compactPullSecrets returns the shared list for a single reference.
func compactPullSecrets(refs []corev1.LocalObjectReference) []corev1.LocalObjectReference {
	if len(refs) != 1 {
		return refs
	}
	return pullSecretLists.get(refs[0].Name, refs)
}

// compactNamespace makes a cached Namespace's labels and annotations share their keys.
func compactNamespace(ns *metav1.PartialObjectMetadata) {
	internKeys(ns.Labels)
	delete(ns.Annotations, lastAppliedAnnotation)
	internKeys(ns.Annotations)
}

func equalRef(a, b metav1.OwnerReference) bool {
	return a.APIVersion == b.APIVersion && a.Kind == b.Kind && a.Name == b.Name && a.UID == b.UID &&
		boolValue(a.Controller) == boolValue(b.Controller) && boolValue(a.BlockOwnerDeletion) == boolValue(b.BlockOwnerDeletion)
}

func boolValue(b *bool) bool { return b != nil && *b }
