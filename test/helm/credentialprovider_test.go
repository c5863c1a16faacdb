package helm

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"helm.sh/helm/v3/pkg/action"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

const (
	// credentialProviderComponent is the kustomize side of the value credentialProvider.
	credentialProviderComponent = "config/components/credential-provider"
	// credentialProvider names the DaemonSet and its ServiceAccount.
	credentialProvider = "tcr-credential-provider"
)

// credentialProviderArgs are the installer's arguments for release namespace ns and the values
// hostDir, matchImages (joined) and cacheDuration.
func credentialProviderArgs(ns, hostDir, matchImages, cacheDuration string) []any {
	return []any{
		"install",
		"--bin-dir=/host/bin",
		"--config-dir=/host/config",
		"--host-bin-dir=" + hostDir + "/bin",
		"--host-config-dir=" + hostDir,
		"--endpoint=https://$(TCR_ASSISTANT_WEBHOOK_SERVICE_SERVICE_HOST):$(TCR_ASSISTANT_WEBHOOK_SERVICE_SERVICE_PORT)",
		"--server-name=tcr-assistant-webhook-service." + ns + ".svc",
		"--ca-file=/ca/ca.crt",
		"--match-images=" + matchImages,
		"--cache-duration=" + cacheDuration,
		"--watch",
	}
}

// credentialProviderVolumes are the pod's volumes for the value hostDir: the two host folders, and
// the key ca.crt alone of the webhook's certificate Secret, not optional.
func credentialProviderVolumes(hostDir string) []any {
	return []any{
		map[string]any{"name": "host-bin", "hostPath": map[string]any{"path": hostDir + "/bin", "type": "DirectoryOrCreate"}},
		map[string]any{"name": "host-config", "hostPath": map[string]any{"path": hostDir, "type": "DirectoryOrCreate"}},
		map[string]any{"name": "ca", "secret": map[string]any{
			"secretName": "tcr-assistant-webhook-server-cert",
			"items":      []any{map[string]any{"key": "ca.crt", "path": "ca.crt"}},
		}},
	}
}

// installerContainer returns the DaemonSet's one container.
func installerContainer(t *testing.T, ds *unstructured.Unstructured) map[string]any {
	t.Helper()
	containers, _, err := unstructured.NestedSlice(ds.Object, "spec", "template", "spec", "containers")
	require.NoError(t, err)
	require.Len(t, containers, 1)
	return containers[0].(map[string]any)
}

func TestCredentialProviderValueRendersTheComponentsDaemonSet(t *testing.T) {
	bundle := bundleObjects(t)
	const defaultHostDir = "/var/lib/tcr-assistant/credential-provider"

	t.Run("disabled, as by default, it renders nothing", func(t *testing.T) {
		for _, vals := range []string{"", "credentialProvider:\n  enabled: false\n", "credentialProvider:\n  matchImages: [registry.example.com]\n"} {
			rel, err := render(t, releaseNS, values(t, vals))
			require.NoError(t, err)
			assert.Equal(t, keys(bundle), keys(renderedObjects(t, rel)), "values %q", vals)
		}
	})

	t.Run("enabled, it adds the component's DaemonSet and ServiceAccount and changes nothing else", func(t *testing.T) {
		rel, err := render(t, releaseNS, values(t, "credentialProvider:\n  enabled: true\n"))
		require.NoError(t, err)
		objs := renderedObjects(t, rel)
		component := kustomizeWithComponent(t, credentialProviderComponent)
		want := append(append([]*unstructured.Unstructured{}, bundle...),
			find(t, component, "ServiceAccount", credentialProvider), find(t, component, "DaemonSet", credentialProvider))
		require.Equal(t, keys(want), keys(objs))
		for _, o := range want {
			assert.Equal(t, o.Object, find(t, objs, o.GetKind(), o.GetName()).Object, "%s differs from the kustomize component's", key(o))
		}

		ds := find(t, objs, "DaemonSet", credentialProvider)
		c := installerContainer(t, ds)
		assert.Equal(t, []any{"/tcr-credential-provider"}, c["command"])
		assert.Equal(t, credentialProviderArgs(releaseNS, defaultHostDir, "*.tencentcloudcr.com", "5m"), c["args"])
		assert.Equal(t, containerImage(t, find(t, objs, "Deployment", managerDeployment)), c["image"], "the manager's image")
		assert.Equal(t, []any{
			map[string]any{"name": "host-bin", "mountPath": "/host/bin"},
			map[string]any{"name": "host-config", "mountPath": "/host/config"},
			map[string]any{"name": "ca", "mountPath": "/ca", "readOnly": true},
		}, c["volumeMounts"])
		volumes, _, err := unstructured.NestedSlice(ds.Object, "spec", "template", "spec", "volumes")
		require.NoError(t, err)
		assert.Equal(t, credentialProviderVolumes(defaultHostDir), volumes)
		automount, _, err := unstructured.NestedBool(find(t, objs, "ServiceAccount", credentialProvider).Object, "automountServiceAccountToken")
		require.NoError(t, err)
		assert.False(t, automount, "the installer talks to no API")
	})

	t.Run("the values set the images, folder and cache duration, in any release namespace", func(t *testing.T) {
		rel, err := render(t, otherNS, values(t, `
image: registry.example.com/tcr-assistant:v9.9.9
credentialProvider:
  enabled: true
  matchImages: ["*.tencentcloudcr.com", "registry.example.com:5000/team"]
  hostDir: /opt/tcr/provider
  cacheDuration: 10m
`))
		require.NoError(t, err)
		objs := renderedObjects(t, rel)
		ds := find(t, objs, "DaemonSet", credentialProvider)
		assert.Equal(t, otherNS, ds.GetNamespace())
		assert.Equal(t, otherNS, find(t, objs, "ServiceAccount", credentialProvider).GetNamespace())
		c := installerContainer(t, ds)
		assert.Equal(t, "registry.example.com/tcr-assistant:v9.9.9", c["image"])
		assert.Equal(t, credentialProviderArgs(otherNS, "/opt/tcr/provider", "*.tencentcloudcr.com,registry.example.com:5000/team", "10m"), c["args"])
		volumes, _, err := unstructured.NestedSlice(ds.Object, "spec", "template", "spec", "volumes")
		require.NoError(t, err)
		assert.Equal(t, credentialProviderVolumes("/opt/tcr/provider"), volumes)
	})

	t.Run("the schema refuses a malformed credentialProvider", func(t *testing.T) {
		for vals, want := range map[string]string{
			"credentialProvider:\n  enabled: \"yes\"\n":                      "at '/credentialProvider/enabled': got string, want boolean",
			"credentialProvider:\n  hostDir: var/lib/tcr\n":                  "at '/credentialProvider/hostDir': 'var/lib/tcr' does not match pattern",
			"credentialProvider:\n  hostDir: /var/lib/tcr/\n":                "at '/credentialProvider/hostDir': '/var/lib/tcr/' does not match pattern",
			"credentialProvider:\n  matchImages: []\n":                       "at '/credentialProvider/matchImages': minItems: got 0, want 1",
			"credentialProvider:\n  matchImages: [\"a.com,b.com\"]\n":        "at '/credentialProvider/matchImages/0': 'a.com,b.com' does not match pattern",
			"credentialProvider:\n  matchImages: \"*.tencentcloudcr.com\"\n": "at '/credentialProvider/matchImages': got string, want array",
			"credentialProvider:\n  cacheDuration: 5 minutes\n":              "at '/credentialProvider/cacheDuration': '5 minutes' does not match pattern",
			"credentialProvider:\n  enable: true\n":                          "at '/credentialProvider': additional properties 'enable' not allowed",
		} {
			_, err := render(t, releaseNS, values(t, vals))
			if assert.Error(t, err, vals) {
				assert.Contains(t, err.Error(), want, vals)
			}
		}
	})

	t.Run("helm lint is clean with it enabled", func(t *testing.T) {
		lint := action.NewLint()
		lint.Namespace = releaseNS
		res := lint.Run([]string{filepath.Join(root(t), chartDir)}, values(t, "credentialProvider:\n  enabled: true\n"))
		require.Empty(t, res.Errors)
		assert.False(t, action.HasWarningsOrErrors(res))
	})
}
