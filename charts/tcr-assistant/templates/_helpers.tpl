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
{{- $live := lookup "v1" "ConfigMap" "tcr-assistant-system" "updater-config" -}}
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
The objects of the bundle carry their own namespace, tcr-assistant-system, which the chart
creates: Helm keeps its release record in the release namespace, which must exist before and
must not be that one.
*/ -}}
{{- define "tcr-assistant.checkReleaseNamespace" -}}
{{- if eq .Release.Namespace "tcr-assistant-system" -}}
{{- fail "install the release into another namespace than tcr-assistant-system (e.g. --namespace default): the chart creates tcr-assistant-system itself and Helm cannot keep its release record in a namespace the release owns" -}}
{{- end -}}
{{- end }}
