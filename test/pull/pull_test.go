// Package pull proves end to end that a distributed Secret lets a workload pull an image: a real
// registry (internal/testregistry, token authentication like TCR's), the controller running
// in-process against the local control plane, and the Secret read the way kubelet reads it,
// through the ServiceAccount's imagePullSecrets.
package pull_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	k8schain "github.com/google/go-containerregistry/pkg/authn/kubernetes"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
	"github.com/tcr-assistant/tcr-assistant/controllers"
	"github.com/tcr-assistant/tcr-assistant/internal/testenv"
	"github.com/tcr-assistant/tcr-assistant/internal/testregistry"
)

const (
	ownNamespace = "tcr-assistant-system"
	timeout      = 60 * time.Second
	tick         = 100 * time.Millisecond
)

var (
	env  *testenv.Env
	logs testenv.SyncBuffer
)

func TestMain(m *testing.M) {
	code := testenv.Main(m, &env)
	if code != 0 {
		fmt.Fprintln(os.Stderr, "--- manager log ---")
		fmt.Fprintln(os.Stderr, logs.String())
	}
	os.Exit(code)
}

// startManager runs the controller in-process as cmd/manager configures it, until the test ends.
func startManager(t *testing.T) {
	t.Helper()
	ctrl.SetLogger(zap.New(zap.WriteTo(&logs), zap.Level(zapcore.DebugLevel)))
	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(t, env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ownNamespace}}))
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme:                 env.Scheme,
		Cache:                  controllers.CacheOptions(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
	})
	require.NoError(t, err)
	require.NoError(t, controllers.New(controllers.Options{Namespace: ownNamespace, StatusDelay: 100 * time.Millisecond}).SetupWithManager(mgr))
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		assert.NoError(t, <-done)
	})
}

// pull fetches the manifest of ref with the credentials kubelet would use for a Pod of the
// ServiceAccount namespace/sa: the Secrets its imagePullSecrets name.
func pull(t require.TestingT, ref name.Reference, reg *testregistry.Registry, namespace, sa string) (*remote.Descriptor, error) {
	cs, err := kubernetes.NewForConfig(env.Config)
	require.NoError(t, err)
	kc, err := k8schain.New(context.Background(), cs, k8schain.Options{Namespace: namespace, ServiceAccountName: sa})
	require.NoError(t, err)
	return pullWith(ref, reg, kc)
}

func pullWith(ref name.Reference, reg *testregistry.Registry, kc authn.Keychain) (*remote.Descriptor, error) {
	return remote.Get(ref, remote.WithAuthFromKeychain(kc), remote.WithTransport(reg.Transport()))
}

// assertUnauthorized checks that err is the registry's (or its token service's) 401.
func assertUnauthorized(t *testing.T, err error) {
	t.Helper()
	var terr *transport.Error
	require.True(t, errors.As(err, &terr), "want a registry error, got %v", err)
	assert.Equal(t, http.StatusUnauthorized, terr.StatusCode, "error: %v", err)
}

func TestDistributedSecretPullsAndRotates(t *testing.T) {
	const (
		user   = "100012345678"
		oldPw  = "Pw-pull-OLD-7d1e"
		newPw  = "Pw-pull-NEW-c93b"
		ns     = "pull-app"
		sa     = "app-runner"
		crName = "pull-proof"
	)
	reg := testregistry.Start(t, testregistry.Options{Users: map[string]string{user: oldPw}})
	image := reg.Push(t, "team/app", "v1", user, oldPw)
	startManager(t)
	ctx := context.Background()

	require.NoError(t, env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	require.NoError(t, env.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sa}}))

	// Without the Secret the registry refuses the pull: it is the credential that opens it.
	_, err := pull(t, image, reg, ns, sa)
	assertUnauthorized(t, err)

	ips := &tcrv1.ImagePullSecret{
		ObjectMeta: metav1.ObjectMeta{Name: crName},
		Spec: tcrv1.ImagePullSecretSpec{
			Namespaces: ns, ServiceAccounts: sa,
			Docker: tcrv1.DockerCredential{Server: reg.Host, Username: user, Password: oldPw},
		},
	}
	require.NoError(t, env.Client.Create(ctx, ips))
	secretName := tcrv1.SecretNamePrefix + crName
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		got := &corev1.ServiceAccount{}
		require.NoError(c, env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: sa}, got))
		assert.Equal(c, []corev1.LocalObjectReference{{Name: secretName}}, got.ImagePullSecrets)
	}, timeout, tick, "the ServiceAccount never got the pull Secret")

	desc, err := pull(t, image, reg, ns, sa)
	require.NoError(t, err)
	assert.Equal(t, image.DigestStr(), desc.Digest.String())

	// Keep the old Secret as kubelet may still hold it, then rotate at the registry and in the CR.
	old := &corev1.Secret{}
	require.NoError(t, env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: secretName}, old))
	oldKeychain, err := k8schain.NewFromPullSecrets(ctx, []corev1.Secret{*old})
	require.NoError(t, err)

	reg.SetPassword(t, user, newPw)
	require.NoError(t, env.Client.Get(ctx, types.NamespacedName{Name: crName}, ips))
	ips.Spec.Docker.Password = newPw
	require.NoError(t, env.Client.Update(ctx, ips))

	require.EventuallyWithT(t, func(c *assert.CollectT) {
		desc, err := pull(c, image, reg, ns, sa)
		if assert.NoError(c, err) {
			assert.Equal(c, image.DigestStr(), desc.Digest.String())
		}
	}, timeout, tick, "the rotated Secret never pulled")
	rotated := &corev1.Secret{}
	require.NoError(t, env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: secretName}, rotated))
	assert.Contains(t, string(rotated.Data[corev1.DockerConfigJsonKey]), newPw)
	assert.NotContains(t, string(rotated.Data[corev1.DockerConfigJsonKey]), oldPw)

	// The registry refuses the old credential.
	_, err = pullWith(image, reg, oldKeychain)
	assertUnauthorized(t, err)
}
