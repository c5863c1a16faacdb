// Package helm proves the Helm chart charts/tcr-assistant with the Helm SDK: with default values
// it renders exactly the objects of dist/install.yaml but its Namespace, into the release
// namespace (every reference to tcr-assistant-system follows another release namespace), its
// values schema refuses malformed values, 'helm lint' is clean, and install, upgrade, uninstall
// and the move of a release of the earlier chart work against the local control plane.
package helm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/release"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/tcr-assistant/tcr-assistant/internal/rulesync"
	"github.com/tcr-assistant/tcr-assistant/internal/testenv"
)

const (
	chartDir    = "charts/tcr-assistant"
	releaseName = "tcr-assistant"
	// releaseNS is the release namespace the README installs into ('helm install -n
	// tcr-assistant-system --create-namespace'), which is also the namespace of every namespaced
	// object of dist/install.yaml.
	releaseNS = "tcr-assistant-system"
	// otherNS is another release namespace, which every reference to the namespace must follow.
	otherNS = "tcr-system"
)

func root(t *testing.T) string {
	t.Helper()
	r, err := testenv.RepoRoot()
	require.NoError(t, err)
	return r
}

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	c, err := loader.Load(filepath.Join(root(t), chartDir))
	require.NoError(t, err)
	return c
}

// values parses YAML values as 'helm install -f' would.
func values(t *testing.T, doc string) map[string]any {
	t.Helper()
	v, err := chartutil.ReadValues([]byte(doc))
	require.NoError(t, err)
	return v
}

// render renders the chart into release namespace ns as 'helm template' does, with no cluster.
func render(t *testing.T, ns string, vals map[string]any) (*release.Release, error) {
	t.Helper()
	in := action.NewInstall(&action.Configuration{})
	in.DryRun, in.ClientOnly, in.IncludeCRDs = true, true, true
	in.ReleaseName, in.Namespace = releaseName, ns
	return in.Run(loadChart(t), vals)
}

// parseObjects reads a YAML stream of manifests.
func parseObjects(t *testing.T, data []byte) []*unstructured.Unstructured {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
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

// renderedObjects returns every object a release renders, hooks included.
func renderedObjects(t *testing.T, rel *release.Release) []*unstructured.Unstructured {
	t.Helper()
	objs := parseObjects(t, []byte(rel.Manifest))
	for _, h := range rel.Hooks {
		objs = append(objs, parseObjects(t, []byte(h.Manifest))...)
	}
	return objs
}

func key(o *unstructured.Unstructured) string {
	return o.GetKind() + " " + o.GetNamespace() + "/" + o.GetName()
}

func keys(objs []*unstructured.Unstructured) []string {
	out := make([]string, 0, len(objs))
	for _, o := range objs {
		out = append(out, key(o))
	}
	sort.Strings(out)
	return out
}

func find(t *testing.T, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	require.Failf(t, "object not rendered", "%s %s", kind, name)
	return nil
}

// bundleObjects returns the objects of dist/install.yaml but its Namespace, which 'kubectl apply'
// users get and the chart does not render: Helm keeps the release record in the release
// namespace, which 'helm install --create-namespace' creates.
func bundleObjects(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root(t), "dist", "install.yaml"))
	require.NoError(t, err)
	var objs, namespaces []*unstructured.Unstructured
	for _, o := range parseObjects(t, data) {
		if o.GetKind() == "Namespace" {
			namespaces = append(namespaces, o)
			continue
		}
		objs = append(objs, o)
	}
	// dist/install.yaml keeps its Namespace, with the Pod Security level the agent needs.
	require.Len(t, namespaces, 1)
	assert.Equal(t, releaseNS, namespaces[0].GetName())
	assert.Equal(t, "privileged", namespaces[0].GetLabels()["pod-security.kubernetes.io/enforce"])
	return objs
}

// inNamespace is what the chart must make of an object of dist/install.yaml in release namespace
// ns: each reference to tcr-assistant-system, listed here one by one, names ns instead. The CRD
// stays as it is (its descriptions mention the default namespace).
func inNamespace(t *testing.T, o *unstructured.Unstructured, ns string) *unstructured.Unstructured {
	t.Helper()
	out := o.DeepCopy()
	obj := out.Object
	if out.GetNamespace() != "" {
		out.SetNamespace(ns)
	}
	// replace replaces old by with in the string at path, or in each item of the list at path,
	// or in the field field of each item of the list at path.
	replace := func(m map[string]any, old, with string, field string, path ...string) {
		v, found, err := unstructured.NestedFieldNoCopy(m, path...)
		require.NoError(t, err)
		if !found {
			return
		}
		switch v := v.(type) {
		case string:
			require.NoError(t, unstructured.SetNestedField(m, strings.ReplaceAll(v, old, with), path...))
		case []any:
			for i, item := range v {
				if field == "" {
					if s, ok := item.(string); ok {
						v[i] = strings.ReplaceAll(s, old, with)
					}
				} else if im, ok := item.(map[string]any); ok {
					if s, ok := im[field].(string); ok {
						im[field] = strings.ReplaceAll(s, old, with)
					}
				}
			}
		}
	}
	switch out.GetKind() {
	case "RoleBinding", "ClusterRoleBinding":
		replace(obj, releaseNS, ns, "namespace", "subjects")
	case "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration":
		webhooks, _, err := unstructured.NestedSlice(obj, "webhooks")
		require.NoError(t, err)
		for _, w := range webhooks {
			w := w.(map[string]any)
			replace(w, releaseNS, ns, "", "clientConfig", "service", "namespace")
			exprs, _, err := unstructured.NestedSlice(w, "namespaceSelector", "matchExpressions")
			require.NoError(t, err)
			for _, e := range exprs {
				replace(e.(map[string]any), releaseNS, ns, "", "values")
			}
			if exprs != nil {
				require.NoError(t, unstructured.SetNestedSlice(w, exprs, "namespaceSelector", "matchExpressions"))
			}
		}
		require.NoError(t, unstructured.SetNestedSlice(obj, webhooks, "webhooks"))
	case "Deployment":
		containers, _, err := unstructured.NestedSlice(obj, "spec", "template", "spec", "containers")
		require.NoError(t, err)
		for _, c := range containers {
			replace(c.(map[string]any), "--namespace="+releaseNS, "--namespace="+ns, "", "args")
		}
		require.NoError(t, unstructured.SetNestedSlice(obj, containers, "spec", "template", "spec", "containers"))
	case "ValidatingAdmissionPolicy":
		// The manager's ServiceAccount user name, and its certificate Secret's namespace.
		user := "'system:serviceaccount:%s:tcr-assistant-controller-manager'"
		replace(obj, fmt.Sprintf(user, releaseNS), fmt.Sprintf(user, ns), "expression", "spec", "matchConditions")
		replace(obj, "request.namespace == '"+releaseNS+"'", "request.namespace == '"+ns+"'", "expression", "spec", "variables")
	}
	return out
}

func TestDefaultValuesRenderExactlyTheObjectsOfTheBundleButItsNamespace(t *testing.T) {
	bundle := bundleObjects(t)

	rel, err := render(t, releaseNS, nil)
	require.NoError(t, err)
	rendered := renderedObjects(t, rel)
	assert.Empty(t, rel.Hooks, "default values must render no hook")

	// The same kind, name and namespace set (no Namespace)...
	require.Equal(t, keys(bundle), keys(rendered))
	// ...and the same objects, field for field.
	for _, want := range bundle {
		got := find(t, rendered, want.GetKind(), want.GetName())
		assert.Equal(t, want.Object, got.Object, "%s differs from dist/install.yaml", key(want))
	}
}

func TestEveryNamespaceReferenceFollowsTheReleaseNamespace(t *testing.T) {
	// 123 is a namespace name that YAML would read as a number if the chart did not quote it.
	for _, ns := range []string{otherNS, "123"} {
		t.Run(ns, func(t *testing.T) {
			rel, err := render(t, ns, values(t, twoRules("first-password", "10.0.0.2")))
			require.NoError(t, err)
			rendered := renderedObjects(t, rel)

			// The bundle's objects, with each namespace reference in ns: field for field...
			var want []*unstructured.Unstructured
			for _, o := range bundleObjects(t) {
				o = inNamespace(t, o, ns)
				if o.GetKind() == "ConfigMap" && o.GetName() == "updater-config" {
					// global.hosts.
					require.NoError(t, unstructured.SetNestedField(o.Object, "- domain: a.tencentcloudcr.com\n  ip: 10.0.0.2\n"+
						"- disabled: true\n  domain: b.tencentcloudcr.com\n  ip: 10.0.0.3\n", "data", "hosts.yaml"))
				}
				want = append(want, o)
				got := find(t, rendered, o.GetKind(), o.GetName())
				assert.Equal(t, o.Object, got.Object, "%s is not the object of dist/install.yaml in namespace %s", key(o), ns)
			}
			// ...and the chart's own objects for the rules, in ns too.
			assert.Equal(t, keys(append(want, parseObjects(t, []byte(`
kind: ServiceAccount
metadata: {name: tcr-assistant-sync, namespace: "`+ns+`"}
---
kind: ClusterRole
metadata: {name: tcr-assistant-sync}
---
kind: ClusterRoleBinding
metadata: {name: tcr-assistant-sync}
---
kind: Secret
metadata: {name: tcr-assistant-sync, namespace: "`+ns+`"}
---
kind: Job
metadata: {name: tcr-assistant-sync-apply, namespace: "`+ns+`"}
---
kind: Job
metadata: {name: tcr-assistant-sync-delete, namespace: "`+ns+`"}
`))...)), keys(rendered))
			subjects, _, err := unstructured.NestedSlice(find(t, rendered, "ClusterRoleBinding", "tcr-assistant-sync").Object, "subjects")
			require.NoError(t, err)
			assert.Equal(t, []any{map[string]any{"kind": "ServiceAccount", "name": "tcr-assistant-sync", "namespace": ns}}, subjects)

			// Nothing but the CRD's descriptions names tcr-assistant-system any more.
			for _, o := range rendered {
				data, err := json.Marshal(o.Object)
				require.NoError(t, err)
				if o.GetKind() != "CustomResourceDefinition" {
					assert.NotContains(t, string(data), releaseNS, "%s names %s", key(o), releaseNS)
				}
			}
		})
	}
}

func TestChartPassesHelmLint(t *testing.T) {
	for name, vals := range map[string]map[string]any{
		"with default values":                nil,
		"with rules and hosts in the values": values(t, twoRules("first-password", "10.0.0.2")),
	} {
		t.Run(name, func(t *testing.T) {
			lint := action.NewLint()
			lint.Namespace = releaseNS
			res := lint.Run([]string{filepath.Join(root(t), chartDir)}, vals)
			require.Empty(t, res.Errors)
			for _, m := range res.Messages {
				// helm lint's only remark is INFO "icon is recommended": the project has no icon.
				assert.Less(t, m.Severity, 2, "helm lint: %s", m.Error())
				t.Log(m.Error())
			}
			assert.False(t, action.HasWarningsOrErrors(res))
		})
	}
}

// twoRules are the values of the integration test: rule team-a in the form, rule team-b
// in the original add-on's flat form, and one hosts entry.
func twoRules(passwordA, hostIP string) string {
	return `
global:
  imagePullSecretsCrs:
  - name: team-a
    namespaces: helm-a
    serviceAccounts: "*"
    docker:
      server: a.tencentcloudcr.com
      username: user-a
      password: ` + passwordA + `
  - name: team-b
    namespaces: "helm-a, helm-b"
    serviceAccounts: builder
    type: docker
    dockerServer: b.tencentcloudcr.com
    dockerUsername: user-b
    dockerPassword: password-b
  hosts:
  - domain: a.tencentcloudcr.com
    ip: ` + hostIP + `
  - domain: b.tencentcloudcr.com
    ip: 10.0.0.3
    disabled: true
`
}

func TestValuesRenderTheRulesInBothFormsAndTheHosts(t *testing.T) {
	rel, err := render(t, releaseNS, values(t, twoRules("first-password", "10.0.0.2")))
	require.NoError(t, err)
	objs := renderedObjects(t, rel)

	// The hook Secret holds both rules as ImagePullSecrets, the flat form turned into docker.
	secret := find(t, objs, "Secret", "tcr-assistant-sync")
	raw, _, err := unstructured.NestedString(secret.Object, "data", "imagepullsecrets.json")
	require.NoError(t, err)
	dec, err := decodeBase64(raw)
	require.NoError(t, err)
	rules, err := rulesync.Parse(dec)
	require.NoError(t, err)
	require.Len(t, rules, 2)
	assert.Equal(t, "team-a", rules[0].Name)
	assert.Equal(t, "helm-a", rules[0].Spec.Namespaces)
	assert.Equal(t, "a.tencentcloudcr.com", rules[0].Spec.Docker.Server)
	assert.Equal(t, "first-password", rules[0].Spec.Docker.Password)
	assert.Equal(t, "team-b", rules[1].Name)
	assert.Equal(t, "helm-a, helm-b", rules[1].Spec.Namespaces)
	assert.Equal(t, "builder", rules[1].Spec.ServiceAccounts)
	assert.Equal(t, "b.tencentcloudcr.com", rules[1].Spec.Docker.Server)
	assert.Equal(t, "user-b", rules[1].Spec.Docker.Username)
	assert.Equal(t, "password-b", rules[1].Spec.Docker.Password)

	// The hooks: the rules, the apply Job after install and upgrade, the delete Job before
	// uninstall; the Jobs run the bundle's image.
	hooks := map[string][]string{}
	for _, h := range rel.Hooks {
		for _, e := range h.Events {
			hooks[string(e)] = append(hooks[string(e)], h.Kind+" "+h.Name)
		}
	}
	assert.Equal(t, map[string][]string{
		"post-install": {"Secret tcr-assistant-sync", "Job tcr-assistant-sync-apply"},
		"post-upgrade": {"Secret tcr-assistant-sync", "Job tcr-assistant-sync-apply"},
		"pre-delete":   {"Job tcr-assistant-sync-delete"},
	}, hooks)
	deploy := find(t, objs, "Deployment", "tcr-assistant-controller-manager")
	job := find(t, objs, "Job", "tcr-assistant-sync-apply")
	assert.Equal(t, containerImage(t, deploy), containerImage(t, job))

	// global.hosts is the agent's hosts.yaml.
	cm := find(t, objs, "ConfigMap", "updater-config")
	hostsYAML, _, err := unstructured.NestedString(cm.Object, "data", "hosts.yaml")
	require.NoError(t, err)
	var hosts []map[string]any
	require.NoError(t, yaml.Unmarshal([]byte(hostsYAML), &hosts))
	assert.Equal(t, []map[string]any{
		{"domain": "a.tencentcloudcr.com", "ip": "10.0.0.2"},
		{"domain": "b.tencentcloudcr.com", "ip": "10.0.0.3", "disabled": true},
	}, hosts)

	// The value image replaces the image everywhere.
	rel, err = render(t, releaseNS, values(t, "image: registry.example.com/tcr-assistant:v9.9.9\n"+twoRules("p", "10.0.0.2")))
	require.NoError(t, err)
	for _, o := range renderedObjects(t, rel) {
		if o.GetKind() == "Deployment" || o.GetKind() == "DaemonSet" || o.GetKind() == "Job" {
			assert.Equal(t, "registry.example.com/tcr-assistant:v9.9.9", containerImage(t, o), key(o))
		}
	}
}

func containerImage(t *testing.T, o *unstructured.Unstructured) string {
	t.Helper()
	containers, _, err := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
	require.NoError(t, err)
	require.Len(t, containers, 1)
	return containers[0].(map[string]any)["image"].(string)
}

func TestValuesSchemaRefusesMalformedValues(t *testing.T) {
	rule := func(extra string) string {
		return "global:\n  imagePullSecretsCrs:\n  - name: team-a\n" + extra
	}
	docker := "    docker: {server: a.tencentcloudcr.com, username: u, password: p}\n"
	for name, tc := range map[string]struct{ values, want string }{
		"a rule without a credential": {
			rule(""),
			"- at '/global/imagePullSecretsCrs/0': 'oneOf' failed, none matched\n" +
				"  - at '/global/imagePullSecretsCrs/0': missing property 'docker'\n" +
				"  - at '/global/imagePullSecretsCrs/0': missing properties 'dockerServer', 'dockerUsername', 'dockerPassword'\n",
		},
		"a rule with both credential forms": {
			rule(docker + "    dockerServer: b.tencentcloudcr.com\n    dockerUsername: u\n    dockerPassword: p\n"),
			"- at '/global/imagePullSecretsCrs/0': 'oneOf' failed, subschemas 0, 1 matched\n",
		},
		"a server with a scheme": {
			rule("    docker: {server: 'https://a.tencentcloudcr.com', username: u, password: p}\n"),
			"at '/global/imagePullSecretsCrs/0/docker/server': 'https://a.tencentcloudcr.com' does not match pattern",
		},
		"a docker credential without a password": {
			rule("    docker: {server: a.tencentcloudcr.com, username: u}\n"),
			"- at '/global/imagePullSecretsCrs/0/docker': 'oneOf' failed, none matched\n" +
				"  - at '/global/imagePullSecretsCrs/0/docker': missing property 'password'\n" +
				"  - at '/global/imagePullSecretsCrs/0/docker': missing property 'passwordSecretRef'\n",
		},
		"a rule name that is not a DNS name": {
			"global:\n  imagePullSecretsCrs:\n  - name: Team_A\n" + docker,
			"at '/global/imagePullSecretsCrs/0/name': 'Team_A' does not match pattern",
		},
		"a misspelt field": {
			rule(docker + "    namespace: a\n"),
			"at '/global/imagePullSecretsCrs/0': additional properties 'namespace' not allowed",
		},
		"a type other than docker": {
			rule("    type: basic\n    dockerServer: a.tencentcloudcr.com\n    dockerUsername: u\n    dockerPassword: p\n"),
			"at '/global/imagePullSecretsCrs/0/type': value must be 'docker'",
		},
		"a host without an ip": {
			"global:\n  hosts:\n  - domain: a.tencentcloudcr.com\n",
			"at '/global/hosts/0': missing property 'ip'",
		},
		"a host ip that is not an address": {
			"global:\n  hosts:\n  - {domain: a.tencentcloudcr.com, ip: somewhere}\n",
			"at '/global/hosts/0/ip': 'somewhere' does not match pattern",
		},
		"disabled that is not a boolean": {
			"global:\n  hosts:\n  - {domain: a.tencentcloudcr.com, ip: 10.0.0.2, disabled: 'no'}\n",
			"at '/global/hosts/0/disabled': got string, want boolean",
		},
		"hosts that are not a list": {
			"global:\n  hosts: {domain: a.tencentcloudcr.com}\n",
			"at '/global/hosts': got object, want array",
		},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := render(t, releaseNS, values(t, tc.values))
			require.Error(t, err)
			assert.Contains(t, err.Error(), "values don't meet the specifications of the schema(s)")
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}
