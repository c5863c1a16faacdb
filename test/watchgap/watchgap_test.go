// Package watchgap shows that a change made while the controller cannot watch is repaired once it
// can again: the API server is restarted while the manager's connections to it are cut, the test
// reverts what the controller made, and the manager, reconnecting to a server whose watch cache
// starts after its last resourceVersion, lists everything again. It repairs the reverts because
// it compares the listed objects with the state it wants, not only an old object with a new one.
package watchgap

import (
	"context"
	"io"
	"net"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
	"github.com/tcr-assistant/tcr-assistant/controllers"
	"github.com/tcr-assistant/tcr-assistant/internal/testenv"
)

const (
	ownNamespace = "tcr-assistant-system"
	timeout      = 60 * time.Second
	tick         = 100 * time.Millisecond
)

var env *testenv.Env

func TestMain(m *testing.M) { os.Exit(testenv.Main(m, &env)) }

// partition forwards TCP connections to the API server until it is cut: then it closes every
// connection it carries and refuses new ones, as a broken network would, until it is restored.
type partition struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]struct{}
}

func newPartition(t *testing.T, target string) *partition {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &partition{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	t.Cleanup(func() { _ = ln.Close(); p.setCut(true) })
	go p.serve()
	return p
}

func (p *partition) addr() string { return p.ln.Addr().String() }

func (p *partition) serve() {
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.forward(in)
	}
}

func (p *partition) forward(in net.Conn) {
	out, err := net.Dial("tcp", p.target)
	if err != nil {
		_ = in.Close()
		return
	}
	p.mu.Lock()
	if p.cut {
		p.mu.Unlock()
		_ = in.Close()
		_ = out.Close()
		return
	}
	p.conns[in], p.conns[out] = struct{}{}, struct{}{}
	p.mu.Unlock()
	go func() { _, _ = io.Copy(out, in); _ = out.Close() }()
	_, _ = io.Copy(in, out)
	_ = in.Close()
}

// setCut cuts (true) or restores (false) the link; cutting closes every open connection.
func (p *partition) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for c := range p.conns {
			_ = c.Close()
		}
		clear(p.conns)
	}
}

// startManager runs the controller as cmd/manager does, connected to the API server through p.
func startManager(t *testing.T, p *partition) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ctrl.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	require.NoError(t, ignoreExists(env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ownNamespace}})))
	cfg := *env.Config
	u, err := url.Parse(cfg.Host)
	require.NoError(t, err)
	u.Host = p.addr()
	cfg.Host = u.String()
	cfg.Timeout = 10 * time.Second
	mgr, err := ctrl.NewManager(&cfg, ctrl.Options{
		Scheme:                 env.Scheme,
		Cache:                  controllers.CacheOptions(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
	})
	require.NoError(t, err)
	r := controllers.New(controllers.Options{Namespace: ownNamespace, StatusDelay: 200 * time.Millisecond})
	require.NoError(t, r.SetupWithManager(mgr))
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			t.Errorf("manager stopped: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
}

func ignoreExists(err error) error {
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

func TestRevertsMadeDuringAWatchGapAreRepairedAfterTheRelist(t *testing.T) {
	ctx := context.Background()
	apiURL, err := url.Parse(env.Config.Host)
	require.NoError(t, err)
	link := newPartition(t, apiURL.Host)
	startManager(t, link)

	// Three namespaces, each with a ServiceAccount that also references a pull Secret of its own.
	namespaces := []string{"gap-a", "gap-b", "gap-c"}
	for _, ns := range namespaces {
		require.NoError(t, env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
		require.NoError(t, env.Client.Create(ctx, &corev1.ServiceAccount{
			ObjectMeta:       metav1.ObjectMeta{Namespace: ns, Name: "app"},
			ImagePullSecrets: []corev1.LocalObjectReference{{Name: "users-own"}},
		}))
	}
	ips := &tcrv1.ImagePullSecret{
		ObjectMeta: metav1.ObjectMeta{Name: "gap"},
		Spec: tcrv1.ImagePullSecretSpec{
			Namespaces: "gap-a,gap-b,gap-c", ServiceAccounts: "*",
			Docker: tcrv1.DockerCredential{Server: "gap.tencentcloudcr.com", Username: "gap-user", Password: "Gap-Pa55word-for-the-watch-test"},
		},
	}
	require.NoError(t, env.Client.Create(ctx, ips))
	const secretName = tcrv1.SecretNamePrefix + "gap"
	want := map[string][]byte{}
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		for _, ns := range namespaces {
			s := &corev1.Secret{}
			if !assert.NoError(c, env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: secretName}, s)) {
				return
			}
			want[ns] = s.Data[corev1.DockerConfigJsonKey]
			assert.Equal(c, []string{"users-own", secretName}, refs(c, ns))
		}
	}, timeout, tick, "the controller never distributed the Secret")

	// The gap: the manager loses the API server, which restarts; while the manager cannot reach
	// it, a GitOps sync reverts the ServiceAccount of gap-a to its manifest, and someone edits the
	// Secret of gap-b and deletes the one of gap-c: one namespace each, so that each kind of
	// change must be noticed on its own.
	link.setCut(true)
	require.NoError(t, env.RestartAPIServer())
	sa := &corev1.ServiceAccount{}
	require.NoError(t, env.Client.Get(ctx, types.NamespacedName{Namespace: "gap-a", Name: "app"}, sa))
	sa.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "users-own"}}
	require.NoError(t, env.Client.Update(ctx, sa))
	edited := &corev1.Secret{}
	require.NoError(t, env.Client.Get(ctx, types.NamespacedName{Namespace: "gap-b", Name: secretName}, edited))
	edited.Data[corev1.DockerConfigJsonKey] = []byte(`{"auths":{}}`)
	require.NoError(t, env.Client.Update(ctx, edited))
	require.NoError(t, env.Client.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "gap-c", Name: secretName}}))
	// Nothing can have been repaired yet: the manager still cannot reach the API server.
	time.Sleep(time.Second)
	assert.Equal(t, []string{"users-own"}, refs(t, "gap-a"), "repaired while the link was cut?")
	_, err = getSecret(ctx, "gap-c", secretName)
	assert.True(t, apierrors.IsNotFound(err), "repaired while the link was cut? %v", err)

	link.setCut(false)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		for _, ns := range namespaces {
			s, err := getSecret(ctx, ns, secretName)
			if !assert.NoError(c, err, ns) {
				return
			}
			assert.Equal(c, string(want[ns]), string(s.Data[corev1.DockerConfigJsonKey]), ns)
			assert.Equal(c, []string{"users-own", secretName}, refs(c, ns), ns)
		}
	}, timeout, tick, "the reverts made during the watch gap were not repaired")
}

// refs returns the names a ServiceAccount app of namespace references.
func refs(t require.TestingT, namespace string) []string {
	sa := &corev1.ServiceAccount{}
	require.NoError(t, env.Client.Get(context.Background(), types.NamespacedName{Namespace: namespace, Name: "app"}, sa))
	out := []string{}
	for _, r := range sa.ImagePullSecrets {
		out = append(out, r.Name)
	}
	return out
}

func getSecret(ctx context.Context, namespace, name string) (*corev1.Secret, error) {
	s := &corev1.Secret{}
	return s, env.Client.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, s)
}
