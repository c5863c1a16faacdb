//go:build node

package node

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
	"github.com/tcr-assistant/tcr-assistant/internal/faketcr"
	"github.com/tcr-assistant/tcr-assistant/internal/image"
	"github.com/tcr-assistant/tcr-assistant/internal/testregistry"
)

const (
	system     = "tcr-assistant-system"
	manager    = "tcr-assistant-controller-manager"
	user       = "100012345678"
	rule       = "node-pull"
	secretName = "tcr.ips" + rule
	// addOnRepo is the add-on's repository in the test registry; anyone may pull it, as from a
	// public TCR namespace, since the bundle's Pods name no pull Secret.
	addOnRepo = "tcr-assistant/tcr-assistant"
)

// TestTheBundle installs the add-on as the README says, from its own image pushed to a registry,
// and proves each thing a user meets on a first install, in order: the manager is Ready and
// leads, the webhooks answer through their Service, metrics are served to a reader, a Pod pulls
// with the distributed Secret (and one without it is refused, and a rotation pulls again), the
// hosts-updater DaemonSet edits the node's hosts file from inside its locked-down container, and
// a re-apply with a new tag rolls the manager without one write to a distributed object.
func TestTheBundle(t *testing.T) {
	ctx := context.Background()
	cfg, c := admin(t)
	cs := kubernetes.NewForConfigOrDie(cfg)

	password := "pw-" + time.Now().Format("150405.000000")
	// The registry of the private image, which asks every client for a credential, and the one
	// the add-on's image is installed from.
	reg := startRegistry(t, password, false)
	addOns := startRegistry(t, password, true)
	img1 := pushAddOn(t, addOns, password, "node1")
	// The manager trusts, through the private-CA component (README, "Private CAs"), a registry
	// it can reach on the node's address and the TCR API it mints tokens with, also there.
	caReg := startReachableRegistry(t, password)
	api := faketcr.Start(t, faketcr.Options{Keys: map[string]string{nodeKeyID: nodeKeySecret}, Registries: []string{nodeInstance}, Addr: nodeIP + ":0"})
	installCA(t, slices.Concat(caReg.CAPEM, api.CAPEM))
	// The registry of secretless pulls, whose host the credential provider's DaemonSet matches.
	providerReg := startRegistry(t, password, false)
	bundle := overlay{components: []string{"config/components/credential-provider"},
		managerArgs: []string{"--tcr-api-endpoint=" + api.Endpoint, "--credential-provider-cache-duration=" + providerCache.String()},
		provider:    providerPatches(providerReg)}
	installBundle(t, renderWithCA(t, img1, bundle))
	t.Cleanup(func() { deleteRules(t, c) })

	var managerPod corev1.Pod
	ok := t.Run("install", func(t *testing.T) {
		managerPod = readyManager(t, c, img1)
		kubectl(t, "-n", system, "rollout", "status", "daemonset/hosts-updater", "--timeout=120s")
		leader := &coordinationv1.Lease{}
		require.EventuallyWithT(t, func(ct *assert.CollectT) {
			if assert.NoError(ct, c.Get(ctx, client.ObjectKey{Namespace: system, Name: "tcr-assistant-leader"}, leader)) {
				assert.True(ct, strings.HasPrefix(ptr.Deref(leader.Spec.HolderIdentity, ""), managerPod.Name+"_"),
					"the leader is %q", ptr.Deref(leader.Spec.HolderIdentity, ""))
			}
		}, timeout, tick, "the manager never took the lease")

		// The CA of the certificate the manager provisioned is the caBundle of both webhooks.
		require.EventuallyWithT(t, func(ct *assert.CollectT) {
			cert := &corev1.Secret{}
			vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{}
			mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
			if !assert.NoError(ct, c.Get(ctx, client.ObjectKey{Namespace: system, Name: "tcr-assistant-webhook-server-cert"}, cert)) ||
				!assert.NoError(ct, c.Get(ctx, client.ObjectKey{Name: "tcr-assistant-validating-webhook-configuration"}, vwc)) ||
				!assert.NoError(ct, c.Get(ctx, client.ObjectKey{Name: "tcr-assistant-mutating-webhook-configuration"}, mwc)) {
				return
			}
			ca := cert.Data["ca.crt"]
			if assert.NotEmpty(ct, ca) {
				assert.Contains(ct, string(vwc.Webhooks[0].ClientConfig.CABundle), strings.TrimSpace(string(ca)))
				assert.Contains(ct, string(mwc.Webhooks[0].ClientConfig.CABundle), strings.TrimSpace(string(ca)))
			}
		}, timeout, tick, "the webhook CA was never injected")
	})
	if !ok {
		t.FailNow()
	}

	t.Run("webhooks through their Service", func(t *testing.T) {
		bad := &tcrv1.ImagePullSecret{ObjectMeta: metav1.ObjectMeta{Name: "node-bad"}, Spec: tcrv1.ImagePullSecretSpec{
			Namespaces: "dev-*", ServiceAccounts: "*",
			Docker: tcrv1.DockerCredential{Server: reg.Host, Username: user, Password: "node-bad-password"}}}
		err := c.Create(ctx, bad)
		require.Error(t, err)
		assert.Contains(t, err.Error(), `admission webhook "vimagepullsecret.tcr.tencentcloudcr.com" denied the request`)
		assert.NotContains(t, err.Error(), "node-bad-password")
	})

	// recoverPods: the namespace's ServiceAccount can be admitted before the manager's cache has
	// the rule (the webhook then adds nothing), and its first Pod copies it without the
	// reference, a race a loaded machine loses; recovery is what heals it (issue 23).
	ips := &tcrv1.ImagePullSecret{ObjectMeta: metav1.ObjectMeta{Name: rule}, Spec: tcrv1.ImagePullSecretSpec{
		Namespaces: "pull-ok", ServiceAccounts: "*", RecoverPods: true,
		Docker: tcrv1.DockerCredential{Server: reg.Host, Username: user, Password: password}}}
	app := privateImage(t, reg, password)
	for _, ns := range []string{"pull-ok", "pull-no"} {
		t.Cleanup(func() { _ = c.Delete(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}) })
	}
	t.Run("pull", func(t *testing.T) {
		// The rule, then at once the namespace and the Deployment, as one 'kubectl apply' would.
		require.NoError(t, c.Create(ctx, ips))
		for _, ns := range []string{"pull-ok", "pull-no"} {
			require.NoError(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
			require.NoError(t, c.Create(ctx, deployment(ns, app)))
		}
		start := time.Now()
		running := func(t *testing.T, what string) *corev1.Pod {
			var pod *corev1.Pod
			require.EventuallyWithT(t, func(ct *assert.CollectT) {
				if p := onlyPod(ct, c, "pull-ok"); p != nil && assert.Equal(ct, corev1.PodRunning, p.Status.Phase) {
					assert.Equal(ct, []corev1.LocalObjectReference{{Name: secretName}}, p.Spec.ImagePullSecrets)
					pod = p
				}
			}, 2*timeout, tick, "%s: the Pod of the selected namespace never ran", what)
			return pod
		}
		first := running(t, "first pull")
		require.NoError(t, c.Get(ctx, client.ObjectKeyFromObject(ips), ips))
		t.Logf("pull-ok: Running %s after the rule (Pods recovered: %d)", time.Since(start).Round(time.Millisecond), ips.Status.PodsRecovered)

		require.EventuallyWithT(t, func(ct *assert.CollectT) {
			p := onlyPod(ct, c, "pull-no")
			if p == nil || !assert.Len(ct, p.Status.ContainerStatuses, 1) || !assert.NotNil(ct, p.Status.ContainerStatuses[0].State.Waiting) {
				return
			}
			w := p.Status.ContainerStatuses[0].State.Waiting
			assert.Contains(ct, []string{"ErrImagePull", "ImagePullBackOff"}, w.Reason)
			assert.Contains(ct, w.Message, "401 Unauthorized", "the kubelet's message")
			assert.Empty(ct, p.Spec.ImagePullSecrets)
		}, timeout, tick, "the Pod of the namespace the rule does not select was not refused by the registry")

		// A rotation: the registry takes only the new password, the rule carries it, and a new
		// Pod (the image is pulled again for every Pod: imagePullPolicy Always) runs.
		rotated := password + "-rotated"
		reg.SetPassword(t, user, rotated)
		require.NoError(t, c.Get(ctx, client.ObjectKeyFromObject(ips), ips))
		ips.Spec.Docker.Password = rotated
		require.NoError(t, c.Update(ctx, ips))
		require.EventuallyWithT(t, func(ct *assert.CollectT) {
			s := &corev1.Secret{}
			if assert.NoError(ct, c.Get(ctx, client.ObjectKey{Namespace: "pull-ok", Name: secretName}, s)) {
				assert.Contains(ct, string(s.Data[corev1.DockerConfigJsonKey]), authOf(rotated))
			}
		}, timeout, tick, "the rotated password never reached pull-ok")
		require.NoError(t, c.Delete(ctx, first))
		start = time.Now()
		second := running(t, "after the rotation")
		assert.NotEqual(t, first.UID, second.UID)
		t.Logf("pull-ok after the rotation: Running %s after the old Pod's deletion", time.Since(start).Round(time.Millisecond))
	})

	t.Run("private CA", func(t *testing.T) {
		caTrusted(t, c, caReg, password)
	})

	t.Run("minted token pulls", func(t *testing.T) {
		mintedPull(t, c, api, password)
	})

	t.Run("recover stuck pods", func(t *testing.T) {
		recoverStuckPods(t, c, reg.Host, app, addOns.Host+"/private/elsewhere:1", ips.Spec.Docker.Password)
	})

	t.Run("metrics to a reader", func(t *testing.T) {
		token := readerToken(t, c, cs)
		status, body := scrape(t, managerPod.Status.PodIP, token)
		require.Equal(t, http.StatusOK, status, body)
		assert.Contains(t, body, "\ncontroller_runtime_reconcile_total{")
		status, _ = scrape(t, managerPod.Status.PodIP, "")
		assert.Equal(t, http.StatusUnauthorized, status, "without a token")
	})

	t.Run("agent", func(t *testing.T) {
		agentOnTheNode(t, c)
	})

	t.Run("upgrade in place", func(t *testing.T) {
		before := distributed(t, c)
		require.NotEmpty(t, before)
		img2 := pushAddOn(t, addOns, password, "node2")
		kubectl(t, "apply", "-f", renderWithCA(t, img2, bundle))
		pod := readyManager(t, c, img2)
		require.NotEqual(t, managerPod.Name, pod.Name, "the manager did not roll")
		kubectl(t, "-n", system, "rollout", "status", "daemonset/hosts-updater", "--timeout=120s")
		// The new manager has led and reconciled the rule: what it would write, it has written.
		token := readerToken(t, c, cs)
		require.EventuallyWithT(t, func(ct *assert.CollectT) {
			status, body := scrape(t, pod.Status.PodIP, token)
			if assert.Equal(ct, http.StatusOK, status) {
				assert.Contains(ct, body, `controller_runtime_reconcile_total{controller="imagepullsecret",result="success"}`)
				assert.NotContains(ct, body, `controller_runtime_reconcile_total{controller="imagepullsecret",result="success"} 0`)
			}
		}, timeout, tick, "the new manager never reconciled the rule")
		assert.Equal(t, before, distributed(t, c), "a distributed Secret or ServiceAccount was written (resourceVersions)")
		assert.Contains(t, hostsFile(t), "node-suite.tencentcloudcr.com", "the hosts entries after the DaemonSet's roll")
	})

	// Last: it restarts the kubelet and stops the manager for a while.
	t.Run("secretless pulls", func(t *testing.T) {
		secretlessPulls(t, c, cs, providerReg, password)
	})
}

// startRegistry starts a registry with the test user and makes containerd trust its CA. A public one lets anyone pull the add-on's repository.
func startRegistry(t *testing.T, password string, public bool) *testregistry.Registry {
	t.Helper()
	opts := testregistry.Options{Users: map[string]string{user: password}}
	if public {
		opts.Public = []string{addOnRepo}
	}
	reg := testregistry.Start(t, opts)
	trustOnTheNode(t, reg)
	return reg
}

// trustOnTheNode makes containerd trust the CA of reg (certs.d/<host>/hosts.toml).
func trustOnTheNode(t *testing.T, reg *testregistry.Registry) {
	t.Helper()
	dir := filepath.Join(nodeDir(), "certs.d", reg.Host)
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "hosts.toml"), []byte(
		"server = \"https://"+reg.Host+"\"\n[host.\"https://"+reg.Host+"\"]\n  ca = \""+reg.CAFile+"\"\n"), 0o644))
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
}

// pushAddOn pushes the add-on's image (bin/image, 'make image') as tag with 'make image-push',
// the way the README says: the credential from a docker config, the registry's CA from a file.
func pushAddOn(t *testing.T, reg *testregistry.Registry, password, tag string) string {
	t.Helper()
	root := repoRoot(t)
	if _, err := os.Stat(filepath.Join(root, "bin", "image", "index.json")); err != nil {
		t.Fatalf("the add-on's image is not built: run 'make image' (%v)", err)
	}
	dockerConfig := t.TempDir()
	auth, err := json.Marshal(map[string]any{"auths": map[string]any{reg.Host: map[string]string{"auth": authOf(password)}}})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dockerConfig, "config.json"), auth, 0o600))
	img := reg.Host + "/" + addOnRepo + ":" + tag
	run(t, "make", "-C", root, "--no-print-directory", "image-push", "IMG="+img, "REGISTRY_CA="+reg.CAFile, "DOCKER_CONFIG="+dockerConfig)
	return img
}

// authOf is the base64 "user:password" of a docker config.
func authOf(password string) string {
	return basicAuth(user, password)
}

// render renders the bundle for img with 'make build-installer' and returns the file.
func render(t *testing.T, img string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "install.yaml")
	run(t, "make", "-C", repoRoot(t), "--no-print-directory", "build-installer", "IMG="+img, "INSTALLER="+file)
	return file
}

// installBundle applies a rendered bundle, as the README's install does, and deletes it when the
// test ends.
func installBundle(t *testing.T, file string) {
	t.Helper()
	kubectl(t, "apply", "-f", file)
	t.Cleanup(func() {
		if t.Failed() {
			for _, what := range []string{"deployment/" + manager, "daemonset/hosts-updater"} {
				out, _ := runErr("kubectl", "--kubeconfig", adminKubeconfig(), "-n", system, "logs", "--tail=200", what)
				t.Logf("%s's log:\n%s", what, out)
			}
		}
		if out, err := runErr("kubectl", "--kubeconfig", adminKubeconfig(), "delete", "--ignore-not-found", "--wait", "--timeout=120s", "-f", file); err != nil {
			t.Errorf("deleting the bundle: %v\n%s", err, out)
		}
	})
}

// deleteRules deletes every ImagePullSecret and waits until the manager has let them go.
func deleteRules(t *testing.T, c client.Client) {
	t.Helper()
	ctx := context.Background()
	_ = c.DeleteAllOf(ctx, &tcrv1.ImagePullSecret{})
	assert.EventuallyWithT(t, func(ct *assert.CollectT) {
		list := &tcrv1.ImagePullSecretList{}
		if assert.NoError(ct, c.List(ctx, list)) {
			assert.Empty(ct, list.Items)
		}
	}, timeout, tick, "the rules were not deleted")
}

// readyManager waits until the manager's Deployment has rolled out with img, and returns its Pod.
func readyManager(t *testing.T, c client.Client, img string) corev1.Pod {
	t.Helper()
	kubectl(t, "-n", system, "rollout", "status", "deployment/"+manager, "--timeout=180s")
	var pod corev1.Pod
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		pods := &corev1.PodList{}
		if !assert.NoError(ct, c.List(context.Background(), pods, client.InNamespace(system),
			client.MatchingLabels{"control-plane": "controller-manager"})) || !assert.Len(ct, pods.Items, 1) {
			return
		}
		p := pods.Items[0]
		if assert.Equal(ct, img, p.Spec.Containers[0].Image) && assert.Len(ct, p.Status.ContainerStatuses, 1) {
			assert.True(ct, p.Status.ContainerStatuses[0].Ready, "the manager is not Ready")
			pod = p
		}
	}, timeout, tick, "the manager's Pod with %s", img)
	return pod
}

// privateImage pushes an image of one static program (the node's sandbox program, under another
// name, so that its image ID is not the preloaded sandbox image's) to reg's private repository.
func privateImage(t *testing.T, reg *testregistry.Registry, password string) string {
	t.Helper()
	img, err := image.Program(filepath.Join(nodeDir(), "pause"), "app", runtime.GOARCH)
	require.NoError(t, err)
	ref, err := name.NewTag(reg.Host + "/private/app:1")
	require.NoError(t, err)
	require.NoError(t, remote.Write(ref, img, remote.WithAuth(&authn.Basic{Username: user, Password: password}),
		remote.WithTransport(reg.Transport())))
	return ref.String()
}

// deployment runs img, pulled again for every Pod.
func deployment(ns, img string) *appsv1.Deployment {
	labels := map[string]string{"app": "private"}
	return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "private"},
		Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: labels},
			Spec: corev1.PodSpec{AutomountServiceAccountToken: ptr.To(false), TerminationGracePeriodSeconds: ptr.To[int64](1),
				Containers: []corev1.Container{{Name: "app", Image: img, ImagePullPolicy: corev1.PullAlways}}}}}}
}

// onlyPod returns the one live Pod of ns.
func onlyPod(ct *assert.CollectT, c client.Client, ns string) *corev1.Pod {
	pods := &corev1.PodList{}
	if !assert.NoError(ct, c.List(context.Background(), pods, client.InNamespace(ns))) {
		return nil
	}
	var live []corev1.Pod
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil {
			live = append(live, p)
		}
	}
	if !assert.Len(ct, live, 1) {
		return nil
	}
	return &live[0]
}

// readerToken returns a token of a ServiceAccount bound to the bundle's metrics reader role.
func readerToken(t *testing.T, c client.Client, cs kubernetes.Interface) string {
	t.Helper()
	ctx := context.Background()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "metrics-scraper"}}
	require.NoError(t, client.IgnoreAlreadyExists(c.Create(ctx, sa)))
	crb := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "node-metrics-scraper"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "tcr-assistant-metrics-reader"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: "default", Name: sa.Name}}}
	require.NoError(t, client.IgnoreAlreadyExists(c.Create(ctx, crb)))
	t.Cleanup(func() { _ = c.Delete(context.Background(), crb); _ = c.Delete(context.Background(), sa) })
	tr, err := cs.CoreV1().ServiceAccounts("default").CreateToken(ctx, sa.Name, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	require.NoError(t, err)
	return tr.Status.Token
}

// scrape GETs the manager's /metrics at podIP with token ("" for none).
func scrape(t require.TestingT, podIP, token string) (int, string) {
	req, err := http.NewRequest(http.MethodGet, "https://"+podIP+":8443/metrics", nil)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	// The metrics server's certificate is the self-signed one controller-runtime makes.
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := hc.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

// distributed returns the resourceVersion of every Secret and ServiceAccount in the namespaces
// the rule selects.
func distributed(t *testing.T, c client.Client) map[string]string {
	t.Helper()
	rvs := map[string]string{}
	secrets := &corev1.SecretList{}
	require.NoError(t, c.List(context.Background(), secrets, client.InNamespace("pull-ok")))
	for _, s := range secrets.Items {
		rvs["Secret "+s.Name] = s.ResourceVersion
	}
	sas := &corev1.ServiceAccountList{}
	require.NoError(t, c.List(context.Background(), sas, client.InNamespace("pull-ok")))
	for _, s := range sas.Items {
		rvs["ServiceAccount "+s.Name] = s.ResourceVersion
	}
	return rvs
}

// process finds the running process whose command line starts with argv0.
func process(argv0 string) (int, error) {
	pids, err := procs(func(_, cmdline string) bool { return strings.HasPrefix(cmdline, argv0+"\x00") })
	if err != nil || len(pids) == 0 {
		return 0, fmt.Errorf("no process %s: %w", argv0, errors.Join(err, os.ErrNotExist))
	}
	return pids[0], nil
}

// procs returns the pids of the processes whose executable and command line (NUL-separated
// arguments) match.
func procs(match func(exe, cmdline string) bool) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe, _ := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if match(exe, string(cmdline)) {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// writable tells whether a file can be created at path, and the error when not.
func writable(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_ = f.Close()
	return os.Remove(path)
}
