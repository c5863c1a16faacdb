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

const namespace = `apiVersion: v1
kind: Namespace
metadata:
  labels:
    pod-security.kubernetes.io/enforce: privileged
  name: tcr-assistant-system
`

// references names the bundle's namespace in every way config/ does, and twice in ways that are
// other names.
const references = `apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: binding
  namespace: tcr-assistant-system
  annotations:
    user: system:serviceaccount:tcr-assistant-system:manager
    dns: webhook.tcr-assistant-system.svc
    cel: request.namespace == 'tcr-assistant-system'
    flag: --namespace=tcr-assistant-system
    longer: tcr-assistant-system-2
    prefixed: my-tcr-assistant-system
subjects:
- kind: ServiceAccount
  name: manager
  namespace: tcr-assistant-system
values:
- tcr-assistant-system
`

const crd = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: things.example.com
spec:
  versions:
  - schema:
      openAPIV3Schema:
        description: a Secret of the controller's namespace (tcr-assistant-system by default)
        properties:
          description:
            type: string
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
		"the Namespace is not rendered and every reference to it becomes the release namespace": {
			bundle:    namespace + "---\n" + references + "---\n" + crd + "---\n" + deployment,
			wantFiles: []string{"_bundle.tpl", "configmap-updater-config.yaml", "rolebinding-binding.yaml", "customresourcedefinition-things-example-com.yaml", "deployment-manager.yaml"},
			check: func(t *testing.T, files map[string]string) {
				assert.Equal(t, header+`apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: binding
  namespace: {{ .Release.Namespace | quote }}
  annotations:
    user: system:serviceaccount:{{ .Release.Namespace }}:manager
    dns: webhook.{{ .Release.Namespace }}.svc
    cel: request.namespace == '{{ .Release.Namespace }}'
    flag: --namespace={{ .Release.Namespace }}
    longer: tcr-assistant-system-2
    prefixed: my-tcr-assistant-system
subjects:
- kind: ServiceAccount
  name: manager
  namespace: {{ .Release.Namespace | quote }}
values:
- {{ .Release.Namespace | quote }}
`, files["rolebinding-binding.yaml"])
				// A CRD is the same in every install: its descriptions stay as they are.
				assert.Equal(t, header+crd, files["customresourcedefinition-things-example-com.yaml"])
				assert.Contains(t, files["deployment-manager.yaml"], "  namespace: {{ .Release.Namespace | quote }}\n")
				assert.Contains(t, files["configmap-updater-config.yaml"], "  namespace: {{ .Release.Namespace | quote }}\n")
			},
		},
		"another Namespace is refused": {
			bundle:  strings.ReplaceAll(namespace, "name: tcr-assistant-system", "name: elsewhere"),
			wantErr: "the bundle creates Namespace elsewhere: the chart installs into the release namespace only, which stands for tcr-assistant-system",
		},
		"an object of another namespace is refused": {
			bundle:  strings.ReplaceAll(deployment, "namespace: tcr-assistant-system", "namespace: kube-system"),
			wantErr: "Deployment manager is in namespace kube-system: the chart installs into the release namespace only, which stands for tcr-assistant-system",
		},
		"a CRD that names the namespace outside its descriptions is refused": {
			bundle:  crd + "  conversion:\n    webhook:\n      clientConfig:\n        service: {name: conv, namespace: tcr-assistant-system}\n",
			wantErr: "CustomResourceDefinition things.example.com: names namespace tcr-assistant-system outside its descriptions, which the chart cannot make the release namespace",
		},
		"two images are refused": {
			bundle:  deployment + "---\n" + strings.ReplaceAll(strings.ReplaceAll(deployment, "v0.1.0", "v0.2.0"), "name: manager\n  namespace", "name: other\n  namespace"),
			wantErr: "the bundle must name exactly one image (manager, hosts-updater and kubectl-ips share it), found [tcr-assistant:v0.1.0 tcr-assistant:v0.2.0]",
		},
		"an object without a kind is refused": {
			bundle:  "metadata:\n  name: x\n",
			wantErr: "a bundle object has no kind or name:\nmetadata:\n  name: x\n",
		},
	} {
		t.Run(name, func(t *testing.T) {
			files, _, err := Generate([]byte(tc.bundle))
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.Equal(t, tc.wantErr, err.Error())
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

// managerDeploymentDoc is the manager's Deployment as config/ renders it, trimmed to what the
// value privateCA touches.
const managerDeploymentDoc = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: tcr-assistant-controller-manager
  namespace: tcr-assistant-system
spec:
  template:
    spec:
      containers:
      - args:
        - --namespace=tcr-assistant-system
        image: tcr-assistant:v0.1.0
        name: manager
        volumeMounts:
        - mountPath: /tmp/certs
          name: webhook-cert
      volumes:
      - emptyDir: {}
        name: webhook-cert
`

func TestPrivateCAHoles(t *testing.T) {
	files, _, err := Generate([]byte(managerDeploymentDoc))
	require.NoError(t, err)
	assert.Equal(t, header+`apiVersion: apps/v1
kind: Deployment
metadata:
  name: tcr-assistant-controller-manager
  namespace: {{ .Release.Namespace | quote }}
spec:
  template:
    spec:
      containers:
      - args:
        - --namespace={{ .Release.Namespace }}
        {{- with include "tcr-assistant.privateCAArgs" . }}{{ . | nindent 8 }}{{ end }}
        image: {{ include "tcr-assistant.image" . }}
        name: manager
        volumeMounts:
        - mountPath: /tmp/certs
          name: webhook-cert
        {{- with include "tcr-assistant.privateCAVolumeMounts" . }}{{ . | nindent 8 }}{{ end }}
      volumes:
      - emptyDir: {}
        name: webhook-cert
      {{- with include "tcr-assistant.privateCAVolumes" . }}{{ . | nindent 6 }}{{ end }}
`, files["deployment-tcr-assistant-controller-manager.yaml"])

	for what, doc := range map[string]string{
		"no container manager": strings.ReplaceAll(managerDeploymentDoc, "name: manager", "name: other"),
		"no list volumes":      strings.Split(managerDeploymentDoc, "      volumes:\n")[0],
	} {
		_, _, err := Generate([]byte(doc))
		assert.EqualError(t, err, "the manager's Deployment tcr-assistant-controller-manager: "+what+", where the value privateCA adds its own", what)
	}
}
