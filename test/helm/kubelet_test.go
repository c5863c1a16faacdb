package helm

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tcr-assistant/tcr-assistant/internal/testenv"
)

const (
	managerDeployment = "tcr-assistant-controller-manager"
	webhookConfig     = "tcr-assistant-validating-webhook-configuration"
)

func decodeBase64(s string) ([]byte, error) { return base64.StdEncoding.DecodeString(s) }

// kubelet stands in for what the local control plane lacks (kubelet, kube-proxy, the Job
// controller): it runs the manager of the chart's Deployment and the containers of its hook Jobs
// as local processes, with the binaries built from the working tree and tokens of the
// ServiceAccounts the pods name, then writes the Job's outcome into its status as the Job
// controller would. As kube-proxy it makes the webhook reachable: the API server calls
// https://127.0.0.1:<port>, with the manager's self-provisioned CA and a 127.0.0.1 SAN, as in
// test/e2e.
type kubelet struct {
	t      *testing.T
	ns     string            // the release namespace, where the Deployment and the Jobs are
	bins   map[string]string // "/manager" -> path of the built binary
	port   int               // the webhook's port
	mu     sync.Mutex
	mgr    *testenv.Process
	mgrOut string // the output of the last manager stopped
	ran    map[types.UID]bool
	// JobLogs is the output of every Job run, by Job name, for the test's assertions.
	jobLogs map[string]string
}

func startKubelet(t *testing.T, ns string, bins map[string]string) *kubelet {
	k := &kubelet{t: t, ns: ns, bins: bins, port: testenv.FreePort(t), ran: map[types.UID]bool{}, jobLogs: map[string]string{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			if err := k.sync(ctx); err != nil && ctx.Err() == nil {
				t.Logf("kubelet: %v", err)
			}
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		k.stopManager()
		if t.Failed() {
			t.Logf("manager output:\n%s", k.managerOutput())
		}
	})
	return k
}

func (k *kubelet) sync(ctx context.Context) error {
	var deploy appsv1.Deployment
	err := env.Client.Get(ctx, client.ObjectKey{Namespace: k.ns, Name: managerDeployment}, &deploy)
	switch {
	case apierrors.IsNotFound(err) || (err == nil && deploy.DeletionTimestamp != nil):
		k.stopManager()
	case err != nil:
		return err
	default:
		if err := k.startManager(ctx, &deploy); err != nil {
			return err
		}
	}
	var jobs batchv1.JobList
	if err := env.Client.List(ctx, &jobs, client.InNamespace(k.ns)); err != nil {
		return err
	}
	for i := range jobs.Items {
		if job := &jobs.Items[i]; !k.ran[job.UID] && job.DeletionTimestamp == nil {
			k.ran[job.UID] = true
			if err := k.runJob(ctx, job); err != nil {
				return err
			}
		}
	}
	return nil
}

func (k *kubelet) startManager(ctx context.Context, deploy *appsv1.Deployment) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.mgr != nil {
		return nil
	}
	pod := deploy.Spec.Template.Spec
	kubeconfig, err := kubeconfigFor(ctx, k.t, deploy.Namespace, pod.ServiceAccountName)
	if err != nil {
		return err
	}
	c := pod.Containers[0]
	argv := append(append([]string{}, c.Command...), c.Args...)
	// ConfigMap volumes (the value privateCA) are local folders, which the flags name instead
	// of the mount paths, as the kubelet would make them: a missing ConfigMap or key keeps the
	// manager from starting.
	for _, m := range c.VolumeMounts {
		dir, isConfigMap, err := k.mountConfigMap(ctx, deploy.Namespace, pod.Volumes, m.Name)
		if err != nil {
			return fmt.Errorf("deployment %s: %w", deploy.Name, err)
		}
		if isConfigMap {
			for i := range argv {
				argv[i] = strings.ReplaceAll(argv[i], m.MountPath, dir)
			}
		}
	}
	// Out of cluster: the ServiceAccount's token, loopback addresses, a scratch certificate
	// directory and the SAN the API server will dial.
	argv = append(argv, "--kubeconfig="+kubeconfig,
		"--metrics-bind-address=0",
		"--health-probe-bind-address=127.0.0.1:"+strconv.Itoa(testenv.FreePort(k.t)),
		"--webhook-port="+strconv.Itoa(k.port),
		"--webhook-cert-dir="+k.t.TempDir(),
		"--webhook-extra-sans=127.0.0.1")
	k.mgr, err = testenv.Command{Path: k.bins[argv[0]], Args: argv[1:]}.Start()
	return err
}

func (k *kubelet) stopManager() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.mgr == nil {
		return
	}
	k.mgr.Stop()
	k.mgrOut, k.mgr = k.mgr.Output(), nil
}

func (k *kubelet) managerOutput() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.mgr != nil {
		return k.mgr.Output()
	}
	return k.mgrOut
}

func (k *kubelet) jobLog(name string) string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.jobLogs[name]
}

// runJob runs the Job's one container to its end, with its Secret volumes as local folders.
func (k *kubelet) runJob(ctx context.Context, job *batchv1.Job) error {
	pod := job.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		return fmt.Errorf("job %s: want one container, got %d", job.Name, len(pod.Containers))
	}
	c := pod.Containers[0]
	argv := append(append([]string{}, c.Command...), c.Args...)
	bin, ok := k.bins[argv[0]]
	if !ok {
		return fmt.Errorf("job %s runs %s, which the image does not hold", job.Name, argv[0])
	}
	for _, m := range c.VolumeMounts {
		dir, err := k.mountSecret(ctx, job.Namespace, pod.Volumes, m.Name)
		if err != nil {
			return fmt.Errorf("job %s: %w", job.Name, err)
		}
		for i := range argv {
			argv[i] = strings.ReplaceAll(argv[i], m.MountPath, dir)
		}
	}
	kubeconfig, err := kubeconfigFor(ctx, k.t, job.Namespace, pod.ServiceAccountName)
	if err != nil {
		return err
	}
	if err := pointWebhookAt(ctx, "https://127.0.0.1:"+strconv.Itoa(k.port)); err != nil {
		return err
	}
	var output bytes.Buffer
	runErr := testenv.Command{Path: bin, Args: argv[1:], Env: []string{"KUBECONFIG=" + kubeconfig}, Output: &output}.Run(ctx)
	out := output.Bytes()
	k.mu.Lock()
	k.jobLogs[job.Name] += string(out)
	k.mu.Unlock()

	now := metav1.Now()
	job.Status.StartTime = &now
	if runErr == nil {
		job.Status.Succeeded = 1
		job.Status.CompletionTime = &now
		job.Status.Conditions = []batchv1.JobCondition{
			{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue, LastProbeTime: now, LastTransitionTime: now},
			{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, LastProbeTime: now, LastTransitionTime: now},
		}
	} else {
		job.Status.Failed = 1
		job.Status.Conditions = []batchv1.JobCondition{
			{Type: batchv1.JobFailureTarget, Status: corev1.ConditionTrue, LastProbeTime: now, LastTransitionTime: now, Reason: "BackoffLimitExceeded", Message: string(out)},
			{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, LastProbeTime: now, LastTransitionTime: now, Reason: "BackoffLimitExceeded", Message: string(out)},
		}
	}
	if err := env.Client.Status().Update(ctx, job); err != nil {
		return fmt.Errorf("job %s: writing its status: %w", job.Name, err)
	}
	return nil
}

// mountSecret writes the Secret of the named volume into a folder and returns it.
func (k *kubelet) mountSecret(ctx context.Context, namespace string, volumes []corev1.Volume, name string) (string, error) {
	for _, v := range volumes {
		if v.Name != name {
			continue
		}
		if v.Secret == nil {
			return "", fmt.Errorf("volume %s is not a Secret", name)
		}
		var s corev1.Secret
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: v.Secret.SecretName}, &s); err != nil {
			return "", err
		}
		dir := k.t.TempDir()
		for key, data := range s.Data {
			if err := os.WriteFile(filepath.Join(dir, key), data, 0o600); err != nil {
				return "", err
			}
		}
		return dir, nil
	}
	return "", fmt.Errorf("no volume %s", name)
}

// mountConfigMap writes the keys of the ConfigMap of the named volume (its items, when it lists
// them) into a folder and returns it; isConfigMap is false for a volume of another kind.
func (k *kubelet) mountConfigMap(ctx context.Context, namespace string, volumes []corev1.Volume, name string) (dir string, isConfigMap bool, err error) {
	for _, v := range volumes {
		if v.Name != name {
			continue
		}
		if v.ConfigMap == nil {
			return "", false, nil
		}
		var cm corev1.ConfigMap
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: v.ConfigMap.Name}, &cm); err != nil {
			return "", true, fmt.Errorf("volume %s: %w", name, err)
		}
		files := map[string]string{}
		for key := range cm.Data {
			files[key] = key
		}
		if len(v.ConfigMap.Items) > 0 {
			files = map[string]string{}
			for _, it := range v.ConfigMap.Items {
				if _, ok := cm.Data[it.Key]; !ok {
					return "", true, fmt.Errorf("volume %s: configmap references non-existent config key: %s", name, it.Key)
				}
				files[it.Path] = it.Key
			}
		}
		dir := k.t.TempDir()
		for path, key := range files {
			if err := os.WriteFile(filepath.Join(dir, path), []byte(cm.Data[key]), 0o644); err != nil {
				return "", true, err
			}
		}
		return dir, true, nil
	}
	return "", false, fmt.Errorf("no volume %s", name)
}

// pointWebhookAt makes the webhook configuration call url (with its own path) instead of the
// in-cluster Service, which nothing routes to here. unpointWebhook undoes it before Helm
// upgrades or deletes the release, so that Helm finds the configuration as it left it.
func pointWebhookAt(ctx context.Context, url string) error {
	var vwc admissionregistrationv1.ValidatingWebhookConfiguration
	if err := env.Client.Get(ctx, client.ObjectKey{Name: webhookConfig}, &vwc); err != nil {
		return err
	}
	svc := vwc.Webhooks[0].ClientConfig.Service
	if svc == nil {
		return nil
	}
	patch, err := json.Marshal([]map[string]any{
		{"op": "remove", "path": "/webhooks/0/clientConfig/service"},
		{"op": "add", "path": "/webhooks/0/clientConfig/url", "value": url + *svc.Path},
	})
	if err != nil {
		return err
	}
	return env.Client.Patch(ctx, &vwc, client.RawPatch(types.JSONPatchType, patch))
}

func unpointWebhook(t *testing.T, ns string) {
	t.Helper()
	ctx := context.Background()
	var vwc admissionregistrationv1.ValidatingWebhookConfiguration
	require.NoError(t, env.Client.Get(ctx, client.ObjectKey{Name: webhookConfig}, &vwc))
	url := vwc.Webhooks[0].ClientConfig.URL
	if url == nil {
		return
	}
	path := (*url)[strings.Index((*url)[len("https://"):], "/")+len("https://"):]
	patch, err := json.Marshal([]map[string]any{
		{"op": "remove", "path": "/webhooks/0/clientConfig/url"},
		{"op": "add", "path": "/webhooks/0/clientConfig/service", "value": map[string]any{
			"namespace": ns, "name": "tcr-assistant-webhook-service", "path": path, "port": 443,
		}},
	})
	require.NoError(t, err)
	require.NoError(t, env.Client.Patch(ctx, &vwc, client.RawPatch(types.JSONPatchType, patch)))
}

// kubeconfigFor writes a kubeconfig with a token of ServiceAccount ns/sa, as a pod running as sa
// would have.
func kubeconfigFor(ctx context.Context, t *testing.T, ns, sa string) (string, error) {
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		return "", err
	}
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}},
		metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("a token for ServiceAccount %s: %w", sa, err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["local"] = &clientcmdapi.Cluster{Server: env.Config.Host, CertificateAuthorityData: env.Config.CAData}
	cfg.AuthInfos[sa] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	cfg.Contexts["local"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: sa, Namespace: ns}
	cfg.CurrentContext = "local"
	path := filepath.Join(t.TempDir(), sa+".kubeconfig")
	return path, clientcmd.WriteToFile(*cfg, path)
}
