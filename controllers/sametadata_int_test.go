package controllers_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestServiceAccountMetadataFollowsRules checks that rules reading ServiceAccount labels and
// annotations select right although the main cache keeps neither: through a rule-free period
// (the metadata cache stopped, changes made meanwhile are listed again), a rule that reads more
// than the running cache keeps (rebuilt for the union), and one that reads less going away
// (rebuilt smaller), with label and annotation changes followed at each stage.
func TestServiceAccountMetadataFollowsRules(t *testing.T) {
	startManager(t)
	ctx := context.Background()
	for _, ns := range []string{"sam-a", "sam-b"} {
		createNamespace(t, ns, nil)
		require.NoError(t, env.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: "app", Labels: map[string]string{"team": "a"}, Annotations: map[string]string{"pull": "yes"}}}))
		createServiceAccount(t, ns, "other")
	}
	edit := func(ns, name string, fn func(sa *corev1.ServiceAccount)) {
		t.Helper()
		require.NoError(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
			sa := &corev1.ServiceAccount{}
			if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, sa); err != nil {
				return err
			}
			fn(sa)
			return env.Client.Update(ctx, sa)
		}))
	}
	// refs waits until each ServiceAccount sam-a/app, sam-a/other, sam-b/app, sam-b/other
	// references exactly the Secrets listed for it.
	refs := func(want ...[]string) {
		t.Helper()
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			i := 0
			for _, ns := range []string{"sam-a", "sam-b"} {
				for _, sa := range []string{"app", "other"} {
					assert.Equal(c, want[i], pullSecrets(c, ns, sa), "%s/%s", ns, sa)
					i++
				}
			}
		}, timeout, tick)
	}
	none := []string{}
	stopped := func() int { return strings.Count(logs.String(), "Stopped the ServiceAccount metadata cache") }

	bySelector := func(name string) {
		ips := newIPS(name, "sam-a,sam-b", "*")
		ips.Spec.ServiceAccountSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}}
		createIPS(t, ips)
	}
	stops := stopped()
	bySelector("samsel")
	sel := []string{"tcr.ipssamsel"}
	refs(sel, none, sel, none)
	deleteIPS(t, "samsel")
	refs(none, none, none, none)
	require.Eventually(t, func() bool { return stopped() > stops }, timeout, tick, "no rule reads ServiceAccount metadata: the cache is stopped")

	// Changed while no rule reads them: listed again when one does.
	edit("sam-b", "other", func(sa *corev1.ServiceAccount) {
		sa.Labels = map[string]string{"team": "a"}
		sa.Annotations = map[string]string{"pull": "yes"}
	})
	bySelector("samsel2")
	sel = []string{"tcr.ipssamsel2"}
	refs(sel, none, sel, sel)

	// A rule reading annotations: the cache is rebuilt to keep them, the selector still works.
	expr := newIPS("samexpr", "sam-a,sam-b", "*")
	expr.Spec.ServiceAccountExpression = `"pull" in serviceAccount.annotations && serviceAccount.annotations["pull"] == "yes"`
	createIPS(t, expr)
	both := []string{"tcr.ipssamsel2", "tcr.ipssamexpr"}
	refs(both, none, both, both)

	// Annotation and label changes are followed.
	edit("sam-a", "app", func(sa *corev1.ServiceAccount) { sa.Annotations = nil })
	edit("sam-a", "other", func(sa *corev1.ServiceAccount) { sa.Labels = map[string]string{"team": "a"} })
	refs(sel, sel, both, both)

	// The rule reading annotations goes: the cache keeps only the label key; labels are still
	// followed.
	deleteIPS(t, "samexpr")
	refs(sel, sel, sel, sel)
	edit("sam-b", "app", func(sa *corev1.ServiceAccount) { sa.Labels = map[string]string{"team": "b"} })
	refs(sel, sel, none, sel)

	stops = stopped()
	deleteIPS(t, "samsel2")
	refs(none, none, none, none)
	require.Eventually(t, func() bool { return stopped() > stops }, timeout, tick)
}
