package controllers_test

import (
	"strconv"

	"github.com/stretchr/testify/require"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

func strconvItoa(i int) string { return strconv.Itoa(i) }

// reconcileCount is controller-runtime's reconcile counter of the ImagePullSecret controller.
func reconcileCount(t require.TestingT) float64 {
	families, err := metrics.Registry.Gather()
	require.NoError(t, err)
	total := 0.0
	for _, f := range families {
		if f.GetName() != "controller_runtime_reconcile_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "controller" && l.GetValue() == "imagepullsecret" {
					total += m.GetCounter().GetValue()
				}
			}
		}
	}
	return total
}
