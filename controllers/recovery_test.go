package controllers_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
	"github.com/tcr-assistant/tcr-assistant/controllers"
)

type podEdit func(*corev1.Pod)

// owned gives the Pod a controller reference of kind (the owner need not exist: nothing here
// garbage-collects).
func owned(kind string) podEdit {
	return func(p *corev1.Pod) {
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: kind, Name: "owner-" + p.Name,
			UID: types.UID("owner-" + p.Name), Controller: ptr.To(true)}}
	}
}

func withPullSecrets(names ...string) podEdit {
	return func(p *corev1.Pod) {
		for _, n := range names {
			p.Spec.ImagePullSecrets = append(p.Spec.ImagePullSecrets, corev1.LocalObjectReference{Name: n})
		}
	}
}

// createStuckPod creates a Pod of image and writes the status a kubelet would after failing to
// pull it: Pending, the container waiting in ErrImagePull. There is no kubelet here.
func createStuckPod(t *testing.T, namespace, name, image string, edits ...podEdit) *corev1.Pod {
	t.Helper()
	ctx := context.Background()
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}}}
	for _, e := range edits {
		e(p)
	}
	require.NoError(t, env.Client.Create(ctx, p))
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), p, client.GracePeriodSeconds(0)) })
	setWaiting(t, p, image, "ErrImagePull")
	return p
}

// setWaiting writes the Pod's status: Pending, its container waiting with reason.
func setWaiting(t *testing.T, p *corev1.Pod, image, reason string) {
	t.Helper()
	p.Status = corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Image: image,
		State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: "failed to pull: 401 Unauthorized"}}}}}
	require.NoError(t, env.Client.Status().Update(context.Background(), p))
}

func keyOf(o client.Object) types.NamespacedName {
	return types.NamespacedName{Namespace: o.GetNamespace(), Name: o.GetName()}
}

// podEvents returns the events.k8s.io Events about the Pod with reason.
func podEvents(t require.TestingT, p *corev1.Pod, reason string) []eventsv1.Event {
	list := &eventsv1.EventList{}
	require.NoError(t, env.Client.List(context.Background(), list, client.InNamespace(p.Namespace)))
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Kind == "Pod" && e.Regarding.Name == p.Name && e.Reason == reason {
			out = append(out, e)
		}
	}
	return out
}

// podsRecovered is tcr_assistant_pods_recovered_total of the ImagePullSecret name.
func podsRecovered(t require.TestingT, name string) float64 {
	families, err := metrics.Registry.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != "tcr_assistant_pods_recovered_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "imagepullsecret" && l.GetValue() == name {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestRecoverPods: with recoverPods, of the Pods stuck on the rule's registry in a namespace it
// selects, the one owned by a ReplicaSet is evicted (once, counted in the status, an Event and
// the metric), the bare one and the one with its own imagePullSecrets are reported, not
// touched; a Pod on another registry, a Pod that lists the Secret and a Pod of a ServiceAccount
// the rule does not select stay. Turning recoverPods off clears the report. (No
// PodDisruptionBudget case: the Eviction API does not consult them for Pending Pods, and a Pod
// stuck pulling is Pending.)
func TestRecoverPods(t *testing.T) {
	startManager(t)
	ctx := context.Background()
	const ns = "recover-on"
	createNamespace(t, ns, nil, "default", "builder", "other")
	ips := newIPS("recover-on", ns, "default, builder")
	ips.Spec.RecoverPods = true
	img := ips.Spec.Docker.Server + "/team/app:1"
	secret := ips.SecretName()

	// Pods stuck before the rule exists, as in a cluster where it is installed to fix them.
	evicted := createStuckPod(t, ns, "from-a-replicaset", img, owned("ReplicaSet"))
	bare := createStuckPod(t, ns, "bare", img)
	own := createStuckPod(t, ns, "own-list", img, owned("ReplicaSet"), withPullSecrets("mine"))
	stays := []*corev1.Pod{
		createStuckPod(t, ns, "other-registry", "other.tencentcloudcr.com/team/app:1", owned("ReplicaSet")),
		createStuckPod(t, ns, "lists-the-secret", img, owned("ReplicaSet"), withPullSecrets(secret)),
		createStuckPod(t, ns, "unselected-sa", img, owned("ReplicaSet"), func(p *corev1.Pod) { p.Spec.ServiceAccountName = "other" }),
	}
	createIPS(t, ips)
	eventuallyStatus(t, ips.Name, func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		assert.Equal(c, int64(1), st.PodsRecovered)
		assert.Equal(c, int32(2), st.PodsStuck)
		assert.Equal(c, []tcrv1.StuckPod{
			{NamespacedName: ns + "/bare", Reason: tcrv1.ReasonBarePod},
			{NamespacedName: ns + "/own-list", Reason: tcrv1.ReasonOwnPullSecrets},
		}, st.StuckPods)
	})
	err := env.Client.Get(ctx, keyOf(evicted), &corev1.Pod{})
	assert.True(t, apierrors.IsNotFound(err), "the ReplicaSet's Pod was not evicted: %v", err)
	for _, p := range append([]*corev1.Pod{bare, own}, stays...) {
		got := &corev1.Pod{}
		require.NoError(t, env.Client.Get(ctx, keyOf(p), got), "Pod %s", p.Name)
		assert.Nil(t, got.DeletionTimestamp, "Pod %s", p.Name)
	}
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		rec := eventsFor(c, ips.Name, tcrv1.ReasonPodRecovered)
		if assert.Len(c, rec, 1) {
			assert.Equal(c, "Evicted Pod "+ns+"/from-a-replicaset, stuck pulling from "+ips.Spec.Docker.Server+" without Secret "+secret+
				", so that its ReplicaSet owner-from-a-replicaset recreates it with the reference", rec[0].Note)
			assert.Equal(c, corev1.EventTypeNormal, rec[0].Type)
			if assert.NotNil(c, rec[0].Related) {
				assert.Equal(c, "Pod", rec[0].Related.Kind)
				assert.Equal(c, "from-a-replicaset", rec[0].Related.Name)
			}
		}
		for _, p := range []*corev1.Pod{bare, own} {
			stuck := podEvents(c, p, tcrv1.ReasonPodStuck)
			if assert.Len(c, stuck, 1, "Pod %s", p.Name) {
				assert.Equal(c, corev1.EventTypeWarning, stuck[0].Type)
				assert.Contains(c, stuck[0].Note, "without Secret "+secret+" of ImagePullSecret "+ips.Name+", and is left alone")
			}
		}
	}, timeout, tick)
	assert.Contains(t, podEvents(t, bare, tcrv1.ReasonPodStuck)[0].Note, "it has no controller that would recreate it. Recreate it to get the credential")
	assert.Contains(t, podEvents(t, own, tcrv1.ReasonPodStuck)[0].Note, "it lists imagePullSecrets of its own")
	assert.Equal(t, 1.0, podsRecovered(t, ips.Name))

	// Each Pod is acted on once: more kubelet updates bring more passes, and no second Event.
	setWaiting(t, bare, img, "ImagePullBackOff")
	setWaiting(t, own, img, "ImagePullBackOff")
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		got := &corev1.Pod{}
		if assert.NoError(c, env.Client.Get(ctx, keyOf(bare), got)) {
			assert.Equal(c, "ImagePullBackOff", got.Status.ContainerStatuses[0].State.Waiting.Reason)
		}
	}, timeout, tick)
	st := getIPS(t, ips.Name).Status
	assert.Equal(t, int64(1), st.PodsRecovered)
	assert.Len(t, podEvents(t, bare, tcrv1.ReasonPodStuck), 1)
	assert.Len(t, eventsFor(t, ips.Name, tcrv1.ReasonPodRecovered), 1)

	// Off again: the report goes, the count of Pods recovered stays.
	cur := getIPS(t, ips.Name)
	cur.Spec.RecoverPods = false
	require.NoError(t, env.Client.Update(ctx, cur))
	eventuallyStatus(t, ips.Name, func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		assert.Equal(c, int64(1), st.PodsRecovered)
		assert.Zero(c, st.PodsStuck)
		assert.Empty(c, st.StuckPods)
	})
}

// TestRecoverPodsWaitsForTheReference: a stuck Pod whose ServiceAccount the rule selects is
// evicted only once that ServiceAccount references the Secret: not while the ServiceAccount
// does not exist yet, as when the Pod came first, nor in a namespace where a foreign Secret holds
// the name (the ServiceAccount is not pointed at it: a new Pod would not pull either).
func TestRecoverPodsWaitsForTheReference(t *testing.T) {
	startManager(t)
	const ns, foreignNS = "recover-wait", "recover-foreign"
	createNamespace(t, ns, nil, "default")
	createNamespace(t, foreignNS, nil, "default")
	ips := newIPS("recover-wait", ns+", "+foreignNS, "*")
	ips.Spec.RecoverPods = true
	require.NoError(t, env.Client.Create(t.Context(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: foreignNS, Name: ips.SecretName()},
		StringData: map[string]string{"not": "ours"}}))
	pod := createStuckPod(t, ns, "late-sa", ips.Spec.Docker.Server+"/app", owned("Job"), func(p *corev1.Pod) { p.Spec.ServiceAccountName = "late" })
	foreign := createStuckPod(t, foreignNS, "foreign", ips.Spec.Docker.Server+"/app", owned("Job"))
	createIPS(t, ips)
	eventuallyStatus(t, ips.Name, func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		assert.Equal(c, int32(1), st.SAsSuccess)
		if assert.Len(c, st.Failures, 1) {
			assert.Equal(c, tcrv1.ReasonSecretNotOwned, st.Failures[0].Reason)
		}
	})
	require.NoError(t, env.Client.Get(t.Context(), keyOf(pod), &corev1.Pod{}), "evicted before its ServiceAccount had the reference")
	createServiceAccount(t, ns, "late")
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		err := env.Client.Get(context.Background(), keyOf(pod), &corev1.Pod{})
		assert.True(c, apierrors.IsNotFound(err), "the Pod was not evicted: %v", err)
		assert.Equal(c, int64(1), getIPS(c, ips.Name).Status.PodsRecovered)
	}, timeout, tick)
	require.NoError(t, env.Client.Get(t.Context(), keyOf(foreign), &corev1.Pod{}), "evicted where the Secret is not ours")
	assert.Empty(t, getIPS(t, ips.Name).Status.StuckPods)
}

// TestRecoverPodsEvictsAtTheRecoveryRate: evictions keep to --pod-recovery-rate (the default, 5
// per second, here): six stuck Pods are evicted over at least one second, as their Events'
// times show.
func TestRecoverPodsEvictsAtTheRecoveryRate(t *testing.T) {
	startManager(t)
	const ns, n = "recover-rate", 6
	createNamespace(t, ns, nil, "default")
	ips := newIPS("recover-rate", ns, "*")
	ips.Spec.RecoverPods = true
	for i := range n {
		createStuckPod(t, ns, "p"+strconvItoa(i), ips.Spec.Docker.Server+"/app", owned("ReplicaSet"))
	}
	createIPS(t, ips)
	var events []eventsv1.Event
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		events = eventsFor(c, ips.Name, tcrv1.ReasonPodRecovered)
		assert.Len(c, events, n)
	}, timeout, tick)
	first, last := events[0].EventTime.Time, events[0].EventTime.Time
	for _, e := range events {
		if e.EventTime.Time.Before(first) {
			first = e.EventTime.Time
		}
		if e.EventTime.After(last) {
			last = e.EventTime.Time
		}
	}
	min := time.Duration(n-1) * time.Second / controllers.DefaultPodRecoveryRate
	assert.GreaterOrEqual(t, last.Sub(first), min-50*time.Millisecond, "%d evictions at %d per second", n, controllers.DefaultPodRecoveryRate)
	t.Logf("%d evictions over %s", n, last.Sub(first))
}
