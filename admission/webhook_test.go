package admission_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
	"github.com/tcr-assistant/tcr-assistant/engine"
	"github.com/tcr-assistant/tcr-assistant/internal/testenv"
)

// password is the registry password of every spec here: distinctive, so that a test can assert
// that no response, refusal or warning ever repeats it.
const password = "not-a-real-token"

// dockerOK is a valid docker block, in YAML flow style.
const dockerOK = `docker: {server: fanjiankong-bj.tencentcloudcr.com, username: "100012345678", password: ` + password + `}`

// manifest renders an ImagePullSecret with the given spec, in YAML flow style, for kubectl.
func manifest(name, spec string) string {
	return fmt.Sprintf("apiVersion: tcr.tencentcloudcr.com/v1\nkind: ImagePullSecret\nmetadata:\n  name: %s\nspec: {%s}\n", name, spec)
}

// refusals lists bad CRs and the cause kubectl must print. byCRD marks the cheap checks the
// CRD schema makes before the webhook is called; all others reach the webhook.
var refusals = map[string]struct {
	spec  string
	want  string
	byCRD bool
}{
	"a namespace list with an empty entry": {
		spec: `namespaces: "app-a,,app-b", serviceAccounts: "*", ` + dockerOK,
		want: `spec.namespaces: Invalid value: "": entry 2 is empty: remove the extra comma`,
	},
	"a namespace list mixing * with names": {
		spec: `namespaces: "*,default", ` + dockerOK,
		want: `spec.namespaces: Invalid value: "*": selects every namespace and cannot be combined with names: use "*" alone or list names only`,
	},
	"a namespace pattern": {
		spec: `namespaces: "team-*", ` + dockerOK,
		want: `spec.namespaces: Invalid value: "team-*": is a pattern, and patterns are not supported: list exact names, or use spec.namespaceSelector or spec.namespaceExpression`,
	},
	"a namespace regular expression": {
		spec: `namespaces: "^prod-.+$", ` + dockerOK,
		want: `spec.namespaces: Invalid value: "^prod-.+$": is a pattern, and patterns are not supported`,
	},
	"a namespace name that no namespace can have": {
		spec: `namespaces: "default,Team_A", ` + dockerOK,
		want: `spec.namespaces: Invalid value: "Team_A": is not a valid namespace name: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-'`,
	},
	"a ServiceAccount list with an empty entry": {
		spec: `serviceAccounts: "default,", ` + dockerOK,
		want: `spec.serviceAccounts: Invalid value: "": entry 2 is empty: remove the extra comma`,
	},
	"a ServiceAccount list mixing * with names": {
		spec: `serviceAccounts: "default,*", ` + dockerOK,
		want: `spec.serviceAccounts: Invalid value: "*": selects every ServiceAccount and cannot be combined with names: use "*" alone or list names only`,
	},
	"a ServiceAccount pattern": {
		spec: `serviceAccounts: "builder-?", ` + dockerOK,
		want: `spec.serviceAccounts: Invalid value: "builder-?": is a pattern, and patterns are not supported: list exact names, or use spec.serviceAccountSelector or spec.serviceAccountExpression`,
	},
	"a ServiceAccount name that no ServiceAccount can have": {
		spec: `serviceAccounts: "Builder", ` + dockerOK,
		want: `spec.serviceAccounts: Invalid value: "Builder": is not a valid ServiceAccount name: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters`,
	},
	"an exclusion of every namespace": {
		spec: `excludeNamespaces: "*", ` + dockerOK,
		want: `spec.excludeNamespaces: Invalid value: "*": would exclude every namespace: list the exact names to exclude`,
	},
	"an exclusion pattern": {
		spec: `excludeNamespaces: "kube-*", ` + dockerOK,
		want: `spec.excludeNamespaces: Invalid value: "kube-*": is a pattern, and patterns are not supported`,
	},
	"an exclusion list with an empty entry": {
		spec: `excludeNamespaces: ",kube-system", ` + dockerOK,
		want: `spec.excludeNamespaces: Invalid value: "": entry 1 is empty: remove the extra comma`,
	},
	"a registry server with a scheme": {
		spec:  `docker: {server: "https://fanjiankong-bj.tencentcloudcr.com", username: u, password: not-a-real-token}`,
		want:  `spec.docker.server: Invalid value: "https://fanjiankong-bj.tencentcloudcr.com": docker.server must be a host name without a scheme such as https://`,
		byCRD: true,
	},
	"a user name with a colon, which would make auth ambiguous": {
		spec: `namespaces: "*", docker: {server: r.example.com, username: "team:robot", password: not-a-real-token}`,
		want: `spec.docker.username: Invalid value: "team:robot": must not contain ":": the Secret's auth field is username:password, and a ":" in the user name would make it ambiguous`,
	},
	"16,000 bad namespace names, each named alone, 20 of them": {
		spec: `namespaces: "` + strings.TrimSuffix(strings.Repeat("A,", 16_000), ",") + `", ` + dockerOK,
		// kubectl prints the causes one a line and the client joins them; the twenty identical
		// ones come out as one, and TestHostileListsAreRefusedCheaply asserts the whole message.
		want: `spec.namespaces: Invalid value: "A": is not a valid namespace name: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`,
	},
	"a registry server with a path": {
		spec: `docker: {server: "fanjiankong-bj.tencentcloudcr.com/team", username: u, password: not-a-real-token}`,
		want: `spec.docker.server: Invalid value: "fanjiankong-bj.tencentcloudcr.com/team": must be a host name without a path: write "fanjiankong-bj.tencentcloudcr.com" and put repository paths in image names`,
	},
	"a registry server with a space": {
		spec: `docker: {server: "registry .example.com", username: u, password: not-a-real-token}`,
		want: `spec.docker.server: Invalid value: "registry .example.com": must not contain spaces: write the host name only, e.g. registry.example.com or registry.example.com:5000`,
	},
	"a registry server with port 0": {
		spec: `docker: {server: "registry.example.com:0", username: u, password: not-a-real-token}`,
		want: `spec.docker.server: Invalid value: "registry.example.com:0": has an invalid port "0": use a port from 1 to 65535`,
	},
	"a registry server with a port out of range": {
		spec: `docker: {server: "registry.example.com:70000", username: u, password: not-a-real-token}`,
		want: `spec.docker.server: Invalid value: "registry.example.com:70000": has an invalid port "70000": use a port from 1 to 65535`,
	},
	"a registry server that is not a host name": {
		spec: `docker: {server: "registry_example.com", username: u, password: not-a-real-token}`,
		want: `spec.docker.server: Invalid value: "registry_example.com": "registry_example.com" is not a valid host name or IP address: use a DNS name, e.g. registry.example.com or registry.example.com:5000`,
	},
	"an empty registry server": {
		spec:  `docker: {server: "", username: u, password: not-a-real-token}`,
		want:  `spec.docker.server: Invalid value: "": spec.docker.server in body should be at least 1 chars long`,
		byCRD: true,
	},
	"a missing docker block": {
		spec:  `namespaces: "*"`,
		want:  `spec.docker: Required value`,
		byCRD: true,
	},
	"a user name that is only whitespace": {
		spec:  `docker: {server: r.example.com, username: "  ", password: not-a-real-token}`,
		want:  `spec.docker.username: Invalid value: "  ": docker.username must not be empty`,
		byCRD: true,
	},
	"a password that is only whitespace": {
		spec:  `docker: {server: r.example.com, username: u, password: " \t "}`,
		want:  `spec.docker: Invalid value: docker.password is required and must not be only whitespace (or set docker.passwordSecretRef)`,
		byCRD: true,
	},
	"a missing password": {
		spec:  `docker: {server: r.example.com, username: u}`,
		want:  `spec.docker: Invalid value: docker.password is required and must not be only whitespace (or set docker.passwordSecretRef)`,
		byCRD: true,
	},
	"a password and a password Secret at once": {
		spec:  `docker: {server: r.example.com, username: u, password: not-a-real-token, passwordSecretRef: {name: tcr-password, key: password}}`,
		want:  `spec.docker: Invalid value: set either docker.password or docker.passwordSecretRef, not both`,
		byCRD: true,
	},
	"a missing user name": {
		spec:  `docker: {server: r.example.com, password: not-a-real-token}`,
		want:  `spec.docker: Invalid value: docker.username is required (or set docker.instanceToken)`,
		byCRD: true,
	},
	"an instance token with a user name and password": {
		spec:  `docker: {server: r.example.com, username: u, password: not-a-real-token, instanceToken: {registryId: tcr-abcd1234, region: ap-guangzhou}}`,
		want:  `spec.docker: Invalid value: set either docker.instanceToken or docker.username with docker.password or docker.passwordSecretRef, not both`,
		byCRD: true,
	},
	"an instance token of an unknown type": {
		spec:  `docker: {server: r.example.com, instanceToken: {registryId: tcr-abcd1234, region: ap-guangzhou, type: Forever}}`,
		want:  `spec.docker.instanceToken.type: Unsupported value: "Forever": supported values: "Temporary", "LongTerm"`,
		byCRD: true,
	},
	"an unknown rotation policy": {
		spec:  `rotationPolicy: Later, ` + dockerOK,
		want:  `spec.rotationPolicy: Unsupported value: "Later": supported values: "Verified", "Immediate"`,
		byCRD: true,
	},
	"a password Secret that no Secret can be named": {
		spec: `docker: {server: r.example.com, username: u, passwordSecretRef: {name: Tcr_Password, key: password}}`,
		want: `spec.docker.passwordSecretRef.name: Invalid value: "Tcr_Password": is not a valid Secret name: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters`,
	},
	"a password Secret key that no Secret can have": {
		spec: `docker: {server: r.example.com, username: u, passwordSecretRef: {name: tcr-password, key: "pass/word"}}`,
		want: `spec.docker.passwordSecretRef.key: Invalid value: "pass/word": is not a valid Secret key: a valid config key must consist of alphanumeric characters, '-', '_' or '.'`,
	},
	"a namespace selector with an invalid label key": {
		spec: `namespaceSelector: {matchLabels: {"bad key": "x"}}, ` + dockerOK,
		want: `spec.namespaceSelector.matchLabels: Invalid value: "bad key": name part must consist of alphanumeric characters`,
	},
	"a namespace selector with an unknown operator": {
		spec: `namespaceSelector: {matchExpressions: [{key: env, operator: Like, values: [prod]}]}, ` + dockerOK,
		want: `spec.namespaceSelector.matchExpressions[0].operator: Invalid value: "Like": not a valid selector operator`,
	},
	"a ServiceAccount selector In without values": {
		spec: `serviceAccountSelector: {matchExpressions: [{key: team, operator: In}]}, ` + dockerOK,
		want: `spec.serviceAccountSelector.matchExpressions[0].values: Required value: must be specified when ` + "`operator`" + ` is 'In' or 'NotIn'`,
	},
	"a namespace expression that does not parse": {
		spec: `namespaceExpression: "namespace.name.startsWith(", ` + dockerOK,
		want: `spec.namespaceExpression: Invalid value: "namespace.name.startsWith(": is not a valid CEL expression over namespace.name, namespace.labels and namespace.annotations: `,
	},
	"a namespace expression over an unknown variable": {
		spec: `namespaceExpression: "pod.name == 'x'", ` + dockerOK,
		want: `spec.namespaceExpression: Invalid value: "pod.name == 'x'": is not a valid CEL expression over namespace.name, namespace.labels and namespace.annotations: `,
	},
	"a namespace expression that is not a bool": {
		spec: `namespaceExpression: "namespace.name", ` + dockerOK,
		want: `spec.namespaceExpression: Invalid value: "namespace.name": must evaluate to a bool but evaluates to string: compare the value, e.g. namespace.labels["env"] == "prod"`,
	},
	"a blank namespace expression": {
		spec: `namespaceExpression: "  ", ` + dockerOK,
		want: `spec.namespaceExpression: Invalid value: "  ": must be a CEL expression or left out: remove the field to select without an expression`,
	},
	"a namespace expression too expensive to run on every namespace": {
		spec: `namespaceExpression: "namespace.labels.all(k, namespace.annotations.all(a, namespace.labels.exists(l, l + a + k == namespace.name)))", ` + dockerOK,
		want: fmt.Sprintf(`exceeds the limit of %d; simplify it, e.g. avoid iterating over labels or annotations`, engine.MaxEstimatedCost),
	},
	"a ServiceAccount expression that does not parse": {
		spec: `serviceAccountExpression: "serviceAccount.name ==", ` + dockerOK,
		want: `spec.serviceAccountExpression: Invalid value: "serviceAccount.name ==": is not a valid CEL expression over namespace (name, labels, annotations) and serviceAccount.name, serviceAccount.namespace, serviceAccount.labels and serviceAccount.annotations: `,
	},
	"a ServiceAccount expression longer than the limit": {
		spec:  `serviceAccountExpression: "` + strings.Repeat("true && ", 600) + `true", ` + dockerOK,
		want:  `spec.serviceAccountExpression: Too long: may not be more than 4096 bytes`,
		byCRD: true, // the CRD caps expressions at engine.MaxExpressionLength too

	},
}

// warnings lists CRs that are admitted with a warning kubectl prints.
var warnings = map[string]struct {
	spec string
	want []string
}{
	"a namespace listed twice": {
		spec: `namespaces: "app-a, app-b, app-a", ` + dockerOK,
		want: []string{`Warning: spec.namespaces: "app-a" is listed more than once; the duplicate is ignored`},
	},
	"a ServiceAccount listed twice": {
		spec: `namespaces: "*", serviceAccounts: "default,builder,default", ` + dockerOK,
		want: []string{`Warning: spec.serviceAccounts: "default" is listed more than once; the duplicate is ignored`},
	},
	"an empty namespace list": {
		spec: `namespaces: "", serviceAccounts: "", ` + dockerOK,
		want: []string{"Warning: " + engine.MsgEmptyNamespaces},
	},
	"an omitted namespace list": {
		spec: dockerOK,
		want: []string{`Warning: spec.namespaces is empty, which selects every namespace, kube-system included, as "*" does: write "*" to say so, or list the namespaces`},
	},
	"a password Secret that has not opted in": {
		spec: `namespaces: "*", docker: {server: r.example.com, username: u, passwordSecretRef: {name: unlabelled-password, key: password}}`,
		want: []string{`Warning: spec.docker.passwordSecretRef: Secret tcr-assistant-system/unlabelled-password may not be a password source: it does not carry the label tcr.tencentcloudcr.com/password-source: "true", by which a Secret opts in to being a password source; nothing will be distributed from it`},
	},
	"the webhook's certificate Secret as password Secret": {
		spec: `namespaces: "*", docker: {server: r.example.com, username: u, passwordSecretRef: {name: warnings-cert, key: ca.key}}`,
		want: []string{`Warning: spec.docker.passwordSecretRef: Secret tcr-assistant-system/warnings-cert may not be a password source: it is the webhook's certificate Secret, which is never a password source; nothing will be distributed from it`},
	},
	"a namespace both listed and excluded": {
		spec: `namespaces: "app-a,app-b", excludeNamespaces: app-b, ` + dockerOK,
		want: []string{`Warning: spec.namespaces: "app-b" is also listed in spec.excludeNamespaces, so it is excluded`},
	},
}

// goods lists CRs admitted without a word.
var goods = map[string]string{
	"the original documentation's sample":       `namespaces: "*", serviceAccounts: "*", ` + dockerOK,
	"lists of names with spaces around them":    `namespaces: " app-a , app-b ", serviceAccounts: "default, builder", ` + dockerOK,
	"a registry with a port":                    `namespaces: "*", docker: {server: "registry.example.com:5000", username: u, password: not-a-real-token}`,
	"a registry by IP address":                  `namespaces: "*", docker: {server: "10.0.0.8:443", username: u, password: not-a-real-token}`,
	"a password Secret that does not exist yet": `namespaces: "*", docker: {server: r.example.com, username: u, passwordSecretRef: {name: not-there-yet, key: password}}`,
	"a password Secret that opted in":           `namespaces: "*", docker: {server: r.example.com, username: u, passwordSecretRef: {name: labelled-password, key: password}}`,
	"a password read from a Secret":             `namespaces: "*", docker: {server: r.example.com, username: u, passwordSecretRef: {name: tcr-password, key: password}}`,
	"every extension together":                  `namespaces: "*", namespaceSelector: {matchLabels: {env: prod}}, excludeNamespaces: "kube-system,kube-public", namespaceExpression: "namespace.name.startsWith('team-')", serviceAccountSelector: {matchExpressions: [{key: pulls, operator: Exists}]}, serviceAccountExpression: "serviceAccount.name != 'default'", ` + dockerOK,
	"a password surrounded by spaces is kept":   `namespaces: "*", docker: {server: r.example.com, username: u, password: " not-a-real-token "}`, "a minted temporary token": `namespaces: "*", docker: {server: demo.tencentcloudcr.com, instanceToken: {registryId: tcr-abcd1234, region: ap-guangzhou}}`,
	"a minted long-term token, held rotations": `namespaces: "*", rotationPolicy: Verified, docker: {server: demo.tencentcloudcr.com, instanceToken: {registryId: tcr-abcd1234, region: ap-guangzhou, type: LongTerm, apiKeySecretRef: {name: tcr-api-key}}}`,
	"immediate rotations":                      `namespaces: "*", rotationPolicy: Immediate, ` + dockerOK,
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// startSharedWebhook starts one replica with its webhook configuration for a test.
func startSharedWebhook(t *testing.T, name string) {
	t.Helper()
	opts := testOptions(t, name)
	port := testenv.FreePort(t)
	installWebhookConfiguration(t, opts.WebhookConfigurationName, port)
	p := startWebhook(t, port, opts)
	p.waitReady(t)
	waitServing(t, name)
}

func TestBadImagePullSecretsAreRefusedWithTheFieldAndTheFix(t *testing.T) {
	startSharedWebhook(t, "refusals")
	require.GreaterOrEqual(t, len(refusals), 25)
	ctx := context.Background()
	for i, name := range sortedKeys(refusals) {
		tc := refusals[name]
		t.Run(name, func(t *testing.T) {
			crName := fmt.Sprintf("refused-%02d", i)
			// As users see it: kubectl apply.
			_, stderr, err := env.Kubectl(manifest(crName, tc.spec), "apply", "-f", "-")
			require.Error(t, err)
			assert.Contains(t, stderr, fmt.Sprintf(`The ImagePullSecret %q is invalid: `, crName))
			assert.Contains(t, stderr, tc.want)
			assert.NotContains(t, stderr, password, "no message repeats the password")
			err = env.Client.Get(ctx, client.ObjectKey{Name: crName}, &tcrv1.ImagePullSecret{})
			assert.True(t, apierrors.IsNotFound(err), "nothing was stored: %v", err)

			// Through the client, the message says who refused: the CRD schema or the webhook.
			// Unstructured, so that the request carries exactly the manifest (a typed object
			// would always send a docker block).
			var ips unstructured.Unstructured
			require.NoError(t, yaml.Unmarshal([]byte(manifest(crName, tc.spec)), &ips.Object))
			err = env.Client.Create(ctx, &ips, client.DryRunAll)
			require.Error(t, err)
			assert.True(t, apierrors.IsInvalid(err), "422 Invalid: %v", err)
			prefix := fmt.Sprintf(`ImagePullSecret.tcr.tencentcloudcr.com %q is invalid: `, crName)
			if !tc.byCRD {
				prefix = `admission webhook "vimagepullsecret.tcr.tencentcloudcr.com" denied the request: ` + prefix
			}
			assert.True(t, strings.HasPrefix(err.Error(), prefix), "%q\ndoes not start with\n%q", err.Error(), prefix)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), password, "no message repeats the password")
		})
	}
}

func TestGoodImagePullSecretsAreAdmitted(t *testing.T) {
	startSharedWebhook(t, "goods")
	ctx := context.Background()
	createPasswordSecret(t, "labelled-password", map[string]string{tcrv1.PasswordSourceLabel: "true"})
	for i, name := range sortedKeys(goods) {
		t.Run(name, func(t *testing.T) {
			crName := fmt.Sprintf("admitted-%02d", i)
			stdout, stderr, err := env.Kubectl(manifest(crName, goods[name]), "apply", "-f", "-")
			require.NoError(t, err)
			assert.Equal(t, fmt.Sprintf("imagepullsecret.tcr.tencentcloudcr.com/%s created\n", crName), stdout)
			assert.Empty(t, stderr, "no warning")
			assert.NotContains(t, stdout, password)
			ips := &tcrv1.ImagePullSecret{}
			require.NoError(t, env.Client.Get(ctx, client.ObjectKey{Name: crName}, ips))
			require.NoError(t, env.Client.Delete(ctx, ips))
		})
	}
}

func TestQuestionableImagePullSecretsAreAdmittedWithAWarning(t *testing.T) {
	startSharedWebhook(t, "warnings")
	ctx := context.Background()
	createPasswordSecret(t, "unlabelled-password", nil)
	for i, name := range sortedKeys(warnings) {
		tc := warnings[name]
		t.Run(name, func(t *testing.T) {
			crName := fmt.Sprintf("warned-%02d", i)
			stdout, stderr, err := env.Kubectl(manifest(crName, tc.spec), "apply", "-f", "-")
			require.NoError(t, err)
			assert.Equal(t, fmt.Sprintf("imagepullsecret.tcr.tencentcloudcr.com/%s created\n", crName), stdout)
			assert.Equal(t, tc.want, strings.Split(strings.TrimSpace(stderr), "\n"))
			assert.NotContains(t, stdout+stderr, password)
			ips := &tcrv1.ImagePullSecret{}
			require.NoError(t, env.Client.Get(ctx, client.ObjectKey{Name: crName}, ips))
			require.NoError(t, env.Client.Delete(ctx, ips))
		})
	}
}

func TestAnUpdateThatBreaksAValidCRIsRefused(t *testing.T) {
	startSharedWebhook(t, "updates")
	ctx := context.Background()
	_, _, err := env.Kubectl(manifest("update-me", `namespaces: "app-a", `+dockerOK), "apply", "-f", "-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = env.Client.Delete(ctx, goodIPS("update-me")) })

	_, stderr, err := env.Kubectl(manifest("update-me", `namespaces: "app-a,app-*", `+dockerOK), "apply", "-f", "-")
	require.Error(t, err)
	assert.Contains(t, stderr, `The ImagePullSecret "update-me" is invalid: spec.namespaces: Invalid value: "app-*": is a pattern, and patterns are not supported`)
	assert.NotContains(t, stderr, password)

	_, stderr, err = env.Kubectl("", "patch", "ips", "update-me", "--type=merge", "-p", `{"spec":{"docker":{"server":"registry.example.com/team"}}}`)
	require.Error(t, err)
	assert.NotContains(t, stderr, password)
	assert.Contains(t, stderr, `spec.docker.server: Invalid value: "registry.example.com/team": must be a host name without a path`)

	var stored tcrv1.ImagePullSecret
	require.NoError(t, env.Client.Get(ctx, client.ObjectKey{Name: "update-me"}, &stored))
	assert.Equal(t, "app-a", stored.Spec.Namespaces, "the stored CR is unchanged")
	assert.Equal(t, "fanjiankong-bj.tencentcloudcr.com", stored.Spec.Docker.Server)

	// Metadata-only updates (labels, finalizers) and a valid spec change go through.
	_, _, err = env.Kubectl("", "label", "ips", "update-me", "team=a")
	require.NoError(t, err)
	_, stderr, err = env.Kubectl(manifest("update-me", `namespaces: "app-a,app-b", `+dockerOK), "apply", "-f", "-")
	require.NoError(t, err, stderr)
	require.NoError(t, env.Client.Get(ctx, client.ObjectKey{Name: "update-me"}, &stored))
	assert.Equal(t, "app-a,app-b", stored.Spec.Namespaces)
	assert.Equal(t, "a", stored.Labels["team"])
}

func TestTheWebhookConfigurationCanOnlyTouchImagePullSecrets(t *testing.T) {
	vwc := webhookConfigurationFromManifest(t)
	require.Len(t, vwc.Webhooks, 1)
	wh := vwc.Webhooks[0]
	assert.Equal(t, "tcr-assistant-validating-webhook-configuration", vwc.Name)
	assert.Equal(t, "vimagepullsecret.tcr.tencentcloudcr.com", wh.Name)
	assert.Equal(t, "Fail", string(*wh.FailurePolicy))
	assert.Equal(t, "None", string(*wh.SideEffects))
	assert.Equal(t, int32(5), *wh.TimeoutSeconds)
	assert.Equal(t, []string{"v1"}, wh.AdmissionReviewVersions)
	require.NotNil(t, wh.ClientConfig.Service)
	assert.Equal(t, "tcr-assistant-system", wh.ClientConfig.Service.Namespace)
	assert.Equal(t, "tcr-assistant-webhook-service", wh.ClientConfig.Service.Name)
	assert.Equal(t, "/validate-tcr-tencentcloudcr-com-v1-imagepullsecret", *wh.ClientConfig.Service.Path)
	require.Len(t, wh.Rules, 1)
	r := wh.Rules[0]
	assert.Equal(t, []string{"tcr.tencentcloudcr.com"}, r.APIGroups)
	assert.Equal(t, []string{"v1"}, r.APIVersions)
	assert.Equal(t, []string{"imagepullsecrets"}, r.Resources)
	ops := make([]string, len(r.Operations))
	for i, op := range r.Operations {
		ops[i] = string(op)
	}
	assert.ElementsMatch(t, []string{"CREATE", "UPDATE"}, ops, "every operation, not only the first two")
}

// createPasswordSecret creates an Opaque Secret holding the password in the controller's
// namespace, with labels, for the test's duration.
func createPasswordSecret(t *testing.T, name string, labels map[string]string) {
	t.Helper()
	ensureNamespace(t)
	ctx := context.Background()
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: testNamespace, Name: name, Labels: labels},
		Type:       corev1.SecretTypeOpaque,
		StringData: map[string]string{"password": password},
	}
	require.NoError(t, env.Client.Create(ctx, secret))
	t.Cleanup(func() { require.NoError(t, client.IgnoreNotFound(env.Client.Delete(ctx, secret))) })
}
