package bench

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// TestRunningPods creates the recoverPods scenario's Pods against the real API server and checks
// that they are Running, that the manager's field selector matches none of them, and that the
// audit log records the manager's reads of Pods with their selector, and no one else's.
func TestRunningPods(t *testing.T) {
	cp, err := startControlPlane()
	require.NoError(t, err)
	t.Cleanup(func() { _ = cp.Stop() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	ns := names("bench", 4)
	_, err = createNamespaces(ctx, cp.Kube, 4, ns)
	require.NoError(t, err)
	require.NoError(t, createRunningPods(ctx, cp.Kube, 4, ns, 3))

	var pods corev1.PodList
	require.NoError(t, cp.Client.List(ctx, &pods))
	require.Len(t, pods.Items, 12)
	for _, p := range pods.Items {
		assert.Equal(t, corev1.PodRunning, p.Status.Phase, "pod %s/%s", p.Namespace, p.Name)
		assert.Len(t, p.Status.ContainerStatuses, 1)
		assert.NotNil(t, p.Status.ContainerStatuses[0].State.Running)
		assert.NotNil(t, metav1.GetControllerOf(&p), "pod %s/%s has a controller", p.Namespace, p.Name)
	}
	n, err := countPods(ctx, cp.Client, pendingSelector)
	require.NoError(t, err)
	assert.Zero(t, n, "no Pod is Pending")
	n, err = countPods(ctx, cp.Client, "status.phase=Running")
	require.NoError(t, err)
	assert.Equal(t, 12, n)

	// The benchmark's own reads are not audited; the manager's are, with their selector.
	reads, err := readAuditReads(cp.AuditLog, ManagerUser, "pods")
	require.NoError(t, err)
	assert.Empty(t, reads)
	cfg, err := clientcmd.BuildConfigFromFlags("", cp.ManagerKubeconfig)
	require.NoError(t, err)
	mgr, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)
	list, err := mgr.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: pendingSelector})
	require.NoError(t, err)
	assert.Empty(t, list.Items)
	_, err = mgr.CoreV1().Pods(ns[0]).List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		reads, err = readAuditReads(cp.AuditLog, ManagerUser, "pods")
		return err == nil && len(reads) == 2
	}, 10*time.Second, 50*time.Millisecond, "the manager's two Pod lists are audited: %v", reads)
	assert.Equal(t, "list", reads[0].Verb)
	assert.Equal(t, pendingSelector, reads[0].FieldSelector)
	assert.Equal(t, "", reads[1].FieldSelector)
}
