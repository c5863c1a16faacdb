package bench

import (
	"io"
	"os"
	"path/filepath"
	"strconv"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/tcr-assistant/tcr-assistant/internal/testenv"
)

// ManagerUser is the identity the manager runs as. The audit policy records the writes of this
// user only, so the benchmark's own fixture and floor traffic costs the API server nothing extra
// and never pollutes the write counts.
const ManagerUser = "tcr-bench-manager"

// auditPolicy records every write of ManagerUser at Metadata level, and its reads of Pods (the
// recoverPods scenario checks their field selector; without recoverPods there are none), and
// nothing else.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
  users: ["` + ManagerUser + `"]
  verbs: ["create", "update", "patch", "delete", "deletecollection"]
- level: Metadata
  users: ["` + ManagerUser + `"]
  verbs: ["get", "list", "watch"]
  resources: [{group: "", resources: ["pods"]}]
- level: None
`

// auditLogMaxMB is the audit log's size before kube-apiserver rotates it, in MB: never, in a run.
const auditLogMaxMB = 1 << 20

// controlPlane is internal/testenv's local etcd and kube-apiserver, with an audit log of the
// manager's writes.
type controlPlane struct {
	env *testenv.Env
	dir string
	// Kube is a fast client (protobuf, no client-side rate limit) for fixtures and the floor.
	Kube kubernetes.Interface
	// Client knows the project's types.
	Client client.Client
	// ManagerKubeconfig is a kubeconfig file authenticating as ManagerUser (system:masters).
	ManagerKubeconfig string
	// AdminKubeconfig is a kubeconfig file for the administrator, for other child processes.
	AdminKubeconfig string
	// AuditLog is the path of the audit log holding ManagerUser's writes.
	AuditLog string
	// Root is the repository root.
	Root string
}

func startControlPlane() (*controlPlane, error) {
	dir, err := os.MkdirTemp("", "tcr-bench-")
	if err != nil {
		return nil, err
	}
	cp := &controlPlane{dir: dir, AuditLog: filepath.Join(dir, "audit.log")}
	policy := filepath.Join(dir, "audit-policy.yaml")
	if err := os.WriteFile(policy, []byte(auditPolicy), 0o600); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	// envtest logs through controller-runtime's logger; the benchmark prints figures, not logs.
	ctrllog.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	cp.env, err = testenv.Start(func(env *envtest.Environment) {
		env.ControlPlane.GetAPIServer().Configure().
			Set("audit-policy-file", policy).
			Set("audit-log-path", cp.AuditLog).
			// Unset, the log is rotated at 100 MB (lumberjack's default), which a large run with
			// the recoverPods baseline passes: the counts would lose the writes before it.
			Set("audit-log-maxsize", strconv.Itoa(auditLogMaxMB)).
			Set("audit-log-mode", "blocking")
	})
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	cp.Root = cp.env.Root
	if err := cp.init(); err != nil {
		_ = cp.Stop()
		return nil, err
	}
	return cp, nil
}

func (cp *controlPlane) init() error {
	var err error
	if cp.Kube, err = kubernetes.NewForConfig(fastConfig(cp.env.Config)); err != nil {
		return err
	}
	json := rest.CopyConfig(cp.env.Config)
	json.QPS, json.Burst = -1, 0
	if cp.Client, err = client.New(json, client.Options{Scheme: testenv.Scheme()}); err != nil {
		return err
	}
	if cp.ManagerKubeconfig, err = cp.env.UserKubeconfig(ManagerUser, "system:masters"); err != nil {
		return err
	}
	cp.AdminKubeconfig, err = cp.env.UserKubeconfig("tcr-bench-admin", "system:masters")
	return err
}

// Stop stops the control plane and removes its files.
func (cp *controlPlane) Stop() error {
	err := cp.env.Stop()
	_ = os.RemoveAll(cp.dir)
	return err
}

// fastConfig is cfg with protobuf and no client-side rate limit: the benchmark's own clients
// must never be what limits a figure.
func fastConfig(cfg *rest.Config) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.QPS, c.Burst = -1, 0
	c.RateLimiter = nil
	c.ContentType = "application/vnd.kubernetes.protobuf"
	c.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	return c
}
