package controllers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
	"github.com/tcr-assistant/tcr-assistant/controllers"
	"github.com/tcr-assistant/tcr-assistant/internal/faketcr"
	"github.com/tcr-assistant/tcr-assistant/internal/testenv"
)

const (
	ownNamespace    = "tcr-assistant-system"
	statusListLimit = 5
	timeout         = 60 * time.Second
	tick            = 100 * time.Millisecond
)

var (
	env *testenv.Env
	// registryCAFile is the manager's RegistryCAFile; clockOffset moves the clock of its
	// credential check forward (credential_test.go).
	registryCAFile string
	clockOffset    atomic.Int64
	// logs captures everything the in-process manager logs, at debug level.
	logs      testenv.SyncBuffer
	startOnce sync.Once
	startErr  error
	// reconciler is the manager's, for the tests of what it offers beside its controller.
	reconciler *controllers.Reconciler
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	e, err := testenv.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		if err := e.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping the local control plane:", err)
		}
	}()
	env = e
	dir, err := os.MkdirTemp("", "controllers-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	// The manager's --registry-ca-file: tests that trust a registry append its CA.
	registryCAFile = filepath.Join(dir, "registry-ca.pem")
	// The TCR API the manager mints instance tokens with: the clock of the tokens is the
	// manager's, which the tests move; the SDK signs with the real one.
	if tcrAPI, err = faketcr.New(faketcr.Options{
		Keys: map[string]string{apiKeyID: apiKeySecret}, Registries: tcrInstances,
		Now: testNow, SigningNow: time.Now,
	}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer tcrAPI.Close()
	code := m.Run()
	// Every test handed the manager credentials: none may appear anywhere it writes, whatever
	// order the tests ran in.
	if leaked := leaks(); len(leaked) > 0 {
		fmt.Fprintln(os.Stderr, "FAIL: credentials leaked:\n"+strings.Join(leaked, "\n"))
		code = 1
	}
	if code != 0 {
		// The manager's log is the first thing to read when a test fails.
		fmt.Fprintln(os.Stderr, "--- manager log ---")
		fmt.Fprintln(os.Stderr, logs.String())
	}
	return code
}

// managerWrites counts the write requests (every method but GET) the in-process manager sends
// to the API server, and managerRequests records each of them as "METHOD path", one a line;
// statuses records every status of every ImagePullSecret it wrote.
var (
	managerWrites   atomic.Int64
	managerRequests testenv.SyncBuffer
	statuses        testenv.SyncBuffer
)

// countingTransport counts the manager's write requests, and records the status bodies it
// sends, so that the leak check sees every status ever written, not only the last ones.
type countingTransport struct{ next http.RoundTripper }

// podRequests counts the manager's requests about Pods, reads included.
var podRequests atomic.Int64

func (c countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if strings.Contains(req.URL.Path, "/pods") {
		podRequests.Add(1)
	}
	if req.Method != http.MethodGet {
		managerWrites.Add(1)
		_, _ = managerRequests.Write([]byte(req.Method + " " + req.URL.Path + "\n"))
		if strings.HasSuffix(req.URL.Path, "/status") && req.GetBody != nil {
			if body, err := req.GetBody(); err == nil {
				// The request carries the whole object; the spec holds the credential by design.
				var obj struct{ Status json.RawMessage }
				data, _ := io.ReadAll(body)
				if json.Unmarshal(data, &obj) == nil {
					_, _ = statuses.Write(append(obj.Status, '\n'))
				}
			}
		}
	}
	return c.next.RoundTrip(req)
}

// startManager starts, once per test binary, a manager running the reconciler against the
// local control plane, configured as cmd/manager configures it.
func startManager(t *testing.T) {
	t.Helper()
	startOnce.Do(func() {
		ctrl.SetLogger(zap.New(zap.WriteTo(&logs), zap.Level(zapcore.DebugLevel)))
		ctx := context.Background()
		if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ownNamespace}}); err != nil && !apierrors.IsAlreadyExists(err) {
			startErr = err
			return
		}
		cfg := *env.Config
		cfg.QPS, cfg.Burst = 1000, 2000
		cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { return countingTransport{rt} }
		mgr, err := ctrl.NewManager(&cfg, ctrl.Options{
			Scheme:                 env.Scheme,
			Cache:                  controllers.CacheOptions(),
			Metrics:                metricsserver.Options{BindAddress: "0"},
			HealthProbeBindAddress: "0",
		})
		if err != nil {
			startErr = err
			return
		}
		r := controllers.New(controllers.Options{Namespace: ownNamespace, StatusListLimit: statusListLimit, StatusDelay: 200 * time.Millisecond,
			RegistryCAFile: registryCAFile, TCRAPIEndpoint: tcrAPI.Endpoint, TCRAPICAFile: tcrAPI.CAFile, Now: testNow})
		reconciler = r
		if startErr = r.SetupWithManager(mgr); startErr != nil {
			return
		}
		go func() {
			if err := mgr.Start(ctx); err != nil {
				fmt.Fprintln(os.Stderr, "manager stopped:", err)
			}
		}()
	})
	require.NoError(t, startErr)
}

// newIPS returns an ImagePullSecret with a name and password unique to the test.
func newIPS(name, namespaces, serviceAccounts string) *tcrv1.ImagePullSecret {
	return &tcrv1.ImagePullSecret{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: tcrv1.ImagePullSecretSpec{
			Namespaces:      namespaces,
			ServiceAccounts: serviceAccounts,
			Docker: tcrv1.DockerCredential{
				Server:   "registry-" + name + ".tencentcloudcr.com",
				Username: "user-" + name,
				Password: passwordFor("user-"+name, name+"-pass"),
			},
		},
	}
}

var (
	secretsMu sync.Mutex
	// usedSecrets is every password (and auth string) handed to the controller by the tests;
	// TestCredentialsNeverLeak checks that none of them appears in its logs.
	usedSecrets []string
	// usernames maps each password to the username it was used with.
	usernames = map[string]string{}
)

// password returns a recognisable password and remembers it for the leak check.
func password(seed string) string { return passwordFor("", seed) }

// passwordFor is password for a known username, whose auth string the leak check looks for too.
func passwordFor(username, seed string) string {
	p := "S3cr3t-" + seed + "-pw"
	secretsMu.Lock()
	usedSecrets = append(usedSecrets, p)
	if username != "" {
		usernames[p] = username
	}
	secretsMu.Unlock()
	return p
}

// createIPS creates ips and registers its deletion (waiting until the finalizer is gone).
func createIPS(t *testing.T, ips *tcrv1.ImagePullSecret) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, env.Client.Create(ctx, ips))
	t.Cleanup(func() { deleteIPS(t, ips.Name) })
}

func deleteIPS(t *testing.T, name string) {
	t.Helper()
	ctx := context.Background()
	err := env.Client.Delete(ctx, &tcrv1.ImagePullSecret{ObjectMeta: metav1.ObjectMeta{Name: name}})
	if apierrors.IsNotFound(err) {
		return
	}
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		return apierrors.IsNotFound(env.Client.Get(ctx, types.NamespacedName{Name: name}, &tcrv1.ImagePullSecret{}))
	}, timeout, tick, "ImagePullSecret %s was not deleted (finalizer left?)", name)
}

func createNamespace(t *testing.T, name string, labels map[string]string, serviceAccounts ...string) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}))
	for _, sa := range serviceAccounts {
		createServiceAccount(t, name, sa)
	}
}

func createServiceAccount(t *testing.T, namespace, name string, pullSecrets ...string) {
	t.Helper()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	for _, p := range pullSecrets {
		sa.ImagePullSecrets = append(sa.ImagePullSecrets, corev1.LocalObjectReference{Name: p})
	}
	require.NoError(t, env.Client.Create(context.Background(), sa))
}

func getSecret(namespace, name string) (*corev1.Secret, error) {
	s := &corev1.Secret{}
	return s, env.Client.Get(context.Background(), types.NamespacedName{Namespace: namespace, Name: name}, s)
}

// pullSecrets returns the imagePullSecrets names of a ServiceAccount.
func pullSecrets(t require.TestingT, namespace, name string) []string {
	sa := &corev1.ServiceAccount{}
	require.NoError(t, env.Client.Get(context.Background(), types.NamespacedName{Namespace: namespace, Name: name}, sa))
	out := []string{}
	for _, r := range sa.ImagePullSecrets {
		out = append(out, r.Name)
	}
	return out
}

func getIPS(t require.TestingT, name string) *tcrv1.ImagePullSecret {
	ips := &tcrv1.ImagePullSecret{}
	require.NoError(t, env.Client.Get(context.Background(), types.NamespacedName{Name: name}, ips))
	return ips
}

// testNow is the clock of the manager's credential check.
func testNow() time.Time { return time.Now().Add(time.Duration(clockOffset.Load())) }

// eventuallyStatus waits until the status of the named ImagePullSecret satisfies check. A status
// is settled once it carries the result of the credential check, which comes in a later status
// write (the test servers do not resolve, so it comes within milliseconds), unless the spec has
// no credential to check.
func eventuallyStatus(t *testing.T, name string, check func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus)) {
	t.Helper()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		ips := &tcrv1.ImagePullSecret{}
		if !assert.NoError(c, env.Client.Get(context.Background(), types.NamespacedName{Name: name}, ips)) {
			return
		}
		if ready := meta.FindStatusCondition(ips.Status.Conditions, tcrv1.ConditionReady); ready != nil &&
			slices.Contains([]string{tcrv1.ReasonDistributed, tcrv1.ReasonTargetsFailed, tcrv1.ReasonProgressing}, ready.Reason) {
			assert.NotNil(c, meta.FindStatusCondition(ips.Status.Conditions, tcrv1.ConditionCredentialVerified), "the credential check has not ended")
		}
		check(c, ips.Status)
	}, timeout, tick)
}

// expectedDockerConfig is the .dockerconfigjson the original product writes.
func expectedDockerConfig(server, user, pass string) string {
	return fmt.Sprintf(`{"auths":{%q:{"username":%q,"password":%q,"auth":%q}}}`, server, user, pass, b64(user+":"+pass))
}

// listOwnedSecrets lists the Secrets distributed for the ImagePullSecret name.
func listOwnedSecrets(t require.TestingT, name string) []corev1.Secret {
	list := &corev1.SecretList{}
	require.NoError(t, env.Client.List(context.Background(), list, client.MatchingLabels{tcrv1.OwnerLabel: name}))
	return list.Items
}
