package admission_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/tcr-assistant/tcr-assistant/admission"
	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
	"github.com/tcr-assistant/tcr-assistant/controllers"
	"github.com/tcr-assistant/tcr-assistant/internal/testenv"
)

// saLabel marks the namespaces the ServiceAccount tests' ImagePullSecrets select, so that
// they distribute nothing elsewhere in the shared control plane.
const saLabel = "tcr-test/serviceaccount-webhook"

// saWrites counts the ServiceAccount writes of the manager started by startController.
var saWrites atomic.Int64

type saWriteCounter struct{ next http.RoundTripper }

func (c saWriteCounter) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodGet && strings.Contains(req.URL.Path, "/serviceaccounts") {
		saWrites.Add(1)
	}
	return c.next.RoundTrip(req)
}

var (
	controllerOnce sync.Once
	controllerErr  error
	// stopController stops the manager of startController; TestMain calls it.
	stopController = func() {}
)

// startController starts, once per test binary (controller names are unique per process), a
// manager as cmd/manager runs it: the controller, and the webhooks with the ServiceAccount
// mutation, whose configuration, from the generated manifest, is named
// "serviceaccounts-mutating" and calls 127.0.0.1. It runs until the binary ends.
func startController(t *testing.T) {
	t.Helper()
	controllerOnce.Do(func() {
		controllerErr = func() error {
			ensureNamespace(t)
			port := testenv.FreePort(t)
			opts := admission.Options{
				Namespace: testNamespace, ExtraSANs: []string{"127.0.0.1"},
				SecretName: "serviceaccounts-cert", WebhookConfigurationName: "serviceaccounts",
				MutatingWebhookConfigurationName: "serviceaccounts-mutating",
				CheckPeriod:                      time.Second, BootstrapTimeout: time.Minute,
			}
			// Not t.TempDir: the manager outlives the test that starts it.
			var err error
			if opts.CertDir, err = os.MkdirTemp("", "tcr-sa-webhook-"); err != nil {
				return err
			}
			mwc := mutatingConfigurationFromManifest(t)
			require.Equal(t, admission.DefaultMutatingWebhookConfigurationName, mwc.Name)
			mwc.Name = opts.MutatingWebhookConfigurationName
			for i := range mwc.Webhooks {
				url := fmt.Sprintf("https://127.0.0.1:%d%s", port, *mwc.Webhooks[i].ClientConfig.Service.Path)
				mwc.Webhooks[i].ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &url}
				// Only the namespaces these tests make: the other tests' ServiceAccounts never
				// wait on this webhook.
				mwc.Webhooks[i].NamespaceSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: saLabel, Operator: metav1.LabelSelectorOpExists}}}
			}
			if err := env.Client.Create(context.Background(), mwc); err != nil {
				return err
			}
			cfg := *env.Config
			cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { return saWriteCounter{rt} }
			mgr, err := ctrl.NewManager(&cfg, ctrl.Options{
				Scheme: env.Scheme, Logger: testLogger(), Cache: controllers.CacheOptions(),
				Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
				WebhookServer: webhook.NewServer(webhook.Options{Host: "127.0.0.1", Port: port, CertDir: opts.CertDir}),
			})
			if err != nil {
				return err
			}
			r := controllers.New(controllers.Options{Namespace: testNamespace, StatusDelay: 100 * time.Millisecond})
			if err := r.SetupWithManager(mgr); err != nil {
				return err
			}
			opts.ServiceAccountReferences, opts.FieldManager = r.Admission(), controllers.FieldManager
			if _, err := admission.Setup(mgr, opts); err != nil {
				return err
			}
			mctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { _ = mgr.Start(mctx); close(done) }()
			stopController = func() { cancel(); <-done }
			return nil
		}()
	})
	require.NoError(t, controllerErr)
}

// saIPS creates an ImagePullSecret selecting the ServiceAccounts sas (a list or "*") in the
// namespaces labelled saLabel=value, and waits until the controller has taken it on (its
// finalizer), which is when admission starts adding its reference.
func saIPS(t *testing.T, name, value, sas string) *tcrv1.ImagePullSecret {
	t.Helper()
	ctx := context.Background()
	ips := goodIPS(name)
	ips.Spec.ServiceAccounts = sas
	ips.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{saLabel: value}}
	require.NoError(t, env.Client.Create(ctx, ips))
	t.Cleanup(func() {
		require.NoError(t, client.IgnoreNotFound(env.Client.Delete(ctx, ips)))
		require.Eventually(t, func() bool {
			return apierrors.IsNotFound(env.Client.Get(ctx, client.ObjectKeyFromObject(ips), &tcrv1.ImagePullSecret{}))
		}, time.Minute, 100*time.Millisecond, "ImagePullSecret %s was not cleaned up", name)
	})
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		require.NoError(c, env.Client.Get(ctx, client.ObjectKeyFromObject(ips), ips))
		assert.NotEmpty(c, ips.Finalizers)
	}, time.Minute, 100*time.Millisecond, "the controller never took %s on", name)
	return ips
}

// saNamespace creates a namespace labelled saLabel=value.
func saNamespace(t *testing.T, name, value string) {
	t.Helper()
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{saLabel: value}}}
	require.NoError(t, env.Client.Create(ctx, ns))
	t.Cleanup(func() { _ = env.Client.Delete(ctx, ns) })
}

func refNames(sa *corev1.ServiceAccount) []string {
	out := []string{}
	for _, r := range sa.ImagePullSecrets {
		out = append(out, r.Name)
	}
	return out
}

// createSA creates a ServiceAccount with the given references and returns it as stored, that is
// as admitted.
func createSA(t *testing.T, namespace, name string, refs ...string) []string {
	t.Helper()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	for _, r := range refs {
		sa.ImagePullSecrets = append(sa.ImagePullSecrets, corev1.LocalObjectReference{Name: r})
	}
	require.NoError(t, env.Client.Create(context.Background(), sa))
	return refNames(sa)
}

// waitMutating waits until the API server calls the ServiceAccount webhook (its CA injected,
// its server up, its caches current): a dry-run ServiceAccount name in namespace comes back with
// ref alone.
func waitMutating(t *testing.T, namespace, ref, name string) {
	t.Helper()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
		require.NoError(c, env.Client.Create(context.Background(), sa, client.DryRunAll))
		assert.Equal(c, []string{ref}, refNames(sa))
	}, time.Minute, 100*time.Millisecond, "the ServiceAccount webhook never answered with the reference")
}

func TestServiceAccountsGetTheirReferencesAtAdmission(t *testing.T) {
	startController(t)
	ctx := context.Background()
	all := saIPS(t, "sa-all", "admission", "*")
	builders := saIPS(t, "sa-builder", "admission", "builder")
	refAll, refBuilder := all.SecretName(), builders.SecretName()
	saNamespace(t, "sa-admission", "admission")
	waitMutating(t, "sa-admission", refAll, "probe")

	t.Run("a new ServiceAccount gets the reference of every ImagePullSecret selecting it, in name order", func(t *testing.T) {
		assert.Equal(t, []string{refAll}, createSA(t, "sa-admission", "runner"))
		assert.Equal(t, []string{refAll, refBuilder}, createSA(t, "sa-admission", "builder"))
	})
	t.Run("the references come after the user's, which stay as they are", func(t *testing.T) {
		assert.Equal(t, []string{"user-b", "user-a", refAll}, createSA(t, "sa-admission", "users", "user-b", "user-a"))
	})
	t.Run("a reference already there is not added twice", func(t *testing.T) {
		assert.Equal(t, []string{refAll, "user-a"}, createSA(t, "sa-admission", "already", refAll, "user-a"))
	})
	t.Run("an update that drops the reference keeps it", func(t *testing.T) {
		sa := &corev1.ServiceAccount{}
		require.NoError(t, env.Client.Get(ctx, client.ObjectKey{Namespace: "sa-admission", Name: "users"}, sa))
		sa.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "user-a"}}
		require.NoError(t, env.Client.Update(ctx, sa))
		assert.Equal(t, []string{"user-a", refAll}, refNames(sa))
	})
	t.Run("a namespace no rule selects gets nothing", func(t *testing.T) {
		saNamespace(t, "sa-admission-other", "other")
		assert.Equal(t, []string{}, createSA(t, "sa-admission-other", "runner"))
	})
	t.Run("a namespace whose Secret name is held by a foreign Secret gets no reference to it", func(t *testing.T) {
		// The foreign Secret first, then the label that makes the rules select the namespace.
		saNamespace(t, "sa-admission-foreign", "other")
		foreign := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "sa-admission-foreign", Name: refAll}, StringData: map[string]string{"k": "v"}}
		require.NoError(t, env.Client.Create(ctx, foreign))
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "sa-admission-foreign"}}
		require.NoError(t, env.Client.Patch(ctx, ns, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"`+saLabel+`":"admission"}}}`))))
		waitMutating(t, "sa-admission-foreign", refBuilder, "builder")
		assert.Equal(t, []string{refBuilder}, createSA(t, "sa-admission-foreign", "builder"))
	})
	t.Run("a reference the controller removes stays removed", func(t *testing.T) {
		// The rule stops selecting the namespace: the controller removes the reference with a
		// patch of its own, which the webhook must not undo.
		require.NoError(t, env.Client.Patch(ctx, builders, client.RawPatch(types.MergePatchType, []byte(`{"spec":{"serviceAccounts":"nobody"}}`))))
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			sa := &corev1.ServiceAccount{}
			require.NoError(c, env.Client.Get(ctx, client.ObjectKey{Namespace: "sa-admission", Name: "builder"}, sa))
			assert.Equal(c, []string{refAll}, refNames(sa))
		}, time.Minute, 100*time.Millisecond, "the controller's removal did not hold")
	})
}

// TestAReviewPlansABoundedNumberOfImagePullSecrets: a ServiceAccount review plans at most
// controllers.MaxAdmissionImagePullSecrets ImagePullSecrets, the first by name, so that its work
// stays within the webhook's timeout whatever the number of rules; the controller adds the
// references of the others after admission, behind the user's and the webhook's.
func TestAReviewPlansABoundedNumberOfImagePullSecrets(t *testing.T) {
	startController(t)
	ctx := context.Background()
	const capLabel, n = "tcr-test/review-bound", controllers.MaxAdmissionImagePullSecrets + 4
	var all []string // the references of the n ImagePullSecrets, in name order
	for i := range n {
		ips := goodIPS(fmt.Sprintf("zz-bound-%03d", i))
		ips.Labels = map[string]string{capLabel: "true"}
		ips.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{saLabel: "bound"}}
		require.NoError(t, env.Client.Create(ctx, ips))
		all = append(all, ips.SecretName())
	}
	t.Cleanup(func() {
		require.NoError(t, env.Client.DeleteAllOf(ctx, &tcrv1.ImagePullSecret{}, client.MatchingLabels{capLabel: "true"}))
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			list := &tcrv1.ImagePullSecretList{}
			require.NoError(c, env.Client.List(ctx, list, client.MatchingLabels{capLabel: "true"}))
			assert.Empty(c, list.Items)
		}, 2*time.Minute, 200*time.Millisecond, "the ImagePullSecrets were not cleaned up")
	})
	// What a review reaches: the first MaxAdmissionImagePullSecrets of every ImagePullSecret in
	// the cluster by name (other tests' may sort before these), once the controller has taken
	// each on.
	var reached []string
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		list := &tcrv1.ImagePullSecretList{}
		require.NoError(c, env.Client.List(ctx, list))
		names := make([]string, 0, len(list.Items))
		taken := 0
		for _, ips := range list.Items {
			names = append(names, ips.Name)
			if ips.Labels[capLabel] == "true" && len(ips.Finalizers) > 0 {
				taken++
			}
		}
		slices.Sort(names)
		reached = nil
		for _, name := range names[:controllers.MaxAdmissionImagePullSecrets] {
			if strings.HasPrefix(name, "zz-bound-") {
				reached = append(reached, tcrv1.SecretNamePrefix+name)
			}
		}
		assert.Equal(c, n, taken, "ImagePullSecrets with the controller's finalizer")
	}, 2*time.Minute, 200*time.Millisecond, "the controller never took the ImagePullSecrets on")
	require.NotEmpty(t, reached)
	require.Less(t, len(reached), n)

	saNamespace(t, "sa-bound", "bound")
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "sa-bound", Name: "probe"}}
		require.NoError(c, env.Client.Create(ctx, sa, client.DryRunAll))
		assert.Equal(c, reached, refNames(sa))
	}, time.Minute, 200*time.Millisecond, "a review never answered with the references of exactly the first %d ImagePullSecrets",
		controllers.MaxAdmissionImagePullSecrets)

	assert.Equal(t, append([]string{"user-a"}, reached...), createSA(t, "sa-bound", "runner", "user-a"),
		"admitted with the references of the ImagePullSecrets a review reaches, after the user's")
	var got []string
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		sa := &corev1.ServiceAccount{}
		require.NoError(c, env.Client.Get(ctx, client.ObjectKey{Namespace: "sa-bound", Name: "runner"}, sa))
		got = refNames(sa)
		assert.Len(c, got, n+1)
	}, 2*time.Minute, 200*time.Millisecond, "the controller never added the references the review left out")
	assert.Equal(t, append([]string{"user-a"}, reached...), got[:len(reached)+1], "the admitted references stay first, in order")
	assert.ElementsMatch(t, append([]string{"user-a"}, all...), got)
}

// TestWithTheManagerStoppedServiceAccountsAreAdmitted points a copy of the ServiceAccount webhook
// at a port nothing listens on: its failurePolicy Ignore admits ServiceAccounts unchanged.
func TestWithTheManagerStoppedServiceAccountsAreAdmitted(t *testing.T) {
	ctx := context.Background()
	mwc := mutatingConfigurationFromManifest(t)
	mwc.Name = "sa-stopped"
	url := fmt.Sprintf("https://127.0.0.1:%d%s", testenv.FreePort(t), admission.ServiceAccountPath)
	mwc.Webhooks[0].ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &url}
	mwc.Webhooks[0].NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{saLabel: "stopped"}}
	require.NoError(t, env.Client.Create(ctx, mwc))
	t.Cleanup(func() { _ = env.Client.Delete(ctx, mwc) })
	saNamespace(t, "sa-stopped", "stopped")
	assert.Equal(t, []string{"user-a"}, createSA(t, "sa-stopped", "runner", "user-a"))
}

// TestGitOpsReappliesKeepTheReference re-applies a ServiceAccount manifest without
// imagePullSecrets as GitOps tools do, by 'kubectl replace' and by a forced server-side apply:
// the reference stays at admission, no version of the ServiceAccount ever lacks it, and the
// controller writes nothing for it.
func TestGitOpsReappliesKeepTheReference(t *testing.T) {
	startController(t)
	ctx := context.Background()
	ips := saIPS(t, "sa-gitops", "gitops", "*")
	ref := ips.SecretName()
	saNamespace(t, "sa-gitops", "gitops")
	waitMutating(t, "sa-gitops", ref, "probe")
	manifest := "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: deployer\n  namespace: sa-gitops\n  labels: {app: deployer}\n"

	out, _, err := env.Kubectl(manifest, "apply", "-f", "-")
	require.NoError(t, err)
	require.Equal(t, "serviceaccount/deployer created", strings.TrimSpace(out))
	sa := &corev1.ServiceAccount{}
	require.NoError(t, env.Client.Get(ctx, client.ObjectKey{Namespace: "sa-gitops", Name: "deployer"}, sa))
	require.Equal(t, []string{ref}, refNames(sa))

	// Every version from now on, as a watch sees it.
	cs, err := kubernetes.NewForConfig(env.Config)
	require.NoError(t, err)
	w, err := cs.CoreV1().ServiceAccounts("sa-gitops").Watch(ctx, metav1.ListOptions{
		FieldSelector: "metadata.name=deployer", ResourceVersion: sa.ResourceVersion,
	})
	require.NoError(t, err)
	defer w.Stop()
	var mu sync.Mutex
	var seen []*corev1.ServiceAccount
	go func() {
		for ev := range w.ResultChan() {
			if got, ok := ev.Object.(*corev1.ServiceAccount); ok {
				mu.Lock()
				seen = append(seen, got)
				mu.Unlock()
			}
		}
	}()
	before := saWrites.Load()

	out, _, err = env.Kubectl(manifest, "replace", "-f", "-")
	require.NoError(t, err)
	assert.Equal(t, "serviceaccount/deployer replaced", strings.TrimSpace(out))
	out, _, err = env.Kubectl(manifest, "apply", "--server-side", "--force-conflicts", "--field-manager=argocd-controller", "-f", "-")
	require.NoError(t, err)
	assert.Equal(t, "serviceaccount/deployer serverside-applied", strings.TrimSpace(out))
	require.NoError(t, env.Client.Get(ctx, client.ObjectKeyFromObject(sa), sa))
	assert.Equal(t, []string{ref}, refNames(sa))

	// A barrier: a ServiceAccount created under the controller's field manager, which the webhook
	// leaves alone, so the controller must add its reference. Informer events come in order, so
	// once that is done the controller has seen every version of deployer above.
	barrier := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "sa-gitops", Name: "barrier"}}
	require.NoError(t, env.Client.Create(ctx, barrier, client.FieldOwner(controllers.FieldManager)))
	require.Empty(t, refNames(barrier), "the webhook mutated the controller's own write")
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		require.NoError(c, env.Client.Get(ctx, client.ObjectKeyFromObject(barrier), barrier))
		assert.Len(c, barrier.ImagePullSecrets, 1)
	}, time.Minute, 100*time.Millisecond, "the controller never referenced the Secret from the barrier")
	assert.Equal(t, int64(1), saWrites.Load()-before, "ServiceAccount writes of the controller: the barrier's only")

	// The watch has delivered up to the last version.
	require.NoError(t, env.Client.Get(ctx, client.ObjectKeyFromObject(sa), sa))
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) > 0 && seen[len(seen)-1].ResourceVersion == sa.ResourceVersion
	}, time.Minute, 50*time.Millisecond, "the watch never delivered the last version of deployer")
	mu.Lock()
	defer mu.Unlock()
	for _, got := range seen {
		assert.Equal(t, []string{ref}, refNames(got), "version %s of deployer lacks the reference", got.ResourceVersion)
	}
	t.Logf("%d versions of deployer watched after its creation, each with %s", len(seen), ref)
}
