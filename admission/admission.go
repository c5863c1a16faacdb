// Package admission is the validating webhook for ImagePullSecrets and the provisioning of its
// TLS certificate.
//
// STUB: the interface below is fixed; the implementation is a placeholder until issue 5 lands.
package admission

import (
	"net/http"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
)

// Options configures the webhook.
type Options struct {
	// Namespace is the controller's own namespace, which holds the certificate Secret and the
	// webhook Service.
	Namespace string
	// CertDir is the directory the manager's webhook server reads tls.crt and tls.key from.
	CertDir string
	// ExtraSANs are extra DNS names or IP addresses for the serving certificate, beyond the
	// webhook Service's names, for a webhook reached by URL (tests, out-of-cluster runs).
	ExtraSANs []string
}

// Setup registers the validating webhook with mgr's webhook server and the certificate
// provisioning with mgr. It returns a readiness check that fails until the serving certificate
// is in place. The manager must have been created with a webhook server whose CertDir is
// opts.CertDir.
func Setup(mgr ctrl.Manager, opts Options) (healthz.Checker, error) {
	return func(*http.Request) error { return nil }, nil
}
