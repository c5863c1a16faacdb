package e2e

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// privateCAComponent is the kustomize component that makes the manager trust the CAs of the
// ConfigMap tcr-assistant-ca.
const privateCAComponent = "config/components/private-ca"

// kustomize renders a kustomization of resources (paths, relative to the repository root, of a
// directory or of a file that is copied next to the kustomization) with components, as a user's
// own overlay would, and returns its objects.
func kustomize(t *testing.T, resources []string, components ...string) []*unstructured.Unstructured {
	t.Helper()
	overlay := t.TempDir()
	kustomization := "resources:\n"
	for _, r := range resources {
		path := filepath.Join(env.Root, r)
		if fi, err := os.Stat(path); err == nil && !fi.IsDir() {
			data, err := os.ReadFile(path)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(filepath.Join(overlay, filepath.Base(path)), data, 0o644))
			kustomization += "- " + filepath.Base(path) + "\n"
			continue
		}
		rel, err := filepath.Rel(overlay, path)
		require.NoError(t, err)
		kustomization += "- " + rel + "\n"
	}
	kustomization += "components:\n"
	for _, c := range components {
		rel, err := filepath.Rel(overlay, filepath.Join(env.Root, c))
		require.NoError(t, err)
		kustomization += "- " + rel + "\n"
	}
	require.NoError(t, os.WriteFile(filepath.Join(overlay, "kustomization.yaml"), []byte(kustomization), 0o644))
	return kustomizeDir(t, overlay)
}

// kustomizeDir renders the kustomization in dir with 'kubectl kustomize' and returns its objects.
func kustomizeDir(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	out, _, err := env.Kubectl("", "kustomize", dir)
	require.NoError(t, err)
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader([]byte(out)), 4096)
	var objs []*unstructured.Unstructured
	for {
		var u unstructured.Unstructured
		err := dec.Decode(&u.Object)
		if errors.Is(err, io.EOF) {
			return objs
		}
		require.NoError(t, err)
		if len(u.Object) > 0 {
			objs = append(objs, &u)
		}
	}
}

// TestPrivateCAComponent: config/components/private-ca, over config/default or over
// dist/install.yaml, changes the bundle in one place, the manager's Deployment: the key ca.crt of
// ConfigMap tcr-assistant-ca (not optional) is mounted read-only at /etc/tcr-assistant/ca, and
// both CA flags name it.
func TestPrivateCAComponent(t *testing.T) {
	bundle := readBundle(t)
	const file = "/etc/tcr-assistant/ca/ca.crt"
	for _, base := range []string{"config/default", installer} {
		t.Run("over "+base, func(t *testing.T) {
			objs := kustomize(t, []string{base}, privateCAComponent)
			require.Len(t, objs, len(bundle))
			for _, want := range bundle {
				got := findObject(t, objs, want.GetKind(), want.GetName())
				if want.GetKind() != "Deployment" {
					assert.Equal(t, want.Object, got.Object, "%s %s changed", want.GetKind(), want.GetName())
					continue
				}
				before := typed[appsv1.Deployment](t, want).Spec.Template.Spec
				after := typed[appsv1.Deployment](t, got)
				pod := after.Spec.Template.Spec
				require.Len(t, pod.Containers, 1)
				manager := pod.Containers[0]
				assert.Equal(t, "manager", manager.Name)
				assert.Equal(t, append(before.Containers[0].Args, "--registry-ca-file="+file, "--tcr-api-ca-file="+file), manager.Args)
				assert.Equal(t, append(before.Containers[0].VolumeMounts,
					corev1.VolumeMount{Name: "private-ca", MountPath: "/etc/tcr-assistant/ca", ReadOnly: true}), manager.VolumeMounts)
				assert.Equal(t, append(before.Volumes, corev1.Volume{Name: "private-ca", VolumeSource: corev1.VolumeSource{
					ConfigMap: &corev1.ConfigMapVolumeSource{
						LocalObjectReference: corev1.LocalObjectReference{Name: "tcr-assistant-ca"},
						Items:                []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}},
					}}}), pod.Volumes, "the ConfigMap must not be optional: a manager without its CA would call every registry of it a TLSError")

				// Nothing else of the Deployment changed.
				restored := after.DeepCopy()
				restored.Spec.Template.Spec.Containers[0].Args = before.Containers[0].Args
				restored.Spec.Template.Spec.Containers[0].VolumeMounts = before.Containers[0].VolumeMounts
				restored.Spec.Template.Spec.Volumes = before.Volumes
				assert.Equal(t, typed[appsv1.Deployment](t, want), restored)
			}
		})
	}
}
