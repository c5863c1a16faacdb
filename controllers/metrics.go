package controllers

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Per-ImagePullSecret gauges, registered with controller-runtime's registry so they are served
// on the manager's metrics endpoint next to its reconcile counters.
var (
	secretsDesiredGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tcr_assistant_secrets_desired",
		Help: "Namespaces that should hold the Secret of an ImagePullSecret.",
	}, []string{"imagepullsecret"})
	secretsSuccessGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tcr_assistant_secrets_success",
		Help: "Namespaces holding an up-to-date Secret of an ImagePullSecret.",
	}, []string{"imagepullsecret"})
	serviceAccountsDesiredGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tcr_assistant_serviceaccounts_desired",
		Help: "ServiceAccounts that should reference the Secret of an ImagePullSecret.",
	}, []string{"imagepullsecret"})
	serviceAccountsSuccessGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tcr_assistant_serviceaccounts_success",
		Help: "ServiceAccounts referencing the Secret of an ImagePullSecret.",
	}, []string{"imagepullsecret"})
)

func init() {
	metrics.Registry.MustRegister(secretsDesiredGauge, secretsSuccessGauge, serviceAccountsDesiredGauge, serviceAccountsSuccessGauge)
}

func setGauges(name string, secretsDesired, secretsSuccess, sasDesired, sasSuccess int32) {
	secretsDesiredGauge.WithLabelValues(name).Set(float64(secretsDesired))
	secretsSuccessGauge.WithLabelValues(name).Set(float64(secretsSuccess))
	serviceAccountsDesiredGauge.WithLabelValues(name).Set(float64(sasDesired))
	serviceAccountsSuccessGauge.WithLabelValues(name).Set(float64(sasSuccess))
}

func deleteGauges(name string) {
	secretsDesiredGauge.DeleteLabelValues(name)
	secretsSuccessGauge.DeleteLabelValues(name)
	serviceAccountsDesiredGauge.DeleteLabelValues(name)
	serviceAccountsSuccessGauge.DeleteLabelValues(name)
}
