package e2e

import (
	"sort"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	psaapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
)

// podSecurityFailures runs every Pod Security Standards check, in its latest version, on a pod
// template and returns the IDs of the checks it fails, with their level, e.g.
// "hostPathVolumes (baseline)".
func podSecurityFailures(t *testing.T, meta metav1.ObjectMeta, spec corev1.PodSpec) []string {
	t.Helper()
	var failed []string
	for _, check := range policy.DefaultChecks() {
		require.NotEmpty(t, check.Versions)
		latest := check.Versions[len(check.Versions)-1]
		if res := latest.CheckPod(&meta, &spec); !res.Allowed {
			failed = append(failed, string(check.ID)+" ("+string(check.Level)+")")
			t.Logf("%s fails %s: %s: %s", meta.Labels, check.ID, res.ForbiddenReason, res.ForbiddenDetail)
		}
	}
	sort.Strings(failed)

	// Cross-check with the admission plugin's own evaluator at "restricted", latest.
	evaluator, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	require.NoError(t, err)
	agg := policy.AggregateCheckResults(evaluator.EvaluatePod(
		psaapi.LevelVersion{Level: psaapi.LevelRestricted, Version: psaapi.LatestVersion()}, &meta, &spec))
	assert.Equal(t, len(failed) == 0, agg.Allowed, "evaluator: %s", agg.ForbiddenReason())
	return failed
}

func TestWorkloadsPodSecurity(t *testing.T) {
	objs := readBundle(t)

	t.Run("the manager meets the restricted profile", func(t *testing.T) {
		d := typed[appsv1.Deployment](t, findObject(t, objs, "Deployment", "tcr-assistant-controller-manager"))
		assert.Empty(t, podSecurityFailures(t, d.Spec.Template.ObjectMeta, d.Spec.Template.Spec))
		c := d.Spec.Template.Spec.Containers[0]
		require.NotNil(t, c.SecurityContext)
		assert.Equal(t, true, *c.SecurityContext.ReadOnlyRootFilesystem, "read-only root filesystem")
		assert.NotNil(t, c.LivenessProbe)
		assert.NotNil(t, c.ReadinessProbe)
	})

	// The agent writes the node's /etc/hosts: that takes a hostPath volume (forbidden from
	// "baseline" up, and outside "restricted"'s volume types) and, because the file belongs to
	// root, running as root. Everything else of "restricted" it meets.
	t.Run("the agent fails only the checks its hostPath write needs", func(t *testing.T) {
		ds := typed[appsv1.DaemonSet](t, findObject(t, objs, "DaemonSet", "hosts-updater"))
		assert.Equal(t, agentPodSecurityFailures, podSecurityFailures(t, ds.Spec.Template.ObjectMeta, ds.Spec.Template.Spec))
		for _, c := range ds.Spec.Template.Spec.Containers {
			require.NotNil(t, c.SecurityContext, "container %s", c.Name)
			assert.Equal(t, true, *c.SecurityContext.ReadOnlyRootFilesystem, "container %s: read-only root filesystem", c.Name)
			assert.NotNil(t, c.LivenessProbe, "container %s", c.Name)
			assert.NotNil(t, c.ReadinessProbe, "container %s", c.Name)
		}
	})
}

// agentPodSecurityFailures are the Pod Security checks the hosts-updater DaemonSet fails, and
// must keep failing no more of.
var agentPodSecurityFailures = []string{
	"hostPathVolumes (baseline)",
	"restrictedVolumes (restricted)",
	"runAsNonRoot (restricted)",
	"runAsUser (restricted)",
}
