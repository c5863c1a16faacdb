package admission

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
)

// fieldOwner is the field manager of every write, so that managedFields name this project.
const fieldOwner = client.FieldOwner("tcr-assistant")

// +kubebuilder:rbac:groups="",resources=secrets,verbs=create
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;update,resourceNames=tcr-assistant-webhook-server-cert
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=validatingwebhookconfigurations,verbs=get;list;watch;patch,resourceNames=tcr-assistant-validating-webhook-configuration
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations,verbs=get;list;watch;patch,resourceNames=tcr-assistant-mutating-webhook-configuration

// Provisioner keeps the webhook's CA and serving certificate in the certificate Secret, in the
// cert directory and in the caBundle of the webhook configuration. Every replica runs one; they
// share the Secret through create-if-absent and resourceVersion-guarded updates, so whoever
// loses a race re-reads and adopts the winner's certificates.
type Provisioner struct {
	opts   Options
	pol    certPolicy
	client client.WithWatch
	log    logr.Logger
	now    func() time.Time

	mu       sync.Mutex
	readyErr error
}

// NewProvisioner returns a Provisioner talking to the API server of cfg. opts must have gone
// through defaults.
func NewProvisioner(cfg *rest.Config, opts Options, log logr.Logger) (*Provisioner, error) {
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := admissionregistrationv1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("creating the certificate provisioner's client: %w", err)
	}
	dns, ips := splitSANs(opts.ExtraSANs)
	svc := opts.ServiceName + "." + opts.Namespace + ".svc"
	return &Provisioner{
		opts: opts,
		pol: certPolicy{
			DNSNames:     append([]string{svc, svc + ".cluster.local"}, dns...),
			IPs:          ips,
			CALifetime:   opts.CALifetime,
			CertLifetime: opts.CertLifetime,
			Overlap:      opts.RotationOverlap,
		},
		client:   c,
		log:      log,
		now:      time.Now,
		readyErr: errors.New("the webhook serving certificate has not been provisioned yet"),
	}, nil
}

// Ready is a readiness check: it fails until the serving certificate is in the cert directory
// and its CA is in the caBundle of the webhook configuration.
func (p *Provisioner) Ready() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.readyErr
}

func (p *Provisioner) setReady(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.readyErr = err
}

// NeedLeaderElection is false: every replica serves the webhook, so every replica needs the
// certificate files.
func (p *Provisioner) NeedLeaderElection() bool { return false }

// Start keeps the certificates right until ctx ends. It syncs when the Secret or the webhook
// configuration changes (another replica rotated, someone replaced the configuration and its
// caBundle is gone) and at least every CheckPeriod, to renew certificates as they age; after a
// failure it retries sooner, backing off from one second to CheckPeriod.
func (p *Provisioner) Start(ctx context.Context) error {
	trigger := make(chan struct{}, 1)
	go p.watch(ctx, trigger, &corev1.SecretList{},
		client.InNamespace(p.opts.Namespace), client.MatchingFields{"metadata.name": p.opts.SecretName})
	go p.watch(ctx, trigger, &admissionregistrationv1.ValidatingWebhookConfigurationList{},
		client.MatchingFields{"metadata.name": p.opts.WebhookConfigurationName})
	if name := p.opts.MutatingWebhookConfigurationName; name != "" {
		go p.watch(ctx, trigger, &admissionregistrationv1.MutatingWebhookConfigurationList{},
			client.MatchingFields{"metadata.name": name})
	}

	timer := time.NewTimer(p.opts.CheckPeriod)
	defer timer.Stop()
	backoff := time.Second
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case <-trigger:
		}
		next := p.opts.CheckPeriod
		if err := p.Sync(ctx); err != nil && ctx.Err() == nil {
			p.log.Error(err, "Failed to check the webhook certificate; retrying", "secret", p.secretKey(), "retryIn", backoff)
			next, backoff = min(backoff, next), min(backoff*2, p.opts.CheckPeriod)
		} else {
			backoff = time.Second
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(next)
	}
}

// watch signals trigger on every event of the one object list selects, re-opening the watch
// whenever the API server ends it. Watches are restricted by name, which is what lets RBAC
// restrict list and watch to that one name.
func (p *Provisioner) watch(ctx context.Context, trigger chan<- struct{}, list client.ObjectList, opts ...client.ListOption) {
	delay := time.Second
	for ctx.Err() == nil {
		w, err := p.client.Watch(ctx, list, opts...)
		if err == nil {
			delay = time.Second
			for ev := range w.ResultChan() {
				if ev.Type == watch.Error {
					break
				}
				select {
				case trigger <- struct{}{}:
				default:
				}
			}
			w.Stop()
		} else if ctx.Err() == nil {
			// Polling every CheckPeriod still works; say why changes by others now wait for it.
			p.log.Error(err, "Failed to watch; changes by others wait for the next check", "kind", fmt.Sprintf("%T", list), "retryIn", delay)
			delay = min(delay*2, p.opts.CheckPeriod, time.Minute)
		}
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
	}
}

// Bootstrap runs Sync until the certificate files are in place or ctx ends, so that the webhook
// server, which reads them when it starts, finds them. A missing webhook configuration does not
// hold it up: readiness stays false and later syncs inject the caBundle.
func (p *Provisioner) Bootstrap(ctx context.Context) error {
	delay := 200 * time.Millisecond
	for {
		err := p.Sync(ctx)
		if err == nil || errors.Is(err, errNoWebhookConfiguration) {
			if err != nil {
				p.log.Info("Wrote the webhook certificate but found no webhook configuration yet; will retry",
					"validatingwebhookconfiguration", p.opts.WebhookConfigurationName)
			}
			return nil
		}
		p.log.Error(err, "Failed to provision the webhook certificate; retrying", "secret", p.secretKey())
		select {
		case <-ctx.Done():
			return fmt.Errorf("provisioning the webhook certificate: %w", err)
		case <-time.After(delay):
		}
		delay = min(delay*2, 5*time.Second)
	}
}

var errNoWebhookConfiguration = errors.New("webhook configuration not found")

// Sync makes one pass: bring the Secret up to date, put its CA bundle into the webhook
// configuration, then write the files. The configuration is patched before the files change, so
// the API server trusts a new CA before this replica serves a certificate signed by it.
func (p *Provisioner) Sync(ctx context.Context) error {
	data, err := p.ensureSecret(ctx)
	if err != nil {
		p.setReady(err)
		return err
	}
	injectErr := p.injectCABundle(ctx, data[KeyCACert])
	if injectErr != nil && !errors.Is(injectErr, errNoWebhookConfiguration) {
		p.setReady(injectErr)
		return injectErr
	}
	if err := p.writeFiles(data); err != nil {
		p.setReady(err)
		return err
	}
	if injectErr != nil {
		p.setReady(fmt.Errorf("caBundle not injected: %w", injectErr))
		return injectErr
	}
	p.setReady(nil)
	return nil
}

func (p *Provisioner) secretKey() types.NamespacedName {
	return types.NamespacedName{Namespace: p.opts.Namespace, Name: p.opts.SecretName}
}

// ensureSecret returns the certificate material of the Secret, after creating or updating the
// Secret when the material is missing, damaged or due for renewal. A lost race (AlreadyExists or
// Conflict) means another replica wrote first: re-read and judge what it wrote.
func (p *Provisioner) ensureSecret(ctx context.Context) (map[string][]byte, error) {
	key := p.secretKey()
	for attempt := 0; ; attempt++ {
		if attempt == 5 {
			return nil, fmt.Errorf("updating Secret %s: lost the race to other replicas %d times", key, attempt)
		}
		var secret corev1.Secret
		err := p.client.Get(ctx, key, &secret)
		if err != nil && !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("reading Secret %s: %w", key, err)
		}
		exists := err == nil
		data, why, err := reconcileCerts(secret.Data, p.pol, p.now())
		if err != nil {
			return nil, err
		}
		if len(why) == 0 {
			return data, nil
		}
		if !exists {
			secret = corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{
					Name: key.Name, Namespace: key.Namespace,
					Labels: map[string]string{tcrv1.ManagedByLabel: tcrv1.ManagedByValue},
				},
				Type: corev1.SecretTypeTLS,
				Data: data,
			}
			err = p.client.Create(ctx, &secret, fieldOwner)
			if apierrors.IsAlreadyExists(err) {
				continue
			}
		} else {
			// Update carries the resourceVersion just read: a concurrent writer makes it fail
			// with a conflict instead of being overwritten.
			secret.Data = data
			err = p.client.Update(ctx, &secret, fieldOwner)
			if apierrors.IsConflict(err) {
				continue
			}
		}
		if err != nil {
			return nil, fmt.Errorf("writing Secret %s: %w", key, err)
		}
		p.log.Info("Updated the webhook certificate Secret", "secret", key, "changes", strings.Join(why, ", "))
		return data, nil
	}
}

// injectCABundle sets caBundle in the validating webhook configuration and in the mutating one.
// The mutating one is optional (failurePolicy Ignore; deleting it turns admission-time
// ServiceAccount references off), so its absence is no error; the validating one's is.
func (p *Provisioner) injectCABundle(ctx context.Context, caBundle []byte) error {
	errV := p.inject(ctx, &admissionregistrationv1.ValidatingWebhookConfiguration{}, "ValidatingWebhookConfiguration", p.opts.WebhookConfigurationName, caBundle)
	if name := p.opts.MutatingWebhookConfigurationName; name != "" {
		errM := p.inject(ctx, &admissionregistrationv1.MutatingWebhookConfiguration{}, "MutatingWebhookConfiguration", name, caBundle)
		if errM != nil && !errors.Is(errM, errNoWebhookConfiguration) {
			return errors.Join(errV, errM)
		}
	}
	return errV
}

// clientConfigs returns the client configurations of every webhook of a configuration.
func clientConfigs(obj client.Object) []*admissionregistrationv1.WebhookClientConfig {
	var out []*admissionregistrationv1.WebhookClientConfig
	switch c := obj.(type) {
	case *admissionregistrationv1.ValidatingWebhookConfiguration:
		for i := range c.Webhooks {
			out = append(out, &c.Webhooks[i].ClientConfig)
		}
	case *admissionregistrationv1.MutatingWebhookConfiguration:
		for i := range c.Webhooks {
			out = append(out, &c.Webhooks[i].ClientConfig)
		}
	}
	return out
}

// inject sets caBundle on every webhook of the configuration kind/name (obj is an empty one of
// that kind), patching only when one differs, with an optimistic lock so that a concurrent edit
// is never overwritten.
func (p *Provisioner) inject(ctx context.Context, obj client.Object, kind, name string, caBundle []byte) error {
	for attempt := 0; attempt < 5; attempt++ {
		cur := obj.DeepCopyObject().(client.Object)
		if err := p.client.Get(ctx, client.ObjectKey{Name: name}, cur); err != nil {
			if apierrors.IsNotFound(err) {
				return fmt.Errorf("%s %s: %w", kind, name, errNoWebhookConfiguration)
			}
			return fmt.Errorf("reading %s %s: %w", kind, name, err)
		}
		orig := cur.DeepCopyObject().(client.Object)
		changed := false
		for _, cc := range clientConfigs(cur) {
			if !bytes.Equal(cc.CABundle, caBundle) {
				cc.CABundle = caBundle
				changed = true
			}
		}
		if !changed {
			return nil
		}
		err := p.client.Patch(ctx, cur, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{}), fieldOwner)
		if apierrors.IsConflict(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("patching the caBundle of %s %s: %w", kind, name, err)
		}
		p.log.Info("Injected the CA bundle into the webhook configuration", strings.ToLower(kind), name)
		return nil
	}
	return fmt.Errorf("patching the caBundle of %s %s: lost the race to other writers", kind, name)
}

// writeFiles writes the serving certificate and key, and the CA bundle, into the cert
// directory, each only when it differs. The key goes first: the webhook server's certificate
// watcher reloads on each file event, and a new certificate must never meet an old key.
func (p *Provisioner) writeFiles(data map[string][]byte) error {
	if err := os.MkdirAll(p.opts.CertDir, 0o700); err != nil {
		return fmt.Errorf("creating the cert directory: %w", err)
	}
	for _, name := range []string{KeyTLSKey, KeyTLSCert, KeyCACert} {
		path := filepath.Join(p.opts.CertDir, name)
		if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data[name]) {
			continue
		}
		if err := writeFileAtomic(path, data[name]); err != nil {
			return fmt.Errorf("writing %s: %w", path, err)
		}
		if name == KeyTLSCert {
			p.log.Info("Wrote the webhook serving certificate", "path", path)
		}
	}
	return nil
}

// writeFileAtomic replaces path by a rename, so a reader sees the old or the new file, never
// half of one.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o600); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
