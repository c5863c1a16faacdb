// Package e2e proves the install bundle, dist/install.yaml, against the local control plane: it
// installs cleanly and idempotently, its RBAC is enough for the real binaries and no more, and
// the webhook it configures is the one the manager serves.
package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"

	"github.com/tcr-assistant/tcr-assistant/internal/testenv"
)

const (
	ownNamespace    = "tcr-assistant-system"
	managerSA       = "tcr-assistant-controller-manager"
	agentSA         = "hosts-updater"
	webhookConfig   = "tcr-assistant-validating-webhook-configuration"
	mutatingConfig  = "tcr-assistant-mutating-webhook-configuration"
	webhookPath     = "/validate-tcr-tencentcloudcr-com-v1-imagepullsecret"
	certSecret      = "tcr-assistant-webhook-server-cert"
	installer       = "dist/install.yaml"
	waitTimeout     = 60 * time.Second
	waitInterval    = 250 * time.Millisecond
	stopGracePeriod = 30 * time.Second
)

var (
	env *testenv.Env
	// binDir holds the binaries built from the working tree for this run, so that a test never
	// runs a stale bin/manager.
	binDir string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tcr-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := testenv.Main(m, &env)
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

var (
	buildMu    sync.Mutex
	buildCache = map[string]error{}
)

// binary builds ./cmd/<name> from the working tree once per run and returns its path.
func binary(t *testing.T, name string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	err, done := buildCache[name]
	if !done {
		_, err = testenv.BuildInto(binDir, "./cmd/"+name)
		buildCache[name] = err
	}
	require.NoError(t, err)
	return filepath.Join(binDir, name)
}

// bundleObject is one object of the bundle, as read from dist/install.yaml.
type bundleObject struct {
	APIVersion, Kind, Namespace, Name string
}

func (o bundleObject) String() string {
	if o.Namespace == "" {
		return o.Kind + " " + o.Name
	}
	return o.Kind + " " + o.Namespace + "/" + o.Name
}

// readBundle parses dist/install.yaml into its objects.
func readBundle(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(env.Root, installer))
	require.NoError(t, err, "run 'make build-installer' first")
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var objs []*unstructured.Unstructured
	for {
		var u unstructured.Unstructured
		err := dec.Decode(&u.Object)
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		if len(u.Object) == 0 {
			continue
		}
		objs = append(objs, &u)
	}
	require.NotEmpty(t, objs)
	return objs
}

// findObject returns the bundle's object of the given kind and name.
func findObject(t *testing.T, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	require.Failf(t, "object missing from the bundle", "%s %s is not in %s", kind, name, installer)
	return nil
}

// installBundle applies dist/install.yaml with a client-side 'kubectl apply', as the README
// tells users to, and returns kubectl's output.
func installBundle(t *testing.T) string {
	t.Helper()
	out, _, err := env.Kubectl("", "apply", "-f", filepath.Join(env.Root, installer))
	require.NoError(t, err)
	return out
}

// kubeconfigFor writes a kubeconfig that authenticates with a token from the TokenRequest API
// for ServiceAccount sa of the own namespace, exactly as the installed workload would, and
// returns its path.
func kubeconfigFor(t *testing.T, sa string) string {
	t.Helper()
	cs, err := kubernetes.NewForConfig(env.Config)
	require.NoError(t, err)
	tr, err := cs.CoreV1().ServiceAccounts(ownNamespace).CreateToken(context.Background(), sa,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}},
		metav1.CreateOptions{})
	require.NoError(t, err)
	require.NotEmpty(t, tr.Status.Token)

	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["e2e"] = &clientcmdapi.Cluster{Server: env.Config.Host, CertificateAuthorityData: env.Config.CAData}
	cfg.AuthInfos[sa] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	cfg.Contexts["e2e"] = &clientcmdapi.Context{Cluster: "e2e", AuthInfo: sa, Namespace: ownNamespace}
	cfg.CurrentContext = "e2e"
	path := filepath.Join(t.TempDir(), sa+".kubeconfig")
	require.NoError(t, clientcmd.WriteToFile(*cfg, path))

	// The token must authenticate as the ServiceAccount, or the RBAC checks below prove nothing.
	restCfg, err := clientcmd.BuildConfigFromFlags("", path)
	require.NoError(t, err)
	saClient, err := kubernetes.NewForConfig(restCfg)
	require.NoError(t, err)
	review, err := saClient.AuthenticationV1().SelfSubjectReviews().Create(context.Background(),
		&authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	require.NoError(t, err)
	require.Equal(t, "system:serviceaccount:"+ownNamespace+":"+sa, review.Status.UserInfo.Username)
	return path
}

// start runs path with args until the test ends (testenv.StartProcess).
func start(t *testing.T, path string, args ...string) *testenv.Process {
	t.Helper()
	return testenv.StartProcess(t, testenv.Command{Path: path, Args: args, StopGrace: stopGracePeriod})
}

// waitHealthy waits until the process answers 200 on http://127.0.0.1:<port><path>.
func waitHealthy(t *testing.T, p *testenv.Process, port int, path string) {
	t.Helper()
	url := "http://127.0.0.1:" + strconv.Itoa(port) + path
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		require.False(c, p.Exited(), "the process exited early:\n%s", p.Output())
		resp, err := http.Get(url)
		require.NoError(c, err)
		_ = resp.Body.Close()
		assert.Equal(c, http.StatusOK, resp.StatusCode)
	}, waitTimeout, waitInterval, "%s never answered 200", url)
}

// canI asks the API server, through 'kubectl auth can-i --as', whether user may do verb on
// resource (optionally "resource/name") in namespace ("" for cluster scope); flags are more
// flags of 'kubectl auth can-i', such as --subresource.
func canI(t *testing.T, user, verb, resource, namespace string, flags ...string) bool {
	t.Helper()
	args := append([]string{"auth", "can-i", verb, resource, "--as=" + user}, flags...)
	if namespace != "" {
		args = append(args, "-n", namespace)
	}
	out, _, err := env.Kubectl("", args...)
	answer := strings.TrimSpace(out)
	switch answer {
	case "yes":
		require.NoError(t, err)
		return true
	case "no":
		return false
	}
	require.Failf(t, "unexpected 'kubectl auth can-i' answer", "%q (error %v)", answer, err)
	return false
}

func serviceAccountUser(sa string) string {
	return "system:serviceaccount:" + ownNamespace + ":" + sa
}

// forbiddenLines returns the lines of a process's output that report a request the API server
// refused for lack of permission: RBAC that is not sufficient.
func forbiddenLines(output string) []string {
	var out []string
	for _, line := range strings.Split(output, "\n") {
		if strings.Contains(strings.ToLower(line), "forbidden") {
			out = append(out, line)
		}
	}
	return out
}
