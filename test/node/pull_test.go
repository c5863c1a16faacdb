//go:build node

// Package node runs the add-on against the single-node cluster of 'make node-up' (a real
// kubelet and containerd), from inside its network namespace: 'make test-node' starts the node,
// runs these tests with 'ip netns exec tcr-node', and stops the node whatever they did. It is the
// start of the node suite of issue 22 and not yet part of 'make test'.
package node

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
	"github.com/tcr-assistant/tcr-assistant/internal/image"
	"github.com/tcr-assistant/tcr-assistant/internal/testenv"
	"github.com/tcr-assistant/tcr-assistant/internal/testregistry"
)

const (
	timeout = 90 * time.Second
	tick    = 250 * time.Millisecond
	user    = "100012345678"
)

// nodeDir is the node's state directory ('make node-up' NODE_DIR).
func nodeDir() string {
	if d := os.Getenv("NODE_DIR"); d != "" {
		return d
	}
	return "/tmp/tcr-node"
}

// privateImage pushes an image of one static program (the node's sandbox program, under another
// name, so that its image ID is not the preloaded sandbox image's) to reg, and makes containerd
// trust reg's CA.
func privateImage(t *testing.T, reg *testregistry.Registry, password string) string {
	t.Helper()
	img, err := image.Program(filepath.Join(nodeDir(), "pause"), "app", runtime.GOARCH)
	require.NoError(t, err)
	ref, err := name.NewTag(reg.Host + "/private/app:1")
	require.NoError(t, err)
	require.NoError(t, remote.Write(ref, img, remote.WithAuth(&authn.Basic{Username: user, Password: password}),
		remote.WithTransport(reg.Transport())))
	dir := filepath.Join(nodeDir(), "certs.d", reg.Host)
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "hosts.toml"), []byte(
		"server = \"https://"+reg.Host+"\"\n[host.\"https://"+reg.Host+"\"]\n  ca = \""+reg.CAFile+"\"\n"), 0o644))
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return ref.String()
}

// TestAPodPullsWithTheDistributedSecret: the manager, run as a local process against the node's
// API server, distributes an ImagePullSecret's Secret; a Deployment in a namespace the rule
// selects pulls the private image through the kubelet and runs, and the same Deployment where the
// rule does not reach stays in ErrImagePull with the registry's 401.
func TestAPodPullsWithTheDistributedSecret(t *testing.T) {
	ctx := context.Background()
	kubeconfig := filepath.Join(nodeDir(), "admin.kubeconfig")
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	require.NoError(t, err)
	c, err := client.New(cfg, client.Options{Scheme: testenv.Scheme()})
	require.NoError(t, err)
	root, err := testenv.RepoRoot()
	require.NoError(t, err)

	out, err := testenv.Command{Path: "kubectl", Args: []string{"--kubeconfig", kubeconfig, "apply", "--server-side", "-f",
		filepath.Join(root, "config", "crd", "bases")}}.Start()
	require.NoError(t, err)
	<-out.Done()
	require.NoError(t, out.Err(), out.Output())
	for _, ns := range []string{"tcr-assistant-system", "pull-ok", "pull-no"} {
		require.NoError(t, client.IgnoreAlreadyExists(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})))
	}
	bins := testenv.Build(t, "./cmd/manager")
	testenv.StartProcess(t, testenv.Command{Path: bins["manager"], Args: []string{"--kubeconfig", kubeconfig,
		"--enable-webhook=false", "--metrics-bind-address=0", "--health-probe-bind-address=0", "--leader-elect=false"}})

	password := "pw-" + time.Now().Format("150405.000000")
	reg := testregistry.Start(t, testregistry.Options{Users: map[string]string{user: password}})
	image := privateImage(t, reg, password)

	ips := &tcrv1.ImagePullSecret{ObjectMeta: metav1.ObjectMeta{Name: "node-pull"}, Spec: tcrv1.ImagePullSecretSpec{
		Namespaces: "pull-ok", ServiceAccounts: "*",
		Docker: tcrv1.DockerCredential{Server: reg.Host, Username: user, Password: password}}}
	require.NoError(t, c.Create(ctx, ips))
	t.Cleanup(func() { _ = c.Delete(context.Background(), ips) })
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		sa := &corev1.ServiceAccount{}
		if assert.NoError(ct, c.Get(ctx, client.ObjectKey{Namespace: "pull-ok", Name: "default"}, sa)) {
			assert.Contains(ct, sa.ImagePullSecrets, corev1.LocalObjectReference{Name: "tcr.ipsnode-pull"})
		}
	}, timeout, tick, "the manager never added the reference to pull-ok/default")

	for _, ns := range []string{"pull-ok", "pull-no"} {
		labels := map[string]string{"app": "private"}
		require.NoError(t, c.Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "private"},
			Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{AutomountServiceAccountToken: ptr.To(false), TerminationGracePeriodSeconds: ptr.To[int64](1),
					Containers: []corev1.Container{{Name: "app", Image: image}}}}}}))
	}
	pod := func(ct *assert.CollectT, ns string) *corev1.Pod {
		pods := &corev1.PodList{}
		if !assert.NoError(ct, c.List(ctx, pods, client.InNamespace(ns))) || !assert.Len(ct, pods.Items, 1) {
			return nil
		}
		return &pods.Items[0]
	}
	start := time.Now()
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		if p := pod(ct, "pull-ok"); p != nil {
			assert.Equal(ct, []corev1.LocalObjectReference{{Name: "tcr.ipsnode-pull"}}, p.Spec.ImagePullSecrets)
			assert.Equal(ct, corev1.PodRunning, p.Status.Phase)
		}
	}, timeout, tick, "the Pod of the selected namespace never ran")
	t.Logf("pull-ok: Running %s after the Deployment", time.Since(start).Round(time.Millisecond))
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		p := pod(ct, "pull-no")
		if p == nil || !assert.Len(ct, p.Status.ContainerStatuses, 1) || !assert.NotNil(ct, p.Status.ContainerStatuses[0].State.Waiting) {
			return
		}
		w := p.Status.ContainerStatuses[0].State.Waiting
		assert.Contains(ct, []string{"ErrImagePull", "ImagePullBackOff"}, w.Reason)
		assert.True(ct, strings.Contains(w.Message, "401 Unauthorized"), "the kubelet's message: %s", w.Message)
		assert.Empty(ct, p.Spec.ImagePullSecrets)
	}, timeout, tick, "the Pod of the namespace the rule does not select was not refused by the registry")
}
