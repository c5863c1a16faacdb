package controllers

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
)

// The preview runs plan; these tests cover what it adds: the mapping of plan steps to actions,
// an unknown password, a terminating namespace, an ImagePullSecret being deleted. The cases
// against a real cluster are in cmd/kubectl-ips.

func previewIPS(deleted bool) *tcrv1.ImagePullSecret {
	ips := &tcrv1.ImagePullSecret{
		ObjectMeta: metav1.ObjectMeta{Name: "x"},
		Spec: tcrv1.ImagePullSecretSpec{Namespaces: "ns", ServiceAccounts: "a",
			Docker: tcrv1.DockerCredential{Server: "r.example.com", Username: "u", Password: "p"}},
	}
	if deleted {
		now := metav1.NewTime(time.Unix(100, 0))
		ips.DeletionTimestamp = &now
	}
	return ips
}

// previewSecret is the Secret tcr.ipsx in ns, ours (uid-x) with the data of password "p".
func previewSecret(t *testing.T, edit func(*corev1.Secret)) *corev1.Secret {
	t.Helper()
	data, err := renderDockerConfig("r.example.com", "u", "p")
	require.NoError(t, err)
	s := desiredSecret(&target{owner: owner{name: "x", uid: "uid-x"}, data: newSecretData(data)}, "ns")
	if edit != nil {
		edit(s)
	}
	return s
}

func TestPreviewTarget(t *testing.T) {
	known, other := "p", "another password"
	ns := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Name: "ns"}}
	terminating := ns.DeepCopy()
	terminating.DeletionTimestamp = &metav1.Time{Time: time.Unix(100, 0)}
	sas := func() []*corev1.ServiceAccount {
		return []*corev1.ServiceAccount{
			{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "b"}, ImagePullSecrets: []corev1.LocalObjectReference{{Name: "tcr.ipsx"}}},
			{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "a"}},
		}
	}
	tests := map[string]struct {
		deleted  bool
		uid      types.UID
		password *string
		ns       *metav1.PartialObjectMetadata
		secret   *corev1.Secret
		want     NamespacePreview
	}{
		"no Secret yet": {
			uid: "uid-x", password: &known, ns: ns,
			want: NamespacePreview{Namespace: "ns", Selected: true, Secret: SecretCreate, ServiceAccounts: []string{"a"}, AddReferences: []string{"a"}, RemoveReferences: []string{"b"}},
		},
		"ours and up to date": {
			uid: "uid-x", password: &known, ns: ns, secret: previewSecret(t, nil),
			want: NamespacePreview{Namespace: "ns", Selected: true, Secret: SecretKeep, ServiceAccounts: []string{"a"}, AddReferences: []string{"a"}, RemoveReferences: []string{"b"}},
		},
		"ours with another password": {
			uid: "uid-x", password: &other, ns: ns, secret: previewSecret(t, nil),
			want: NamespacePreview{Namespace: "ns", Selected: true, Secret: SecretUpdate, ServiceAccounts: []string{"a"}, AddReferences: []string{"a"}, RemoveReferences: []string{"b"}},
		},
		"ours, password unknown": {
			uid: "uid-x", ns: ns, secret: previewSecret(t, nil),
			want: NamespacePreview{Namespace: "ns", Selected: true, Secret: SecretUnknown, ServiceAccounts: []string{"a"}, AddReferences: []string{"a"}, RemoveReferences: []string{"b"}},
		},
		"ours of another type, password unknown: replaced whatever the password": {
			uid: "uid-x", ns: ns, secret: previewSecret(t, func(s *corev1.Secret) { s.Type = corev1.SecretTypeOpaque }),
			want: NamespacePreview{Namespace: "ns", Selected: true, Secret: SecretReplace, ServiceAccounts: []string{"a"}, AddReferences: []string{"a"}, RemoveReferences: []string{"b"}},
		},
		"a new ImagePullSecret (no UID): the Secret of the name is foreign": {
			password: &known, ns: ns, secret: previewSecret(t, nil),
			want: NamespacePreview{Namespace: "ns", Selected: true, Secret: SecretForeign, ServiceAccounts: []string{"a"},
				Failures: []tcrv1.TargetFailure{{Kind: kindSecret, NamespacedName: "ns/tcr.ipsx", Reason: tcrv1.ReasonSecretNotOwned,
					Message: "Secret ns/tcr.ipsx exists and is not managed by this ImagePullSecret; it was left untouched: delete or rename it to let tcr-assistant create its own"}}},
		},
		"a terminating namespace is skipped": {
			uid: "uid-x", password: &known, ns: terminating, secret: previewSecret(t, nil),
			want: NamespacePreview{Namespace: "ns", Terminating: true},
		},
		"an ImagePullSecret being deleted removes what is ours": {
			deleted: true, uid: "uid-x", password: &known, ns: ns, secret: previewSecret(t, nil),
			want: NamespacePreview{Namespace: "ns", Secret: SecretDelete, RemoveReferences: []string{"b"}},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			target, err := NewPreviewTarget(previewIPS(tc.deleted), tc.uid, tc.password)
			require.NoError(t, err)
			assert.Equal(t, "tcr.ipsx", target.SecretName())
			got := target.Namespace(tc.ns, sas(), tc.secret)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestPreviewTargetInvalidSpec(t *testing.T) {
	ips := previewIPS(false)
	ips.Spec.NamespaceExpression = "namespace.nope("
	_, err := NewPreviewTarget(ips, "", nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "spec.namespaceExpression: Invalid value")
}

// BenchmarkPreview10000Namespaces is the CPU a preview spends on a cluster of 10,000 namespaces
// of three ServiceAccounts each, once they are read.
func BenchmarkPreview10000Namespaces(b *testing.B) {
	ips := previewIPS(false)
	ips.Spec.Namespaces, ips.Spec.ServiceAccounts = "*", "default, deployer"
	password := "p"
	target, err := NewPreviewTarget(ips, "uid-x", &password)
	require.NoError(b, err)
	namespaces := make([]*metav1.PartialObjectMetadata, 10000)
	sas := make([][]*corev1.ServiceAccount, len(namespaces))
	for i := range namespaces {
		name := fmt.Sprintf("ns-%05d", i)
		namespaces[i] = &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"team": "t"}}}
		for _, sa := range []string{"default", "deployer", "builder"} {
			sas[i] = append(sas[i], &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: name, Name: sa}})
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		for i, ns := range namespaces {
			if p := target.Namespace(ns, sas[i], nil); p.Secret != SecretCreate {
				b.Fatalf("%s: %q", ns.Name, p.Secret)
			}
		}
	}
}

// The preview has the ServiceAccounts themselves, labels and annotations included, which the
// controller's main cache does not keep: a rule reading them selects the same ones.
func TestPreviewReadsServiceAccountMetadata(t *testing.T) {
	ips := previewIPS(false)
	ips.Spec.ServiceAccounts = "*"
	ips.Spec.ServiceAccountSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}}
	target, err := NewPreviewTarget(ips, "uid-x", nil)
	require.NoError(t, err)
	ns := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Name: "ns"}}
	got := target.Namespace(ns, []*corev1.ServiceAccount{
		{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "labelled", Labels: map[string]string{"team": "a"}}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "other", Labels: map[string]string{"team": "b"}}},
	}, nil)
	assert.Equal(t, []string{"labelled"}, got.ServiceAccounts)
	assert.Equal(t, []string{"labelled"}, got.AddReferences)
}

// Recovery runs planRecovery (its cases are the controller's); these cases cover what the
// preview adds: the facts it derives from the namespace previews, and a rule that does not
// recover.
func TestPreviewRecovery(t *testing.T) {
	stuck := func(namespace, name, sa string, controlled bool, pullSecrets ...string) PendingPod {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, UID: types.UID("uid-" + name)},
			Spec:       corev1.PodSpec{ServiceAccountName: sa, Containers: []corev1.Container{{Name: "c", Image: "r.example.com/app:1"}}},
			Status: corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{
				{Name: "c", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImagePull"}}}}},
		}
		if controlled {
			yes := true
			pod.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "rs-" + name, UID: "uid-rs", Controller: &yes}}
		}
		for _, s := range pullSecrets {
			pod.Spec.ImagePullSecrets = append(pod.Spec.ImagePullSecrets, corev1.LocalObjectReference{Name: s})
		}
		return NewPendingPod(pod)
	}
	pods := []PendingPod{
		stuck("ns", "evicted", "a", true),
		stuck("ns", "bare", "", false), // the default ServiceAccount
		stuck("ns", "own", "a", true, "mine"),
		stuck("ns", "unselected-sa", "b", true),
		stuck("foreign", "p", "a", true),
		stuck("terminating", "p", "a", true),
		stuck("unselected", "p", "a", true),
		stuck("unknown", "p", "a", true), // a namespace the preview did not read
	}
	namespaces := []NamespacePreview{
		{Namespace: "ns", Selected: true, Secret: SecretCreate, ServiceAccounts: []string{"a", "default"}},
		{Namespace: "foreign", Selected: true, Secret: SecretForeign, ServiceAccounts: []string{"a"}},
		{Namespace: "terminating", Selected: true, Terminating: true, ServiceAccounts: []string{"a"}},
		{Namespace: "unselected", Secret: SecretDelete},
	}

	ips := previewIPS(false)
	ips.Spec.RecoverPods = true
	target, err := NewPreviewTarget(ips, "uid-x", nil)
	require.NoError(t, err)
	assert.True(t, target.RecoverPods())
	assert.Equal(t, RecoveryPreview{
		Evict: []PodPreview{{Namespace: "ns", Name: "evicted", ControllerKind: "ReplicaSet", ControllerName: "rs-evicted"}},
		Stuck: []PodPreview{
			{Namespace: "ns", Name: "bare", Reason: tcrv1.ReasonBarePod},
			{Namespace: "ns", Name: "own", ControllerKind: "ReplicaSet", ControllerName: "rs-own", Reason: tcrv1.ReasonOwnPullSecrets},
		},
	}, target.Recovery(pods, namespaces))

	// Without recoverPods, or being deleted, the rule recovers nothing.
	for name, edit := range map[string]func(*tcrv1.ImagePullSecret){
		"without recoverPods": func(ips *tcrv1.ImagePullSecret) { ips.Spec.RecoverPods = false },
		"being deleted":       func(ips *tcrv1.ImagePullSecret) { ips.DeletionTimestamp = &metav1.Time{Time: time.Unix(100, 0)} },
	} {
		t.Run(name, func(t *testing.T) {
			ips := previewIPS(false)
			ips.Spec.RecoverPods = true
			edit(ips)
			target, err := NewPreviewTarget(ips, "uid-x", nil)
			require.NoError(t, err)
			assert.False(t, target.RecoverPods())
			assert.Empty(t, target.Recovery(pods, namespaces))
		})
	}
}
