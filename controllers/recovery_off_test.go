package controllers_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
)

// TestWithoutRecoverPodsNoPodIsRead: recoverPods is off by default, and then the manager makes
// no request about Pods at all, even with a Pod stuck on the rule's registry in a namespace it
// distributes to. (This file sorts before the tests that turn recoverPods on; run alone, it
// holds just the same.)
func TestWithoutRecoverPodsNoPodIsRead(t *testing.T) {
	startManager(t)
	createNamespace(t, "recover-off", nil, "default")
	ips := newIPS("recover-off", "recover-off", "*")
	createIPS(t, ips)
	pod := createStuckPod(t, "recover-off", "app", ips.Spec.Docker.Server+"/team/app:1", owned("ReplicaSet"))
	eventuallyStatus(t, ips.Name, func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		assert.Equal(c, int32(1), st.SAsSuccess)
	})
	require.NoError(t, env.Client.Get(t.Context(), keyOf(pod), &corev1.Pod{}), "the stuck Pod is left alone")
	assert.Zero(t, podRequests.Load(), "requests about Pods")
	assert.Zero(t, getIPS(t, ips.Name).Status.PodsStuck)
}
