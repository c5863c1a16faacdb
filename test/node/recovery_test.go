//go:build node

package node

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
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
)

// recoverStuckPods (issue 23) on the real node, with the bundle's manager: a Deployment of the
// private image applied before the rule is stuck in the kubelet's own ErrImagePull; a rule with
// recoverPods makes the manager evict that Pod, and its ReplicaSet's new Pod, which gets the
// reference at admission, runs. A bare Pod and a Pod with its own imagePullSecrets are reported
// and left alone, and a Pod stuck on another registry is not touched.
func recoverStuckPods(t *testing.T, c client.Client, server, app, elsewhere, password string) {
	ctx := context.Background()
	const ns = "recover"
	require.NoError(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	t.Cleanup(func() { _ = c.Delete(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}) })
	require.NoError(t, c.Create(ctx, deployment(ns, app)))
	pod := func(name, image string, pullSecrets ...string) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.PodSpec{
			AutomountServiceAccountToken: ptr.To(false), TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []corev1.Container{{Name: "app", Image: image}}}}
		for _, s := range pullSecrets {
			p.Spec.ImagePullSecrets = append(p.Spec.ImagePullSecrets, corev1.LocalObjectReference{Name: s})
		}
		require.NoError(t, c.Create(ctx, p))
		return p
	}
	bare := pod("bare", app)
	own := pod("own-list", app, "mine")
	other := pod("other-registry", elsewhere)

	// Every Pod is stuck, by the kubelet's own account.
	stuck := func(ct *assert.CollectT, p *corev1.Pod) {
		got := &corev1.Pod{}
		if assert.NoError(ct, c.Get(ctx, client.ObjectKeyFromObject(p), got)) && assert.Len(ct, got.Status.ContainerStatuses, 1) &&
			assert.NotNil(ct, got.Status.ContainerStatuses[0].State.Waiting) {
			assert.Contains(ct, []string{"ErrImagePull", "ImagePullBackOff"}, got.Status.ContainerStatuses[0].State.Waiting.Reason)
		}
	}
	var old *corev1.Pod
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		if p := onlyOwnedPod(ct, c, ns); p != nil {
			stuck(ct, p)
			old = p
		}
		for _, p := range []*corev1.Pod{bare, own, other} {
			stuck(ct, p)
		}
	}, timeout, tick, "the Pods were not stuck")

	ips := &tcrv1.ImagePullSecret{ObjectMeta: metav1.ObjectMeta{Name: "node-recover"}, Spec: tcrv1.ImagePullSecretSpec{
		Namespaces: ns, ServiceAccounts: "*", RecoverPods: true,
		Docker: tcrv1.DockerCredential{Server: server, Username: user, Password: password}}}
	require.NoError(t, c.Create(ctx, ips))
	t.Cleanup(func() { _ = c.Delete(context.Background(), ips) })
	start := time.Now()
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		p := onlyOwnedPod(ct, c, ns)
		if p != nil && assert.NotEqual(ct, old.UID, p.UID, "the stuck Pod is still there") {
			assert.Equal(ct, corev1.PodRunning, p.Status.Phase)
			assert.Equal(ct, []corev1.LocalObjectReference{{Name: ips.SecretName()}}, p.Spec.ImagePullSecrets)
		}
	}, 30*time.Second, tick, "no new Pod of the Deployment ran within 30 s")
	t.Logf("recover: the Deployment's new Pod ran %s after the rule", time.Since(start).Round(time.Millisecond))
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		err := c.Get(ctx, client.ObjectKeyFromObject(old), &corev1.Pod{})
		assert.True(ct, apierrors.IsNotFound(err), "the stuck Pod: %v", err)
	}, timeout, tick, "the stuck Pod is still there")

	// It was evicted by the manager (the Eviction API is its only write to Pods), and reported.
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		got := &tcrv1.ImagePullSecret{}
		if !assert.NoError(ct, c.Get(ctx, client.ObjectKeyFromObject(ips), got)) {
			return
		}
		assert.Equal(ct, int64(1), got.Status.PodsRecovered)
		assert.Equal(ct, []tcrv1.StuckPod{
			{NamespacedName: ns + "/bare", Reason: tcrv1.ReasonBarePod},
			{NamespacedName: ns + "/own-list", Reason: tcrv1.ReasonOwnPullSecrets},
		}, got.Status.StuckPods)
		events := &eventsv1.EventList{}
		if assert.NoError(ct, c.List(ctx, events)) {
			var recovered, stuckEvents []string
			for _, e := range events.Items {
				switch {
				case e.Reason == tcrv1.ReasonPodRecovered && e.Regarding.Name == ips.Name && e.Related != nil:
					recovered = append(recovered, e.Related.Name)
				case e.Reason == tcrv1.ReasonPodStuck && e.Regarding.Namespace == ns:
					stuckEvents = append(stuckEvents, e.Regarding.Name)
				}
			}
			assert.Equal(ct, []string{old.Name}, recovered)
			assert.ElementsMatch(ct, []string{"bare", "own-list"}, stuckEvents)
		}
	}, timeout, tick, "the recovery was not reported")
	for _, p := range []*corev1.Pod{bare, own, other} {
		got := &corev1.Pod{}
		require.NoError(t, c.Get(ctx, client.ObjectKeyFromObject(p), got), "Pod %s", p.Name)
		assert.Equal(t, p.UID, got.UID, "Pod %s", p.Name)
		assert.Nil(t, got.DeletionTimestamp, "Pod %s", p.Name)
	}
}

// onlyOwnedPod returns the one live Pod of ns that a ReplicaSet owns.
func onlyOwnedPod(ct *assert.CollectT, c client.Client, ns string) *corev1.Pod {
	pods := &corev1.PodList{}
	if !assert.NoError(ct, c.List(context.Background(), pods, client.InNamespace(ns))) {
		return nil
	}
	var live []corev1.Pod
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && metav1.GetControllerOf(&p) != nil {
			live = append(live, p)
		}
	}
	if !assert.Len(ct, live, 1) {
		return nil
	}
	return &live[0]
}
