// Package devcluster runs the whole add-on for 'make run' when no cluster is configured: a local
// control plane, the manager with its validating webhook, the hosts-updater against a scratch
// hosts file, and demo objects (the sample ImagePullSecret, a few namespaces with
// ServiceAccounts, a hosts entry, a bad rule the webhook refuses), then prints how to reach it.
package devcluster

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
	"github.com/tcr-assistant/tcr-assistant/internal/testenv"
)

// DemoNamespaces are created by Demo, each with the ServiceAccounts DemoServiceAccounts.
var (
	DemoNamespaces      = []string{"demo-frontend", "demo-backend", "demo-batch"}
	DemoServiceAccounts = []string{"default", "builder"}
)

const (
	// sampleName is the ImagePullSecret in config/samples.
	sampleName = "imagepullsecret-sample"
	// DemoHostsYAML is the hosts.yaml Demo puts into the ConfigMap updater-config.
	DemoHostsYAML = "- domain: demo.tencentcloudcr.com\n  ip: 10.0.0.2\n  disabled: false\n"
	// BadRule is a rule the webhook refuses: a pattern where the original takes exact names.
	BadRule = `apiVersion: tcr.tencentcloudcr.com/v1
kind: ImagePullSecret
metadata:
  name: bad-pattern
spec:
  namespaces: "dev-*"
  serviceAccounts: "*"
  docker:
    server: demo.tencentcloudcr.com
    username: demo
    password: demo-password
`
	demoTimeout = time.Minute
)

// Demo creates the demo namespaces and ServiceAccounts, applies config/samples/ once the webhook
// admits it, waits until the manager has distributed the sample and the hosts-updater has
// written a hosts entry into hostsFile, has the webhook refuse BadRule, and prints all of it with
// the kubeconfig path to out.
func Demo(ctx context.Context, env *testenv.Env, ownNamespace, hostsFile string, out io.Writer) error {
	for _, ns := range append([]string{ownNamespace}, DemoNamespaces...) {
		if err := create(ctx, env.Client, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return err
		}
	}
	for _, ns := range DemoNamespaces {
		for _, sa := range DemoServiceAccounts {
			if err := create(ctx, env.Client, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sa}}); err != nil {
				return err
			}
		}
	}
	// The webhook fails closed: until the manager serves it, the sample is refused.
	var applyErr error
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, demoTimeout, true, func(context.Context) (bool, error) {
		_, _, applyErr = env.Kubectl("", "apply", "-k", filepath.Join(env.Root, "config", "samples"))
		return applyErr == nil, nil
	})
	if err != nil {
		return fmt.Errorf("applying config/samples: %w (last error: %w)", err, applyErr)
	}
	// The control plane has no kube-controller-manager, so the built-in namespaces have no
	// ServiceAccounts: wait for the demo ones only.
	want := int32(len(DemoServiceAccounts) * len(DemoNamespaces))
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, demoTimeout, true, func(ctx context.Context) (bool, error) {
		ips := &tcrv1.ImagePullSecret{}
		if err := env.Client.Get(ctx, client.ObjectKey{Name: sampleName}, ips); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		st := ips.Status
		return st.SAsSuccess >= want && st.SecretsSuccess == st.SecretsDesired && st.SAsSuccess == st.SAsDesired, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the sample ImagePullSecret to be distributed: %w", err)
	}

	if err := setHosts(ctx, env.Client, ownNamespace, DemoHostsYAML); err != nil {
		return err
	}
	var hosts []byte
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, demoTimeout, true, func(context.Context) (bool, error) {
		hosts, err = os.ReadFile(hostsFile)
		return err == nil && strings.Contains(string(hosts), "demo.tencentcloudcr.com"), nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the hosts-updater to write %s: %w", hostsFile, err)
	}

	_, refusal, err := env.Kubectl(BadRule, "apply", "-f", "-")
	if err == nil {
		return fmt.Errorf("the webhook admitted the bad rule:\n%s", BadRule)
	}

	ipss, _, err := env.Kubectl("", "get", "ipss")
	if err != nil {
		return err
	}
	secrets, _, err := env.Kubectl("", "get", "secrets", "-A", "-l", tcrv1.ManagedByLabel+"="+tcrv1.ManagedByValue)
	if err != nil {
		return err
	}
	sas, _, err := env.Kubectl("", "get", "serviceaccounts", "-n", DemoNamespaces[0],
		"-o", "custom-columns=NAME:.metadata.name,IMAGE-PULL-SECRETS:.imagePullSecrets[*].name")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, `
The whole add-on is running on a local control plane: the manager with its validating webhook
(called at https://127.0.0.1 with its self-provisioned CA), the hosts-updater and the sample
ImagePullSecret.

  export KUBECONFIG=%s

$ kubectl get ipss
%s
$ kubectl get secrets -A -l %s=%s
%s
$ kubectl get serviceaccounts -n %s
%s
The webhook refuses a bad rule:

$ kubectl apply -f - <<EOF
%sEOF
%s
The hosts-updater manages the scratch hosts file %s
(edit hosts.yaml with 'kubectl -n %s edit configmap updater-config'):

$ cat %s
%s
Press Ctrl-C to stop the manager, the hosts-updater and the control plane.
`, env.Kubeconfig, ipss, tcrv1.ManagedByLabel, tcrv1.ManagedByValue, secrets, DemoNamespaces[0], sas,
		BadRule, refusalMessage(refusal), hostsFile, ownNamespace, hostsFile, hosts)
	return err
}

// refusalMessage is kubectl's error without its "Error from server" preamble, when it has one.
func refusalMessage(stderr string) string {
	return strings.TrimSpace(regexp.MustCompile(`(?s)^.*?(admission webhook )`).ReplaceAllString(stderr, "$1")) + "\n"
}

// setHosts writes hosts.yaml of the ConfigMap updater-config, creating it when the bundle did not.
func setHosts(ctx context.Context, c client.Client, namespace, hostsYAML string) error {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "updater-config"}}
	err := c.Get(ctx, client.ObjectKeyFromObject(cm), cm)
	if apierrors.IsNotFound(err) {
		cm.Data = map[string]string{"hosts.yaml": hostsYAML}
		return c.Create(ctx, cm)
	}
	if err != nil {
		return err
	}
	if cm.Data == nil {
		cm.Data = map[string]string{}
	}
	cm.Data["hosts.yaml"] = hostsYAML
	return c.Update(ctx, cm)
}

func create(ctx context.Context, c client.Client, obj client.Object) error {
	if err := c.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating %T %s: %w", obj, client.ObjectKeyFromObject(obj), err)
	}
	return nil
}

// splitYAML returns the documents of a YAML stream.
func splitYAML(stream string) []string {
	return regexp.MustCompile(`(?m)^---\s*$`).Split(stream, -1)
}
