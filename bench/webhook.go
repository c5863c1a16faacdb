package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
)

// webhookWrites measures what one new namespace with its three ServiceAccounts costs in writes,
// with the ServiceAccount webhook off (mgr, started with --enable-webhook=false: the controller
// creates the Secret and patches every ServiceAccount) and on (a manager started with its
// webhooks, which the API server calls at 127.0.0.1: the references come at admission and the
// controller only creates the Secret). mgr is stopped on the way.
func (r *runner) webhookWrites(ctx context.Context, mgr *process) error {
	off, err := r.newNamespacesWithServiceAccounts(ctx, "whoff", mgr)
	if err != nil {
		return err
	}
	mgr.Stop()
	r.say("Restarting the manager with its webhooks...")
	if err := r.installWebhooks(ctx); err != nil {
		return err
	}
	on, err := r.startWebhookManager(ctx)
	if err != nil {
		return err
	}
	defer on.Stop()
	onWrites, err := r.newNamespacesWithServiceAccounts(ctx, "whon", on)
	if err != nil {
		return err
	}
	if err := on.alive(); err != nil {
		return err
	}
	k := float64(r.cfg.WebhookNamespaces)
	for _, x := range []struct {
		name string
		w    Writes
	}{{"off", off}, {"on", onWrites}} {
		data := x.w.Count("secrets create") + x.w.Count("secrets patch") + x.w.Count("serviceaccounts patch") + x.w.Count("serviceaccounts update")
		r.res.add("writes.newns3."+x.name, float64(data)/k, "writes/namespace")
		r.res.add("writes.newns3."+x.name+".all", float64(x.w.Total)/k, "writes/namespace")
		r.res.addWrites("newns3."+x.name, x.w)
	}
	perNS := float64(onWrites.Count("secrets create")+onWrites.Count("serviceaccounts patch")) / k
	r.res.check("writes.newns3.on", "= 1", perNS, "writes/namespace", perNS == 1)
	r.say("Writes per new namespace with 3 ServiceAccounts: %v with the webhook off, %v with it on.", off.ByKind, onWrites.ByKind)
	return nil
}

// newNamespacesWithServiceAccounts creates WebhookNamespaces namespaces named prefix-<i>, each
// with the benchmark's three ServiceAccounts, waits until p's controller has served them all
// and its status says so, and returns the manager's writes meanwhile.
func (r *runner) newNamespacesWithServiceAccounts(ctx context.Context, prefix string, p *process) (Writes, error) {
	kube, n := r.cp.Kube, r.cfg.WebhookNamespaces
	before, err := r.audit()
	if err != nil {
		return Writes{}, err
	}
	var ips tcrv1.ImagePullSecret
	if err := r.cp.Client.Get(ctx, client.ObjectKey{Name: CRName}, &ips); err != nil {
		return Writes{}, err
	}
	secretsBefore := ips.Status.SecretsSuccess
	fresh := names(prefix, n)
	if _, err := createNamespaces(ctx, kube, r.cfg.FixtureWorkers, fresh); err != nil {
		return Writes{}, err
	}
	secretName := tcrv1.SecretNamePrefix + CRName
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	for _, ns := range fresh {
		for {
			done, err := func() (bool, error) {
				if _, err := kube.CoreV1().Secrets(ns).Get(ctx, secretName, metav1.GetOptions{}); err != nil {
					return false, client.IgnoreNotFound(err)
				}
				sas, err := kube.CoreV1().ServiceAccounts(ns).List(ctx, metav1.ListOptions{})
				if err != nil {
					return false, err
				}
				for _, sa := range sas.Items {
					if !slices.ContainsFunc(sa.ImagePullSecrets, func(r corev1.LocalObjectReference) bool { return r.Name == secretName }) {
						return false, nil
					}
				}
				return len(sas.Items) == len(ServiceAccountNames), nil
			}()
			if err != nil {
				return Writes{}, err
			}
			if done {
				break
			}
			if err := p.alive(); err != nil {
				return Writes{}, err
			}
			select {
			case <-ctx.Done():
				return Writes{}, fmt.Errorf("waiting for namespace %s: %w (manager log: %s)", ns, ctx.Err(), p.log)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	// The status counts them too, so that its writes fall in this phase.
	for {
		if err := r.cp.Client.Get(ctx, client.ObjectKey{Name: CRName}, &ips); err != nil {
			return Writes{}, err
		}
		s := ips.Status
		if s.SecretsSuccess >= secretsBefore+int32(n) && s.SecretsSuccess == s.SecretsDesired && s.SAsSuccess == s.SAsDesired {
			break
		}
		select {
		case <-ctx.Done():
			return Writes{}, fmt.Errorf("waiting for the status to count the namespaces %s-*: %w", prefix, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	after, err := r.audit()
	if err != nil {
		return Writes{}, err
	}
	return after.Sub(before), nil
}

// installWebhooks creates the bundle's webhook configurations, from the generated
// config/webhook/manifests.yaml, calling https://127.0.0.1:<WebhookPort>.
func (r *runner) installWebhooks(ctx context.Context) error {
	data, err := os.ReadFile(filepath.Join(r.cp.Root, "config", "webhook", "manifests.yaml"))
	if err != nil {
		return err
	}
	for _, doc := range strings.Split(string(data), "\n---\n") {
		doc = strings.TrimPrefix(doc, "---\n")
		var obj client.Object
		switch {
		case strings.Contains(doc, "\nkind: MutatingWebhookConfiguration\n"):
			var mwc admissionregistrationv1.MutatingWebhookConfiguration
			if err := yaml.UnmarshalStrict([]byte(doc), &mwc); err != nil {
				return err
			}
			for i := range mwc.Webhooks {
				mwc.Webhooks[i].ClientConfig = r.webhookURL(*mwc.Webhooks[i].ClientConfig.Service.Path)
			}
			obj = &mwc
		case strings.Contains(doc, "\nkind: ValidatingWebhookConfiguration\n"):
			var vwc admissionregistrationv1.ValidatingWebhookConfiguration
			if err := yaml.UnmarshalStrict([]byte(doc), &vwc); err != nil {
				return err
			}
			for i := range vwc.Webhooks {
				vwc.Webhooks[i].ClientConfig = r.webhookURL(*vwc.Webhooks[i].ClientConfig.Service.Path)
			}
			obj = &vwc
		default:
			continue
		}
		if err := r.cp.Client.Create(ctx, obj); err != nil {
			return fmt.Errorf("creating the webhook configuration %s: %w", obj.GetName(), err)
		}
	}
	return nil
}

func (r *runner) webhookURL(path string) admissionregistrationv1.WebhookClientConfig {
	url := "https://127.0.0.1:" + strconv.Itoa(r.webhookPort) + path
	return admissionregistrationv1.WebhookClientConfig{URL: &url}
}

// startWebhookManager starts the manager with its webhooks on webhookPort, and waits until the
// API server calls the ServiceAccount webhook and the start-up pass is over.
func (r *runner) startWebhookManager(ctx context.Context) (*process, error) {
	metricsAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	healthAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	args := append([]string{"--kubeconfig", r.cp.ManagerKubeconfig, "--enable-webhook=true",
		"--webhook-port", strconv.Itoa(r.webhookPort), "--webhook-cert-dir", filepath.Join(r.res.LogDir, "webhook-certs"),
		"--webhook-extra-sans", "127.0.0.1",
		"--namespace", OwnNamespace, "--metrics-bind-address", metricsAddr, "--metrics-secure=false",
		"--health-probe-bind-address", healthAddr}, r.cfg.ManagerArgs...)
	p, err := startProcess(ctx, "manager-webhook", r.cfg.ManagerBin, r.res.LogDir, healthAddr, r.cfg.ManagerEnv, args...)
	if err != nil {
		return nil, err
	}
	// Ready means the caBundle is in; wait until a dry-run ServiceAccount comes back with the
	// reference, which also means the caches are current.
	want := tcrv1.SecretNamePrefix + CRName
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	for {
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "probe", Namespace: "bench-00000"}}
		got, err := r.cp.Kube.CoreV1().ServiceAccounts(sa.Namespace).Create(ctx, sa, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			p.Stop()
			return nil, err
		}
		if slices.ContainsFunc(got.ImagePullSecrets, func(r corev1.LocalObjectReference) bool { return r.Name == want }) {
			break
		}
		select {
		case <-ctx.Done():
			p.Stop()
			return nil, fmt.Errorf("the ServiceAccount webhook never answered (log: %s): %w", p.log, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	// The start-up walk over every namespace writes nothing when all is in place, but its status
	// write, if any, belongs to no phase: let it pass.
	time.Sleep(2 * time.Second)
	return p, nil
}
