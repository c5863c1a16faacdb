// Command manager runs the tcr-assistant controller and, unless disabled, its validating webhook
// against the configured cluster ('make run' without a cluster runs it against a local control
// plane started by hack/run).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/tcr-assistant/tcr-assistant/admission"
	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
	"github.com/tcr-assistant/tcr-assistant/controllers"
	"github.com/tcr-assistant/tcr-assistant/credcheck"
	"github.com/tcr-assistant/tcr-assistant/credprovider"
	"github.com/tcr-assistant/tcr-assistant/tcrapi"
)

// Defaults for talking to the API server: high enough that 1,000 namespaces converge in
// seconds (the client-go defaults of 5 QPS / 10 burst would take minutes); the API server's
// priority and fairness still protects it.
const (
	defaultQPS   = 1000
	defaultBurst = 2000
)

type options struct {
	metricsAddr, probeAddr         string
	metricsSecure                  bool
	leaderElect                    bool
	namespace                      string
	qps                            float64
	burst                          int
	maxConcurrentReconciles        int
	statusListLimit                int
	enableWebhook                  bool
	webhookPort                    int
	webhookCertDir, webhookExtraSA string
	webhookMaxReviews              int
	pprofAddr                      string
	credentialCheckInterval        time.Duration
	credentialExpiryWarning        time.Duration
	podRecoveryRate                float64
	registryCAFile                 string
	tcrAPIEndpoint, tcrAPICAFile   string
	providerCacheDuration          time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.metricsAddr, "metrics-bind-address", ":8443", "Address the Prometheus metrics endpoint binds to; \"0\" disables it.")
	flag.BoolVar(&o.metricsSecure, "metrics-secure", true, "Serve the metrics over HTTPS to callers whose token may 'get' the non-resource URL /metrics (ClusterRole tcr-assistant-metrics-reader); false serves them over plain HTTP to anyone, for local runs.")
	flag.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", "Address the /healthz and /readyz endpoints bind to.")
	flag.BoolVar(&o.leaderElect, "leader-elect", false, "Elect a leader with the Lease tcr-assistant-leader in --namespace, so that only one replica writes.")
	flag.StringVar(&o.namespace, "namespace", "tcr-assistant-system", "The controller's own namespace: the leader Lease, the webhook certificate and the only namespace docker.passwordSecretRef may point into.")
	flag.Float64Var(&o.qps, "kube-api-qps", defaultQPS, "Client-side limit of requests per second to the API server.")
	flag.IntVar(&o.burst, "kube-api-burst", defaultBurst, "Client-side burst of requests to the API server.")
	flag.IntVar(&o.maxConcurrentReconciles, "max-concurrent-reconciles", controllers.DefaultMaxConcurrentReconciles, "Workers of the ImagePullSecret controller.")
	flag.IntVar(&o.statusListLimit, "status-list-limit", controllers.DefaultStatusListLimit, "Maximum entries in each status list of an ImagePullSecret (the counters stay exact).")
	flag.BoolVar(&o.enableWebhook, "enable-webhook", true, "Serve the validating webhook for ImagePullSecrets and the mutating webhook that adds the references to ServiceAccounts at admission.")
	flag.IntVar(&o.webhookPort, "webhook-port", 9443, "Port of the webhook server.")
	flag.StringVar(&o.webhookCertDir, "webhook-cert-dir", "/tmp/k8s-webhook-server/serving-certs", "Directory holding the webhook serving certificate (tls.crt, tls.key).")
	flag.StringVar(&o.webhookExtraSA, "webhook-extra-sans", "", "Comma-separated extra DNS names or IP addresses for the webhook serving certificate, for running out of cluster.")
	flag.DurationVar(&o.credentialCheckInterval, "credential-check-interval", controllers.DefaultCredentialCheckInterval, "How often each ImagePullSecret's credential is checked against its registry (GET /v2/ with the registry's challenge), besides every change of it.")
	flag.DurationVar(&o.credentialExpiryWarning, "credential-expiry-warning", controllers.DefaultCredentialExpiryWarning, "How long before the expiry of a password that is a JWT the condition CredentialExpiring turns True, with a Warning Event.")
	flag.Float64Var(&o.podRecoveryRate, "pod-recovery-rate", controllers.DefaultPodRecoveryRate, "Stuck Pods that ImagePullSecrets with recoverPods evict per second, all together.")
	flag.StringVar(&o.registryCAFile, "registry-ca-file", "", "PEM bundle of CAs trusted for registries besides the system's, for a registry with a private CA. Read again when it changes.")
	flag.StringVar(&o.tcrAPIEndpoint, "tcr-api-endpoint", tcrapi.DefaultEndpoint, "Host[:port] of the TCR API (HTTPS) that docker.instanceToken mints tokens with, e.g. tcr.internal.tencentcloudapi.com from a VPC.")
	flag.StringVar(&o.tcrAPICAFile, "tcr-api-ca-file", "", "PEM bundle of CAs trusted for --tcr-api-endpoint besides the system's. Read again when it changes.")
	flag.DurationVar(&o.providerCacheDuration, "credential-provider-cache-duration", credprovider.DefaultCacheDuration, "How long the kubelet's credential provider may cache a credential the endpoint "+credprovider.Path+" serves (less when the credential or the token expires sooner); a rotation reaches new pulls within it.")
	flag.IntVar(&o.webhookMaxReviews, "webhook-max-concurrent-reviews", admission.DefaultMaxConcurrentReviews, "Admission reviews served at once; more wait up to 1 s for a slot (at most 4 per slot wait), then are answered 429 Too Many Requests, which the API server reports to the client as the refusal.")
	flag.StringVar(&o.pprofAddr, "pprof-bind-address", "", "Address the Go pprof endpoints bind to; empty disables them.")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))

	if err := run(ctrl.SetupSignalHandler(), o); err != nil {
		ctrl.Log.WithName("setup").Error(err, "Manager stopped with an error")
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	log := ctrl.Log.WithName("setup")
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("loading the kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = float32(o.qps), o.burst

	mgrOpts := ctrl.Options{
		Scheme:                  scheme(),
		Cache:                   controllers.CacheOptions(),
		Metrics:                 metricsOptions(o),
		HealthProbeBindAddress:  o.probeAddr,
		PprofBindAddress:        o.pprofAddr,
		LeaderElection:          o.leaderElect,
		LeaderElectionID:        "tcr-assistant-leader",
		LeaderElectionNamespace: o.namespace,
		// Give up the Lease at once on SIGTERM, so a new replica takes over without waiting for
		// it to expire.
		LeaderElectionReleaseOnCancel: true,
	}
	if o.enableWebhook {
		mgrOpts.WebhookServer = webhook.NewServer(webhook.Options{Port: o.webhookPort, CertDir: o.webhookCertDir})
	}
	if o.registryCAFile != "" {
		// Fail at start rather than report every registry of a private CA as a TLSError.
		if _, err := credcheck.LoadCAs(o.registryCAFile); err != nil {
			return err
		}
	}
	if o.tcrAPICAFile != "" {
		if _, err := credcheck.LoadCAs(o.tcrAPICAFile); err != nil {
			return fmt.Errorf("--tcr-api-ca-file: %w", err)
		}
	}
	if err := tcrapi.ValidateEndpoint(o.tcrAPIEndpoint); err != nil {
		return fmt.Errorf("--tcr-api-endpoint: %w", err)
	}
	mgr, err := ctrl.NewManager(cfg, mgrOpts)
	if err != nil {
		return fmt.Errorf("creating the manager: %w", err)
	}
	reconciler := controllers.New(controllers.Options{
		Namespace:               o.namespace,
		StatusListLimit:         o.statusListLimit,
		MaxConcurrentReconciles: o.maxConcurrentReconciles,
		CredentialCheckInterval: o.credentialCheckInterval,
		CredentialExpiryWarning: o.credentialExpiryWarning,
		RegistryCAFile:          o.registryCAFile,
		TCRAPIEndpoint:          o.tcrAPIEndpoint,
		TCRAPICAFile:            o.tcrAPICAFile,
		PodRecoveryRate:         o.podRecoveryRate,
	})
	if err := reconciler.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the ImagePullSecret controller: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	synced := &cacheSynced{cache: mgr.GetCache()}
	if err := mgr.Add(synced); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("informers", synced.check); err != nil {
		return err
	}
	if o.enableWebhook {
		ready, err := admission.Setup(mgr, admission.Options{
			Namespace: o.namespace, CertDir: o.webhookCertDir, ExtraSANs: splitList(o.webhookExtraSA),
			ServiceAccountReferences: reconciler.Admission(), FieldManager: controllers.FieldManager,
			Reviews: admission.NewLimiter(o.webhookMaxReviews),
		})
		if err != nil {
			return fmt.Errorf("setting up the validating webhook: %w", err)
		}
		if err := mgr.AddReadyzCheck("webhook", ready); err != nil {
			return err
		}
		// The credential endpoint of the kubelet's credential provider (delivery
		// CredentialProvider or Both), on the webhook's server, Service and certificate.
		cs, err := kubernetes.NewForConfig(mgr.GetConfig())
		if err != nil {
			return fmt.Errorf("creating the client of token reviews: %w", err)
		}
		mgr.GetWebhookServer().Register(credprovider.Path, credprovider.NewHandler(credprovider.Options{
			Lookup: reconciler.CredentialProvider(), Reviews: cs.AuthenticationV1().TokenReviews(),
			CacheDuration: o.providerCacheDuration, Log: ctrl.Log.WithName("credential-provider"),
		}))
	}
	log.Info("Starting the manager", "namespace", o.namespace, "webhook", o.enableWebhook, "leaderElection", o.leaderElect)
	return mgr.Start(ctx)
}

// The metrics filter asks the API server who a scraper is and whether it may read /metrics; the
// credential endpoint asks it who a token is (credprovider).
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// metricsOptions serves the metrics as kubebuilder v4 projects do: over HTTPS with a
// self-signed certificate, to callers the API server authenticates (TokenReview) and authorizes
// for "get /metrics" (SubjectAccessReview; see metricsauth.go). Any Pod can reach the port, and the metrics name every
// ImagePullSecret.
func metricsOptions(o options) metricsserver.Options {
	opts := metricsserver.Options{BindAddress: o.metricsAddr, SecureServing: o.metricsSecure}
	if o.metricsSecure {
		opts.FilterProvider = withTokenAuthentication
	}
	return opts
}

// cacheSynced makes the manager ready only once its informers have synced, so that a rollout
// does not count a replica as serving while it still knows nothing about the cluster. It runs
// on every replica, leader or not.
type cacheSynced struct {
	cache interface {
		WaitForCacheSync(context.Context) bool
	}
	done atomic.Bool
}

func (c *cacheSynced) Start(ctx context.Context) error {
	if c.cache.WaitForCacheSync(ctx) {
		c.done.Store(true)
	}
	return nil
}

func (c *cacheSynced) NeedLeaderElection() bool { return false }

func (c *cacheSynced) check(*http.Request) error {
	if !c.done.Load() {
		return errors.New("the informer caches have not synced yet")
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// scheme holds only the kinds the manager reads and writes (the webhook's certificate
// provisioner has its own): registering every built-in API group would cost memory for nothing.
func scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(corev1.AddToScheme(s))
	utilruntime.Must(tcrv1.AddToScheme(s))
	return s
}
