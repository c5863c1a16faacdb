package controllers

import (
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
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

// The credential gauges (credential.go) follow the status: a series exists while the status
// carries what it shows.
var (
	credentialVerifiedGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tcr_assistant_credential_verified",
		Help: "Last check of an ImagePullSecret's credential against its registry: 1 accepted, 0 rejected (or a token past its expiry), -1 no answer about the credential (registry unreachable, TLS error).",
	}, []string{"imagepullsecret"})
	credentialExpiryGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tcr_assistant_credential_expiry_timestamp_seconds",
		Help: "Expiry (Unix seconds) of an ImagePullSecret's password when it is a JWT with an exp claim, or of its minted instance token.",
	}, []string{"imagepullsecret"})
)

// The metrics of minted credentials (minted.go); their expiry is credentialExpiryGauge's.
var (
	mintedGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tcr_assistant_instance_token_last_minted_timestamp_seconds",
		Help: "When (Unix seconds) the controller last minted an instance token for an ImagePullSecret with docker.instanceToken.",
	}, []string{"imagepullsecret"})
	tokenErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tcr_assistant_tcr_api_errors_total",
		Help: "Failed calls of the TCR API, by action and error code (Unreachable when no API answer came, Other for a code that is not a plain word).",
	}, []string{"action", "code"})
)

func init() {
	metrics.Registry.MustRegister(secretsDesiredGauge, secretsSuccessGauge, serviceAccountsDesiredGauge, serviceAccountsSuccessGauge,
		credentialVerifiedGauge, credentialExpiryGauge, mintedGauge, tokenErrors)
}

// setCredentialGauges mirrors the CredentialVerified condition and the expiry of st.
func setCredentialGauges(name string, st *tcrv1.ImagePullSecretStatus) {
	switch c := meta.FindStatusCondition(st.Conditions, tcrv1.ConditionCredentialVerified); {
	case c == nil:
		credentialVerifiedGauge.DeleteLabelValues(name)
	case c.Status == metav1.ConditionTrue:
		credentialVerifiedGauge.WithLabelValues(name).Set(1)
	case c.Status == metav1.ConditionFalse:
		credentialVerifiedGauge.WithLabelValues(name).Set(0)
	default:
		credentialVerifiedGauge.WithLabelValues(name).Set(-1)
	}
	if st.CredentialExpiresAt == nil {
		credentialExpiryGauge.DeleteLabelValues(name)
	} else {
		credentialExpiryGauge.WithLabelValues(name).Set(float64(st.CredentialExpiresAt.Unix()))
	}
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
	credentialVerifiedGauge.DeleteLabelValues(name)
	credentialExpiryGauge.DeleteLabelValues(name)
	mintedGauge.DeleteLabelValues(name)
}
