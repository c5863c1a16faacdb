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
	"sigs.k8s.io/controller-runtime/pkg/client"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
)

// TestFloorObservedByTracker runs the floor client against the real API server and checks that
// the tracker sees exactly when every namespace holds the Secret and every ServiceAccount the
// reference, before and after a rotation, and what the floor left in the API server.
func TestFloorObservedByTracker(t *testing.T) {
	cp, err := startControlPlane()
	require.NoError(t, err)
	t.Cleanup(func() { _ = cp.Stop() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	ns := names("floor", 10)
	rvs, err := createNamespaces(ctx, cp.Kube, 4, ns)
	require.NoError(t, err)
	require.NoError(t, createUnrelatedSecrets(ctx, cp.Kube, 4, 10, 1024, ns))

	first := credential{Server: "r.example.com", Username: "u", Password: "first"}
	tr := newTracker(tcrv1.SecretNamePrefix+CRName, first)
	require.NoError(t, tr.run(ctx, cp.Kube, CRName))
	for _, n := range ns {
		tr.expect(n, time.Now(), ServiceAccountNames...)
	}

	waitCtx, stop := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err = tr.wait(waitCtx)
	stop()
	require.ErrorContains(t, err, "0 of 10 target namespaces up to date: context deadline exceeded")

	before := time.Now()
	require.NoError(t, floorDistribute(ctx, cp.Kube, 8, CRName, first, ns, rvs))
	at, err := tr.wait(ctx)
	require.NoError(t, err)
	assert.True(t, at.After(before), "convergence is observed after the writes began")
	assert.Len(t, tr.latency(ns), 10)

	second := credential{Server: first.Server, Username: first.Username, Password: "second"}
	tr.rotate(second)
	waitCtx, stop = context.WithTimeout(ctx, 200*time.Millisecond)
	_, err = tr.wait(waitCtx)
	stop()
	require.ErrorContains(t, err, "0 of 10 target namespaces up to date")
	require.NoError(t, floorRotate(ctx, cp.Kube, 8, CRName, second, ns))
	_, err = tr.wait(ctx)
	require.NoError(t, err)

	for _, n := range ns {
		var s corev1.Secret
		require.NoError(t, cp.Client.Get(ctx, clientKey(n, tcrv1.SecretNamePrefix+CRName), &s))
		assert.True(t, second.holds(&s), "Secret %s/%s holds the rotated credential", n, s.Name)
		assert.Equal(t, map[string]string{tcrv1.ManagedByLabel: tcrv1.ManagedByValue, tcrv1.OwnerLabel: CRName}, s.Labels)
		for _, name := range ServiceAccountNames {
			var sa corev1.ServiceAccount
			require.NoError(t, cp.Client.Get(ctx, clientKey(n, name), &sa))
			assert.Equal(t, []corev1.LocalObjectReference{{Name: tcrv1.SecretNamePrefix + CRName}}, sa.ImagePullSecrets)
		}
	}
	list, err := cp.Kube.CoreV1().Secrets("").List(ctx, metav1.ListOptions{LabelSelector: tcrv1.ManagedByLabel})
	require.NoError(t, err)
	assert.Len(t, list.Items, 10, "unrelated Secrets carry no managed-by label")

	w, err := readAudit(cp.AuditLog, ManagerUser)
	require.NoError(t, err)
	assert.Equal(t, 0, w.Total, "the audit log records the manager's writes only, and the floor is not the manager")

	// One write as the manager's identity is counted, with its resource and verb.
	mcfg, err := clientcmd.BuildConfigFromFlags("", cp.ManagerKubeconfig)
	require.NoError(t, err)
	mkube, err := kubernetes.NewForConfig(mcfg)
	require.NoError(t, err)
	sent := time.Now()
	_, err = mkube.CoreV1().ConfigMaps(ns[0]).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "written-as-the-manager"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = mkube.CoreV1().ConfigMaps(ns[0]).Get(ctx, "written-as-the-manager", metav1.GetOptions{})
	require.NoError(t, err)
	w, err = readAudit(cp.AuditLog, ManagerUser)
	require.NoError(t, err)
	assert.Equal(t, map[string]int{"configmaps create": 1}, w.ByKind)
	assert.Equal(t, 1, w.Total)
	require.Len(t, w.Received, 1)
	// The audit timestamp has microsecond precision and comes from the same clock.
	assert.WithinRange(t, w.Received[0], sent.Add(-time.Millisecond), time.Now())
}

func clientKey(namespace, name string) client.ObjectKey {
	return client.ObjectKey{Namespace: namespace, Name: name}
}
