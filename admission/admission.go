// Package admission is the validating webhook for ImagePullSecrets and the provisioning of its
// TLS certificate: a self-signed CA and a serving certificate kept in one Secret, written to the
// webhook server's cert directory and injected into the webhook configuration's caBundle, so
// that the webhook works on any conformant cluster with no extra component.
package admission

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
	"github.com/tcr-assistant/tcr-assistant/engine"
)

// Names of the installed objects the webhook depends on (DESIGN.md §1).
const (
	DefaultNamespace                = "tcr-assistant-system"
	DefaultServiceName              = "tcr-assistant-webhook-service"
	DefaultSecretName               = "tcr-assistant-webhook-server-cert"
	DefaultWebhookConfigurationName = "tcr-assistant-validating-webhook-configuration"
	// DefaultMutatingWebhookConfigurationName is the configuration of the ServiceAccount webhook.
	DefaultMutatingWebhookConfigurationName = "tcr-assistant-mutating-webhook-configuration"
)

// Default certificate lifetimes. Each certificate is renewed at two thirds of its life, so the
// serving certificate is replaced four months before it expires and the CA well over a year
// before; the long CA life keeps caBundle changes rare.
const (
	DefaultCALifetime       = 5 * 365 * 24 * time.Hour
	DefaultCertLifetime     = 365 * 24 * time.Hour
	DefaultCheckPeriod      = time.Minute
	DefaultRotationOverlap  = 5 * time.Minute
	DefaultBootstrapTimeout = 2 * time.Minute
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

	// ServiceName is the webhook Service; the serving certificate names
	// <ServiceName>.<Namespace>.svc and <ServiceName>.<Namespace>.svc.cluster.local.
	ServiceName string
	// SecretName is the Secret, in Namespace, holding tls.crt, tls.key, ca.crt and ca.key.
	SecretName string
	// WebhookConfigurationName is the ValidatingWebhookConfiguration whose caBundle is kept.
	WebhookConfigurationName string
	// MutatingWebhookConfigurationName is the MutatingWebhookConfiguration whose caBundle is
	// kept too, when it exists.
	MutatingWebhookConfigurationName string
	// ServiceAccountReferences, when set, serves the ServiceAccount mutation at
	// ServiceAccountPath with it (the controller's Admission).
	ServiceAccountReferences References
	// FieldManager is the controller's field manager: the mutation leaves its writes alone.
	FieldManager string
	// CALifetime and CertLifetime are the validity periods of newly issued CA and serving
	// certificates.
	CALifetime, CertLifetime time.Duration
	// CheckPeriod is how often each replica re-reads the Secret to renew certificates and pick
	// up what other replicas wrote.
	CheckPeriod time.Duration
	// RotationOverlap is how long a renewed CA sits in caBundle beside the old one before the
	// serving certificate moves to it; keep it above CheckPeriod.
	RotationOverlap time.Duration
	// BootstrapTimeout bounds how long Setup waits for the first certificate.
	BootstrapTimeout time.Duration
	// Reviews bounds the reviews served at once, shared by every webhook of the server; nil is
	// a Limiter of DefaultMaxConcurrentReviews.
	Reviews *Limiter
}

// withDefaults fills the unset fields.
func (o Options) withDefaults(server webhook.Server) Options {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	defDur := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.Namespace, DefaultNamespace)
	if ds, ok := server.(*webhook.DefaultServer); ok {
		def(&o.CertDir, ds.Options.CertDir)
	}
	def(&o.CertDir, filepath.Join(os.TempDir(), "k8s-webhook-server", "serving-certs"))
	def(&o.ServiceName, DefaultServiceName)
	def(&o.SecretName, DefaultSecretName)
	def(&o.WebhookConfigurationName, DefaultWebhookConfigurationName)
	def(&o.MutatingWebhookConfigurationName, DefaultMutatingWebhookConfigurationName)
	defDur(&o.CALifetime, DefaultCALifetime)
	defDur(&o.CertLifetime, DefaultCertLifetime)
	defDur(&o.CheckPeriod, DefaultCheckPeriod)
	defDur(&o.RotationOverlap, DefaultRotationOverlap)
	defDur(&o.BootstrapTimeout, DefaultBootstrapTimeout)
	if o.Reviews == nil {
		o.Reviews = NewLimiter(DefaultMaxConcurrentReviews)
	}
	return o
}

// MaxRequestBytes caps the body of an admission review; a larger one is refused unread. Any Pod
// can reach the webhook's port, so the cap, not the API server, bounds what one request makes the
// manager hold. An ImagePullSecret within the CRD's limits (three lists of at most
// MaxListLength, two expressions of 4 KiB, annotations of at most 256 KiB, a capped status) is
// under 1.2 MiB, and an update review carries it twice; 3 MiB is also the API server's own
// default limit on a request body. controller-runtime's own cap is 7 MiB.
const MaxRequestBytes = 3 << 20

// Handler serves the validation of ImagePullSecrets by v, refusing bodies over MaxRequestBytes.
func Handler(scheme *runtime.Scheme, v Validator) http.Handler {
	return limitBody(admission.WithValidator[*tcrv1.ImagePullSecret](scheme, v), MaxRequestBytes)
}

// limitBody refuses a request whose declared length is over limit with 413 before reading it,
// and cuts a body of undeclared length at limit, which the webhook then refuses as unreadable.
func limitBody(next http.Handler, limit int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > limit {
			http.Error(w, fmt.Sprintf("the request body of %d bytes is over the limit of %d bytes", r.ContentLength, limit), http.StatusRequestEntityTooLarge)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		next.ServeHTTP(w, r)
	})
}

// Setup registers the validating webhook with mgr's webhook server and the certificate
// provisioning with mgr. It returns a readiness check that fails until the serving certificate
// is in place. The manager must have been created with a webhook server whose CertDir is
// opts.CertDir.
//
// Setup writes the first certificate before it returns, because the webhook server reads the
// files when it starts; later renewals run in a Runnable on every replica.
func Setup(mgr ctrl.Manager, opts Options) (healthz.Checker, error) {
	server := mgr.GetWebhookServer()
	opts = opts.withDefaults(server)
	log := mgr.GetLogger().WithName("admission")
	p, err := NewProvisioner(mgr.GetConfig(), opts, log)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), opts.BootstrapTimeout)
	defer cancel()
	if err := p.Bootstrap(ctx); err != nil {
		return nil, err
	}
	if err := mgr.Add(p); err != nil {
		return nil, fmt.Errorf("adding the certificate provisioner to the manager: %w", err)
	}
	server.Register(Path, opts.Reviews.Limit(Handler(mgr.GetScheme(), Validator{
		Rules:          engine.NewCache(),
		Secrets:        mgr.GetAPIReader(),
		Namespace:      opts.Namespace,
		CertSecretName: opts.SecretName,
	})))
	if opts.ServiceAccountReferences != nil {
		server.Register(ServiceAccountPath, opts.Reviews.Limit(ServiceAccountHandler(ServiceAccountMutator{
			Refs: opts.ServiceAccountReferences, FieldManager: opts.FieldManager, Log: log.WithName("serviceaccounts"),
		})))
	}
	started := server.StartedChecker()
	return func(req *http.Request) error {
		if err := p.Ready(); err != nil {
			return err
		}
		return started(req)
	}, nil
}
