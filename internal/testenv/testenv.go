// Package testenv starts the project's local control plane (etcd and kube-apiserver built from
// pinned Go modules into bin/) through envtest, with the project's CRDs installed, so that every
// integration test runs against a real API server.
package testenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
	"github.com/tcr-assistant/tcr-assistant/internal/testenv/pdeathsig"
)

// Env is a running local control plane.
type Env struct {
	// Config authenticates as a cluster administrator.
	Config *rest.Config
	// Client is a client of Config that knows the project's types.
	Client client.Client
	// Scheme holds the built-in types and the project's types.
	Scheme *runtime.Scheme
	// Kubeconfig is the path of a kubeconfig file for Config, for kubectl and child processes.
	Kubeconfig string
	// Root is the repository root.
	Root string

	env     *envtest.Environment
	dir     string
	certDir string
}

// Scheme returns a scheme with the built-in types and the project's types.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := tcrv1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}

// RepoRoot returns the directory holding the project's go.mod, found from the working directory
// upwards, so that tests in any package find bin/ and config/.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if data, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil &&
			len(data) > 0 && isProjectModule(data) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("repository root (go.mod of the project) not found above the working directory")
		}
		dir = parent
	}
}

func isProjectModule(gomod []byte) bool {
	const want = "module github.com/tcr-assistant/tcr-assistant\n"
	return len(gomod) >= len(want) && string(gomod[:len(want)]) == want
}

// Option changes how the control plane is started.
type Option func(*envtest.Environment)

// WithServiceAccountAdmission turns on the API server's ServiceAccount admission plugin, which
// envtest turns off (--disable-admission-plugins=ServiceAccount) because no controller creates
// the default ServiceAccounts. With it, a Pod must name a ServiceAccount that exists, and gets its
// imagePullSecrets copied from it when it is created: what a real cluster does, and what the race
// between a new ServiceAccount and its first Pod is about. Its token volume needs no token
// controller (it is a projected volume); tests may still set automountServiceAccountToken false.
func WithServiceAccountAdmission() Option {
	return func(env *envtest.Environment) {
		env.ControlPlane.GetAPIServer().Configure().Disable("disable-admission-plugins")
	}
}

// Start starts etcd and kube-apiserver from bin/ (or $KUBEBUILDER_ASSETS) with the CRDs of
// config/crd/bases installed. Call Stop when done.
//
// Like every child of Command, etcd and kube-apiserver die with this process however it ends,
// even when it is killed and Stop never runs: envtest gives them no parent-death signal, so they
// are started through links that set one (package pdeathsig), from the thread that starts every
// child of this package.
func Start(opts ...Option) (_ *Env, err error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		assets = filepath.Join(root, "bin")
	}
	for _, name := range []string{"etcd", "kube-apiserver"} {
		if _, err := os.Stat(filepath.Join(assets, name)); err != nil {
			return nil, fmt.Errorf("local control plane binary %s is missing in %s: run 'make controlplane' first: %w", name, assets, err)
		}
	}
	s := Scheme()
	e := &Env{Scheme: s, Root: root}
	defer func() {
		if err != nil {
			e.removeDirs()
		}
	}()
	if e.dir, err = os.MkdirTemp("", "tcr-testenv-"); err != nil {
		return nil, err
	}
	// The API server's certificates live in a directory of ours rather than one envtest picks and
	// removes on stop, so that RestartAPIServer brings it back with the same serving certificate.
	if e.certDir, err = os.MkdirTemp("", "tcr-apiserver-"); err != nil {
		return nil, err
	}
	paths := map[string]string{}
	for _, name := range []string{"etcd", "kube-apiserver"} {
		if paths[name], err = pdeathsig.Wrap(filepath.Join(e.dir, "bin"), filepath.Join(assets, name)); err != nil {
			return nil, err
		}
	}
	e.env = &envtest.Environment{
		ControlPlane: envtest.ControlPlane{
			APIServer: &envtest.APIServer{CertDir: e.certDir, Path: paths["kube-apiserver"]},
			Etcd:      &envtest.Etcd{Path: paths["etcd"]},
		},
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{filepath.Join(root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		Scheme:                s,
	}
	for _, o := range opts {
		o(e.env)
	}
	onSpawnerThread(func() { e.Config, err = e.env.Start() })
	if err != nil {
		return nil, fmt.Errorf("starting the local control plane: %w", err)
	}
	defer func() {
		if err != nil {
			_ = e.env.Stop()
		}
	}()
	if e.Client, err = client.New(e.Config, client.Options{Scheme: s}); err != nil {
		return nil, err
	}
	if e.Kubeconfig, err = e.UserKubeconfig("tcr-test-admin", "system:masters"); err != nil {
		return nil, err
	}
	return e, nil
}

// AddUser returns a rest.Config that authenticates as the given user and groups, for tests of
// what an identity may do.
func (e *Env) AddUser(name string, groups ...string) (*rest.Config, error) {
	user, err := e.env.ControlPlane.AddUser(envtest.User{Name: name, Groups: groups}, nil)
	if err != nil {
		return nil, err
	}
	return user.Config(), nil
}

// UserKubeconfig writes a kubeconfig file that authenticates as the given user and groups, for
// a child process, and returns its path; Stop removes it.
func (e *Env) UserKubeconfig(name string, groups ...string) (string, error) {
	user, err := e.env.ControlPlane.AddUser(envtest.User{Name: name, Groups: groups}, nil)
	if err != nil {
		return "", fmt.Errorf("adding user %s: %w", name, err)
	}
	data, err := user.KubeConfig()
	if err != nil {
		return "", fmt.Errorf("rendering the kubeconfig of %s: %w", name, err)
	}
	path := filepath.Join(e.dir, name+".kubeconfig")
	return path, os.WriteFile(path, data, 0o600)
}

// Stop stops the control plane and removes its temporary files.
func (e *Env) Stop() error {
	err := e.env.Stop()
	e.removeDirs()
	return err
}

func (e *Env) removeDirs() {
	for _, d := range []string{e.dir, e.certDir} {
		if d != "" {
			_ = os.RemoveAll(d)
		}
	}
}

// Main runs the tests of a package against one shared control plane, stored in *env for the
// tests to use: call it from TestMain as os.Exit(testenv.Main(m, &env)). Each of before runs
// after the tests and before the control plane stops, to stop what the tests left running.
func Main(m *testing.M, env **Env, before ...func()) int {
	e, err := Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	*env = e
	code := m.Run()
	for _, f := range before {
		f()
	}
	if err := e.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping the local control plane:", err)
	}
	return code
}
