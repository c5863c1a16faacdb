package controllers

import (
	"crypto/sha256"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
)

func TestSlimTransform(t *testing.T) {
	yes := true
	ref := metav1.OwnerReference{APIVersion: "tcr.tencentcloudcr.com/v1", Kind: "ImagePullSecret", Name: "x", UID: "u", Controller: &yes}
	in := &corev1.ServiceAccount{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: "ns", Name: "default", ResourceVersion: "7", UID: "sa-uid",
			Labels:      map[string]string{"team": "a"},
			Annotations: map[string]string{"note": "kept", lastAppliedAnnotation: "{...}"},
		},
		Secrets:          []corev1.ObjectReference{{Name: "token"}},
		ImagePullSecrets: []corev1.LocalObjectReference{{Name: "other"}, {Name: "tcr.ipsx"}},
	}
	got, err := slimTransform(in)
	require.NoError(t, err)
	sa, ok := got.(*slimServiceAccount)
	require.True(t, ok, "got %T", got)
	assert.Equal(t, "ns", sa.GetNamespace())
	assert.Equal(t, "default", sa.GetName())
	assert.Equal(t, "7", sa.GetResourceVersion())
	assert.Nil(t, sa.GetLabels(), "the ServiceAccount metadata cache holds what rules read of labels")
	assert.Nil(t, sa.GetAnnotations(), "the ServiceAccount metadata cache holds what rules read of annotations")
	assert.Equal(t, []corev1.LocalObjectReference{{Name: "other"}, {Name: "tcr.ipsx"}}, sa.imagePullSecrets)
	again, err := slimTransform(sa)
	require.NoError(t, err)
	assert.Same(t, sa, again, "the transform is idempotent")

	c := sa.DeepCopyObject().(*slimServiceAccount)
	c.imagePullSecrets[0].Name = "changed"
	assert.Equal(t, "other", sa.imagePullSecrets[0].Name, "a deep copy shares no slice")

	data := []byte(`{"auths":{}}`)
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "tcr.ipsx", OwnerReferences: []metav1.OwnerReference{ref},
			Labels:      map[string]string{tcrv1.ManagedByLabel: tcrv1.ManagedByValue, tcrv1.OwnerLabel: "x", "tenant": "big"},
			Annotations: map[string]string{"tenant": "big"}},
		Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: data, "b": nil, "a": nil},
	}
	got, err = slimTransform(secret)
	require.NoError(t, err)
	s, ok := got.(*slimSecret)
	require.True(t, ok, "got %T", got)
	assert.Equal(t, sha256.Sum256(data), s.dataHash)
	assert.True(t, s.hasData)
	assert.Equal(t, []string{"a", "b"}, s.otherKeys)
	assert.Equal(t, corev1.SecretTypeDockerConfigJson, s.secretType)
	assert.Equal(t, map[string]string{tcrv1.ManagedByLabel: tcrv1.ManagedByValue, tcrv1.OwnerLabel: "x"}, s.GetLabels(),
		"only the labels the ownership rule reads are kept")
	assert.Nil(t, s.GetAnnotations())
	claimed, ok := claimedOwner(&slimSecret{slimMeta: slimMeta{
		labels:          map[string]string{tcrv1.ManagedByLabel: tcrv1.ManagedByValue, tcrv1.OwnerLabel: "x"},
		ownerReferences: []metav1.OwnerReference{ref},
	}})
	assert.True(t, ok)
	assert.Equal(t, owner{name: "x", uid: "u"}, claimed)
	sc := s.DeepCopyObject().(*slimSecret)
	sc.ownerReferences[0].Name = "y"
	assert.Equal(t, "x", s.ownerReferences[0].Name, "a deep copy shares no owner reference")
}
