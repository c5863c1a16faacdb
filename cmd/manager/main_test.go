package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
	"github.com/tcr-assistant/tcr-assistant/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { os.Exit(testenv.Main(m, &env)) }

// buildManager builds this command into a temporary directory.
func buildManager(t testing.TB) string {
	t.Helper()
	return testenv.Build(t, "./cmd/manager")["manager"]
}

// startManager runs bin against the test control plane until the test ends.
func startManager(t testing.TB, bin string, args ...string) *testenv.Process {
	t.Helper()
	args = append([]string{
		"--kubeconfig", env.Kubeconfig, "--enable-webhook=false",
		"--metrics-bind-address=0", "--health-probe-bind-address=0",
	}, args...)
	return testenv.StartProcess(t, testenv.Command{Path: bin, Args: args})
}

func createTargets(t testing.TB, prefix string, namespaces int, serviceAccounts ...string) []string {
	t.Helper()
	ctx := context.Background()
	var names []string
	var mu sync.Mutex
	work := make(chan int)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for i := range work {
				ns := fmt.Sprintf("%s-%04d", prefix, i)
				assert.NoError(t, env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
				for j, sa := range serviceAccounts {
					obj := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sa}}
					if j == 0 {
						obj.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "team-registry"}}
					}
					assert.NoError(t, env.Client.Create(ctx, obj))
				}
				mu.Lock()
				names = append(names, ns)
				mu.Unlock()
			}
		})
	}
	for i := range namespaces {
		work <- i
	}
	close(work)
	wg.Wait()
	return names
}

func ownedSecrets(t require.TestingT, name string) []corev1.Secret {
	list := &corev1.SecretList{}
	require.NoError(t, env.Client.List(context.Background(), list, client.MatchingLabels{tcrv1.OwnerLabel: name}))
	return list.Items
}

// TestKilledManagerIsResumedWithoutDuplicates SIGKILLs the manager midway through distributing
// to 200 namespaces, starts a new one, and expects every Secret and reference exactly once.
func TestKilledManagerIsResumedWithoutDuplicates(t *testing.T) {
	bin := buildManager(t)
	ctx := context.Background()
	namespaces := createTargets(t, "kill", 200, "default", "builder", "deployer")
	ips := &tcrv1.ImagePullSecret{
		ObjectMeta: metav1.ObjectMeta{Name: "kill"},
		Spec: tcrv1.ImagePullSecretSpec{Namespaces: "*", ServiceAccounts: "*", Docker: tcrv1.DockerCredential{
			Server: "kill.tencentcloudcr.com", Username: "kill", Password: "kill-password",
		}},
	}
	require.NoError(t, env.Client.Create(ctx, ips))

	// A slow first manager (20 requests/s) so that the kill lands midway.
	first := startManager(t, bin, "--kube-api-qps=20", "--kube-api-burst=20")
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.GreaterOrEqual(c, len(ownedSecrets(c, "kill")), 20)
	}, 2*time.Minute, 50*time.Millisecond)
	first.Kill()
	atKill := len(ownedSecrets(t, "kill"))
	require.Less(t, atKill, len(namespaces), "the first manager must be killed before it finished")
	t.Logf("killed the first manager with %d of %d Secrets written", atKill, len(namespaces))

	startManager(t, bin)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		secrets := ownedSecrets(c, "kill")
		perNamespace := map[string]int{}
		for _, s := range secrets {
			perNamespace[s.Namespace]++
		}
		for _, ns := range namespaces {
			assert.Equal(c, 1, perNamespace[ns], "Secrets in %s", ns)
		}
		list := &corev1.ServiceAccountList{}
		if !assert.NoError(c, env.Client.List(ctx, list)) {
			return
		}
		checked := 0
		for _, sa := range list.Items {
			if len(sa.Namespace) < 5 || sa.Namespace[:5] != "kill-" {
				continue
			}
			checked++
			var got []string
			for _, r := range sa.ImagePullSecrets {
				got = append(got, r.Name)
			}
			if sa.Name == "default" {
				assert.Equal(c, []string{"team-registry", "tcr.ipskill"}, got, sa.Namespace)
			} else {
				assert.Equal(c, []string{"tcr.ipskill"}, got, sa.Namespace+"/"+sa.Name)
			}
		}
		assert.Equal(c, 3*len(namespaces), checked)
		cur := &tcrv1.ImagePullSecret{}
		if assert.NoError(c, env.Client.Get(ctx, client.ObjectKey{Name: "kill"}, cur)) {
			assert.Equal(c, int32(3*len(namespaces)), cur.Status.SAsSuccess)
			assert.Equal(c, cur.Status.SecretsDesired, cur.Status.SecretsSuccess)
			assert.Equal(c, cur.Status.SAsDesired, cur.Status.SAsSuccess)
		}
	}, 2*time.Minute, 200*time.Millisecond)
}

// TestRegistryCAFileIsCheckedAtStart: a --registry-ca-file without a certificate stops the
// manager at start, rather than report every registry of a private CA as a TLSError.
func TestRegistryCAFileIsCheckedAtStart(t *testing.T) {
	bin := buildManager(t)
	file := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(file, []byte("not a certificate\n"), 0o600))
	p := startManager(t, bin, "--registry-ca-file="+file)
	select {
	case <-p.Done():
		require.Error(t, p.Err())
		assert.Equal(t, 1, p.ExitCode())
	case <-time.After(time.Minute):
		t.Fatal("the manager did not stop")
	}
	assert.Contains(t, p.Output(), "registry CA file "+file+" holds no PEM certificate")
}
