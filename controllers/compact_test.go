package controllers

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/stretchr/testify/assert"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
)

// distributed returns a Secret as the API server returns the Secret of o in namespace: fresh
// maps and slices of its own, as decoding gives.
func distributed(o owner, namespace string, extraLabels ...string) *corev1.Secret {
	labels := map[string]string{tcrv1.ManagedByLabel: tcrv1.ManagedByValue, tcrv1.OwnerLabel: OwnerLabelValue(o.name)}
	for _, l := range extraLabels {
		labels[l] = "x"
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: namespace, Name: o.secretName(), Labels: labels,
			OwnerReferences: []metav1.OwnerReference{controllerRef(o)},
		},
		Type: corev1.SecretTypeDockerConfigJson,
	}
}

func sameMap(a, b map[string]string) bool {
	return reflect.ValueOf(a).Pointer() == reflect.ValueOf(b).Pointer()
}

func TestCompactSharesWhatCachedObjectsRepeat(t *testing.T) {
	o := owner{name: "compact-a", uid: types.UID("uid-compact-a")}
	a, b := newSlimSecret(distributed(o, "ns-1")), newSlimSecret(distributed(o, "ns-2"))
	assert.True(t, sameMap(a.labels, b.labels), "the Secrets of one ImagePullSecret share their labels")
	assert.Same(t, &a.ownerReferences[0], &b.ownerReferences[0], "and their controller reference")
	assert.Equal(t, map[string]string{tcrv1.ManagedByLabel: tcrv1.ManagedByValue, tcrv1.OwnerLabel: "compact-a"}, b.labels)
	assert.Equal(t, []metav1.OwnerReference{controllerRef(o)}, b.ownerReferences)

	// What differs is never shared: another owner, another incarnation, another label.
	other := newSlimSecret(distributed(owner{name: "compact-b", uid: "uid-compact-b"}, "ns-1"))
	assert.False(t, sameMap(a.labels, other.labels))
	assert.Equal(t, "compact-b", other.labels[tcrv1.OwnerLabel])
	again := newSlimSecret(distributed(owner{name: "compact-a", uid: "uid-compact-a-2"}, "ns-3"))
	assert.True(t, sameMap(a.labels, again.labels), "the labels are the same")
	assert.NotSame(t, &a.ownerReferences[0], &again.ownerReferences[0], "the UID is not")
	assert.Equal(t, types.UID("uid-compact-a-2"), again.ownerReferences[0].UID)
	labelled := newSlimSecret(distributed(o, "ns-4", "team"))
	assert.True(t, sameMap(a.labels, labelled.labels), "the cache keeps only the ownership labels (slim.go)")
	assert.NotContains(t, labelled.labels, "team")
	noController := distributed(o, "ns-5")
	noController.OwnerReferences[0].Controller = nil
	loose := newSlimSecret(noController)
	assert.NotSame(t, &a.ownerReferences[0], &loose.ownerReferences[0])
	assert.Nil(t, loose.ownerReferences[0].Controller)

	// A deep copy still copies: changing it changes no other object.
	c := b.DeepCopyObject().(*slimSecret)
	c.labels[tcrv1.OwnerLabel] = "changed"
	c.ownerReferences[0].Name = "changed"
	assert.Equal(t, "compact-a", a.labels[tcrv1.OwnerLabel])
	assert.Equal(t, "compact-a", a.ownerReferences[0].Name)

	// ServiceAccounts that reference one Secret share the list; others keep theirs.
	sa := func(ns string, refs ...string) *slimServiceAccount {
		in := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default", Labels: map[string]string{"team": ns}}}
		for _, r := range refs {
			in.ImagePullSecrets = append(in.ImagePullSecrets, corev1.LocalObjectReference{Name: r})
		}
		return newSlimServiceAccount(in)
	}
	s1, s2, s3 := sa("ns-1", "tcr.ipscompact-a"), sa("ns-2", "tcr.ipscompact-a"), sa("ns-3", "mine", "tcr.ipscompact-a")
	assert.Same(t, &s1.imagePullSecrets[0], &s2.imagePullSecrets[0])
	assert.Equal(t, []corev1.LocalObjectReference{{Name: "mine"}, {Name: "tcr.ipscompact-a"}}, s3.imagePullSecrets)
	assert.Nil(t, s2.labels, "the main cache keeps no ServiceAccount labels (sametadata.go)")

	// Namespaces keep their labels and annotations, with interned keys, without last-applied.
	ns := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Name: "ns-1",
		Labels:      map[string]string{"kubernetes.io/metadata.name": "ns-1", "team": "a"},
		Annotations: map[string]string{"note": "n", lastAppliedAnnotation: "{}"},
	}}
	compactNamespace(ns)
	assert.Equal(t, map[string]string{"kubernetes.io/metadata.name": "ns-1", "team": "a"}, ns.Labels)
	assert.Equal(t, map[string]string{"note": "n"}, ns.Annotations)
}

func TestCompactTablesAreBounded(t *testing.T) {
	var table shared[string, map[string]string]
	for i := range shareLimit + 10 {
		k := fmt.Sprint(i)
		m := map[string]string{"k": k}
		assert.True(t, sameMap(m, table.get(k, m)), "a new key returns its own value")
		assert.True(t, sameMap(m, table.get(k, map[string]string{"k": k})) == (i < shareLimit),
			"entry %d is shared only while the table has room", i)
	}
	assert.Len(t, table.m, shareLimit)
}
