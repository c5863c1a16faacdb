package devcluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/tcr-assistant/tcr-assistant/internal/testenv"
)

const (
	webhookConfig = "tcr-assistant-validating-webhook-configuration"
	// mutatingConfig adds the ServiceAccount references at admission.
	mutatingConfig = "tcr-assistant-mutating-webhook-configuration"
	stopGrace      = 15 * time.Second
)

// Options says what Run starts.
type Options struct {
	// Manager and HostsUpdater are the paths of the binaries to run.
	Manager, HostsUpdater string
	// Namespace is the add-on's own namespace.
	Namespace string
	// WebhookPort is where the manager serves its webhook, on 127.0.0.1.
	WebhookPort int
	// ManagerArgs are extra flags for the manager.
	ManagerArgs []string
	// Dir holds the scratch hosts file and the webhook certificate; it must exist.
	Dir string
	// Ready, when not nil, is called once the banner is printed.
	Ready func()
}

// Run runs the whole add-on on a local control plane until ctx ends: the manager with its
// webhook, which the API server calls at https://127.0.0.1 with the manager's self-provisioned
// CA (the certificate has a 127.0.0.1 SAN), and the hosts-updater against a scratch hosts file;
// then Demo prints the banner.
func Run(ctx context.Context, o Options, out io.Writer) error {
	fmt.Fprintln(out, "Starting the local control plane (etcd and kube-apiserver from bin/)...")
	env, err := testenv.Start()
	if err != nil {
		return err
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(out, "Stopping the local control plane:", err)
			return
		}
		fmt.Fprintln(out, "Stopped the local control plane.")
	}()
	if err := installAddOn(ctx, env, o); err != nil {
		return err
	}
	hostsFile := filepath.Join(o.Dir, "hosts")
	if err := os.WriteFile(hostsFile, []byte("127.0.0.1\tlocalhost\n"), 0o644); err != nil {
		return err
	}

	managerArgs := append([]string{"--kubeconfig", env.Kubeconfig, "--namespace", o.Namespace,
		"--enable-webhook=true", "--webhook-port=" + strconv.Itoa(o.WebhookPort),
		"--webhook-cert-dir=" + filepath.Join(o.Dir, "webhook-certs"), "--webhook-extra-sans=127.0.0.1",
		"--zap-devel", "--zap-log-level=info"}, o.ManagerArgs...)
	manager, err := start("manager", o.Manager, managerArgs, out)
	if err != nil {
		return err
	}
	defer stop("manager", manager, out)
	agent, err := start("hosts-updater", o.HostsUpdater, []string{"--kubeconfig", env.Kubeconfig, "--namespace", o.Namespace,
		"--hosts-file", hostsFile, "--resync=5s", "--metrics-bind-address=0", "--health-probe-bind-address=0"}, out)
	if err != nil {
		return err
	}
	defer stop("hosts-updater", agent, out)

	demo := make(chan error, 1)
	go func() { demo <- Demo(ctx, env, o.Namespace, hostsFile, out) }()
	for {
		select {
		case <-manager.Done():
			return fmt.Errorf("the manager exited: %w", manager.Err())
		case <-agent.Done():
			return fmt.Errorf("the hosts-updater exited: %w", agent.Err())
		case <-ctx.Done():
			return nil
		case err := <-demo:
			if errors.Is(err, context.Canceled) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("setting up the demo: %w", err)
			}
			if o.Ready != nil {
				o.Ready()
			}
			demo = nil // a nil channel never receives: from now on, wait for the end
		}
	}
}

// installAddOn creates, from config/default, what the add-on needs besides its workloads: its
// namespace, the agent's ConfigMap and the webhook configurations, which call the local manager
// instead of the in-cluster Service. The manager creates its certificate Secret and injects the
// CA itself.
func installAddOn(ctx context.Context, env *testenv.Env, o Options) error {
	rendered, _, err := env.Kubectl("", "kustomize", filepath.Join(env.Root, "config", "default"))
	if err != nil {
		return err
	}
	objs, err := splitObjects(rendered)
	if err != nil {
		return err
	}
	want := map[string]bool{"Namespace/" + o.Namespace: true, "ConfigMap/updater-config": true,
		"ValidatingWebhookConfiguration/" + webhookConfig: true, "MutatingWebhookConfiguration/" + mutatingConfig: true}
	for _, obj := range objs {
		if !want[obj.GetKind()+"/"+obj.GetName()] {
			continue
		}
		delete(want, obj.GetKind()+"/"+obj.GetName())
		if k := obj.GetKind(); k == "ValidatingWebhookConfiguration" || k == "MutatingWebhookConfiguration" {
			if err := pointAtLocalManager(obj, o.WebhookPort); err != nil {
				return err
			}
		}
		if err := env.Client.Create(ctx, obj); err != nil {
			return fmt.Errorf("creating %s %s: %w", obj.GetKind(), obj.GetName(), err)
		}
	}
	if len(want) > 0 {
		// The bundle may stop shipping the agent's ConfigMap; the agent waits for one.
		if want["ConfigMap/updater-config"] {
			delete(want, "ConfigMap/updater-config")
		}
		if len(want) > 0 {
			return fmt.Errorf("config/default does not render %v", want)
		}
	}
	return nil
}

// pointAtLocalManager replaces each webhook's Service with https://127.0.0.1:port and the
// Service's path.
func pointAtLocalManager(vwc *unstructured.Unstructured, port int) error {
	webhooks, _, err := unstructured.NestedSlice(vwc.Object, "webhooks")
	if err != nil {
		return err
	}
	for i, w := range webhooks {
		wh := w.(map[string]any)
		path, _, _ := unstructured.NestedString(wh, "clientConfig", "service", "path")
		unstructured.RemoveNestedField(wh, "clientConfig", "service")
		if err := unstructured.SetNestedField(wh, "https://127.0.0.1:"+strconv.Itoa(port)+path, "clientConfig", "url"); err != nil {
			return err
		}
		webhooks[i] = wh
	}
	return unstructured.SetNestedSlice(vwc.Object, webhooks, "webhooks")
}

func splitObjects(stream string) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	for _, doc := range splitYAML(stream) {
		var m map[string]any
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			return nil, err
		}
		if len(m) > 0 {
			out = append(out, &unstructured.Unstructured{Object: m})
		}
	}
	return out, nil
}

// start starts a child process of Run: in a process group of its own, so that Ctrl-C reaches Run,
// which stops the children before the control plane rather than all at once; and it dies with
// Run's process however that one ends.
func start(name, path string, args []string, out io.Writer) (*testenv.Process, error) {
	p, err := testenv.Command{Path: path, Args: args, Output: out, StopGrace: stopGrace}.Start()
	if err != nil {
		return nil, fmt.Errorf("starting the %s: %w", name, err)
	}
	return p, nil
}

func stop(name string, p *testenv.Process, out io.Writer) {
	p.Stop()
	fmt.Fprintf(out, "Stopped the %s.\n", name)
}
