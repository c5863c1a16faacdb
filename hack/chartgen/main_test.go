package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const deployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: manager
  namespace: tcr-assistant-system
  annotations:
    note: "literal {{ braces }}"
spec:
  template:
    spec:
      containers:
      - image: tcr-assistant:v0.1.0
        name: manager
`

const configMap = `apiVersion: v1
data:
  hosts.yaml: |
    []
kind: ConfigMap
metadata:
  name: updater-config
  namespace: tcr-assistant-system
`

func TestGenerate(t *testing.T) {
	for name, tc := range map[string]struct {
		bundle    string
		wantFiles []string
		check     func(t *testing.T, files map[string]string)
		wantErr   string
	}{
		"each object becomes a template, with the image as a hole and braces kept literal": {
			bundle:    "# header\n---\n" + deployment + "---\n" + configMap,
			wantFiles: []string{"_bundle.tpl", "configmap-updater-config.yaml", "deployment-manager.yaml"},
			check: func(t *testing.T, files map[string]string) {
				d := files["deployment-manager.yaml"]
				assert.Contains(t, d, `- image: {{ include "tcr-assistant.image" . }}`+"\n")
				assert.Contains(t, d, `note: "literal {{ "{{" }} braces }}"`)
				assert.Contains(t, files["_bundle.tpl"], "tcr-assistant:v0.1.0\n")
				assert.Contains(t, files["_bundle.tpl"], `{{ "[]\n" }}`)
				assert.Contains(t, files["configmap-updater-config.yaml"], `hosts.yaml: {{ toJson . }}`)
			},
		},
		"a bundle without the agent's ConfigMap gets one only when hosts are set": {
			bundle:    deployment,
			wantFiles: []string{"_bundle.tpl", "configmap-updater-config.yaml", "deployment-manager.yaml"},
			check: func(t *testing.T, files map[string]string) {
				assert.True(t, strings.HasPrefix(strings.TrimPrefix(files["configmap-updater-config.yaml"], header),
					`{{- with include "tcr-assistant.hostsYAML" . }}`))
				assert.Contains(t, files["_bundle.tpl"], `{{ "" }}`)
			},
		},
		"two images are refused": {
			bundle:  deployment + "---\n" + strings.ReplaceAll(strings.ReplaceAll(deployment, "v0.1.0", "v0.2.0"), "name: manager\n  namespace", "name: other\n  namespace"),
			wantErr: "the bundle must name exactly one image (manager, hosts-updater and kubectl-ips share it), found [tcr-assistant:v0.1.0 tcr-assistant:v0.2.0]",
		},
		"an object without a kind is refused": {
			bundle:  "metadata:\n  name: x\n",
			wantErr: "a bundle object has no kind or name",
		},
	} {
		t.Run(name, func(t *testing.T) {
			files, _, err := Generate([]byte(tc.bundle))
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.wantErr)
				return
			}
			require.NoError(t, err)
			var names []string
			for n := range files {
				names = append(names, n)
			}
			assert.ElementsMatch(t, tc.wantFiles, names)
			tc.check(t, files)
		})
	}
}
