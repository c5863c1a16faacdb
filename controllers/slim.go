package controllers

import (
	"crypto/sha256"
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
)

// The cache keeps ServiceAccounts and distributed Secrets in the slim forms below rather than as
// the API types: at 10,000 namespaces it holds 40,000 of them, and the API types carry what the
// reconciler never reads (a ServiceAccount's token Secrets, a Secret's data, whose digest is
// enough, and the many empty fields of ObjectMeta). The informers' transforms build them, the
// reconciler reads them through store, and the tracker keeps the objects it wrote in the same
// form. They are never sent to the API server. Read Secrets and ServiceAccounts through store,
// never through the manager's cached client: it holds these forms, and a Get or List of the API
// types fails with "cache had type ..., but ... was asked for".

// slimMeta is the metadata the reconciler reads. It implements metav1.Object so that informers,
// handlers and the tracker can use it; the fields it does not keep read as empty.
type slimMeta struct {
	namespace, name, resourceVersion string
	uid                              types.UID
	creationTimestamp                metav1.Time
	deletionTimestamp                *metav1.Time
	labels, annotations              map[string]string
	ownerReferences                  []metav1.OwnerReference
}

// newSlimMeta takes over the slices of m, which must not be used afterwards. It keeps no
// annotations and only the labels named in keep: the caches hold every ServiceAccount and every
// distributed Secret in the cluster, and whoever may edit them could otherwise grow the
// manager's heap without bound (2,000 ServiceAccounts with 200 KiB of annotations each are
// 400 MB). What rules read of a ServiceAccount's labels and annotations comes from a cache of
// its own, kept only while some rule reads them (samCache, in sametadata.go).
func newSlimMeta(m *metav1.ObjectMeta, keep ...string) slimMeta {
	var kept map[string]string
	for _, k := range keep {
		if v, ok := m.Labels[k]; ok {
			if kept == nil {
				kept = make(map[string]string, len(keep))
			}
			kept[k] = v
		}
	}
	s := slimMeta{
		namespace: m.Namespace, name: m.Name, resourceVersion: m.ResourceVersion, uid: m.UID,
		creationTimestamp: m.CreationTimestamp, deletionTimestamp: m.DeletionTimestamp,
		labels: kept, ownerReferences: m.OwnerReferences,
	}
	compactMeta(&s)
	return s
}

func (m *slimMeta) GetNamespace() string                          { return m.namespace }
func (m *slimMeta) SetNamespace(v string)                         { m.namespace = v }
func (m *slimMeta) GetName() string                               { return m.name }
func (m *slimMeta) SetName(v string)                              { m.name = v }
func (m *slimMeta) GetGenerateName() string                       { return "" }
func (m *slimMeta) SetGenerateName(string)                        {}
func (m *slimMeta) GetUID() types.UID                             { return m.uid }
func (m *slimMeta) SetUID(v types.UID)                            { m.uid = v }
func (m *slimMeta) GetResourceVersion() string                    { return m.resourceVersion }
func (m *slimMeta) SetResourceVersion(v string)                   { m.resourceVersion = v }
func (m *slimMeta) GetGeneration() int64                          { return 0 }
func (m *slimMeta) SetGeneration(int64)                           {}
func (m *slimMeta) GetSelfLink() string                           { return "" }
func (m *slimMeta) SetSelfLink(string)                            {}
func (m *slimMeta) GetCreationTimestamp() metav1.Time             { return m.creationTimestamp }
func (m *slimMeta) SetCreationTimestamp(v metav1.Time)            { m.creationTimestamp = v }
func (m *slimMeta) GetDeletionTimestamp() *metav1.Time            { return m.deletionTimestamp }
func (m *slimMeta) SetDeletionTimestamp(v *metav1.Time)           { m.deletionTimestamp = v }
func (m *slimMeta) GetDeletionGracePeriodSeconds() *int64         { return nil }
func (m *slimMeta) SetDeletionGracePeriodSeconds(*int64)          {}
func (m *slimMeta) GetLabels() map[string]string                  { return m.labels }
func (m *slimMeta) SetLabels(v map[string]string)                 { m.labels = v }
func (m *slimMeta) GetAnnotations() map[string]string             { return m.annotations }
func (m *slimMeta) SetAnnotations(v map[string]string)            { m.annotations = v }
func (m *slimMeta) GetFinalizers() []string                       { return nil }
func (m *slimMeta) SetFinalizers([]string)                        {}
func (m *slimMeta) GetOwnerReferences() []metav1.OwnerReference   { return m.ownerReferences }
func (m *slimMeta) SetOwnerReferences(v []metav1.OwnerReference)  { m.ownerReferences = v }
func (m *slimMeta) GetManagedFields() []metav1.ManagedFieldsEntry { return nil }
func (m *slimMeta) SetManagedFields([]metav1.ManagedFieldsEntry)  {}
func (m *slimMeta) GetObjectKind() schema.ObjectKind              { return schema.EmptyObjectKind }

func (m *slimMeta) deepCopy() slimMeta {
	c := *m
	c.labels, c.annotations = maps.Clone(m.labels), maps.Clone(m.annotations)
	if m.deletionTimestamp != nil {
		c.deletionTimestamp = m.deletionTimestamp.DeepCopy()
	}
	if m.ownerReferences != nil {
		c.ownerReferences = make([]metav1.OwnerReference, len(m.ownerReferences))
		for i := range m.ownerReferences {
			m.ownerReferences[i].DeepCopyInto(&c.ownerReferences[i])
		}
	}
	return c
}

// slimServiceAccount is a cached ServiceAccount: its metadata and imagePullSecrets. Its labels
// and annotations are empty in the cache; a pass whose rule reads them joins them in from the
// ServiceAccount metadata cache (samCache.join).
type slimServiceAccount struct {
	slimMeta
	imagePullSecrets []corev1.LocalObjectReference
}

func newSlimServiceAccount(sa *corev1.ServiceAccount) *slimServiceAccount {
	return &slimServiceAccount{slimMeta: newSlimMeta(&sa.ObjectMeta), imagePullSecrets: compactPullSecrets(sa.ImagePullSecrets)}
}

// DeepCopyObject implements runtime.Object.
func (s *slimServiceAccount) DeepCopyObject() runtime.Object {
	return &slimServiceAccount{slimMeta: s.deepCopy(), imagePullSecrets: slices.Clone(s.imagePullSecrets)}
}

// slimSecret is a cached distributed Secret: its metadata, its type and the digest of its data.
type slimSecret struct {
	slimMeta
	secretType corev1.SecretType
	// dataHash is the SHA-256 of data[.dockerconfigjson], and hasData whether that key is there.
	dataHash [sha256.Size]byte
	hasData  bool
	// otherKeys are the names of any other keys of data, which a distributed Secret must not have.
	otherKeys []string
	// logins are the (server, username) pairs of the data of a Secret that adoption may take
	// over (see adoptionCandidate), nil for every other: the original's Secrets carry no owner.
	logins []registryLogin
}

// newSlimSecret keeps of the labels only the two the ownership rule reads (owned, claimedOwner).
func newSlimSecret(s *corev1.Secret) *slimSecret {
	out := &slimSecret{slimMeta: newSlimMeta(&s.ObjectMeta, tcrv1.ManagedByLabel, tcrv1.OwnerLabel), secretType: s.Type}
	for k, v := range s.Data {
		if k == corev1.DockerConfigJsonKey {
			out.dataHash, out.hasData = sha256.Sum256(v), true
			if adoptionCandidate(s) {
				out.logins = dockerLogins(v)
			}
		} else {
			out.otherKeys = append(out.otherKeys, k)
		}
	}
	slices.Sort(out.otherKeys)
	return out
}

// DeepCopyObject implements runtime.Object.
func (s *slimSecret) DeepCopyObject() runtime.Object {
	c := *s
	c.slimMeta = s.deepCopy()
	c.otherKeys = slices.Clone(s.otherKeys)
	c.logins = slices.Clone(s.logins)
	return &c
}

// slimTransform converts what the informers receive into the slim forms; it is idempotent, as
// informers may hand an object to their transform again.
func slimTransform(in any) (any, error) {
	switch o := in.(type) {
	case *corev1.ServiceAccount:
		return newSlimServiceAccount(o), nil
	case *corev1.Secret:
		return newSlimSecret(o), nil
	case *corev1.Pod:
		return newSlimPod(o), nil
	}
	return in, nil
}
