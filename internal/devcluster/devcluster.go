// Package devcluster fills the embedded local control plane of 'make run' with something to
// look at: the sample ImagePullSecret and a few namespaces with ServiceAccounts, then prints how
// to reach it.
package devcluster

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
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

// sampleName is the ImagePullSecret in config/samples.
const sampleName = "imagepullsecret-sample"

// Demo creates the controller's own namespace and the demo namespaces and ServiceAccounts,
// applies config/samples/, waits until the manager has distributed the sample and prints the
// kubeconfig path and 'kubectl get ipss' to out.
func Demo(ctx context.Context, env *testenv.Env, ownNamespace string, out io.Writer) error {
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
	if _, _, err := env.Kubectl("", "apply", "-k", filepath.Join(env.Root, "config", "samples")); err != nil {
		return err
	}
	// The control plane has no kube-controller-manager, so the built-in namespaces have no
	// ServiceAccounts: wait for the demo ones only.
	want := int32(len(DemoServiceAccounts) * len(DemoNamespaces))
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
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
The local control plane is running with the controller and the sample ImagePullSecret.

  export KUBECONFIG=%s

$ kubectl get ipss
%s
$ kubectl get secrets -A -l %s=%s
%s
$ kubectl get serviceaccounts -n %s
%s
Press Ctrl-C to stop the controller and the control plane.
`, env.Kubeconfig, ipss, tcrv1.ManagedByLabel, tcrv1.ManagedByValue, secrets, DemoNamespaces[0], sas)
	return err
}

func create(ctx context.Context, c client.Client, obj client.Object) error {
	if err := c.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating %T %s: %w", obj, client.ObjectKeyFromObject(obj), err)
	}
	return nil
}
