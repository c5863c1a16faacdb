{{- /* The image of the manager, the agent and the hook Jobs. */ -}}
{{- define "tcr-assistant.image" -}}
{{- .Values.image | default (include "tcr-assistant.bundleImage" .) -}}
{{- end }}

{{- /* hosts.yaml of the ConfigMap updater-config: global.hosts, else the bundle's own. */ -}}
{{- define "tcr-assistant.hostsYAML" -}}
{{- if .Values.global.hosts -}}
{{ toYaml .Values.global.hosts }}
{{ else -}}
{{- /* No hosts in the values. The bundle ships updater-config without hosts.yaml, which the
agent reads as "keep what the nodes have" (so that a kubectl apply never wipes them); but when
the release's ConfigMap holds entries, values that list none mean to remove them: an explicit
empty list. */ -}}
{{- $live := lookup "v1" "ConfigMap" .Release.Namespace "updater-config" -}}
{{- if and $live $live.data (index $live.data "hosts.yaml") -}}
{{ "[]\n" }}
{{- else -}}
{{ include "tcr-assistant.bundleHostsYAML" . }}
{{- end -}}
{{- end -}}
{{- end }}

{{- /*
The ImagePullSecrets of global.imagePullSecretsCrs as a JSON list, in either form of the
values: docker.{server,username,password}, or the add-on's type/dockerServer/dockerUsername/
dockerPassword.
*/ -}}
{{- define "tcr-assistant.imagePullSecrets" -}}
{{- $out := list }}
{{- range .Values.global.imagePullSecretsCrs }}
{{- $spec := omit . "name" "type" "dockerServer" "dockerUsername" "dockerPassword" }}
{{- if not .docker }}
{{- $_ := set $spec "docker" (dict "server" .dockerServer "username" .dockerUsername "password" .dockerPassword) }}
{{- end }}
{{- $out = append $out (dict "apiVersion" "tcr.tencentcloudcr.com/v1" "kind" "ImagePullSecret" "metadata" (dict "name" .name) "spec" $spec) }}
{{- end }}
{{- toJson $out }}
{{- end }}

{{- /*
"true" when the hook Jobs are needed: the values list rules, or this release made rules that
an upgrade to an empty list must delete. lookup answers nothing in 'helm template', so the
default values render exactly dist/install.yaml.
*/ -}}
{{- define "tcr-assistant.syncRules" -}}
{{- if .Values.global.imagePullSecretsCrs -}}
true
{{- else if lookup "apiextensions.k8s.io/v1" "CustomResourceDefinition" "" "imagepullsecrets.tcr.tencentcloudcr.com" -}}
{{- $release := .Release.Name }}
{{- $found := "" }}
{{- range (lookup "tcr.tencentcloudcr.com/v1" "ImagePullSecret" "" "").items }}
{{- if eq (get (.metadata.labels | default dict) "app.kubernetes.io/instance") $release }}
{{- $found = "true" }}
{{- end }}
{{- end }}
{{- $found -}}
{{- end -}}
{{- end }}

{{- /*
What the chart refuses before it changes anything; lookup answers nothing in 'helm template', so
these hold only against a cluster.

The namespace. The chart installs into the release namespace and does not create it ('helm
install --create-namespace' does, as for any chart). The hosts-updater DaemonSet needs the Pod
Security level privileged (hostPath, root): in a namespace that enforces baseline or restricted
its pods would be refused, and the hosts entries would never reach a node.

The earlier chart. It kept its release record in another namespace (default) and created
tcr-assistant-system itself, as a release object. Upgrading such a release with this chart would
move every object into the release namespace and delete tcr-assistant-system, with what it holds:
README, "Moving a release of the earlier chart", moves the release instead.
*/ -}}
{{- define "tcr-assistant.checks" -}}
{{- $ns := lookup "v1" "Namespace" "" .Release.Namespace -}}
{{- $enforce := get (($ns.metadata | default dict).labels | default dict) "pod-security.kubernetes.io/enforce" -}}
{{- if has $enforce (list "baseline" "restricted") -}}
{{- fail (printf "namespace %s enforces the Pod Security level %s, which refuses the hosts-updater DaemonSet's pods (hostPath volumes, root): label it first with 'kubectl label namespace %s pod-security.kubernetes.io/enforce=privileged --overwrite'" .Release.Namespace $enforce .Release.Namespace) -}}
{{- end -}}
{{- $earlier := lookup "v1" "Namespace" "" "tcr-assistant-system" -}}
{{- $annotations := ($earlier.metadata | default dict).annotations | default dict -}}
{{- if and (eq (get $annotations "meta.helm.sh/release-name") .Release.Name) (eq (get $annotations "meta.helm.sh/release-namespace") .Release.Namespace) -}}
{{- fail (printf "release %s in namespace %s was installed by an earlier chart, which created namespace tcr-assistant-system as a release object; this chart installs into the release namespace and would delete tcr-assistant-system with everything in it: move the release instead (README, \"Moving a release of the earlier chart\")" .Release.Name .Release.Namespace) -}}
{{- end -}}
{{- end }}

{{- /*
privateCA: the ConfigMap privateCA.configMap, which the user creates in the release namespace,
mounted read-only into the manager at /etc/tcr-assistant/ca with its key privateCA.key as
ca.crt, which the manager trusts for registries (--registry-ca-file) and the TCR API
(--tcr-api-ca-file) besides the system's CAs; what config/components/private-ca adds to the
bundle. Not optional: without the ConfigMap, or its key, the manager's pod does not start, and its
FailedMount event names what is missing. Each helper is a YAML list, which hack/chartgen puts at
the end of its list in the manager's Deployment; nothing when privateCA.configMap is empty.
*/ -}}
{{- define "tcr-assistant.privateCAFile" -}}
/etc/tcr-assistant/ca/ca.crt
{{- end }}

{{- define "tcr-assistant.privateCAArgs" -}}
{{- with .Values.privateCA }}{{ if .configMap }}
{{- $file := include "tcr-assistant.privateCAFile" $ }}
{{- toYaml (list (printf "--registry-ca-file=%s" $file) (printf "--tcr-api-ca-file=%s" $file)) }}
{{- end }}{{ end }}
{{- end }}

{{- define "tcr-assistant.privateCAVolumeMounts" -}}
{{- with .Values.privateCA }}{{ if .configMap }}
{{- toYaml (list (dict "name" "private-ca" "mountPath" (dir (include "tcr-assistant.privateCAFile" $)) "readOnly" true)) }}
{{- end }}{{ end }}
{{- end }}

{{- define "tcr-assistant.privateCAVolumes" -}}
{{- with .Values.privateCA }}{{ if .configMap }}
{{- $items := list (dict "key" (.key | default "ca.crt") "path" (base (include "tcr-assistant.privateCAFile" $))) }}
{{- toYaml (list (dict "name" "private-ca" "configMap" (dict "name" .configMap "items" $items))) }}
{{- end }}{{ end }}
{{- end }}
